"""RETIRING (being replaced by conftest.py on the real control plane). Fixtures for the gpu stage tests: a fake API server whose cluster components follow the real rules, the real
kubernetes client pointed at it, a shared clock, and a fake OpenAI frontend."""

from __future__ import annotations

import copy
import json
import math
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes import client as k8s

from harness.recipe.discovery import discover
from harness.recipe.model import Recipe
from harness.run.k8s.client import Kube, RetryPolicy
from harness.run.k8s.portforward import StaticURL
from harness.run.k8s.run import GpuRun
from harness.run.k8s.settings import DeploySettings

from .fake_apiserver import Clock, Controller, FakeApiServer, FakeCluster, now_iso
from .fake_controllers import (
    Behaviour,
    DynamoOperator,
    Kubelet,
    OperatorScript,
    ScaleUp,
    install,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s"
RECIPES = FIXTURES / "recipes"
EXPORT = json.loads((FIXTURES / "profile_export_aiperf.json").read_text())
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten0123456789"
SERVED = "qwen3-0.6b"
EXPORT_FILE = "profile_export_aiperf.json"
# NotFound as containerd reports it through the kubelet (ErrImagePull's message)
NOT_FOUND = 'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
TOO_MANY = (
    'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to copy: httpReadSeeker: failed open: '
    "unexpected status code https://nvcr.io/v2/...: 429 Too Many Requests"
)


def dgd_crd(versions: tuple[str, ...] = ("v1alpha1", "v1beta1")) -> dict:
    """The DGD CRD as the cluster serves it. What the API accepts is checked against the DGD schema in schemas/
    (the fake's validation), so the CRD object only carries names, versions and the status subresource."""
    out = [
        {
            "name": v,
            "served": True,
            "storage": v == versions[-1],
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
        for v in versions
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "dynamographdeployments.nvidia.com"},
        "spec": {
            "group": "nvidia.com",
            "scope": "Namespaced",
            "versions": out,
            "names": {
                "kind": "DynamoGraphDeployment",
                "plural": "dynamographdeployments",
                "singular": "dynamographdeployment",
                "listKind": "DynamoGraphDeploymentList",
                "shortNames": ["dgd"],
            },
        },
    }


def compute_domain_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "computedomains.resource.nvidia.com"},
        "spec": {
            "group": "resource.nvidia.com",
            "scope": "Namespaced",
            "names": {"kind": "ComputeDomain", "plural": "computedomains", "listKind": "ComputeDomainList"},
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def pod_manifest(
    namespace: str, name: str, image: str, container: str = "main", labels: dict | None = None, env_token: bool = True
) -> dict:
    env = [{"name": "HF_TOKEN", "value": FAKE_TOKEN}] if env_token else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": container, "image": image, "env": env}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
            ],
        },
    }


def set_running(pod: dict, ready: bool) -> None:
    pod["status"]["phase"] = "Running"
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    for cs in pod["status"]["containerStatuses"]:
        cs.update(ready=ready, state={"running": {"startedAt": now_iso()}})


def labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


