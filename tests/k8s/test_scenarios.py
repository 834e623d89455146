"""The gpu stage against the real control plane (tests/k8s/conftest.py), through the real kubernetes client: one test
per scenario of issue 6. What the containers do is simulated by kwok stages, what the Dynamo operator does by the
DGD controller stand-in (tests/k8s/simulations.py); every object, admission, controller and message is the real
control plane's."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.recipe.discovery import discover
from harness.run.k8s import preflight, teardown
from harness.run.k8s.context import GpuContext
from harness.run.k8s.run import GpuRun
from harness.run.k8s.stage import GpuStage
from harness.run.stage import StageSkip, StepFailed

from .conftest import (
    AGG,
    EXPORT_FIXTURE,
    FAKE_TOKEN,
    NOT_FOUND,
    SERVED,
    SETUP,
    RecordingSuite,
    cpu_node,
    export_logs,
    fail_at,
    gpu_node,
    make_run,
    run_steps,
    storage_class,
    wait_for,
)
from .simulations import REASON_UNSUPPORTED_PROVIDER, q

WORKERS = "nvidia.com/dynamo-component-type"
WRITES = ("create", "patch", "update")


def all_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_happy_path(k8s, recipes, settings, openai_url, tmp_path, capsys):
    ns = k8s.namespace("rh-tiny", create=False)  # the model's own namespace: the harness creates it
    export_logs(k8s, ns)
    baselines = tmp_path / "baselines"
    RecordingSuite.calls = []
    lines: list[str] = []
    run = make_run(
        recipes[AGG],
        settings,
        k8s,
        url=openai_url,
        lines=lines,
        baselines_root=baselines,
        history_root=tmp_path / "history",
        update_baselines=True,
    )
    steps = [s.name for s in GpuStage(smoke=RecordingSuite).steps(recipes[AGG])]
    assert steps == ["preflight", "model-cache", "deploy", "ready", "smoke-models", "smoke-chat", "perf", "baseline"]
    try:
        run_steps(run, steps)
    finally:
        run.close()
    assert run.context.namespace == ns, "every run of a model uses the model's namespace: its cache lives there"
    assert RecordingSuite.calls == ["models", "chat"]
    assert run.suite.kw["router_mode"] == "round-robin" and callable(run.suite.kw["request_counts"])
    assert run.result is not None and run.result.valid
    # The cache before anything else, the ConfigMap before the DGD although deploy.yaml lists the DGD first.
    created = [
        f"{r.resource}/{r.name}"
        for r in k8s.requests(ns)
        if r.verb in ("create", "patch") and not r.dry_run and r.code in (200, 201)
        and r.resource in ("secrets", "persistentvolumeclaims", "jobs", "configmaps", "dynamographdeployments")
    ]  # fmt: skip
    first = list(dict.fromkeys(created))
    assert first == [
        "secrets/hf-token-secret",
        "persistentvolumeclaims/model-cache",
        "jobs/model-download",
        "configmaps/tiny-agg-config",
        "dynamographdeployments/tiny-agg",
        "jobs/tiny-agg-perf",
    ], created
    export = settings.report_dir / "perf" / "tiny_vllm_agg" / "profile_export_aiperf.json"
    assert json.loads(export.read_text())["output_token_throughput"]["avg"] == 256.0
    assert (baselines / "gpu" / "h200" / "tiny" / "vllm" / "agg.json").is_file()
    assert k8s.get(f"/api/v1/namespaces/{ns}") is not None, "the namespace stays: it holds the model cache"
    assert k8s.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/model-cache") is not None, "the filled cache stays"
    assert k8s.leftovers(ns) == [], "teardown removes everything else"
    assert not (settings.report_dir / "diagnostics").exists()
    assert any("ready: tiny-agg successful" in line for line in lines)
    # Every write of a manifest was a strict server-side apply, dry run first.
    dgd_writes = [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb == "patch"]
    assert dgd_writes[0].dry_run and not dgd_writes[-1].dry_run
    for r in k8s.requests(ns):
        if r.verb == "patch" and r.resource in ("configmaps", "dynamographdeployments", "jobs"):
            # a shared Job's holder mark is applied by the run's own manager, recipe-harness-<run id> (run/k8s/shared.py)
            manager = r.query.get("fieldManager", "")
            assert manager.startswith("recipe-harness") and r.query.get("fieldValidation") == "Strict", r.uri
    out = capsys.readouterr()
    assert FAKE_TOKEN not in out.out + out.err + "\n".join(lines)


def test_dgd_never_ready_times_out_with_redacted_diagnostics(k8s, recipes, settings, capsys):
    ns = k8s.namespace()
    settings.namespace = ns
    settings.ready_timeout = 8
    k8s.runtime.never_ready(ns, [k8s.runtime.select(WORKERS, "worker")])
    log = f"INFO starting worker\nDEBUG env HF_TOKEN={FAKE_TOKEN}\nWARN still loading weights\n"
    k8s.runtime.logs(ns, "main", k8s.write("worker.log", log))
    lines: list[str] = []
    message = fail_at(make_run(recipes[AGG], settings, k8s, lines=lines), "ready", SETUP)
    assert "not ready after" in message and "state=pending" in message and "pods 1/2 ready" in message
    diag = settings.report_dir / "diagnostics" / "tiny_vllm_agg"
    files = all_files(diag)
    assert {"summary.txt", "dgd.json", "events.txt", "pods.txt"} <= set(files)
    assert json.loads(files["dgd.json"])["status"]["state"] == "pending"
    assert "Readiness probe failed" in files["events.txt"]
    worker_logs = [text for name, text in files.items() if name.startswith("logs/tiny-agg-vllmdecodeworker-")]
    assert worker_logs and "still loading weights" in worker_logs[0] and "HF_TOKEN=<redacted>" in worker_logs[0]
    assert any(n.startswith("pods/tiny-agg-vllmdecodeworker-") and n.endswith(".describe.txt") for n in files)
    assert str(diag) in message
    out = capsys.readouterr()
    for name, text in [*files.items(), ("message", message), ("stdout", out.out), ("stderr", out.err),
                       ("progress", "\n".join(lines))]:  # fmt: skip
        assert FAKE_TOKEN not in text, f"token leaked into {name}"
    wait_for(lambda: k8s.dgd(ns, "tiny-agg") is None, 30, "the DGD deleted (the operator drops its finalizer)")


def test_image_pull_backoff_fails_fast(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0"
    k8s.runtime.image_pull(ns, image, NOT_FOUND.format(image=image))
    run = make_run(recipes[AGG], settings, k8s)
    run_steps(run, SETUP)
    start = time.monotonic()
    message = fail_at(run, "ready")
    elapsed = time.monotonic() - start
    assert elapsed < settings.image_pull_grace + 10, f"took {elapsed:.1f}s of a {settings.ready_timeout:.0f}s timeout"
    assert re.search(
        rf"pod tiny-agg-[\w-]+: container main cannot pull image {re.escape(image)} \(ErrImagePull\)", message
    )
    assert "not found" in message, "a tag the registry does not have fails at once, without the grace"


def test_crash_loop_fails_fast_with_last_log_lines(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.runtime.crash_loop(ns, [k8s.runtime.select(WORKERS, "worker")], restarts=3)
    previous = k8s.write("previous.log", f"ValueError: tensor parallel size 2 > 1 GPUs\nHF_TOKEN={FAKE_TOKEN}\n")
    k8s.runtime.logs(ns, "main", k8s.write("current.log", "starting\n"), previous=previous)
    message = fail_at(make_run(recipes[AGG], settings, k8s), "ready", SETUP)
    assert re.search(r"crash-looping \(\d+ restarts, last exit code 1, Error\)", message), message
    assert "tensor parallel size 2 > 1 GPUs" in message and FAKE_TOKEN not in message


def test_unschedulable_fails_after_grace(k8s, recipes, settings):
    """Another team's pods hold every GPU (the real scheduler places them); ours cannot be placed."""
    ns, other = k8s.namespace(), k8s.namespace()
    settings.namespace = ns
    for i in range(2):
        k8s.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"train-{i}"},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "example.com/train:1",
                            "resources": {"limits": {"nvidia.com/gpu": "8"}},
                        }
                    ]
                },
            },
            other,
        )
    wait_for(
        lambda: all((p.get("spec") or {}).get("nodeName") for p in k8s.pods(other)), 30, "the other team scheduled"
    )
    message = fail_at(make_run(recipes[AGG], settings, k8s), "ready", SETUP)
    assert re.search(r"unschedulable: 0/3 nodes are available: .*Insufficient nvidia\.com/gpu", message), message


