"""The gpu stage against the fake API server, through the real kubernetes client: one test per scenario of issue 6."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.run.k8s import preflight, teardown
from harness.run.k8s.context import GpuContext
from harness.run.k8s.run import GpuRun
from harness.run.k8s.settings import DeploySettings
from harness.run.k8s.stage import GpuStage
from harness.run.stage import StageSkip, StepFailed

from .fake_apiserver import FakeApiServer, FakeCluster
from .fake_support import (
    AGG,
    FAKE_TOKEN,
    SERVED,
    SETUP,
    RecordingSuite,
    Scenario,
    base_cluster,
    dgd_crd,
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


EXPORT_FIXTURE = Path(__file__).parent.parent / "fixtures" / "k8s" / "profile_export_aiperf.json"


def fail_at(run: GpuRun, step: str, before: list[str] = (), exc: type[BaseException] = StepFailed) -> str:
    """Run the steps before `step`, expect `step` to raise `exc`, always tear down; the message."""
    try:
        run_steps(run, list(before))
        with pytest.raises(exc) as info:
            run.run_step(step)
    finally:
        run.close()
    return str(info.value)


def all_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_happy_path(cluster: FakeCluster, apiserver: FakeApiServer, recipes, settings, openai_url, tmp_path, capsys):
    cluster.controller = scenario = Scenario(dgd="ready")
    baselines = tmp_path / "baselines"
    RecordingSuite.calls = []
    lines: list[str] = []
    run = make_run(
        recipes[AGG],
        settings,
        apiserver,
        url=openai_url,
        lines=lines,
        baselines_root=baselines,
        history_root=tmp_path / "history",
        update_baselines=True,
    )
    steps = [s.name for s in GpuStage(smoke=RecordingSuite).steps(recipes[AGG])]
    assert steps == ["preflight", "model-cache", "deploy", "ready", "smoke-models", "smoke-chat", "perf", "baseline"]
    start = time.monotonic()
    try:
        run_steps(run, steps)
    finally:
        run.close()
    ns = run.context.namespace
    assert ns == "rh-tiny", "every run of a model uses the model's namespace: its cache lives there"
    assert RecordingSuite.calls == ["models", "chat"]
    assert run.suite.kw["router_mode"] == "round-robin" and callable(run.suite.kw["request_counts"])
    assert run.result is not None and run.result.valid
    # ConfigMap before the DGD although deploy.yaml lists the DGD first; the cache before either
    order = [c for c in scenario.created if not c.startswith(("Pod/", "Namespace/"))]
    assert order == [
        "Secret/hf-token-secret",
        "PersistentVolumeClaim/model-cache",
        "Job/model-download",
        "ConfigMap/tiny-agg-config",
        "DynamoGraphDeployment/tiny-agg",
        "Job/tiny-agg-perf",
    ]
    export = settings.report_dir / "perf" / "tiny_vllm_agg" / "profile_export_aiperf.json"
    assert json.loads(export.read_text())["output_token_throughput"]["avg"] == 256.0
    assert (baselines / "gpu" / "h200" / "tiny" / "vllm" / "agg.json").is_file()
    assert ns in cluster.namespaces(), "the namespace stays: it holds the model cache"
    assert cluster.get("", "persistentvolumeclaims", ns, "model-cache") is not None, "the filled cache stays"
    cluster.reconcile()
    left = sorted(
        f"{k[1]}/{k[3]}" for k in cluster.objects if k[2] == ns and k[1] not in ("events", "persistentvolumeclaims")
    )
    assert left == [], f"teardown removes everything else: {left}"
    assert not (settings.report_dir / "diagnostics").exists()
    assert any("ready: tiny-agg successful" in line for line in lines)
    # every request was dry-run first, and every write asked for strict field validation
    writes = [
        r for r in cluster.requests if r.method in ("POST", "PUT", "PATCH") and r.plural != "persistentvolumeclaims"
    ]
    assert writes and all(
        r.content_type == "application/apply-patch+yaml"
        and r.query.get("fieldManager") == "recipe-harness"
        and r.query.get("fieldValidation") == "Strict"
        for r in writes
    ), "every write is a strict server-side apply"
    dgd_applies = [r.dry_run for r in cluster.requests if r.method == "PATCH" and r.plural == "dynamographdeployments"]
    assert dgd_applies[0] is True and dgd_applies[-1] is False
    out = capsys.readouterr()
    assert FAKE_TOKEN not in out.out + out.err + "\n".join(lines)
    assert time.monotonic() - start < 5


def test_dgd_never_ready_times_out_with_redacted_diagnostics(cluster, apiserver, recipes, settings, capsys):
    cluster.controller = Scenario(dgd="never")
    settings.ready_timeout = 600
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, apiserver, lines=lines)
    try:
        run_steps(run, ["preflight", "model-cache", "deploy"])
        with pytest.raises(StepFailed) as failure:
            run.run_step("ready")
    finally:
        run.close()
    message = str(failure.value)
    assert "not ready after" in message and "state=pending" in message and "pods 1/2 ready" in message
    diag = settings.report_dir / "diagnostics" / "tiny_vllm_agg"
    files = all_files(diag)
    assert {"summary.txt", "dgd.json", "events.txt", "pods.txt"} <= set(files)
    assert json.loads(files["dgd.json"])["status"]["state"] == "pending"
    assert "Readiness probe failed" in files["events.txt"]
    worker_log = files["logs/tiny-agg-vllmdecodeworker-0.main.log"]
    assert "still loading weights" in worker_log and "HF_TOKEN=<redacted>" in worker_log
    assert "pods/tiny-agg-vllmdecodeworker-0.describe.txt" in files
    assert str(diag) in message
    out = capsys.readouterr()
    for name, text in list(files.items()) + [
        ("message", message),
        ("stdout", out.out),
        ("stderr", out.err),
        ("progress", "\n".join(lines)),
    ]:
        assert FAKE_TOKEN not in text, f"token leaked into {name}"
    assert cluster.get("nvidia.com", "dynamographdeployments", run.context.namespace, "tiny-agg") is None


def test_image_pull_backoff_fails_fast(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(dgd="image-pull")
    settings.ready_timeout = 60
    run = make_run(recipes[AGG], settings, apiserver)
    run_steps(run, SETUP)
    start = time.monotonic()
    message = fail_at(run, "ready")
    elapsed = time.monotonic() - start
    assert elapsed < 3, f"took {elapsed:.1f}s of a 60s timeout"
    assert re.search(
        r"pod tiny-agg-\w+-0: container main cannot pull image nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0 \(ErrImagePull\)",
        message,
    )
    assert "not found" in message, "a tag the registry does not have fails at once, without the grace"


def test_crash_loop_fails_fast_with_last_log_lines(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(dgd="crash")
    settings.ready_timeout = 60
    message = fail_at(make_run(recipes[AGG], settings, apiserver), "ready", SETUP)
    assert re.search(r"crash-looping \(\d+ restarts, last exit code 1, Error\)", message)
    assert "tensor parallel size 2 > 1 GPUs" in message and FAKE_TOKEN not in message


def test_unschedulable_fails_after_grace(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(dgd="unschedulable")
    message = fail_at(make_run(recipes[AGG], settings, apiserver), "ready", SETUP)
    assert re.search(
        r"unschedulable: 0/3 nodes are available: .*Insufficient nvidia.com/gpu.* \(for 10m0\ds\)", message
    )


def test_dgd_failed_state_fails_at_once(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(dgd="failed")
    settings.ready_timeout = 60
    assert "invalid multinode spec" in fail_at(make_run(recipes[AGG], settings, apiserver), "ready", SETUP)


def test_download_job_failed(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(cache_job="failed")
    run = make_run(recipes[AGG], settings, apiserver)
    try:
        run.run_step("preflight")
        start = time.monotonic()
        with pytest.raises(StepFailed) as failure:
            run.run_step("model-cache")
        assert time.monotonic() - start < 3
        with pytest.raises(StageSkip, match="model-cache did not pass"):
            run.run_step("deploy")
    finally:
        run.close()
    message = str(failure.value)
    assert "model download Job model-download failed: Job has reached the specified backoff limit" in message
    assert "401 Client Error" in message and FAKE_TOKEN not in message
    files = all_files(settings.report_dir / "diagnostics" / "tiny_vllm_agg")
    assert "jobs.json" in files and all(FAKE_TOKEN not in t for t in files.values())
    assert not any(c.startswith("DynamoGraphDeployment/") for c in cluster.controller.created)


def test_missing_crd_says_install_the_operator(apiserver, recipes, settings):
    apiserver.cluster.remove(
        "apiextensions.k8s.io", "customresourcedefinitions", None, "dynamographdeployments.nvidia.com"
    )
    before = apiserver.cluster.namespaces()
    message = fail_at(make_run(recipes[AGG], settings, apiserver), "preflight")
    assert "dynamographdeployments.nvidia.com is not installed" in message and "install the Dynamo operator" in message
    assert apiserver.cluster.namespaces() == before, "preflight creates nothing"


def test_unserved_api_version_names_both(apiserver, recipes, settings):
    apiserver.cluster.add_crd(dgd_crd(versions=("v1alpha1",)))
    message = fail_at(make_run(recipes["tiny/sglang/agg-v1beta1"], settings, apiserver), "preflight")
    assert re.search(r"uses nvidia.com/v1beta1 .* serves only v1alpha1", message)


def test_not_enough_gpus_skips_with_needed_and_allocatable(recipes, settings):
    with serving(base_cluster(gpus_per_node=1, nodes=1)) as server:
        reason = fail_at(make_run(recipes["tiny/vllm/disagg"], settings, server), "preflight", exc=StageSkip)
    assert "needs 4 nvidia.com/gpu (2 in the largest pod) on H200 or H100 nodes" in reason
    assert "1 allocatable nvidia.com/gpu on 1 H200 node(s) (gpu-node-0: 1)" in reason
    assert "GPU products on this cluster: NVIDIA-H200" in reason


def test_gb200_nodes_do_not_count_as_b200(recipes, settings):
    from harness.run.k8s.readiness import product_matches

    assert product_matches("NVIDIA-H200", "H200") and product_matches("NVIDIA-H100-80GB-HBM3", "H100")
    assert not product_matches("NVIDIA-GB200", "B200")


def test_interrupted_run_still_tears_down(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario(dgd="never")
    settings.ready_timeout = 60
    armed = {"on": False, "calls": 0}

    def sleep(seconds: float) -> None:
        if armed["on"]:
            armed["calls"] += 1
            if armed["calls"] == 3:
                raise KeyboardInterrupt
        cluster.clock.sleep(seconds)

    run = make_run(recipes[AGG], settings, apiserver, sleep=sleep)
    try:
        run_steps(run, ["preflight", "model-cache", "deploy"])
        ns = run.context.namespace
        assert ns in cluster.namespaces()
        armed["on"] = True
        with pytest.raises(KeyboardInterrupt):
            run.run_step("ready")
    finally:
        run.close()  # what the plugin does on Ctrl-C
    assert cluster.get("nvidia.com", "dynamographdeployments", ns, "tiny-agg") is None
    run.close()  # idempotent
    assert [r.method for r in cluster.requests if r.plural == "dynamographdeployments" and r.name == "tiny-agg"].count(
        "DELETE"
    ) == 1


def test_strict_validation_rejects_typo_before_anything_is_created(cluster, apiserver, recipes, settings, tmp_path):
    tree = tmp_path / "recipes"
    shutil.copytree(Path(recipes[AGG].root), tree)
    deploy = tree / "tiny" / "vllm" / "agg" / "deploy.yaml"
    deploy.write_text(deploy.read_text().replace("  services:", "  sevices:", 1))
    from harness.recipe.discovery import discover

    recipe = {r.id: r for r in discover(tree)}[AGG]
    cluster.controller = scenario = Scenario()
    message = fail_at(make_run(recipe, settings, apiserver), "deploy", ["preflight", "model-cache"])
    assert 'strict decoding error: unknown field "spec.sevices"' in message
    assert not any(c.startswith(("ConfigMap/", "DynamoGraphDeployment/")) for c in scenario.created)


def test_reused_namespace_keeps_cache_and_skips_download(cluster, apiserver, recipes, settings):
    cluster.controller = scenario = Scenario()
    cluster.add_namespace("team-bench")
    settings.namespace = "team-bench"
    first = make_run(recipes[AGG], settings, apiserver)
    try:
        run_steps(first, ["preflight", "model-cache", "deploy", "ready"])
    finally:
        first.close()
    assert "team-bench" in cluster.namespaces(), "a namespace the user named stays"
    assert cluster.get("nvidia.com", "dynamographdeployments", "team-bench", "tiny-agg") is None, (
        "what the run made goes"
    )
    assert cluster.get("", "persistentvolumeclaims", "team-bench", "model-cache") is not None, "the cache stays"
    second = make_run(recipes[AGG], settings, apiserver)
    try:
        run_steps(second, ["preflight", "model-cache"])
    finally:
        second.close()
    assert scenario.created.count("Job/model-download") == 1


def test_named_namespace_that_did_not_exist_is_created_and_kept_for_the_cache(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario()
    settings.namespace = "scratch-1"
    run = make_run(recipes[AGG], settings, apiserver)
    try:
        run_steps(run, ["preflight", "model-cache"])
        assert "scratch-1" in cluster.namespaces()
    finally:
        run.close()
    assert (
        "scratch-1" in cluster.namespaces()
        and cluster.get("", "persistentvolumeclaims", "scratch-1", "model-cache") is not None
    )
    assert cluster.get("batch", "jobs", "scratch-1", "model-download") is None


def test_keep_leaves_the_namespace(cluster, apiserver, recipes, settings):
    cluster.controller = Scenario()
    settings.keep = True
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, apiserver, lines=lines)
    try:
        run_steps(run, ["preflight", "model-cache"])
    finally:
        run.close()
    assert run.context.namespace in cluster.namespaces()
    assert cluster.get("batch", "jobs", run.context.namespace, "model-download") is not None
    assert any(f"kubectl delete -n {run.context.namespace} " in line and "job/model-download" in line for line in lines)


def test_mocker_engine_on_a_cpu_cluster(recipes, settings, openai_url):
    cluster = base_cluster(nodes=0)  # CPU only
    cluster.controller = scenario = Scenario()
    server = FakeApiServer(cluster).start()
    settings.engine = "mocker"
    run = make_run(recipes["tiny/vllm/disagg"], settings, server, url=openai_url)
    try:
        run_steps(run, ["preflight", "model-cache", "deploy", "ready", "smoke-models"])
        dgd = cluster.get("nvidia.com", "dynamographdeployments", run.context.namespace, "tiny-disagg")
        prefill = dgd["spec"]["services"]["VllmPrefillWorker"]
        assert prefill["extraPodSpec"]["mainContainer"]["image"] == "nvcr.io/nvidia/ai-dynamo/dynamo-planner:1.4.0"
        assert prefill["replicas"] == 2 and "gpu" not in json.dumps(prefill["resources"])
    finally:
        run.close()
        server.stop()
    assert "Job/model-download" not in scenario.created
    assert not any(c.startswith("ComputeDomain/") for c in scenario.created)
    with pytest.raises(StageSkip, match="mocker"):
        GpuRun(recipes["tiny/vllm/disagg"], settings).baseline()


def test_secret_missing_everywhere_says_how_to_create_it(recipes, settings):
    cluster = base_cluster()
    cluster.remove("", "secrets", "default", "hf-token-secret")
    with serving(cluster) as server:
        message = fail_at(make_run(recipes[AGG], settings, server), "preflight")
    assert re.search(
        r"secret hf-token-secret .* export HF_TOKEN .*kubectl create secret generic hf-token-secret", message
    )


def test_no_default_storage_class(recipes, settings):
    cluster = base_cluster()
    cluster.remove("storage.k8s.io", "storageclasses", None, "standard")
    cluster.add_storage_class("slow", default=False)
    with serving(cluster) as server:
        assert "no default one (classes: slow)" in fail_at(make_run(recipes[AGG], settings, server), "preflight")


def test_token_from_runner_env_becomes_the_secret(cluster, apiserver, recipes, settings):
    cluster.remove("", "secrets", "default", "hf-token-secret")
    cluster.controller = Scenario()
    run = make_run(recipes[AGG], settings, apiserver, env={"HF_TOKEN": FAKE_TOKEN})
    try:
        run_steps(run, ["preflight", "model-cache"])
        secret = cluster.get("", "secrets", run.context.namespace, "hf-token-secret")
        import base64

        assert base64.b64decode(secret["data"]["HF_TOKEN"]).decode() == FAKE_TOKEN
    finally:
        run.close()


def test_baseline_regression_is_reported(cluster, apiserver, recipes, settings, openai_url, tmp_path):
    cluster.controller = Scenario()
    roots = {"baselines_root": tmp_path / "baselines", "history_root": tmp_path / "history"}
    first = make_run(recipes[AGG], settings, apiserver, url=openai_url, update_baselines=True, **roots)
    try:
        run_steps(first, SETUP + ["ready", "perf", "baseline"])
    finally:
        first.close()
    path = tmp_path / "baselines" / "gpu" / "h200" / "tiny" / "vllm" / "agg.json"
    baseline = json.loads(path.read_text())
    raised = json.dumps(baseline).replace('"median": 256.0', '"median": 400.0')
    assert raised != json.dumps(baseline), "the baseline records output throughput as a median"
    path.write_text(raised)
    second = make_run(recipes[AGG], settings, apiserver, url=openai_url, **roots)
    message = fail_at(second, "baseline", SETUP + ["ready", "perf"])
    assert "output_token_throughput.avg" in message and "400" in message


def test_local_perf_mode_runs_aiperf_through_the_port_forward(cluster, apiserver, recipes, settings, openai_url):
    cluster.controller = Scenario()
    settings.perf_mode = "local"
    seen: list[list[str]] = []

    def fake_aiperf(cmd: list[str], log: Path, timeout: float) -> SimpleNamespace:
        seen.append(cmd)
        out = Path(cmd[cmd.index("--artifact-dir") + 1])
        shutil.copy(EXPORT_FIXTURE, out / "profile_export_aiperf.json")
        log.write_text("done\n")
        return SimpleNamespace(returncode=0, timed_out=False)

    run = make_run(recipes[AGG], settings, apiserver, url=openai_url, perf_runner=fake_aiperf)
    try:
        run_steps(run, ["preflight", "model-cache", "deploy", "ready", "perf"])
    finally:
        run.close()
    cmd = seen[0]
    assert cmd[0] == "profile" and cmd[cmd.index("--url") + 1] == openai_url
    assert "http://tiny-agg-frontend:8000" not in " ".join(cmd) and cmd[cmd.index("--concurrency") + 1] == "4"
    assert run.result is not None and run.result.valid
    assert not any(c.startswith("Job/tiny-agg-perf") for c in cluster.controller.created)


def test_model_never_listed_by_frontend(cluster, apiserver, recipes, settings, openai_url, tmp_path):
    cluster.controller = Scenario()
    settings.model_timeout = 0.2
    run = make_run(recipes[AGG], settings, apiserver, url="http://127.0.0.1:9")  # nothing listens on the discard port
    assert "the frontend never listed model 'qwen3-0.6b'" in fail_at(run, "smoke-models", SETUP + ["ready"])


def test_served_model_and_release_come_from_the_recipe(recipes):
    from harness.run.k8s.facts import served_model_name

    assert served_model_name(recipes[AGG]) == SERVED
    assert recipes[AGG].release == "1.4.0"


def test_steps_without_stage_plumbing(cluster, apiserver, recipes, settings):
    """The steps alone are usable from a script: preflight reports what it found."""
    ctx = GpuContext.create(kube_for(apiserver.url), recipes[AGG], settings, progress=lambda _: None, env={})
    try:
        report = preflight.preflight(ctx)
    finally:
        teardown.teardown(ctx)
    assert report.dgd_versions == ["v1alpha1", "v1beta1"] and report.hardware == "H200"
    assert (report.gpus_needed, report.gpus_allocatable) == (2, 16)
    assert report.storage_class == "standard" and report.secrets == {"hf-token-secret": "copy"}