@dataclass
class Scenario(Controller):
    """What the workloads do on this cluster (the download, the engines, the benchmark) and how the operator's
    passes go; the cluster components themselves (fake_controllers) follow the real rules.

    dgd: ready | never (workers never Ready) | image-pull (image not found) | crash | unschedulable (other tenants
    hold the GPUs) | failed (the operator rejects the spec: ValidationFailed)."""

    cache_job: str = "succeeded"  # succeeded | failed
    dgd: str = "ready"
    ready_after: float = 20.0  # seconds from container start to Ready
    cache_seconds: float = 30.0
    perf_job: str = "succeeded"
    perf_seconds: float = 60.0
    export: dict = field(default_factory=lambda: EXPORT)
    throughputs: list[float] = field(default_factory=list)  # output token throughput of successive perf runs
    operator: OperatorScript = field(default_factory=OperatorScript)
    pull_failures: dict[str, tuple[float, str]] = field(
        default_factory=dict
    )  # image -> (seconds from first pull, message)
    missing_image: str = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0"  # the tag the registry lacks (dgd=image-pull)
    scale_ups: list[ScaleUp] = field(default_factory=list)
    files: dict[tuple[str, str], dict[str, tuple[float, str]]] = field(
        default_factory=dict
    )  # (ns, claim) -> path -> (mtime, text)
    perf_runs: int = 0
    cluster: FakeCluster | None = None
    _configured: bool = False

    @property
    def created(self) -> list[str]:
        return list(self.cluster.created) if self.cluster else []

    def reconcile(self, c: FakeCluster) -> None:
        if self._configured:
            return
        self._configured = True
        self.cluster = c
        for ctl in c.controllers:
            if isinstance(ctl, DynamoOperator):
                ctl.script = self.operator
            if isinstance(ctl, Kubelet):
                ctl.behaviour = lambda pod, c=c: self.behaviour(c, pod)
                for image, (seconds, message) in self.pull_failures.items():
                    ctl.pull_failures[image] = (c.now() + seconds, message.format(image=image))
        if self.dgd == "image-pull":
            for ctl in c.controllers:
                if isinstance(ctl, Kubelet):
                    ctl.pull_failures[self.missing_image] = (math.inf, NOT_FOUND.format(image=self.missing_image))
        if self.scale_ups:
            from .fake_controllers import Autoscaler

            c.controllers.insert(len(c.controllers) - 1, Autoscaler(self.scale_ups))
        if self.dgd == "failed":
            self.operator.validation_error = (
                "spec.services.VllmDecodeWorker.multinode: invalid multinode spec: nodeCount 2 needs an LWS or Grove"
            )
        if self.dgd == "unschedulable":  # another team's jobs hold every GPU (allocatable is still 8 per node)
            c.add_namespace("other-team")
            for node in c.list("", "nodes"):
                gpus = int(((node.get("status") or {}).get("allocatable") or {}).get("nvidia.com/gpu") or 0)
                if gpus:
                    pod = pod_manifest(
                        "other-team", f"train-{node['metadata']['name']}", "example.com/train:1", env_token=False
                    )
                    pod["spec"]["nodeName"] = node["metadata"]["name"]
                    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
                    set_running(pod, True)
                    c.put(pod)

    # --- what each container does ----------------------------------------------------------

    def behaviour(self, c: FakeCluster, pod: dict) -> Behaviour:
        lab = labels(pod)
        job = lab.get("job-name")
        if job == "model-download":
            return Behaviour(
                "run",
                runs_for=self.cache_seconds,
                on_exit=self._download_done,
                log=f"Fetching 10 files: 40%\nusing HF_TOKEN={FAKE_TOKEN}\n",
            )
        if job:
            return Behaviour("run", runs_for=self.perf_seconds, on_exit=self._perf_done, log="aiperf: warming up\n")
        if lab.get("recipe-harness/role") == "fetch-export":
            return Behaviour("run", runs_for=1.0, on_exit=self._fetch_done)
        ctype = lab.get("nvidia.com/dynamo-component-type")
        if ctype == "worker" and self.dgd == "never":
            return Behaviour(
                "serve",
                ready_after=None,
                log=f"INFO starting worker\nDEBUG env HF_TOKEN={FAKE_TOKEN}\nWARN still loading weights\n",
            )
        if ctype == "worker" and self.dgd == "crash":
            return Behaviour(
                "crash", previous_log=f"ValueError: tensor parallel size 2 > 1 GPUs\nHF_TOKEN={FAKE_TOKEN}\n"
            )
        return Behaviour("serve", ready_after=self.ready_after, log="INFO serving\n")

    def _claims(self, pod: dict) -> list[tuple[str, str]]:
        ns = pod["metadata"]["namespace"]
        return [
            (ns, v["persistentVolumeClaim"]["claimName"])
            for v in pod["spec"].get("volumes") or []
            if v.get("persistentVolumeClaim")
        ]

    def _download_done(self, c: FakeCluster, pod: dict) -> tuple[int, str]:
        if self.cache_job == "failed":
            return 1, (
                f"401 Client Error: Unauthorized for url https://huggingface.co/api/models/Qwen/Qwen3-0.6B\n"
                f"token was {FAKE_TOKEN}\nAuthorization: Bearer {FAKE_TOKEN}\n"
            )
        for claim in self._claims(pod):
            self.files.setdefault(claim, {})["hub/models--Qwen--Qwen3-0.6B/refs/main"] = (c.now(), "c1899de")
        return 0, "cached Qwen/Qwen3-0.6B\n"

    def _perf_done(self, c: FakeCluster, pod: dict) -> tuple[int, str]:
        if self.perf_job == "failed":
            return 1, "aiperf: connection refused\n"
        export = copy.deepcopy(self.export)
        if self.throughputs:
            value = self.throughputs[self.perf_runs % len(self.throughputs)]
            export["output_token_throughput"]["avg"] = value
        self.perf_runs += 1
        for claim in self._claims(pod):
            self.files.setdefault(claim, {})[
                f"perf/{labels(pod).get('job-name')}/run-{self.perf_runs}/{EXPORT_FILE}"
            ] = (c.now(), json.dumps(export, indent=2))
        return 0, "results written\n"

    def _fetch_done(self, c: FakeCluster, pod: dict) -> tuple[int, str]:
        found = [
            (t, text)
            for claim in self._claims(pod)
            for path, (t, text) in self.files.get(claim, {}).items()
            if path.endswith(EXPORT_FILE)
        ]
        if not found:
            return 3, f"no {EXPORT_FILE} under the mounts\n"
        return 0, max(found)[1]


