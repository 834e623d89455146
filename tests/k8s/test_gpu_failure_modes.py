"""The twelve defects of issue 16 ([gpu-truth]), one scenario each against the real control plane
(tests/k8s/conftest.py), plus the kind run the workflow makes, the model cache across nights, and `--repeats`
through pytest. Containers are kwok stages; the Dynamo operator is the stand-in of tests/k8s/simulations.py."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness.recipe.discovery import discover
from harness.recipe.model import Recipe
from harness.run.k8s.portforward import PortForwardError
from harness.run.stage import StepFailed

from .conftest import (
    AGG,
    EXPORT,
    FAKE_TOKEN,
    RECIPES,
    SETUP,
    TOO_MANY,
    cpu_node,
    export_logs,
    fail_at,
    gpu_node,
    make_run,
    run_steps,
    secret_manifest,
    storage_class,
    wait_for,
)
from .simulations import FINALIZER, ORIGIN_VERSION, ExportSequence, NodeGroup, q

ROOT = Path(__file__).resolve().parents[2]
KIND_RECIPE = "qwen3-32b/vllm/agg-round-robin"  # the recipe kind-mocker.yml runs
KIND_NODE = "recipe-harness-control-plane"
WORKFLOWS = ROOT / ".github" / "workflows"
WORKERS = "nvidia.com/dynamo-component-type"
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


@pytest.fixture(scope="module")
def shipped() -> dict[str, Recipe]:
    return {r.id: r for r in discover(ROOT / "recipes")}


def kind(k8s, cpu: str, memory: str, system_pods: bool = True) -> None:
    """The cluster becomes what kind-mocker.yml creates on a hosted runner: one node with the runner's CPUs and
    memory, local-path (ReadWriteOnce, WaitForFirstConsumer) as the only default class, and kind's own pods."""
    k8s.replace_nodes([cpu_node(KIND_NODE, cpu, memory, {"node-role.kubernetes.io/control-plane": ""})])
    k8s.replace_storage_classes(
        [storage_class("standard", True, provisioner="rancher.io/local-path", binding="WaitForFirstConsumer")]
    )
    if not system_pods:
        return
    path = "/api/v1/namespaces/kube-system/pods"
    for name, req_cpu, req_mem in KIND_SYSTEM_PODS:
        k8s.api.create(
            path,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"kind-{name}"},
                "spec": {
                    "nodeName": KIND_NODE,
                    "containers": [
                        {
                            "name": "main",
                            "image": f"registry.k8s.io/{name}:v1.33.1",
                            "resources": {"requests": {"cpu": req_cpu, "memory": req_mem}},
                        }
                    ],
                },
            },
        )
    k8s._node_undo.insert(
        0, lambda: [k8s.api.delete(f"{path}/kind-{n}?gracePeriodSeconds=0") for n, _, _ in KIND_SYSTEM_PODS]
    )


def variant(recipes: dict[str, Recipe], tmp_path: Path, edit) -> Recipe:
    """The tiny agg recipe with deploy.yaml edited by `edit(text) -> text`."""
    tree = tmp_path / "recipes"
    shutil.copytree(Path(recipes[AGG].root), tree)
    deploy = tree / "tiny" / "vllm" / "agg" / "deploy.yaml"
    deploy.write_text(edit(deploy.read_text()))
    return {r.id: r for r in discover(tree)}[AGG]


def step_limits(workflow: str, job: str) -> tuple[int, list[tuple[str, int | None, str]]]:
    data = yaml.safe_load((WORKFLOWS / workflow).read_text())
    spec = data["jobs"][job]
    return spec["timeout-minutes"], [
        (s.get("name") or s.get("uses") or s.get("run", ""), s.get("timeout-minutes"), s.get("run", ""))
        for s in spec["steps"]
    ]


def time_budget(run: str) -> float:
    args = shlex.split(run.replace("\\\n", " "))
    return float(args[args.index("--time-budget") + 1])


