"""The twelve defects of issue 16 ([gpu-truth]), one scenario each against the fake cluster, plus the kind run the
workflow makes, the model cache across nights, `--repeats` through pytest, and runs under injected API faults."""

from __future__ import annotations

import base64
import json
import random
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from harness.recipe.discovery import discover
from harness.recipe.model import Recipe
from harness.run.k8s.portforward import PortForwardError
from harness.run.k8s.settings import DeploySettings
from harness.run.stage import StageSkip, StepFailed

from .fake_apiserver import Controller, FakeApiServer, FakeCluster, Faults
from .fake_controllers import (
    FINALIZER,
    ORIGIN_VERSION,
    DynamoOperator,
    OperatorScript,
    ScaleUp,
    pod_requests,
)
from .fake_support import (
    AGG,
    FAKE_TOKEN,
    SETUP,
    TOO_MANY,
    RecordingSuite,
    Scenario,
    base_cluster,
    kind_cluster,
    kube_for,
    make_run,
    run_steps,
    serving,
)

# --- RETIRING: these tests still run against the fake API server until they are ported to the real control plane ---


@pytest.fixture
def cluster() -> FakeCluster:
    return base_cluster()


@pytest.fixture
def apiserver(cluster: FakeCluster):
    server = FakeApiServer(cluster).start()
    yield server
    server.stop()


@pytest.fixture
def kube(apiserver: FakeApiServer):
    return kube_for(apiserver.url, apiserver.cluster.clock)


@pytest.fixture
def settings(tmp_path: Path) -> DeploySettings:
    """Virtual time (the fake's clock): the defaults."""
    return DeploySettings(report_dir=tmp_path / "report")


ROOT = Path(__file__).resolve().parents[2]
KIND_RECIPE = "qwen3-32b/vllm/agg-round-robin"  # the recipe kind-mocker.yml runs
WORKFLOWS = ROOT / ".github" / "workflows"


@pytest.fixture(scope="module")
def shipped() -> dict[str, Recipe]:
    return {r.id: r for r in discover(ROOT / "recipes")}


def variant(recipes: dict[str, Recipe], tmp_path: Path, edit) -> Recipe:
    """The tiny agg recipe with deploy.yaml edited by `edit(text) -> text`."""
    tree = tmp_path / "recipes"
    shutil.copytree(Path(recipes[AGG].root), tree)
    deploy = tree / "tiny" / "vllm" / "agg" / "deploy.yaml"
    deploy.write_text(edit(deploy.read_text()))
    return {r.id: r for r in discover(tree)}[AGG]


def throwaway_secret(cluster: FakeCluster) -> None:
    """What kind-mocker.yml does before pytest: `kubectl create secret generic hf-token-secret --from-literal=HF_TOKEN=`."""
    cluster.add_secret("default", "hf-token-secret", {"HF_TOKEN": ""})


def leftovers(cluster: FakeCluster, namespace: str) -> list[str]:
    """What a run left in its namespace once the controllers caught up: everything but the cache and the events."""
    for _ in range(5):
        cluster.clock.sleep(5)
        cluster.reconcile()
    return sorted(
        f"{k[1]}/{k[3]}"
        for k in cluster.objects
        if k[2] == namespace and k[1] not in ("events", "persistentvolumeclaims")
    )


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


# --- would fail ----------------------------------------------------------------------------------------------


def test_defect_01_no_secret_on_kind(shipped, settings):
    """kind has no hf-token-secret and no HF_TOKEN: a mocker run goes on with an empty token (a public tokenizer
    needs none), and the workers' envFromSecret finds its Secret (else CreateContainerConfigError)."""
    cluster = kind_cluster(cpu="4", memory="16Gi")
    settings.engine = "mocker"
    with serving(cluster) as server:
        run = make_run(shipped[KIND_RECIPE], settings, server)
        try:
            run_steps(run, SETUP + ["ready"])
            secret = cluster.get("", "secrets", run.context.namespace, "hf-token-secret")
            assert secret is not None and base64.b64decode(secret["data"]["HF_TOKEN"]) == b""
        finally:
            run.close()