def add_scenario_defaults(c: FakeCluster) -> FakeCluster:
    scenario = Scenario()
    install(c, lambda pod: scenario.behaviour(c, pod))
    c.controller = scenario
    return c


def base_cluster(
    gpus_per_node: int = 8,
    product: str = "NVIDIA-H200",
    with_dgd_crd: bool = True,
    nodes: int = 2,
    clock: Clock | None = None,
) -> FakeCluster:
    """A GPU cluster as the nightly expects it: GPU nodes, a CPU node, an RWX default class (NFS CSI), the
    operator's CRD, and the token secret the user created in `default` (the recipes' README says to)."""
    c = FakeCluster(clock)
    for i in range(nodes):
        c.add_node(f"gpu-node-{i}", product, gpus_per_node)
    c.add_node("cpu-node-0", None, 0)
    c.add_storage_class("standard", default=True)
    if with_dgd_crd:
        c.add_crd(dgd_crd())
    c.add_crd(compute_domain_crd())
    for ns in ("default", "kube-system"):
        c.add_namespace(ns)
    c.add_secret("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN})
    return add_scenario_defaults(c)


# kind's single node: kubeadm's static pods and the add-ons kind installs, with their CPU/memory requests
# (kubeadm manifests; kind's kindnet and coredns manifests): 950m CPU before anything of ours runs.
KIND_SYSTEM_PODS = [
    ("etcd", "100m", "100Mi"),
    ("kube-apiserver", "250m", "0"),
    ("kube-controller-manager", "200m", "0"),
    ("kube-scheduler", "100m", "0"),
    ("coredns-a", "100m", "70Mi"),
    ("coredns-b", "100m", "70Mi"),
    ("kindnet", "100m", "50Mi"),
    ("kube-proxy", "0", "0"),
]


def kind_cluster(cpu: str = "2", memory: str = "7Gi", clock: Clock | None = None) -> FakeCluster:
    """A kind cluster on a hosted runner as `kind-mocker.yml` creates it: one node with the runner's CPUs and
    memory, local-path as the only (default) class, the Dynamo CRD from the platform chart, and no secrets."""
    c = FakeCluster(clock)
    node = "recipe-harness-control-plane"
    c.add_node(node, None, 0, cpu=cpu, memory=memory, labels={"node-role.kubernetes.io/control-plane": ""})
    c.add_storage_class("standard", default=True, provisioner="rancher.io/local-path", binding="WaitForFirstConsumer")
    c.add_crd(dgd_crd())
    for ns in ("default", "kube-system", "local-path-storage", "dynamo-system"):
        c.add_namespace(ns)
    for name, req_cpu, req_mem in KIND_SYSTEM_PODS:
        pod = pod_manifest("kube-system", name, f"registry.k8s.io/{name}:v1.33.1", env_token=False)
        pod["spec"]["nodeName"] = node
        pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": req_cpu, "memory": req_mem}}
        set_running(pod, True)
        c.put(pod)
    return add_scenario_defaults(c)


@pytest.fixture
def cluster() -> FakeCluster:
    return base_cluster()


@pytest.fixture
def apiserver(cluster: FakeCluster) -> Iterator[FakeApiServer]:
    server = FakeApiServer(cluster).start()
    yield server
    server.stop()


def kube_for(url: str, clock: Clock | None = None) -> Kube:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = 0
    retry = RetryPolicy(sleep=clock.sleep if clock else (lambda _: None))
    return Kube(k8s.ApiClient(cfg), timeout=5, retry=retry)


@pytest.fixture
def kube(apiserver: FakeApiServer) -> Kube:
    return kube_for(apiserver.url, apiserver.cluster.clock)


@pytest.fixture(scope="session")
def recipes() -> dict[str, Recipe]:
    return {r.id: r for r in discover(RECIPES)}


@pytest.fixture
def settings(tmp_path: Path) -> DeploySettings:
    """The defaults, except the report folder: time is virtual (the fake's clock), so real timeouts cost nothing."""
    return DeploySettings(report_dir=tmp_path / "report")


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

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": SERVED, "object": "model", "owned_by": "dynamo"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/v1/chat/completions" and body.get("model") == SERVED:
            self._send(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": SERVED,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                },
            )
        else:
            self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})

    def log_message(self, format: str, *args: Any) -> None:
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


