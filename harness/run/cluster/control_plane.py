"""Start, find and stop a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,
on loopback only, with its own credentials, and simulated GPU nodes.

Flags follow envtest's defaults (controller-runtime pkg/internal/testing/controlplane) plus what makes the cluster
behave like a real one for the objects the recipes create: RBAC and Node authorization, the default admission
plugins, service-account tokens, a controller-manager (namespaces get their default ServiceAccount, Jobs and
Deployments get pods) and a scheduler that binds pods to the kwok nodes.

State lives in `<cache>/cluster/state/<name>/`: `state.json` (server, ports, the pid of every component), `pki/`,
`etcd/` (data), `logs/`, `kubeconfig` (the admin's). A cluster started by `recipe-harness cluster up` runs detached
and is owned by its state file (`cluster down` stops it); one started by a test session or `cluster up --foreground`
dies with its owner (atexit, SIGINT, SIGTERM, SIGHUP, and the kernel's parent-death signal).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.run import processes
from harness.run.cluster import pki as pki_mod
from harness.run.cluster.api import Client
from harness.run.cluster.build import (
    KWOK_CRD_KINDS,
    KWOK_STAGES_FILE,
    REQUIRED,
    Binaries,
    cache_root,
    find_kwok_crds,
)
from harness.run.cluster.nodes import NodePool, node_manifest

STATE_FILE = "state.json"
SERVICE_CIDR = "10.0.0.0/24"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
AUDIT_LOG = "logs/audit.log"
# Audit every request of the people and tools using the cluster (metadata: verb, object, URI with its query, user);
# none of the control plane's own components, whose heartbeats and watches would drown them.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-controller-manager, system:kube-scheduler, kwok-controller, system:apiserver]
- level: None
  userGroups: [system:serviceaccounts, system:nodes]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]
- level: Metadata
"""
TERM_GRACE_S = 5.0  # a throwaway cluster: no in-flight work worth a longer graceful shutdown


class ClusterError(RuntimeError):
    """The control plane cannot start or be found; the message says which component and where its log is."""


@dataclass(frozen=True)
class ClusterOptions:
    """What `cluster up` (or the test fixture) starts."""

    # The state directory's name under <cache>/cluster/state/.
    name: str = "default"
    # kube-apiserver's port on 127.0.0.1; 0 picks a free one.
    api_port: int = 0
    # Simulated GPU nodes.
    pools: tuple[NodePool, ...] = ()
    # Detached: the components outlive the starting process (cluster up); else they die with it.
    detached: bool = False
    # Seconds to wait for every component to be ready.
    ready_timeout: float = 120.0
    # Which of controller-manager, scheduler and kwok to run (when their binaries exist); etcd and the API server
    # always run. A dry-run session needs neither controllers nor nodes.
    extras: tuple[str, ...] = ("kube-controller-manager", "kube-scheduler", "kwok")
    # kwok's Stage, Logs and ClusterLogs as API objects (`--enable-crds`), its default stages created as Stage
    # objects: tests add stages of their own (a crash loop, an image that cannot be pulled) and container logs.
    # Off, or without kwok's CRDs beside its binary, kwok reads its default stages from kwok-stages.yaml.
    kwok_crds: bool = True


def state_root() -> Path:
    return cache_root() / "state"


def state_dir(name: str) -> Path:
    return state_root() / name


@dataclass
class ClusterState:
    """The contents of state.json: enough to use or stop a running cluster from another process."""

    directory: Path
    server: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    binaries: str = ""
    detached: bool = False
    owner_pid: int = 0
    started_at: str = ""
    nodes: list[str] = field(default_factory=list)
    kwok_crds: bool = False  # kwok reads its stages (and container logs) from API objects

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines, one per request of a user: AUDIT_POLICY)."""
        return self.directory / AUDIT_LOG

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "directory"}
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.directory / STATE_FILE)

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        try:
            data = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "directory"}
        return cls(directory=directory, **known)

    def client(self, user: str = "admin") -> Client:
        creds = pki_mod.load(self.directory / "pki")
        return Client(self.server, creds.tokens[user], creds.ca_cert)

    def alive(self) -> dict[str, bool]:
        """Per component: is its recorded process still running (and still ours, not a reused pid)?"""
        return {name: _is_ours(pid, self.directory) for name, pid in self.pids.items()}


def _is_ours(pid: int, directory: Path) -> bool:
    """The pid runs and its command line names our state directory (so a reused pid is never signalled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return str(directory) in cmdline


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ClusterError(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}): choose another with --port, or 0 for a free one"
            ) from None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def find_running(name: str = "default") -> ClusterState | None:
    """The cluster recorded under `name` if its API server is running, else None."""
    state = ClusterState.load(state_dir(name))
    if state is None or not state.alive().get("kube-apiserver"):
        return None
    return state


