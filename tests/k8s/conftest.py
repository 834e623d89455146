"""Fixtures for the gpu stage tests: a fake API server with a scripted cluster, the real kubernetes client pointed at it, and a fake OpenAI frontend."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s

from harness.recipe.discovery import discover
from harness.run.k8s.client import Kube
from harness.run.k8s.deployer import DeploySettings
from harness.recipe.model import Recipe

from .fake_apiserver import Controller, FakeApiServer, FakeCluster, Request, now_iso

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s"
RECIPES = FIXTURES / "recipes"
EXPORT = json.loads((FIXTURES / "profile_export_aiperf.json").read_text())
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten0123456789"
SERVED = "qwen3-0.6b"


def dgd_crd(versions: tuple[str, ...] = ("v1alpha1", "v1beta1")) -> dict:
    """Our own small structural schema for the DGD: enough for strict validation of spec's top level."""
    spec_alpha = {"type": "object", "properties": {
        "backendFramework": {"type": "string"}, "envs": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "pvcs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "create": {"type": "boolean"}}}},
        "services": {"type": "object", "additionalProperties": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}
    spec_beta = {"type": "object", "properties": {
        "backendFramework": {"type": "string"}, "env": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "components": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    out = []
    for v in versions:
        spec = spec_alpha if v == "v1alpha1" else spec_beta
        out.append({"name": v, "served": True, "storage": v == versions[-1], "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec, "status": status}}}})
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "dynamographdeployments.nvidia.com"},
            "spec": {"group": "nvidia.com", "scope": "Namespaced", "versions": out,
                     "names": {"kind": "DynamoGraphDeployment", "plural": "dynamographdeployments", "singular": "dynamographdeployment",
                               "listKind": "DynamoGraphDeploymentList", "shortNames": ["dgd"]}}}


def compute_domain_crd() -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "computedomains.resource.nvidia.com"},
            "spec": {"group": "resource.nvidia.com", "scope": "Namespaced",
                     "names": {"kind": "ComputeDomain", "plural": "computedomains", "listKind": "ComputeDomainList"},
                     "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def pod_manifest(namespace: str, name: str, image: str, container: str = "main", labels: dict | None = None, env_token: bool = True) -> dict:
    env = [{"name": "HF_TOKEN", "value": FAKE_TOKEN}] if env_token else []
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"containers": [{"name": container, "image": image, "env": env}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": False, "restartCount": 0,
                                              "state": {"waiting": {"reason": "ContainerCreating"}}}]}}


def set_running(pod: dict, ready: bool) -> None:
    pod["status"]["phase"] = "Running"
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True" if ready else "False"}]
    for cs in pod["status"]["containerStatuses"]:
        cs.update(ready=ready, state={"running": {"startedAt": now_iso()}})


@dataclass
class Scenario(Controller):
    """The operator, the Job controller and the kubelet, scripted. Counts reads, so runs are deterministic."""

    cache_job: str = "succeeded"  # succeeded | failed
    dgd: str = "ready"  # ready | never | image-pull | crash | unschedulable | failed
    ready_after: int = 3  # DGD reads until the operator reports successful
    perf_job: str = "succeeded"
    export: dict = field(default_factory=lambda: EXPORT)
    reads: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    def on_request(self, c: FakeCluster, req: Request, obj: dict | None) -> None:
        if req.method == "POST" and obj is not None:
            self.created.append(f"{obj['kind']}/{obj['metadata']['name']}")
            if req.plural == "jobs":
                self._job_created(c, obj)
            elif req.plural == "dynamographdeployments":
                self._dgd_created(c, obj)
            elif req.plural == "pods" and (obj["metadata"].get("labels") or {}).get("recipe-harness/role") == "fetch-export":
                self._fetch_pod(c, obj)
        if req.method == "GET" and req.name and req.sub is None:
            key = f"{req.plural}/{req.name}"
            self.reads[key] = self.reads.get(key, 0) + 1
            if req.plural == "jobs":
                self._job_tick(c, req, self.reads[key])
            elif req.plural == "dynamographdeployments":
                self._dgd_tick(c, req, self.reads[key])

    # --- Jobs -------------------------------------------------------------------------

    def _job_created(self, c: FakeCluster, job: dict) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        pod = pod_manifest(ns, f"{name}-x7k2p", container["image"], container["name"], {"job-name": name}, env_token=False)
        set_running(pod, ready=True)
        c.put(pod)
        c.set_log(ns, pod["metadata"]["name"], container["name"], f"Fetching 10 files: 40%\nusing HF_TOKEN={FAKE_TOKEN}\n")
        job["status"] = {"active": 1, "startTime": now_iso()}

    def _job_tick(self, c: FakeCluster, req: Request, reads: int) -> None:
        job = c.get("batch", "jobs", req.namespace, req.name or "")
        if job is None or reads < 2:
            return
        outcome = self.cache_job if req.name == "model-download" else self.perf_job
        pod = c.get("", "pods", req.namespace, f"{req.name}-x7k2p")
        if outcome == "succeeded":
            job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            if pod:
                pod["status"]["phase"] = "Succeeded"
        elif outcome == "failed":
            job["status"] = {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                          "message": "Job has reached the specified backoff limit"}]}
            if pod:
                pod["status"]["phase"] = "Failed"
                c.set_log(req.namespace or "", pod["metadata"]["name"], pod["spec"]["containers"][0]["name"],
                          f"401 Client Error: Unauthorized for url https://huggingface.co/api/models/Qwen/Qwen3-0.6B\n"
                          f"token was {FAKE_TOKEN}\nAuthorization: Bearer {FAKE_TOKEN}\n")

    def _fetch_pod(self, c: FakeCluster, pod: dict) -> None:
        pod["status"] = {"phase": "Succeeded", "containerStatuses": [
            {"name": "fetch", "image": pod["spec"]["containers"][0]["image"], "imageID": "", "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        c.set_log(pod["metadata"]["namespace"], pod["metadata"]["name"], "fetch", json.dumps(self.export, indent=2))

    # --- the DGD ----------------------------------------------------------------------

    def _dgd_pods(self, c: FakeCluster, dgd: dict) -> list[dict]:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        return [p for p in c.list("", "pods", ns) if (p["metadata"].get("labels") or {}).get("nvidia.com/dynamo-graph-deployment-name") == name]

    def _dgd_created(self, c: FakeCluster, dgd: dict) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        services = dgd["spec"].get("services") or {s["name"]: s for s in dgd["spec"].get("components") or []}
        for svc_name, svc in services.items():
            main = (svc.get("extraPodSpec") or {}).get("mainContainer") or ((svc.get("podTemplate") or {}).get("spec", {}).get("containers") or [{}])[0]
            pod = pod_manifest(ns, f"{name}-{svc_name.lower()}-0", main.get("image", "?"),
                               labels={"nvidia.com/dynamo-graph-deployment-name": name, "nvidia.com/dynamo-component": svc_name})
            worker = svc.get("componentType", svc.get("type")) == "worker"
            if worker and self.dgd == "image-pull":
                pod["status"]["containerStatuses"][0]["state"] = {"waiting": {
                    "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{main.get("image")}"'}}
                c.add_event(ns, "Pod", pod["metadata"]["name"], "Failed", f'Failed to pull image "{main.get("image")}": not found')
            if worker and self.dgd == "crash":
                set_running(pod, ready=False)
                pod["status"]["containerStatuses"][0].update(
                    restartCount=3, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                    lastState={"terminated": {"exitCode": 1, "reason": "Error"}})
                c.set_log(ns, pod["metadata"]["name"], "main", f"ValueError: tensor parallel size 2 > 1 GPUs\nHF_TOKEN={FAKE_TOKEN}\n", previous=True)
            if worker and self.dgd == "unschedulable":
                pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
            c.put(pod)
        dgd["status"] = {"state": "pending", "conditions": [{"type": "Ready", "status": "False", "reason": "ComponentsNotReady",
                                                             "message": "waiting for components"}]}

    def _dgd_tick(self, c: FakeCluster, req: Request, reads: int) -> None:
        dgd = c.get("nvidia.com", "dynamographdeployments", req.namespace, req.name or "")
        if dgd is None:
            return
        pods = self._dgd_pods(c, dgd)
        if self.dgd == "ready" and reads >= self.ready_after:
            for pod in pods:
                set_running(pod, ready=True)
            dgd["status"] = {"state": "successful", "observedGeneration": dgd["metadata"].get("generation", 1),
                             "conditions": [{"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "all components ready"}]}
        elif self.dgd == "never" and reads == 2:
            for pod in pods:
                set_running(pod, ready="frontend" in pod["metadata"]["name"])
                c.set_log(req.namespace or "", pod["metadata"]["name"], "main",
                          f"INFO starting worker\nDEBUG env HF_TOKEN={FAKE_TOKEN}\nWARN still loading weights\n")
                c.add_event(req.namespace or "", "Pod", pod["metadata"]["name"], "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503")
        elif self.dgd == "failed" and reads == 2:
            dgd["status"] = {"state": "failed", "conditions": [{"type": "Ready", "status": "False", "reason": "Failed",
                                                                "message": "component VllmDecodeWorker: invalid multinode spec"}]}


def base_cluster(gpus_per_node: int = 8, product: str = "NVIDIA-H200", with_dgd_crd: bool = True, nodes: int = 2) -> FakeCluster:
    c = FakeCluster()
    for i in range(nodes):
        c.add_node(f"gpu-node-{i}", product, gpus_per_node)
    c.add_node("cpu-node-0", None, 0)
    c.add_storage_class("standard", default=True)
    if with_dgd_crd:
        c.add_crd(dgd_crd())
    c.add_crd(compute_domain_crd())
    c.add_namespace("default")
    c.add_secret("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN})
    return c


@pytest.fixture
def cluster() -> FakeCluster:
    return base_cluster()


@pytest.fixture
def apiserver(cluster: FakeCluster) -> Iterator[FakeApiServer]:
    server = FakeApiServer(cluster).start()
    yield server
    server.stop()


def kube_for(url: str) -> Kube:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = 0
    return Kube(k8s.ApiClient(cfg), timeout=5)


@pytest.fixture
def kube(apiserver: FakeApiServer) -> Kube:
    return kube_for(apiserver.url)


@pytest.fixture(scope="session")
def recipes() -> dict[str, Recipe]:
    return {r.id: r for r in discover(RECIPES)}


@pytest.fixture
def settings(tmp_path: Path) -> DeploySettings:
    return DeploySettings(report_dir=tmp_path / "report", api_timeout=5, poll_interval=0.005, progress_every=0,
                          cache_timeout=5, ready_timeout=5, model_timeout=5, perf_timeout=5, fetch_timeout=5,
                          unschedulable_grace=0, crashloop_restarts=2)


class _OpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def _send(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": SERVED, "object": "model", "owned_by": "dynamo"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/v1/chat/completions" and body.get("model") == SERVED:
            self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": SERVED,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
        else:
            self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def openai_url() -> Iterator[str]:
    """A stand-in for the port-forwarded Dynamo frontend."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