# --- a gpu run against the fake cluster (the scenario tests share them) -----------------------

AGG = "tiny/vllm/agg"


class RecordingSuite:
    """The smoke suite's interface (base URL + served model, one method per check), recording calls."""

    CHECKS = ("models", "chat")
    calls: ClassVar[list[str]] = []

    def __init__(self, base_url: str, model: str, **kw):
        self.base_url, self.model, self.kw = base_url, model, kw

    def check_models(self) -> None:
        with urllib.request.urlopen(f"{self.base_url}/v1/models", timeout=5) as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        RecordingSuite.calls.append("models")
        assert self.model in ids, f"{self.model} not in {ids}"

    def check_chat(self) -> None:
        req = urllib.request.Request(
            f"{self.base_url}/v1/chat/completions",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps(
                {"model": self.model, "messages": [{"role": "user", "content": "Capital of France?"}]}
            ).encode(),
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            content = json.load(resp)["choices"][0]["message"]["content"]
        RecordingSuite.calls.append("chat")
        assert content.strip(), "empty completion"


def make_run(
    recipe: Recipe,
    settings: DeploySettings,
    apiserver: FakeApiServer,
    *,
    url: str = "http://127.0.0.1:9",
    lines: list[str] | None = None,
    **kw,
) -> GpuRun:
    clock = apiserver.cluster.clock
    kw.setdefault("sleep", clock.sleep)
    kw.setdefault("clock", clock)
    kw.setdefault("env", {})
    kw.setdefault("access", StaticURL(url))
    return GpuRun(
        recipe,
        settings,
        smoke=RecordingSuite,
        kube=kube_for(apiserver.url, clock),
        progress=(lines.append if lines is not None else (lambda _: None)),
        **kw,
    )


def run_steps(run: GpuRun, steps: list[str]) -> None:
    for step in steps:
        run.run_step(step)


SETUP = ["preflight", "model-cache", "deploy"]


@contextmanager
def serving(cluster: FakeCluster) -> Iterator[FakeApiServer]:
    server = FakeApiServer(cluster).start()
    try:
        yield server
    finally:
        server.stop()