def test_defect_02_pods_fit_a_kind_node(shipped, settings):
    """A 2-vCPU / 7 GiB runner (kind's control plane requests 950m of it): the mocker workers, the frontend, the
    benchmark Job and the fetch pod all get scheduled. The storage class serves ReadWriteMany here, so only the
    requests are under test (defect 3 is the class)."""
    cluster = kind_cluster(cpu="2", memory="7Gi")
    cluster.remove("storage.k8s.io", "storageclasses", None, "standard")
    cluster.add_storage_class("nfs", default=True, provisioner="nfs.csi.k8s.io")
    throwaway_secret(cluster)
    settings.engine = "mocker"
    with serving(cluster) as server:
        run = make_run(shipped[KIND_RECIPE], settings, server)
        try:
            run_steps(run, SETUP + ["ready", "perf"])
            ours = [p for p in cluster.list("", "pods", run.context.namespace)]
            cpu = sum(pod_requests(p).get("cpu", 0) for p in ours if p["status"].get("phase") == "Running")
            assert cpu <= 2 - 0.95, f"our running pods request {cpu} CPU"
        finally:
            run.close()
    assert run.result is not None and run.result.valid


def test_defect_03_rwx_cache_on_kind_local_path(shipped, settings):
    """kind's only class is local-path (ReadWriteOnce): the mocker run asks ReadWriteOnce, so the claim binds when
    the first pod is scheduled instead of staying Pending with every pod that mounts it."""
    cluster = kind_cluster(cpu="16", memory="64Gi")  # a large runner: only the class is under test
    throwaway_secret(cluster)
    settings.engine = "mocker"
    with serving(cluster) as server:
        run = make_run(shipped[KIND_RECIPE], settings, server)
        try:
            run_steps(run, SETUP + ["ready"])
            pvc = cluster.get("", "persistentvolumeclaims", run.context.namespace, "model-cache")
            assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        finally:
            run.close()


def test_rwx_cache_on_a_rwo_only_class_fails_preflight_with_real_engines(recipes, settings):
    cluster = base_cluster()
    cluster.remove("storage.k8s.io", "storageclasses", None, "standard")
    cluster.add_storage_class(
        "standard", default=True, provisioner="rancher.io/local-path", binding="WaitForFirstConsumer"
    )
    with serving(cluster) as server:
        run = make_run(recipes[AGG], settings, server)
        try:
            with pytest.raises(
                StepFailed,
                match=r"PVC model-cache asks for ReadWriteMany, but storage class standard \(rancher.io/local-path",
            ):
                run.run_step("preflight")
        finally:
            run.close()


def test_defect_04_harness_reports_its_own_timeout_on_kind(shipped, settings):
    """The step limits of kind-mocker.yml add up under the job's, and the harness's --time-budget ends before its
    step's: a deployment that never gets ready is reported by the harness (diagnostics, teardown), not by a kill."""
    job_limit, steps = step_limits("kind-mocker.yml", "kind-mocker")
    assert all(limit for _, limit, _ in steps), f"every step has timeout-minutes: {steps}"
    assert sum(limit for _, limit, _ in steps) <= job_limit
    pytest_step = next((limit, run) for _, limit, run in steps if "pytest -m gpu" in run)
    budget = time_budget(pytest_step[1])
    assert budget < pytest_step[0]

    cluster = kind_cluster(cpu="16", memory="64Gi")
    throwaway_secret(cluster)
    cluster.controller = Scenario(dgd="never")
    settings.engine = "mocker"
    settings.time_budget = budget * 60
    with serving(cluster) as server:
        run = make_run(shipped[KIND_RECIPE], settings, server)
        start = cluster.clock()
        try:
            run_steps(run, SETUP)
            with pytest.raises(StepFailed) as failure:
                run.run_step("ready")
        finally:
            run.close()
        ended = cluster.clock() - start
    assert "the run's time budget" in str(failure.value) and "diagnostics:" in str(failure.value)
    assert (settings.report_dir / "diagnostics").is_dir()
    assert ended <= budget * 60, f"the harness finished at {ended:.0f}s, after its budget of {budget * 60:.0f}s"
    assert (
        cluster.get("nvidia.com", "dynamographdeployments", run.context.namespace, "qwen3-32b-vllm-agg-round-robin")
        is None
    )


