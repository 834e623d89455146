"""Issue 24, defect 2 on the real control plane: kind-mocker.yml's run fits a 2-vCPU hosted runner with everything
on its one node counted: kind's own pods (950m), the Dynamo platform's (the operator's 517m), and the run's.

The real scheduler decides: a 2-CPU node, kind's pods and the platform's pods with their requests, then the recipe's
mocker pods; all must be placed. With the requests the harness used before (50m per mocker worker) the same node
leaves one Pending, so the check can fail. (The whole mocker run on such a node: test_gpu_failure_modes.py
test_defect_02_pods_fit_a_kind_node.)"""

from __future__ import annotations

import pytest

from harness.run.k8s.mocker import FRONTEND_RESOURCES, MOCKER_RESOURCES, PERF_JOB_RESOURCES

from .conftest import wait_for
from .simulations import q
from .test_gpu_failure_modes import kind

# The Dynamo platform chart of the recipes' release with NATS installed, as kind-mocker.yml installs it: the operator
# pod's manager and kube-rbac-proxy (deploy/helm/charts/platform/components/operator/values.yaml controllerManager
# .manager/.kubeRbacProxy resources.requests); NATS and nats-box set no requests (the platform values.yaml nats:
# block gives the NATS container none).
PLATFORM_PODS = {
    "dynamo-operator-controller-manager": [("manager", "512m", "1Gi"), ("kube-rbac-proxy", "5m", "64Mi")],
    "dynamo-platform-nats-0": [("nats", "0", "0"), ("reloader", "0", "0")],
    "dynamo-platform-nats-box": [("nats-box", "0", "0")],
}
# What kind-mocker's run places beside them (qwen3-32b/vllm/agg-round-robin under --engine mocker): 8 workers, the
# frontend, the benchmark Job's pod.
WORKERS = 8


def _pod(name: str, containers: list[tuple[str, str, str]]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": c, "image": "example.com/x:1", "resources": {"requests": {"cpu": cpu, "memory": mem}}}
                for c, cpu, mem in containers
            ]
        },
    }


def _platform(k8s) -> None:
    ns = k8s.namespace()
    for name, containers in PLATFORM_PODS.items():
        k8s.api.create(f"/api/v1/namespaces/{q(ns)}/pods", _pod(name, containers))
    wait_for(lambda: all(p["spec"].get("nodeName") for p in k8s.pods(ns)), 30, "the platform's pods placed")


def _placed(k8s, ns: str, worker_cpu: str, frontend_cpu: str, perf_cpu: str) -> list[str]:
    """The run's pods with these CPU requests, created at once; the names the scheduler left unplaced."""
    pods = [_pod(f"worker-{i}", [("main", worker_cpu, MOCKER_RESOURCES["requests"]["memory"])]) for i in range(WORKERS)]
    pods += [_pod("frontend", [("main", frontend_cpu, FRONTEND_RESOURCES["requests"]["memory"])])]
    pods += [_pod("perf", [("perf", perf_cpu, PERF_JOB_RESOURCES["requests"]["memory"])])]
    for pod in pods:
        k8s.api.create(f"/api/v1/namespaces/{q(ns)}/pods", pod)

    def decided() -> bool:
        return all(
            p["spec"].get("nodeName")
            or any(c.get("reason") == "Unschedulable" for c in (p.get("status") or {}).get("conditions") or [])
            for p in k8s.pods(ns)
        )

    wait_for(decided, 30, "the scheduler's decisions")
    return sorted(p["metadata"]["name"] for p in k8s.pods(ns) if not p["spec"].get("nodeName"))


@pytest.mark.parametrize(
    ("sizes", "fits"),
    [
        ((MOCKER_RESOURCES, FRONTEND_RESOURCES, PERF_JOB_RESOURCES), True),
        # the requests before issue 24: 950m + 517m + 8 x 50m + 100m + 100m = 2067m > 2000m
        (({"requests": {"cpu": "50m"}}, {"requests": {"cpu": "100m"}}, {"requests": {"cpu": "100m"}}), False),
    ],
    ids=["now", "before"],
)
def test_the_scheduler_places_the_mocker_run_beside_kind_and_the_platform(k8s, sizes, fits):
    kind(k8s, "2", "7Gi")
    _platform(k8s)
    ns = k8s.namespace()
    worker, frontend, perf = (s["requests"]["cpu"] for s in sizes)
    left = _placed(k8s, ns, worker, frontend, perf)
    assert (left == []) == fits, f"unplaced on a 2-CPU node: {left}"