def test_dgd_failed_state_surfaces_the_operators_message(k8s, recipes, settings):
    """The operator's terminal failure (unsupported_workload_provider): the run fails with its message."""
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.operator_script(ns, terminal=(REASON_UNSUPPORTED_PROVIDER, 'workload provider "lws" is not supported'))
    assert 'workload provider "lws" is not supported' in fail_at(make_run(recipes[AGG], settings, k8s), "ready", SETUP)


def test_download_job_failed(k8s, recipes, settings):
    """The download container exits 1 at every try: the real Job controller gives up after backoffLimit."""
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.runtime.job_fails(ns, "model-download")
    log = (
        "401 Client Error: Unauthorized for url https://huggingface.co/api/models/Qwen/Qwen3-0.6B\n"
        f"token was {FAKE_TOKEN}\nAuthorization: Bearer {FAKE_TOKEN}\n"
    )
    k8s.runtime.logs(ns, "download", k8s.write("download.log", log))
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run.run_step("preflight")
        with pytest.raises(StepFailed) as failure:
            run.run_step("model-cache")
        with pytest.raises(StageSkip, match="model-cache did not pass"):
            run.run_step("deploy")
    finally:
        run.close()
    message = str(failure.value)
    assert "model download Job model-download failed: Job has reached the specified backoff limit" in message
    assert "401 Client Error" in message and FAKE_TOKEN not in message
    files = all_files(settings.report_dir / "diagnostics" / "tiny_vllm_agg")
    assert "jobs.json" in files and all(FAKE_TOKEN not in t for t in files.values())
    assert not [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb in WRITES]