def test_defect_05_model_cache_survives_runs(cluster, apiserver, recipes, settings):
    """Two nights, default namespaces: the second finds the pinned revision in the model's cache and skips the
    download; teardown keeps the filled cache and removes the rest. The nightly's limits hold the harness's budget."""
    for night in (1, 2):
        run = make_run(recipes[AGG], settings, apiserver)
        try:
            run_steps(run, SETUP + ["ready"])
        finally:
            run.close()
        pvc = cluster.get("", "persistentvolumeclaims", run.context.namespace, "model-cache")
        assert pvc is not None, f"night {night}: the cache stays"
        assert (
            pvc["metadata"]["annotations"]["recipe-harness.dynamo.nvidia.com/model-revision"]
            == "Qwen/Qwen3-0.6B@c1899de289a04d12100db370d81485cdf75e47ca"
        )
        assert leftovers(cluster, run.context.namespace) == []
    assert cluster.created.count("Job/model-download") == 1, "the second night does not download again"
    job_limit, steps = step_limits("nightly.yml", "gpu")
    assert sum(limit or 0 for _, limit, _ in steps) <= job_limit and all(limit for _, limit, _ in steps)
    limit, script = next((limit, run) for _, limit, run in steps if "pytest -m gpu" in run)
    assert time_budget(script) < limit


# --- flaky or wrong ------------------------------------------------------------------------------------------


def test_defect_06_transient_failed_state(cluster, apiserver, recipes, settings):
    """The operator writes `failed` on a reconcile error and retries; the next good pass overwrites it."""
    cluster.controller = Scenario(
        operator=OperatorScript(errors=[(0, 40, "failed to create the discovery RBAC: etcdserver: request timed out")])
    )
    run = make_run(recipes[AGG], settings, apiserver)
    try:
        run_steps(run, SETUP + ["ready"])
    finally:
        run.close()
    states = [s for _, _, _, s in next(c for c in cluster.controllers if isinstance(c, DynamoOperator)).passes]
    assert "failed" in states and states[-1] == "successful"


def test_defect_07_err_image_pull_that_clears(cluster, apiserver, recipes, settings):
    """Registry 429s on a large image for three minutes, then the pull goes through."""
    cluster.controller = Scenario(pull_failures={"nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0": (180, TOO_MANY)})
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, apiserver, lines=lines)
    try:
        run_steps(run, SETUP + ["ready"])
    finally:
        run.close()
    assert any("ErrImagePull" in line or "ImagePullBackOff" in line for line in lines), "the pull did fail for a while"


def test_defect_08_unschedulable_while_gpu_nodes_scale_up(recipes, settings):
    """Another team holds the GPUs; the cluster autoscaler announces a scale-up and a node joins after ~12 min."""
    cluster = base_cluster(nodes=1)
    cluster.controller = Scenario(dgd="unschedulable", scale_ups=[ScaleUp("gpu-node-new", "NVIDIA-H200", 8, delay=720)])
    with serving(cluster) as server:
        run = make_run(recipes[AGG], settings, server)
        try:
            run_steps(run, SETUP + ["ready"])
        finally:
            run.close()
    workers = [p for p in cluster.list("", "pods") if p["metadata"]["name"].startswith("tiny-agg-vllmdecodeworker")]
    assert not workers, "torn down"
    assert cluster.get("", "nodes", None, "gpu-node-new") is not None


