"""Reach the frontend Service from the runner:
`kubectl port-forward`, the client's own port-forward, or a URL given outright (tests, an ingress)."""

from __future__ import annotations

import os
import queue
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client as k8s
from kubernetes.stream import portforward

from harness.run.k8s.client import Kube, KubeError
from harness.run.k8s.readiness import pod_ready

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class PortForwardError(Exception):
    """The frontend could not be reached from the runner; the message says why."""


class FrontendAccess(Protocol):
    def open(self, namespace: str, service: str, port: int) -> str:
        """Start forwarding; return the base URL (`http://127.0.0.1:<port>`)."""

    def close(self) -> None:
        """Stop forwarding. Idempotent, never raises."""


@dataclass
class StaticURL:
    """The frontend is already reachable at `url` (a test server, an ingress, a NodePort)."""

    url: str

    def open(self, namespace: str, service: str, port: int) -> str:
        return self.url.rstrip("/")

    def close(self) -> None:
        pass


class KubectlPortForward:
    """`kubectl port-forward svc/<name> :<port>` in a child process, on a free local port."""

    def __init__(self, kubeconfig: str | None = None, kubectl: str = "kubectl", start_timeout: float = 30.0):
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def open(self, namespace: str, service: str, port: int) -> str:
        cmd = [
            self.kubectl,
            "port-forward",
            "--namespace",
            namespace,
            f"svc/{service}",
            f":{port}",
            "--address",
            "127.0.0.1",
        ]
        # KUBECONFIG rather than --kubeconfig: the source may be several files joined by ':'
        env = dict(os.environ, KUBECONFIG=self.kubeconfig) if self.kubeconfig else None
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
        )
        # A reader thread keeps the pipe drained: a full pipe would stall kubectl mid-forward.
        threading.Thread(target=self._drain, daemon=True, name="kubectl-port-forward").start()
        deadline = time.monotonic() + self.start_timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line.strip())
            m = _FORWARDING.search(line)
            if m:
                return f"http://127.0.0.1:{m.group(1)}"
        self.close()
        raise PortForwardError(
            f"kubectl port-forward to svc/{service} in {namespace} did not start: "
            + (" | ".join(seen[-5:]) or "no output")
        )

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class ClientPortForward:
    """Port-forward through the Kubernetes client when kubectl is absent: a local listener whose
    every connection is relayed over its own websocket to a Ready pod behind the Service."""

    def __init__(self, kube: Kube):
        # a client of its own: `portforward` swaps the request method of the ApiClient it uses
        self.core = k8s.CoreV1Api(k8s.ApiClient(configuration=kube.api.configuration))
        self.kube = kube
        self.listener: socket.socket | None = None
        self._stop = threading.Event()

    def _target(self, namespace: str, service: str, port: int) -> tuple[str, int]:
        svc = self.kube.get("v1", "Service", service, namespace)
        if svc is None:
            raise PortForwardError(f"service {service} not found in namespace {namespace}")
        spec = svc.get("spec") or {}
        selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
        target: int | str = port
        for p in spec.get("ports") or []:
            if p.get("port") == port:
                target = p.get("targetPort") or port
        pods = [p for p in self.kube.list("v1", "Pod", namespace, selector or None) if pod_ready(p)] if selector else []
        if not pods:
            raise PortForwardError(f"no Ready pod behind service {service} in {namespace}")
        pod = pods[0]
        if isinstance(target, str):
            named = [
                cp.get("containerPort")
                for c in (pod.get("spec") or {}).get("containers") or []
                for cp in c.get("ports") or []
                if cp.get("name") == target
            ]
            if not named:
                raise PortForwardError(
                    f"service {service} targets port {target!r}, which pod {pod['metadata']['name']} does not name"
                )
            target = int(named[0])
        return pod["metadata"]["name"], int(target)

    def open(self, namespace: str, service: str, port: int) -> str:
        try:
            pod, target = self._target(namespace, service, port)
        except KubeError as exc:
            raise PortForwardError(str(exc)) from None
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        threading.Thread(
            target=self._accept, args=(namespace, pod, target), daemon=True, name="client-port-forward"
        ).start()
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self, namespace: str, pod: str, target: int) -> None:
        assert self.listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._relay, args=(conn, namespace, pod, target), daemon=True).start()

    def _relay(self, conn: socket.socket, namespace: str, pod: str, target: int) -> None:
        try:
            pf = portforward(self.core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(target))
            remote = pf.socket(target)
        except Exception:
            conn.close()
            return
        try:
            remote.setblocking(True)
            pair = {conn: remote, remote._socket: conn}
            while not self._stop.is_set():
                readable, _, _ = select.select([conn, remote._socket], [], [], 0.5)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    pair[src].sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            pf.close()

    def close(self) -> None:
        self._stop.set()
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
            self.listener = None


def default_access(kube: Kube, kubeconfig: str | None, frontend_url: str | None = None) -> FrontendAccess:
    """A given URL wins; else kubectl when it is installed; else the client's own port-forward."""
    if frontend_url:
        return StaticURL(frontend_url)
    kubectl = shutil.which("kubectl")
    if kubectl:
        return KubectlPortForward(kubeconfig, kubectl)
    return ClientPortForward(kube)