class ControlPlane:
    """One control plane, started by start() and stopped (processes and state directory) by stop()."""

    def __init__(self, binaries: Binaries, options: ClusterOptions = ClusterOptions()):
        self.binaries = binaries
        self.options = options
        self.directory = state_dir(options.name)
        self.state = ClusterState(self.directory)
        self.popens: dict[str, subprocess.Popen] = {}
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, progress=lambda _m: None) -> ClusterState:
        """Start every component and wait until the cluster serves; on any failure nothing is left running."""
        self._claim_directory()
        processes.register(self)  # a SIGTERM while starting stops what started, detached or not
        try:
            self._start(progress)
        except BaseException:
            self.stop()
            raise
        if self.options.detached:
            processes.unregister(self)  # from now on the state file owns it: `cluster down` stops it
        return self.state

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after a grace period) and remove the state directory."""
        if self._stopped:
            return
        self._stopped = True
        processes.unregister(self)
        processes.terminate_groups(list(self.popens.values()), grace_s=TERM_GRACE_S)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _claim_directory(self) -> None:
        existing = ClusterState.load(self.directory)
        if existing is not None:
            alive = existing.alive()
            if any(alive.values()):
                running = ", ".join(n for n, up in alive.items() if up)
                raise ClusterError(
                    f"a cluster is already running from {self.directory} ({running}); use it "
                    "(`recipe-harness cluster env`) or stop it first (`recipe-harness cluster down`)"
                )
            raise ClusterError(
                f"stale state in {self.directory}: a cluster that is no longer running (it crashed, or was killed "
                "without `recipe-harness cluster down`); run `recipe-harness cluster down` to remove it"
            )
        if self.directory.exists():
            raise ClusterError(
                f"stale data directory {self.directory} without a state file: run `recipe-harness cluster down` "
                "to remove it"
            )
        self.directory.mkdir(parents=True)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.directory / "logs" / f"{name}.log"
        popen = processes.spawn(
            argv, dict(os.environ), log, cwd=self.directory, die_with_parent=not self.options.detached
        )
        self.popens[name] = popen
        self.state.pids[name] = popen.pid
        self.state.save()
        return popen

    def _wait(self, name: str, ready, timeout: float) -> None:
        """Poll ready() until it is true; a component that exits or never gets ready is an error naming its log."""
        deadline = time.monotonic() + timeout
        popen = self.popens.get(name)
        log = self.directory / "logs" / f"{name}.log"
        while time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {popen.returncode} while starting; {log}:\n{_log_tail(log)}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.25)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s; {log}:\n{_log_tail(log)}")

    def _start(self, progress) -> None:
        opts = self.options
        started = time.monotonic()
        if opts.api_port:
            _check_port(opts.api_port)
        ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": opts.api_port or free_port(),
            "kube-controller-manager": free_port(),
            "kube-scheduler": free_port(),
            "kwok": free_port(),
        }
        d = self.directory
        creds = pki_mod.generate(d / "pki")
        server = f"https://127.0.0.1:{ports['kube-apiserver']}"
        self.state.server = server
        self.state.ports = ports
        self.state.binaries = self.binaries.source
        self.state.detached = opts.detached
        self.state.owner_pid = os.getpid()
        self.state.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubeconfigs = {}
        for user, _uid, _groups in pki_mod.USERS:
            path = d / ("kubeconfig" if user == "admin" else f"{user.rsplit(':', 1)[-1]}.kubeconfig")
            path.write_text(pki_mod.kubeconfig(server, creds.ca_cert, user, creds.tokens[user]))
            path.chmod(0o600)
            kubeconfigs[user] = path
        self.state.save()

        progress("etcd")
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.paths["etcd"]),
                "--name=default",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",  # a throwaway cluster: durability buys nothing, fsync costs seconds
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: b"true" in urllib.request.urlopen(f"{etcd_url}/health", timeout=2).read(), 30)

        progress("kube-apiserver")
        (d / "audit-policy.yaml").write_text(AUDIT_POLICY)
        (d / AUDIT_LOG).parent.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.paths["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The `kubernetes` Service's endpoint cannot be a loopback address; nothing in-cluster dials it here.
                "--endpoint-reconciler-type=none",
                f"--secure-port={ports['kube-apiserver']}",
                f"--cert-dir={d / 'pki'}",
                f"--tls-cert-file={creds.serving_cert}",
                f"--tls-private-key-file={creds.serving_key}",
                f"--client-ca-file={creds.ca_cert}",
                f"--token-auth-file={creds.token_file}",
                "--authorization-mode=RBAC,Node",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={creds.sa_pub}",
                f"--service-account-signing-key-file={creds.sa_key}",
                "--allow-privileged=true",
                # kwok's nodes answer the kubelet API (logs) on 127.0.0.1, their InternalIP; their names resolve to
                # nothing. No --kubelet-certificate-authority: the API server does not verify kubelets' certificates.
                "--kubelet-preferred-address-types=InternalIP",
                f"--audit-policy-file={d / 'audit-policy.yaml'}",
                f"--audit-log-path={d / AUDIT_LOG}",
                "--profiling=false",
                "--v=1",
            ],
        )
        admin = Client(server, creds.tokens["admin"], creds.ca_cert, timeout=5)
        self._wait("kube-apiserver", lambda: admin.get("/readyz").status == 200, 90)

        def kcfg(user: str) -> str:
            return str(kubeconfigs[user])

        paths = {n: p for n, p in self.binaries.paths.items() if n in REQUIRED or n in opts.extras}
        if "kube-controller-manager" in paths:
            progress("kube-controller-manager")
            kcm = kcfg("system:kube-controller-manager")
            self._spawn(
                "kube-controller-manager",
                [
                    str(paths["kube-controller-manager"]),
                    f"--kubeconfig={kcm}",
                    f"--authentication-kubeconfig={kcm}",
                    f"--authorization-kubeconfig={kcm}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports['kube-controller-manager']}",
                    f"--cert-dir={d / 'pki' / 'kcm'}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={creds.sa_key}",
                    f"--root-ca-file={creds.ca_cert}",
                    f"--cluster-signing-cert-file={creds.ca_cert}",
                    f"--cluster-signing-key-file={creds.ca_key}",
                    "--v=1",
                ],
            )
        if "kube-scheduler" in paths:
            progress("kube-scheduler")
            sched = kcfg("system:kube-scheduler")
            self._spawn(
                "kube-scheduler",
                [
                    str(paths["kube-scheduler"]),
                    f"--kubeconfig={sched}",
                    f"--authentication-kubeconfig={sched}",
                    f"--authorization-kubeconfig={sched}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports['kube-scheduler']}",
                    f"--cert-dir={d / 'pki' / 'scheduler'}",
                    "--leader-elect=false",
                    "--v=1",
                ],
            )
        stages = paths["kwok"].parent / KWOK_STAGES_FILE if "kwok" in paths else None
        if stages is not None and not stages.is_file():
            progress(f"kwok skipped: no {KWOK_STAGES_FILE} beside it (nodes stay NotReady)")
        elif stages is not None:
            progress("kwok")
            argv = [
                str(paths["kwok"]),
                f"--kubeconfig={kcfg('kwok-controller')}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                # The nodes' kubelet endpoint (status.daemonEndpoints) is kwok's own server: `kubectl logs` works.
                f"--node-port={ports['kwok']}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--tls-cert-file={creds.serving_cert}",
                f"--tls-private-key-file={creds.serving_key}",
                "--cidr=10.244.0.0/16",
            ]
            crds_text = find_kwok_crds(paths["kwok"]) if opts.kwok_crds else None
            if crds_text:
                install_kwok_crds(admin, crds_text, stages)
                argv.append("--enable-crds=" + ",".join(KWOK_CRD_KINDS))
            else:
                argv.append(f"--config={stages}")
            self.state.kwok_crds = bool(crds_text)
            self._spawn("kwok", argv)
        self._wait_components(admin)
        if opts.pools:
            progress(f"{sum(p.count for p in opts.pools)} GPU node(s)")
            self._create_nodes(admin)
        self.state.save()
        progress(f"ready in {time.monotonic() - started:.1f} s")

    def _wait_components(self, admin: Client) -> None:
        t = self.options.ready_timeout
        if "kube-controller-manager" in self.popens:
            # The service-account controller gives every namespace its `default` ServiceAccount: pods need it.
            self._wait(
                "kube-controller-manager",
                lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default").ok,
                t,
            )
        for name in ("kube-scheduler", "kwok"):
            if name in self.popens:
                # Both answer /healthz on their own port once their informers run.
                self._wait(name, lambda n=name: _healthz(self.state.ports[n], n), t)

    def _create_nodes(self, admin: Client) -> None:
        nodes_res = admin.resource("v1", "Node")
        assert nodes_res is not None
        for pool in self.options.pools:
            for name in pool.node_names():
                resp = admin.create(nodes_res, node_manifest(pool, name))
                if not resp.ok:
                    raise ClusterError(f"creating node {name}: HTTP {resp.status}: {resp.message()}")
                self.state.nodes.append(name)
        if "kwok" not in self.popens:
            return

        def all_ready() -> bool:
            body = admin.get("/api/v1/nodes").body or {}
            ready = {
                n["metadata"]["name"]
                for n in body.get("items", [])
                for c in (n.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready" and c.get("status") == "True"
            }
            return set(self.state.nodes) <= ready

        self._wait("kwok", all_ready, self.options.ready_timeout)


def install_kwok_crds(admin: Client, crds_text: str, stages: Path, timeout: float = 60.0) -> None:
    """kwok's CRDs, served, and its default stages (kwok-stages.yaml) as Stage objects, before kwok starts."""
    import yaml

    crd_res = admin.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert crd_res is not None
    for crd in (d for d in yaml.safe_load_all(crds_text) if isinstance(d, dict)):
        crd.get("metadata", {}).pop("creationTimestamp", None)
        crd.pop("status", None)
        resp = admin.create(crd_res, crd)
        if not resp.ok and resp.status != 409:
            raise ClusterError(
                f"installing kwok's CRD {crd['metadata'].get('name')}: HTTP {resp.status}: {resp.message()}"
            )
    deadline = time.monotonic() + timeout
    while admin.resource("kwok.x-k8s.io/v1alpha1", "Stage", refresh=True) is None:
        if time.monotonic() > deadline:
            raise ClusterError(f"kwok's Stage CRD not served after {timeout:.0f} s")
        time.sleep(0.2)
    stage_res = admin.resource("kwok.x-k8s.io/v1alpha1", "Stage")
    assert stage_res is not None
    for stage in (d for d in yaml.safe_load_all(stages.read_text()) if isinstance(d, dict)):
        resp = admin.create(stage_res, stage)
        if not resp.ok and resp.status != 409:
            raise ClusterError(
                f"creating kwok stage {stage['metadata'].get('name')}: HTTP {resp.status}: {resp.message()}"
            )