def test_defect_09_reapply_keeps_finalizer_and_annotations(recipes, settings, tmp_path):
    """A DGD left by an earlier run (kept, or its runner killed) is applied again with a changed spec: server-side
    apply keeps the operator's finalizer and annotations; an operator that writes no observedGeneration shows the
    old `successful` for a while, and that does not count as ready."""
    cluster = base_cluster()
    cluster.controller = scenario = Scenario(operator=OperatorScript(observed_generation=False, delay=30))
    changed = variant(
        recipes,
        tmp_path,
        lambda t: t.replace(
            "    VllmDecodeWorker:\n      componentType: worker\n      replicas: 1",
            "    VllmDecodeWorker:\n      componentType: worker\n      replicas: 2",
        ),
    )
    cluster.add_namespace("team-bench")
    settings.namespace = "team-bench"  # one namespace for both runs, as the model's namespace is now by default
    with serving(cluster) as server:
        settings.keep = True
        first = make_run(recipes[AGG], settings, server)
        try:
            run_steps(first, SETUP + ["ready"])
        finally:
            first.close()
        ns = first.context.namespace
        before = cluster.get("nvidia.com", "dynamographdeployments", ns, "tiny-agg")
        assert FINALIZER in before["metadata"]["finalizers"] and ORIGIN_VERSION in before["metadata"]["annotations"]
        settings.keep = False
        second = make_run(changed, settings, server)
        try:
            run_steps(second, SETUP)
            after = cluster.get("nvidia.com", "dynamographdeployments", ns, "tiny-agg")
            assert FINALIZER in after["metadata"]["finalizers"], "the apply kept the operator's finalizer"
            assert after["metadata"]["annotations"][ORIGIN_VERSION] == "1.4.0", "and its annotations"
            assert after["metadata"]["generation"] == 2 and after["status"]["state"] == "successful", (
                "a stale status, for now"
            )
            second.run_step("ready")
            ready_at = cluster.clock()
        finally:
            second.close()
    operator = next(c for c in cluster.controllers if isinstance(c, DynamoOperator))
    gen2 = [t for t, name, gen, state in operator.passes if gen == 2 and state == "successful"]
    assert gen2 and gen2[0] <= ready_at, "ready only after the operator's pass over the new generation"
    assert scenario.created.count("DynamoGraphDeployment/tiny-agg") == 1


def test_defect_10_repeats_run_the_perf_job_n_times_on_one_deployment(cluster, apiserver, recipes, settings, tmp_path):
    cluster.controller = scenario = Scenario(throughputs=[250.0, 256.0, 262.0])
    settings.repeats = 3
    roots = {"baselines_root": tmp_path / "baselines", "history_root": tmp_path / "history"}
    run = make_run(recipes[AGG], settings, apiserver, update_baselines=True, **roots)
    try:
        run_steps(run, SETUP + ["ready", "perf", "baseline"])
    finally:
        run.close()
    assert (
        scenario.created.count("Job/tiny-agg-perf") == 3
        and scenario.created.count("DynamoGraphDeployment/tiny-agg") == 1
    )
    assert [r.value("output_token_throughput.avg") for r in run.results] == [250.0, 256.0, 262.0]
    baseline = json.loads((tmp_path / "baselines" / "gpu" / "h200" / "tiny" / "vllm" / "agg.json").read_text())
    metric = (
        next(m for m in baseline["metrics"].values() if m.get("median") == 256.0)
        if isinstance(baseline.get("metrics"), dict)
        else None
    )
    assert metric is not None and metric["runs"] == 3 and metric["cv"] > 0


