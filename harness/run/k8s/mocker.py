"""`--engine mocker`: rewrite a DGD so every worker runs the GPU-free Dynamo mocker, keeping names, modes and replicas,
and size the frontend and the benchmark Job for a kind node."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from harness.recipe.service import Deployment, Service

MOCKER_REPO = "nvcr.io/nvidia/ai-dynamo/dynamo-planner"
MOCKER_COMMAND = ["python3", "-m", "dynamo.mocker"]
# A kind node on a 2-vCPU hosted runner has 2000m CPU; kind's control plane requests 950m of it (kube-apiserver
# 250m, kube-controller-manager 200m, kube-scheduler 100m, etcd 100m, CoreDNS 2 x 100m, kindnet 100m) and the
# Dynamo platform's operator 517m (deploy/helm/charts/platform/components/operator/values.yaml: manager 512m,
# kube-rbac-proxy 5m; NATS sets none). Requests are what the scheduler fits: 8 mocker workers, the frontend and the
# benchmark Job take 280m of the 533m left (CPU is not limited: idle pods lend theirs). tests/k8s/
# test_defect_kind_fits.py has the real scheduler place all of them on such a node.
MOCKER_RESOURCES = {"requests": {"cpu": "10m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
FRONTEND_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
PERF_JOB_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}}
# The recipes load models offline from the filled cache; the mocker run downloads no weights, so the tokenizer
# (the mocker's, the frontend's and AIPerf's) comes from the Hub.
ONLINE_ENV = {"name": "HF_HUB_OFFLINE", "value": "0"}
# Scheduling hints that only make sense on GPU nodes; kept, they leave every pod Pending on kind.
GPU_ONLY_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "resourceClaims", "runtimeClassName")
_ENGINE_TYPES = {"vllm", "sglang", "trtllm"}


@dataclass(frozen=True)
class MockerModel:
    """What the mocker serves: a Hugging Face id (it only loads the tokenizer) and the served name."""

    model_path: str
    served_name: str
    release: str
    speedup_ratio: float | None = None

    @property
    def image(self) -> str:
        return f"{MOCKER_REPO}:{self.release}"


def image_tag(image: Any) -> str:
    """`repo/name:1.4.0` -> `1.4.0`; digests and untagged images give ""."""
    if not isinstance(image, str) or "@" in image:
        return ""
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""


def worker_mode(service: Service) -> str:
    return service.role if service.role in ("prefill", "decode") else "agg"


def mocker_args(service: Service, model: MockerModel, engine_type: str) -> list[str]:
    args = [
        "--model-path",
        model.model_path,
        "--model-name",
        model.served_name,
        "--disaggregation-mode",
        worker_mode(service),
    ]
    if engine_type in _ENGINE_TYPES:
        args += ["--engine-type", engine_type]
    flags = service.flags.last()
    # The KV router hashes blocks: the mocker must use the engine's block size to route alike.
    block = flags.get("--block-size") or flags.get("--page-size")
    if block and block.value.isdigit():
        args += ["--block-size", block.value]
    if model.speedup_ratio:
        args += ["--speedup-ratio", str(model.speedup_ratio)]
    return args


def _cpu_resources() -> dict:
    """Nothing of the engine's resources is kept: GPU counts, claims and 100s of GiB do not fit a CPU node."""
    return copy.deepcopy(MOCKER_RESOURCES)


def _mock_container(container: dict, service: Service, model: MockerModel, engine_type: str) -> None:
    container["image"] = model.image
    container["command"] = list(MOCKER_COMMAND)
    container["args"] = mocker_args(service, model, engine_type)
    if "resources" in container:
        container["resources"] = _cpu_resources()


def _online(env: list | None) -> list:
    out = [e for e in env or [] if not (isinstance(e, dict) and e.get("name") == ONLINE_ENV["name"])]
    return out + [dict(ONLINE_ENV)]


def to_mocker_job(job: dict) -> dict:
    """The benchmark Job for a mocker run: the same command, requests that fit a kind node, tokenizer from the Hub."""
    out = copy.deepcopy(job)
    pod = (((out.get("spec") or {}).get("template") or {}).get("spec")) or {}
    _strip_pod(pod)
    for c in pod.get("containers") or []:
        if isinstance(c, dict):
            c["resources"] = copy.deepcopy(PERF_JOB_RESOURCES)
            c["env"] = _online(c.get("env"))
    return out


def _strip_pod(pod_spec: dict | None) -> None:
    if isinstance(pod_spec, dict):
        for key in GPU_ONLY_POD_FIELDS:
            pod_spec.pop(key, None)


def to_mocker(dgd: dict, deployment: Deployment, model: MockerModel) -> dict:
    """A rewritten copy of the DGD (plain dict): workers run the mocker without GPUs; the frontend,
    service names, replicas, disaggregation roles and env stay as shipped."""
    out = copy.deepcopy(dgd)
    spec = out.setdefault("spec", {})
    engine_type = deployment.backend_framework
    workers = {s.name: s for s in deployment.workers}
    frontends = {s.name for s in deployment.frontends}
    if isinstance(spec.get("envs"), list):
        spec["envs"] = _online(spec["envs"])
    services = spec.get("services")
    if isinstance(services, dict):  # v1alpha1
        for name, svc in services.items():
            if not isinstance(svc, dict):
                continue
            if isinstance(svc.get("envs"), list) or name in frontends or name in workers:
                svc["envs"] = _online(svc.get("envs"))
            if name in frontends:
                svc["resources"] = copy.deepcopy(FRONTEND_RESOURCES)
                _strip_pod(svc.get("extraPodSpec"))
            if name not in workers:
                continue
            svc["resources"] = _cpu_resources()
            svc.pop("multinode", None)  # one mocker process per replica, never a multi-node group
            pod = svc.setdefault("extraPodSpec", {})
            _strip_pod(pod)
            _mock_container(pod.setdefault("mainContainer", {}), workers[name], model, engine_type)
    components = spec.get("components")
    if isinstance(components, list):  # v1beta1
        for comp in components:
            if isinstance(comp, dict) and comp.get("name") in frontends:
                pod = comp.setdefault("podTemplate", {}).setdefault("spec", {})
                _strip_pod(pod)
                for c in pod.get("containers") or []:
                    if isinstance(c, dict) and c.get("name") in ("main", None):
                        c["resources"] = copy.deepcopy(FRONTEND_RESOURCES)
                        c["env"] = _online(c.get("env"))
            if not isinstance(comp, dict) or comp.get("name") not in workers:
                continue
            comp.pop("multinode", None)
            pod = comp.setdefault("podTemplate", {}).setdefault("spec", {})
            _strip_pod(pod)
            containers = pod.setdefault("containers", [])
            main = next((c for c in containers if isinstance(c, dict) and c.get("name") == "main"), None)
            if main is None:
                main = containers[0] if containers and isinstance(containers[0], dict) else {"name": "main"}
                if not containers:
                    containers.append(main)
            _mock_container(main, workers[comp["name"]], model, engine_type)
            main["resources"] = _cpu_resources()
            main["env"] = _online(main.get("env"))
    return out