def cpu_millis(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def requested_cpu(pod: dict) -> int:
    return sum(
        cpu_millis(((c.get("resources") or {}).get("requests") or {}).get("cpu", "0"))
        for c in (pod.get("spec") or {}).get("containers") or []
    )


# --- would fail ----------------------------------------------------------------------------------------------


def test_defect_01_no_secret_on_kind(k8s, shipped, settings, default_secret):
    """kind has no hf-token-secret and no HF_TOKEN: a mocker run goes on with an empty token (a public tokenizer
    needs none), and the workers' envFromSecret finds its Secret (else CreateContainerConfigError)."""
    kind(k8s, "4", "16Gi", system_pods=False)
    default_secret(None)
    ns = k8s.namespace()
    settings.namespace, settings.engine = ns, "mocker"
    run = make_run(shipped[KIND_RECIPE], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
        secret = k8s.get(f"/api/v1/namespaces/{q(ns)}/secrets/hf-token-secret")
        assert secret is not None and base64.b64decode(secret["data"]["HF_TOKEN"]) == b""
    finally:
        run.close()


def test_defect_02_pods_fit_a_kind_node(k8s, shipped, settings, default_secret):
    """A 2-vCPU / 7 GiB runner (kind's control plane requests 950m of it): the real scheduler places the mocker
    workers, the frontend, the benchmark Job and the fetch pod. The class serves ReadWriteMany here (NFS), so only
    the requests are under test (defect 3 is the class)."""
    kind(k8s, "2", "7Gi")
    k8s.replace_storage_classes([storage_class("nfs", True)])
    default_secret(secret_manifest("default", "hf-token-secret", {"HF_TOKEN": ""}))
    ns = k8s.namespace()
    settings.namespace, settings.engine = ns, "mocker"
    export_logs(k8s, ns)
    run = make_run(shipped[KIND_RECIPE], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready", "perf"])
        running = [p for p in k8s.pods(ns) if p["status"].get("phase") == "Running"]
        cpu = sum(requested_cpu(p) for p in running)
        assert cpu <= 2000 - 950, f"our running pods request {cpu}m CPU"
    finally:
        run.close()
    assert run.result is not None and run.result.valid


def test_defect_03_rwx_cache_on_kind_local_path(k8s, shipped, settings, default_secret):
    """kind's only class is local-path (ReadWriteOnce): the mocker run asks ReadWriteOnce, so the claim binds when
    the first pod is scheduled (the real scheduler's WaitForFirstConsumer) instead of staying Pending."""
    kind(k8s, "16", "64Gi", system_pods=False)  # a large runner: only the class is under test
    default_secret(secret_manifest("default", "hf-token-secret", {"HF_TOKEN": ""}))
    ns = k8s.namespace()
    settings.namespace, settings.engine = ns, "mocker"
    run = make_run(shipped[KIND_RECIPE], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
        pvc = k8s.get(f"/api/v1/namespaces/{q(ns)}/persistentvolumeclaims/model-cache")
        assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    finally:
        run.close()


def test_rwx_cache_on_a_rwo_only_class_fails_preflight_with_real_engines(k8s, recipes, settings):
    settings.namespace = k8s.namespace()
    k8s.replace_storage_classes(
        [storage_class("standard", True, provisioner="rancher.io/local-path", binding="WaitForFirstConsumer")]
    )
    run = make_run(recipes[AGG], settings, k8s)
    try:
        with pytest.raises(
            StepFailed,
            match=r"PVC model-cache asks for ReadWriteMany, but storage class standard \(rancher.io/local-path",
        ):
            run.run_step("preflight")
    finally:
        run.close()


def test_defect_04_harness_reports_its_own_timeout(k8s, recipes, settings):
    """The step limits of kind-mocker.yml add up under the job's, and the harness's --time-budget ends before its
    step's; a deployment that never gets ready is reported by the harness within its budget (diagnostics,
    teardown), not by a kill. The run uses a 20 s budget: the same code path as the workflow's minutes."""
    job_limit, steps = step_limits("kind-mocker.yml", "kind-mocker")
    assert all(limit for _, limit, _ in steps), f"every step has timeout-minutes: {steps}"
    assert sum(limit for _, limit, _ in steps) <= job_limit
    pytest_step = next((limit, run) for _, limit, run in steps if "pytest -m gpu" in run)
    assert time_budget(pytest_step[1]) < pytest_step[0]

    ns = k8s.namespace()
    settings.namespace = ns
    k8s.runtime.never_ready(ns, [k8s.runtime.select(WORKERS, "worker")])
    settings.ready_timeout, settings.time_budget, settings.teardown_reserve = 600, 20, 5
    run = make_run(recipes[AGG], settings, k8s)
    start = time.monotonic()
    message = fail_at(run, "ready", SETUP)
    ended = time.monotonic() - start
    assert "the run's time budget" in message and "diagnostics:" in message
    assert (settings.report_dir / "diagnostics").is_dir()
    assert ended <= settings.time_budget + 5, f"the harness finished at {ended:.0f}s, after its budget"
    wait_for(lambda: k8s.dgd(ns, "tiny-agg") is None, 30, "the DGD gone")


def test_defect_05_model_cache_survives_runs(k8s, recipes, settings):
    """Two nights, default namespaces: the second finds the pinned revision in the model's cache and skips the
    download; teardown keeps the filled cache and removes the rest. The nightly's limits hold the harness's budget."""
    ns = k8s.namespace("rh-tiny", create=False)
    for night in (1, 2):
        run = make_run(recipes[AGG], settings, k8s)
        try:
            run_steps(run, [*SETUP, "ready"])
        finally:
            run.close()
        assert run.context.namespace == ns
        pvc = k8s.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/model-cache")
        assert pvc is not None, f"night {night}: the cache stays"
        assert (
            pvc["metadata"]["annotations"]["recipe-harness.dynamo.nvidia.com/model-revision"]
            == "Qwen/Qwen3-0.6B@c1899de289a04d12100db370d81485cdf75e47ca"
        )
        assert k8s.leftovers(ns) == []
    # the Job's writes as a manifest (a run's holder mark is applied by recipe-harness-<run id>: run/k8s/shared.py)
    downloads = [r for r in k8s.requests(ns) if r.resource == "jobs" and r.name == "model-download"
                 and r.verb in ("create", "patch") and not r.dry_run
                 and r.query.get("fieldManager", "recipe-harness") == "recipe-harness"]  # fmt: skip
    assert len(downloads) == 1, "the second night does not download again"
    job_limit, steps = step_limits("nightly.yml", "gpu")
    assert sum(limit or 0 for _, limit, _ in steps) <= job_limit and all(limit for _, limit, _ in steps)
    limit, script = next((limit, run) for _, limit, run in steps if "pytest -m gpu" in run)
    assert time_budget(script) < limit


# --- flaky or wrong ------------------------------------------------------------------------------------------


def test_defect_06_transient_failed_state(k8s, recipes, settings):
    """The operator writes `failed` on a reconcile error and retries; the next good pass overwrites it."""
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.operator_script(ns, errors=[(0, 2.0, "failed to create the discovery RBAC: etcdserver: request timed out")])
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
    finally:
        run.close()
    states = [state for _, key, _, state in list(k8s.operator.passes) if key == f"{ns}/tiny-agg"]
    assert "failed" in states and "successful" in states and states.index("failed") < states.index("successful")


def test_defect_07_err_image_pull_that_clears(k8s, recipes, settings):
    """Registry 429s on a large image for a while (longer than a poll, shorter than the grace), then the pull
    goes through."""
    ns = k8s.namespace()
    settings.namespace = ns
    settings.image_pull_grace = 20
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0"
    k8s.runtime.image_pull(ns, image, TOO_MANY.format(image=image), clears_after=3)
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, k8s, lines=lines)
    try:
        run_steps(run, [*SETUP, "ready"])
    finally:
        run.close()
    events = [e.get("reason") for e in k8s.events(ns)]
    assert "Failed" in events, "the pull did fail for a while"


def test_defect_08_unschedulable_while_gpu_nodes_scale_up(k8s, recipes, settings):
    """Another team holds the GPUs; the autoscaler stand-in scales a GPU group up and its node joins within the
    grace. (A node that joins after the grace is defect 3 of issue 24: tests/k8s/test_defect_*.)"""
    ns, other = k8s.namespace(), k8s.namespace()
    settings.namespace = ns
    settings.unschedulable_grace = 15
    k8s.replace_nodes([gpu_node("gpu-node-0"), cpu_node()])
    k8s.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "train"},
            "spec": {
                "containers": [
                    {"name": "main", "image": "example.com/train:1", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
                ]
            },
        },
        other,
    )
    wait_for(lambda: all((p.get("spec") or {}).get("nodeName") for p in k8s.pods(other)), 30, "the other team placed")
    scaler = k8s.autoscaler([ns], [NodeGroup("gpu-pool", lambda i: gpu_node(f"gpu-node-new-{i}"), delay=4.0)])
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
    finally:
        run.close()
    assert len(scaler.scale_ups) == 1 and k8s.get("/api/v1/nodes/gpu-node-new-0") is not None
    triggered = [e for e in k8s.events(ns) if e.get("reason") == "TriggeredScaleUp"]
    assert len(triggered) == len(scaler.scale_ups[0][2]), "one event per pod of the scale-up"
    k8s._node_undo.append(lambda: k8s.api.delete("/api/v1/nodes/gpu-node-new-0"))


def test_defect_09_reapply_keeps_finalizer_and_annotations(k8s, recipes, settings, tmp_path):
    """A DGD left by an earlier run (kept, or its runner killed) is applied again with a changed spec: server-side
    apply keeps the operator's finalizer and annotations; an operator that writes no observedGeneration shows the
    old `successful` for a while, and that does not count as ready."""
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.operator_script(ns, observed_generation=False, delay=3.0)
    settings.stale_status_grace = 10.0  # longer than the operator's requeue: the stale status must not pass for it
    changed = variant(
        recipes,
        tmp_path,
        lambda t: t.replace(
            "    VllmDecodeWorker:\n      componentType: worker\n      replicas: 1",
            "    VllmDecodeWorker:\n      componentType: worker\n      replicas: 2",
        ),
    )
    settings.keep = True
    first = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(first, [*SETUP, "ready"])
    finally:
        first.close()
    before = k8s.dgd(ns, "tiny-agg")
    assert FINALIZER in before["metadata"]["finalizers"] and ORIGIN_VERSION in before["metadata"]["annotations"]
    settings.keep = False
    second = make_run(changed, settings, k8s)
    try:
        run_steps(second, SETUP)
        after = k8s.dgd(ns, "tiny-agg")
        assert FINALIZER in after["metadata"]["finalizers"], "the apply kept the operator's finalizer"
        assert after["metadata"]["annotations"][ORIGIN_VERSION] == "1.4.0", "and its annotations"
        assert after["metadata"]["generation"] == 2
        second.run_step("ready")
        ready_at = time.monotonic()
    finally:
        second.close()
    gen2 = [t for t, key, gen, state in list(k8s.operator.passes) if key == f"{ns}/tiny-agg" and gen == 2
            and state == "successful"]  # fmt: skip
    assert gen2 and gen2[0] <= ready_at, "ready only after the operator's pass over the new generation"
    applies = [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb == "create"]
    assert len(applies) <= 1, "the second run patched the DGD, it did not create another"


def test_defect_10_repeats_run_the_perf_job_n_times_on_one_deployment(k8s, recipes, settings, tmp_path):
    ns = k8s.namespace()
    settings.namespace = ns
    settings.repeats = 3
    exports = [json.dumps(dict(EXPORT, output_token_throughput=dict(EXPORT["output_token_throughput"], avg=v)))
               for v in (250.0, 256.0, 262.0)]  # fmt: skip
    path = export_logs(k8s, ns)
    k8s.runtime.job_takes(ns, "tiny-agg-perf", 1.5)
    sequence = ExportSequence(k8s.api, ns, "tiny-agg-perf", path, exports).start()
    roots = {"baselines_root": tmp_path / "baselines", "history_root": tmp_path / "history"}
    run = make_run(recipes[AGG], settings, k8s, update_baselines=True, **roots)
    try:
        run_steps(run, [*SETUP, "ready", "perf", "baseline"])
    finally:
        run.close()
        sequence.stop()
    perf_jobs = [r for r in k8s.requests(ns) if r.resource == "jobs" and r.name == "tiny-agg-perf"
                 and r.verb in ("create", "patch") and not r.dry_run]  # fmt: skip
    dgds = [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb in ("create", "patch")
            and not r.dry_run]  # fmt: skip
    assert len(perf_jobs) == 3 and len(dgds) == 1
    assert [r.value("output_token_throughput.avg") for r in run.results] == [250.0, 256.0, 262.0]
    baseline = json.loads((tmp_path / "baselines" / "gpu" / "h200" / "tiny" / "vllm" / "agg.json").read_text())
    metric = next(m for m in baseline["metrics"].values() if m.get("median") == 256.0)
    assert metric["runs"] == 3 and metric["cv"] > 0


def test_defect_11_copied_secret_keeps_type_and_bytes(k8s, recipes, settings, tmp_path, default_secret):
    binary = b"\xff\xfe\x00\x80binary"
    dockercfg = json.dumps({"auths": {"nvcr.io": {"auth": base64.b64encode(b"$oauthtoken:nvapi-x").decode()}}})
    k8s.api.create(
        "/api/v1/namespaces/default/secrets",
        secret_manifest("default", "nvcr-pull", {".dockerconfigjson": dockercfg}, "kubernetes.io/dockerconfigjson"),
    )
    k8s._node_undo.append(lambda: k8s.api.delete("/api/v1/namespaces/default/secrets/nvcr-pull"))
    default_secret(secret_manifest("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN, "blob": binary}))
    recipe = variant(
        recipes,
        tmp_path,
        lambda t: t.replace(
            "      extraPodSpec:\n        mainContainer:\n          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0\n          command: [python3, -m, dynamo.vllm]",
            "      extraPodSpec:\n        imagePullSecrets:\n          - name: nvcr-pull\n        mainContainer:\n"
            "          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0\n          command: [python3, -m, dynamo.vllm]",
        ),
    )
    ns = k8s.namespace()
    settings.namespace = ns
    run = make_run(recipe, settings, k8s)
    try:
        run_steps(run, ["preflight", "model-cache"])
        pull = k8s.get(f"/api/v1/namespaces/{q(ns)}/secrets/nvcr-pull")
        token = k8s.get(f"/api/v1/namespaces/{q(ns)}/secrets/hf-token-secret")
    finally:
        run.close()
    assert pull is not None and pull["type"] == "kubernetes.io/dockerconfigjson"
    assert base64.b64decode(pull["data"][".dockerconfigjson"]).decode() == dockercfg
    assert base64.b64decode(token["data"]["blob"]) == binary and token["type"] == "Opaque"


class ServiceForward:
    """`kubectl port-forward svc/<name>` as far as the name goes: the Service must exist on the cluster."""

    def __init__(self, k8s, url: str):
        self.k8s, self.url, self.opened = k8s, url, []

    def open(self, namespace: str, service: str, port: int) -> str:
        svc = self.k8s.get(f"/api/v1/namespaces/{q(namespace)}/services/{q(service)}")
        if svc is None:
            raise PortForwardError(f'Error from server (NotFound): services "{service}" not found')
        assert port in [p["port"] for p in svc["spec"]["ports"]]
        self.opened.append(service)
        return self.url

    def close(self) -> None:
        pass


def test_defect_12_frontend_service_name_comes_from_the_component(k8s, recipes, settings, tmp_path, openai_url):
    recipe = variant(recipes, tmp_path, lambda t: t.replace("    Frontend:\n", "    HttpFrontend:\n"))
    settings.namespace = k8s.namespace()
    access = ServiceForward(k8s, openai_url)
    run = make_run(recipe, settings, k8s, access=access)
    try:
        run_steps(run, [*SETUP, "ready", "smoke-models"])
    finally:
        run.close()
    assert access.opened == ["tiny-agg-httpfrontend"]


def test_component_service_names_follow_the_operator():
    from harness.run.k8s.facts import component_resource_name

    assert component_resource_name("qwen", "Frontend") == "qwen-frontend"
    assert component_resource_name("qwen", "Qwen3-0.6B") == "qwen-qwen3-0-6b", "dots become hyphens (DNS-1035)"


# --- the real API server's rules ---------------------------------------------------------------------------


def test_namespace_passing_through_terminating_is_waited_for(k8s, recipes, settings):
    """The namespace is being deleted (a ConfigMap's finalizer holds it in Terminating, as the real namespace
    controller does); its owner lets go after 3 s; the run waits, then creates it again."""
    ns = k8s.namespace()
    settings.namespace = ns
    cm_path = f"/api/v1/namespaces/{q(ns)}/configmaps"
    k8s.api.create(cm_path, {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "old", "finalizers": ["example.com/hold"]}})  # fmt: skip
    k8s.api.delete(f"/api/v1/namespaces/{q(ns)}")
    wait_for(lambda: (k8s.get(f"/api/v1/namespaces/{q(ns)}") or {}).get("status", {}).get("phase") == "Terminating",
             10, "Terminating")  # fmt: skip

    def let_go() -> None:
        time.sleep(3)
        k8s.api.merge(f"{cm_path}/old", {"metadata": {"finalizers": None}}, missing_ok=True)

    threading.Thread(target=let_go, daemon=True).start()
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, k8s, lines=lines)
    try:
        run_steps(run, ["preflight", "model-cache"])
    finally:
        run.close()
    assert any("Terminating" in line for line in lines)
    assert k8s.get(f"/api/v1/namespaces/{q(ns)}")["status"]["phase"] == "Active"


def test_the_api_server_validates_built_in_kinds(k8s):
    """Both are refused by the API server's server-side apply, which answers them with HTTP 500 ("failed to create
    typed patch object"), not 422: the harness's client takes 500 for transient and retries before it reports
    (about 15 s here; the fake answered 422 at once)."""
    from harness.run.k8s.client import KubeError

    ns = k8s.namespace()
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "comand": ["x"]}]}
            }
        },
    }
    with pytest.raises(KubeError, match=r"comand") as unknown:
        k8s.kube.apply(job, ns)
    assert "Job j" in str(unknown.value)
    with pytest.raises(KubeError, match=r"ConfigMap c: .*data"):
        k8s.kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": 1}}, ns)