def test_defect_11_copied_secret_keeps_type_and_bytes(recipes, settings, tmp_path):
    binary = b"\xff\xfe\x00\x80binary"
    dockercfg = json.dumps({"auths": {"nvcr.io": {"auth": base64.b64encode(b"$oauthtoken:nvapi-x").decode()}}})
    cluster = base_cluster()
    cluster.add_secret("default", "nvcr-pull", {".dockerconfigjson": dockercfg}, type_="kubernetes.io/dockerconfigjson")
    cluster.add_secret("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN, "blob": binary})
    recipe = variant(
        recipes,
        tmp_path,
        lambda t: t.replace(
            "      extraPodSpec:\n        mainContainer:\n          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0\n          command: [python3, -m, dynamo.vllm]",
            "      extraPodSpec:\n        imagePullSecrets:\n          - name: nvcr-pull\n        mainContainer:\n"
            "          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0\n          command: [python3, -m, dynamo.vllm]",
        ),
    )
    with serving(cluster) as server:
        run = make_run(recipe, settings, server)
        try:
            run_steps(run, ["preflight", "model-cache"])
            ns = run.context.namespace
            pull = cluster.get("", "secrets", ns, "nvcr-pull")
            token = cluster.get("", "secrets", ns, "hf-token-secret")
        finally:
            run.close()
    assert pull is not None and pull["type"] == "kubernetes.io/dockerconfigjson"
    assert base64.b64decode(pull["data"][".dockerconfigjson"]).decode() == dockercfg
    assert base64.b64decode(token["data"]["blob"]) == binary and token["type"] == "Opaque"


class ServiceForward:
    """`kubectl port-forward svc/<name>` as far as the name goes: the Service must exist."""

    def __init__(self, cluster: FakeCluster, url: str):
        self.cluster, self.url, self.opened = cluster, url, []

    def open(self, namespace: str, service: str, port: int) -> str:
        svc = self.cluster.get("", "services", namespace, service)
        if svc is None:
            raise PortForwardError(f'Error from server (NotFound): services "{service}" not found')
        assert port in [p["port"] for p in svc["spec"]["ports"]]
        self.opened.append(service)
        return self.url

    def close(self) -> None:
        pass


def test_defect_12_frontend_service_name_comes_from_the_component(recipes, settings, tmp_path, openai_url):
    recipe = variant(recipes, tmp_path, lambda t: t.replace("    Frontend:\n", "    HttpFrontend:\n"))
    cluster = base_cluster()
    access = ServiceForward(cluster, openai_url)
    with serving(cluster) as server:
        run = make_run(recipe, settings, server, access=access)
        try:
            run_steps(run, SETUP + ["ready", "smoke-models"])
        finally:
            run.close()
    assert access.opened == ["tiny-agg-httpfrontend"]


def test_component_service_names_follow_the_operator():
    from harness.run.k8s.facts import component_resource_name

    assert component_resource_name("qwen", "Frontend") == "qwen-frontend"
    assert component_resource_name("qwen", "Qwen3-0.6B") == "qwen-qwen3-0-6b", "dots become hyphens (DNS-1035)"


# --- the fake follows the real rules ---------------------------------------------------------------------------


def test_namespace_passing_through_terminating_is_waited_for(cluster, apiserver, recipes, settings):
    cluster.add_namespace("rh-tiny")
    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "old", "namespace": "rh-tiny", "finalizers": ["example.com/hold"]},
        }
    )
    cluster.objects[("", "namespaces", "", "rh-tiny")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    cluster.objects[("", "namespaces", "", "rh-tiny")]["status"] = {"phase": "Terminating"}

    class LetGo(Controller):  # the ConfigMap's own controller drops its finalizer after a minute
        def reconcile(self, c: FakeCluster) -> None:
            cm = c.get("", "configmaps", "rh-tiny", "old")
            if cm is not None and c.now() >= 60:
                cm["metadata"]["finalizers"] = []

    cluster.controllers.append(LetGo())
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, apiserver, lines=lines)
    try:
        run_steps(run, ["preflight", "model-cache"])
    finally:
        run.close()
    assert any("Terminating" in line for line in lines)
    assert cluster.get("", "namespaces", None, "rh-tiny")["status"]["phase"] == "Active"


def test_logs_of_a_waiting_container_are_a_400(cluster, apiserver, kube, recipes):
    from harness.run.k8s.client import KubeError

    cluster.controllers = []  # the pod as the kubelet reports it while the image is pulled
    cluster.add_namespace("n")
    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"nodeName": "cpu-node-0", "containers": [{"name": "main", "image": "img"}]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "main",
                        "image": "img",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            },
        }
    )
    with pytest.raises(KubeError, match='container "main" in pod "p" is waiting to start') as info:
        kube.pod_log("n", "p", "main")
    assert info.value.status == 400


def test_the_fake_validates_built_in_kinds_with_the_kubernetes_schema(cluster, kube):
    from harness.run.k8s.client import KubeError

    cluster.add_namespace("n")
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
    with pytest.raises(
        KubeError, match=r'strict decoding error: unknown field "spec.template.spec.containers.0.comand"'
    ):
        kube.apply(job, "n")
    with pytest.raises(KubeError, match='ConfigMap "c" is invalid: data/k: 1 is not of type'):
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": 1}}, "n")


# --- faults ----------------------------------------------------------------------------------------------------

FAULT_SCENARIOS = {
    "ready": lambda: Scenario(),
    "never": lambda: Scenario(dgd="never"),
    "crash": lambda: Scenario(dgd="crash"),
    "image-pull": lambda: Scenario(dgd="image-pull"),
    "cache-failed": lambda: Scenario(cache_job="failed"),
    "transient-failed": lambda: Scenario(operator=OperatorScript(errors=[(0, 30, "the API server was busy")])),
    "perf-failed": lambda: Scenario(perf_job="failed"),
}