def test_missing_crd_says_install_the_operator(k8s, recipes, settings):
    k8s.remove_crd("dynamographdeployments.nvidia.com")
    before = sorted(n["metadata"]["name"] for n in k8s.api.list("/api/v1/namespaces"))
    message = fail_at(make_run(recipes[AGG], settings, k8s), "preflight")
    assert "dynamographdeployments.nvidia.com is not installed" in message and "install the Dynamo operator" in message
    after = sorted(n["metadata"]["name"] for n in k8s.api.list("/api/v1/namespaces"))
    assert after == before, "preflight creates nothing"


def test_unserved_api_version_names_both(k8s, recipes, settings):
    """The cluster's DGD CRD serves only v1alpha1 (an older operator): a v1beta1 recipe is refused by name."""
    k8s.serve_only("dynamographdeployments.nvidia.com", ["v1alpha1"])
    message = fail_at(make_run(recipes["tiny/sglang/agg-v1beta1"], settings, k8s), "preflight")
    assert re.search(r"uses nvidia.com/v1beta1 .* serves only v1alpha1", message), message


def test_not_enough_gpus_skips_with_needed_and_allocatable(k8s, recipes, settings):
    k8s.replace_nodes([gpu_node("gpu-node-0", "H200", gpus=1)])
    reason = fail_at(make_run(recipes["tiny/vllm/disagg"], settings, k8s), "preflight", exc=StageSkip)
    assert "needs 4 nvidia.com/gpu (2 in the largest pod) on H200 or H100 nodes" in reason
    assert "1 allocatable nvidia.com/gpu on 1 H200 node(s) (gpu-node-0: 1)" in reason
    assert "GPU products on this cluster: NVIDIA-H200" in reason


def test_gb200_nodes_do_not_count_as_b200():
    from harness.run.k8s.readiness import product_matches

    assert product_matches("NVIDIA-H200", "H200") and product_matches("NVIDIA-H100-80GB-HBM3", "H100")
    assert not product_matches("NVIDIA-GB200", "B200")