def _healthz(port: int, component: str) -> bool:
    """A component's /healthz on loopback: the controller-manager and scheduler serve HTTPS (self-signed), kwok
    plain HTTP."""
    import ssl

    if component == "kwok":
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # their serving certificate is self-signed; this only asks "are you up"
    return urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=ctx).status == 200


def stop_recorded(name: str = "default") -> list[str]:
    """Stop the cluster recorded under `name` (from any process) and remove its state; returns what was stopped."""
    directory = state_dir(name)
    state = ClusterState.load(directory)
    stopped = []
    if state is not None:
        live = {n: pid for n, pid in state.pids.items() if _is_ours(pid, directory)}
        # Reverse start order: kwok and the controllers first, etcd last.
        order = sorted(live, key=lambda n: -COMPONENTS.index(n) if n in COMPONENTS else 0)
        for n in order:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(live[n], signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        while time.monotonic() < deadline and any(_is_ours(p, directory) for p in live.values()):
            time.sleep(0.2)
        for n, pid in live.items():
            if _is_ours(pid, directory):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            stopped.append(n)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    return stopped


def status(name: str = "default") -> dict:
    """What runs under `name`: per component alive or not, and whether the API server answers /readyz."""
    state = ClusterState.load(state_dir(name))
    if state is None:
        return {"name": name, "running": False, "directory": str(state_dir(name))}
    alive = state.alive()
    ready = False
    if alive.get("kube-apiserver"):
        with contextlib.suppress(Exception):
            ready = state.client().get("/readyz").status == 200
    return {
        "name": name,
        "running": ready,
        "directory": str(state.directory),
        "server": state.server,
        "kubeconfig": str(state.kubeconfig),
        "components": alive,
        "nodes": state.nodes,
        "binaries": state.binaries,
        "started_at": state.started_at,
    }