@pytest.mark.parametrize("seed", range(20))
def test_random_api_faults_still_end_in_a_verdict_and_leave_nothing(seed, recipes, settings, openai_url):
    """429s, 5xx, resets before and after the server acted, and responses cut mid-body, at a seeded rate: every
    scenario ends in a clear verdict (a pass, a StepFailed with the reason, or a skip), and teardown leaves only
    the namespace with its model cache."""
    rng = random.Random(seed)
    name = sorted(FAULT_SCENARIOS)[seed % len(FAULT_SCENARIOS)]
    cluster = base_cluster()
    cluster.controller = FAULT_SCENARIOS[name]()
    cluster.faults = Faults(rate=rng.uniform(0.05, 0.2), seed=seed)
    settings.ready_timeout = 1800
    RecordingSuite.calls = []
    verdicts: list[str] = []
    with serving(cluster) as server:
        run = make_run(recipes[AGG], settings, server, url=openai_url)
        try:
            for step in SETUP + ["ready", "smoke-models", "perf"]:
                try:
                    run.run_step(step)
                    verdicts.append(f"{step}: passed")
                except StepFailed as exc:
                    assert str(exc).strip() and "Traceback" not in str(exc)
                    verdicts.append(f"{step}: failed")
                except StageSkip as exc:
                    verdicts.append(f"{step}: skipped ({exc})")
        finally:
            run.close()
        cluster.faults.rate = 0.0
        assert leftovers(cluster, run.context.namespace) == [], f"seed {seed} ({name}): {verdicts}"
    expected_pass = name in ("ready", "transient-failed")
    assert (verdicts[-1] == "perf: passed") == expected_pass, (
        f"seed {seed} ({name}), faults {cluster.faults.injected}: {verdicts}"
    )
    assert cluster.faults.injected or seed > 0


# --- pytest -m gpu --repeats 3 against the fake ----------------------------------------------------------------

pytest_plugins = ["pytester"]


def test_pytest_m_gpu_repeats_3_against_the_fake(pytester: pytest.Pytester, tmp_path):
    """The plugin end to end: a kubeconfig for the fake, `pytest -m gpu --repeats 3`; the perf step runs the Job
    three times on one deployment and the baseline judges the median and CV of the three."""
    from .fake_support import RECIPES, Clock

    cluster = base_cluster(clock=Clock(real=True))
    cluster.controller = scenario = Scenario(
        throughputs=[250.0, 256.0, 262.0], ready_after=0.2, cache_seconds=0.2, perf_seconds=0.2
    )
    for ctl in cluster.controllers:
        if isinstance(ctl, DynamoOperator):
            ctl.script.delay = 0.05
    tree = tmp_path / "recipes"
    shutil.copytree(RECIPES, tree)  # baselines and history go beside the tree: a copy keeps them out of the repository
    with serving(cluster) as server:
        kc = tmp_path / "kubeconfig"
        kc.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                    "users": [{"name": "u", "user": {"token": "kube-token-never-printed"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                }
            )
        )
        res = pytester.runpytest_subprocess(
            "-m",
            "gpu",
            "--recipes-dir",
            str(tree),
            "--recipe",
            AGG,
            "--repeats",
            "3",
            "--kubeconfig",
            str(kc),
            "--report-dir",
            str(tmp_path / "report"),
            "--update-baselines",
            "--gpu-option",
            "poll_interval=0.05",
            "--gpu-option",
            "progress_every=0",
            "-k",
            "not smoke",
            "-p",
            "no:cacheprovider",
            "-q",
            timeout=600,  # a bound for a hung run, not a speed verdict: a loaded 2-core machine took 100+ s
        )
    out = res.stdout.str() + res.stderr.str()
    assert "kube-token-never-printed" not in out
    res.assert_outcomes(passed=6), out[-3000:]
    assert (
        scenario.created.count("Job/tiny-agg-perf") == 3
        and scenario.created.count("DynamoGraphDeployment/tiny-agg") == 1
    )
    runs = sorted((tmp_path / "report" / "perf" / "tiny_vllm_agg").glob("run-*/profile_export_aiperf.json"))
    assert len(runs) == 3
    assert "run report not written" not in out, "the run report finds the gpu run in the history"