def test_interrupted_run_still_tears_down(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.runtime.never_ready(ns, [k8s.runtime.select(WORKERS, "worker")])
    armed = {"on": False, "calls": 0}

    def sleep(seconds: float) -> None:
        if armed["on"]:
            armed["calls"] += 1
            if armed["calls"] == 3:
                raise KeyboardInterrupt
        time.sleep(seconds)

    run = make_run(recipes[AGG], settings, k8s, sleep=sleep)
    try:
        run_steps(run, SETUP)
        armed["on"] = True
        with pytest.raises(KeyboardInterrupt):
            run.run_step("ready")
    finally:
        run.close()  # what the plugin does on Ctrl-C
    run.close()  # idempotent
    wait_for(lambda: k8s.dgd(ns, "tiny-agg") is None, 30, "the DGD deleted (the stand-in drops its finalizer)")
    deletes = [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb == "delete"]
    assert len(deletes) == 1, [str(r) for r in deletes]


def test_strict_validation_rejects_typo_before_anything_is_created(k8s, recipes, settings, tmp_path):
    ns = k8s.namespace()
    settings.namespace = ns
    tree = tmp_path / "recipes"
    shutil.copytree(Path(recipes[AGG].root), tree)
    deploy = tree / "tiny" / "vllm" / "agg" / "deploy.yaml"
    deploy.write_text(deploy.read_text().replace("  services:", "  sevices:", 1))
    recipe = {r.id: r for r in discover(tree)}[AGG]
    message = fail_at(make_run(recipe, settings, k8s), "deploy", ["preflight", "model-cache"])
    # The API server's own words for server-side apply (structured-merge-diff), not the decoder's "unknown field".
    assert ".spec.sevices: field not declared in schema" in message, message
    made = [r for r in k8s.requests(ns) if r.resource in ("configmaps", "dynamographdeployments") and not r.dry_run
            and r.verb in ("create", "patch")]  # fmt: skip
    assert made == [], [str(r) for r in made]
    # The 500 it comes with is permanent: asked once, not retried as a server fault.
    tried = [r for r in k8s.requests(ns) if r.resource == "dynamographdeployments" and r.verb == "patch"]
    assert len(tried) == 1, [str(r) for r in tried]


def test_reused_namespace_keeps_cache_and_skips_download(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    first = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(first, [*SETUP, "ready"])
    finally:
        first.close()
    assert k8s.get(f"/api/v1/namespaces/{ns}") is not None, "a namespace the user named stays"
    wait_for(lambda: k8s.dgd(ns, "tiny-agg") is None, 30, "what the run made goes")
    assert k8s.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/model-cache") is not None, "the cache stays"
    second = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(second, ["preflight", "model-cache"])
    finally:
        second.close()
    # the Job's writes as a manifest (a run's holder mark is applied by recipe-harness-<run id>: run/k8s/shared.py)
    job_creates = [r for r in k8s.requests(ns) if r.resource == "jobs" and r.name == "model-download"
                   and r.verb in ("create", "patch") and not r.dry_run
                   and r.query.get("fieldManager", "recipe-harness") == "recipe-harness"]  # fmt: skip
    assert len(job_creates) == 1, [str(r) for r in job_creates]


def test_named_namespace_that_did_not_exist_is_created_and_kept_for_the_cache(k8s, recipes, settings):
    ns = k8s.namespace(create=False)
    settings.namespace = ns
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, ["preflight", "model-cache"])
        assert k8s.get(f"/api/v1/namespaces/{ns}") is not None
    finally:
        run.close()
    assert k8s.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/model-cache") is not None
    wait_for(lambda: k8s.get(f"/apis/batch/v1/namespaces/{ns}/jobs/model-download") is None, 30, "the Job deleted")


def test_keep_leaves_the_namespace(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    settings.keep = True
    lines: list[str] = []
    run = make_run(recipes[AGG], settings, k8s, lines=lines)
    try:
        run_steps(run, ["preflight", "model-cache"])
    finally:
        run.close()
    assert k8s.get(f"/apis/batch/v1/namespaces/{ns}/jobs/model-download") is not None
    assert any(f"kubectl delete -n {ns} " in line and "job/model-download" in line for line in lines)


def test_mocker_engine_on_a_cpu_cluster(k8s, recipes, settings, openai_url):
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.replace_nodes([cpu_node()])
    settings.engine = "mocker"
    run = make_run(recipes["tiny/vllm/disagg"], settings, k8s, url=openai_url)
    try:
        run_steps(run, [*SETUP, "ready", "smoke-models"])
        dgd = k8s.dgd(ns, "tiny-disagg")
        prefill = dgd["spec"]["services"]["VllmPrefillWorker"]
        assert prefill["extraPodSpec"]["mainContainer"]["image"] == "nvcr.io/nvidia/ai-dynamo/dynamo-planner:1.4.0"
        assert prefill["replicas"] == 2 and "gpu" not in json.dumps(prefill["resources"])
    finally:
        run.close()
    made = {r.resource for r in k8s.requests(ns) if r.verb in ("create", "patch") and not r.dry_run}
    assert "jobs" not in made and "computedomains" not in made
    with pytest.raises(StageSkip, match="mocker"):
        GpuRun(recipes["tiny/vllm/disagg"], settings).baseline()


def test_secret_missing_everywhere_says_how_to_create_it(k8s, recipes, settings, default_secret):
    default_secret(None)
    settings.namespace = k8s.namespace()
    message = fail_at(make_run(recipes[AGG], settings, k8s), "preflight")
    assert re.search(
        r"secret hf-token-secret .* export HF_TOKEN .*kubectl create secret generic hf-token-secret", message
    )


def test_no_default_storage_class(k8s, recipes, settings):
    settings.namespace = k8s.namespace()
    k8s.replace_storage_classes([storage_class("slow", default=False)])
    assert "no default one (classes: slow)" in fail_at(make_run(recipes[AGG], settings, k8s), "preflight")


def test_token_from_runner_env_becomes_the_secret(k8s, recipes, settings, default_secret):
    default_secret(None)
    ns = k8s.namespace()
    settings.namespace = ns
    run = make_run(recipes[AGG], settings, k8s, env={"HF_TOKEN": FAKE_TOKEN})
    try:
        run_steps(run, ["preflight", "model-cache"])
        secret = k8s.get(f"/api/v1/namespaces/{q(ns)}/secrets/hf-token-secret")
        assert base64.b64decode(secret["data"]["HF_TOKEN"]).decode() == FAKE_TOKEN
    finally:
        run.close()


def test_baseline_regression_is_reported(k8s, recipes, settings, openai_url, tmp_path):
    ns = k8s.namespace()
    settings.namespace = ns
    export_logs(k8s, ns)
    roots = {"baselines_root": tmp_path / "baselines", "history_root": tmp_path / "history"}
    first = make_run(recipes[AGG], settings, k8s, url=openai_url, update_baselines=True, **roots)
    try:
        run_steps(first, [*SETUP, "ready", "perf", "baseline"])
    finally:
        first.close()
    path = tmp_path / "baselines" / "gpu" / "h200" / "tiny" / "vllm" / "agg.json"
    baseline = json.loads(path.read_text())
    raised = json.dumps(baseline).replace('"median": 256.0', '"median": 400.0')
    assert raised != json.dumps(baseline), "the baseline records output throughput as a median"
    path.write_text(raised)
    second = make_run(recipes[AGG], settings, k8s, url=openai_url, **roots)
    message = fail_at(second, "baseline", [*SETUP, "ready", "perf"])
    assert "output_token_throughput.avg" in message and "400" in message


def test_local_perf_mode_runs_aiperf_through_the_port_forward(k8s, recipes, settings, openai_url):
    ns = k8s.namespace()
    settings.namespace = ns
    settings.perf_mode = "local"
    seen: list[list[str]] = []

    def local_aiperf(cmd: list[str], log: Path, timeout: float) -> SimpleNamespace:
        """AIPerf's part (it would load the tokenizer from the Hub): writes the recorded export."""
        seen.append(cmd)
        out = Path(cmd[cmd.index("--artifact-dir") + 1])
        shutil.copy(EXPORT_FIXTURE, out / "profile_export_aiperf.json")
        log.write_text("done\n")
        return SimpleNamespace(returncode=0, timed_out=False)

    run = make_run(recipes[AGG], settings, k8s, url=openai_url, perf_runner=local_aiperf)
    try:
        run_steps(run, [*SETUP, "ready", "perf"])
    finally:
        run.close()
    cmd = seen[0]
    assert cmd[0] == "profile" and cmd[cmd.index("--url") + 1] == openai_url
    assert "http://tiny-agg-frontend:8000" not in " ".join(cmd) and cmd[cmd.index("--concurrency") + 1] == "4"
    assert run.result is not None and run.result.valid
    assert not [r for r in k8s.requests(ns) if r.resource == "jobs" and r.name == "tiny-agg-perf"]


def test_model_never_listed_by_frontend(k8s, recipes, settings):
    settings.namespace = k8s.namespace()
    settings.model_timeout = 0.5
    run = make_run(recipes[AGG], settings, k8s, url="http://127.0.0.1:9")  # nothing listens on the discard port
    assert "the frontend never listed model 'qwen3-0.6b'" in fail_at(run, "smoke-models", [*SETUP, "ready"])


def test_served_model_and_release_come_from_the_recipe(recipes):
    from harness.run.k8s.facts import served_model_name

    assert served_model_name(recipes[AGG]) == SERVED
    assert recipes[AGG].release == "1.4.0"


def test_steps_without_stage_plumbing(k8s, recipes, settings):
    """The steps alone are usable from a script: preflight reports what it found on the cluster."""
    settings.namespace = k8s.namespace()
    ctx = GpuContext.create(k8s.kube, recipes[AGG], settings, progress=lambda _: None, env={})
    try:
        report = preflight.preflight(ctx)
    finally:
        teardown.teardown(ctx)
    assert report.dgd_versions == ["v1alpha1", "v1beta1"] and report.hardware == "H200"
    assert (report.gpus_needed, report.gpus_allocatable) == (2, 16)
    assert report.storage_class == "standard" and report.secrets == {"hf-token-secret": "copy"}