# --- pytest -m gpu --repeats 3 against the control plane -----------------------------------------------------


def test_pytest_m_gpu_repeats_3_against_the_control_plane(k8s, tmp_path):
    """The plugin end to end: the session's kubeconfig, `pytest -m gpu --repeats 3`; the perf step runs the Job
    three times on one deployment and the baseline judges the median and CV of the three."""
    ns = k8s.namespace()
    exports = [json.dumps(dict(EXPORT, output_token_throughput=dict(EXPORT["output_token_throughput"], avg=v)))
               for v in (250.0, 256.0, 262.0)]  # fmt: skip
    path = export_logs(k8s, ns)
    k8s.runtime.job_takes(ns, "tiny-agg-perf", 1.5)
    sequence = ExportSequence(k8s.api, ns, "tiny-agg-perf", path, exports).start()
    tree = tmp_path / "recipes"
    shutil.copytree(RECIPES, tree)  # baselines and history go beside the tree: a copy keeps them out of the repository
    argv = [
        sys.executable, "-m", "pytest", "-m", "gpu", "--recipes-dir", str(tree), "--recipe", AGG, "--repeats", "3",
        "--kubeconfig", str(k8s.kubeconfig), "--namespace", ns, "--report-dir", str(tmp_path / "report"),
        "--update-baselines", "--gpu-option", "poll_interval=0.2", "--gpu-option", "progress_every=0",
        "-k", "not smoke", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    finally:
        sequence.stop()
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "6 passed" in out, out[-3000:]
    perf_jobs = [r for r in k8s.requests(ns) if r.resource == "jobs" and r.name == "tiny-agg-perf"
                 and r.verb in ("create", "patch") and not r.dry_run]  # fmt: skip
    assert len(perf_jobs) == 3
    runs = sorted((tmp_path / "report" / "perf" / "tiny_vllm_agg").glob("run-*/profile_export_aiperf.json"))
    assert len(runs) == 3
    assert "run report not written" not in out, "the run report finds the gpu run in the history"
