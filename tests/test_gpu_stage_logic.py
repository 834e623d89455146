"""The gpu stage's pure logic behind the defects of issue 24, each against the real source it rests on: the
operator's terminal DGD reasons, the recipes' startup probes, the events that say why nothing comes up, the
export a benchmark Job wrote (found by a real shell), a download Job's revision, SIGTERM/SIGHUP unwinding.

The same defects on the real control plane: tests/k8s/test_defect_*.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client as k8s

from harness.recipe.discovery import discover
from harness.run.interrupt import Interrupted, SignalsInterrupt
from harness.run.k8s import benchmark
from harness.run.k8s.cache import job_revision
from harness.run.k8s.client import Kube
from harness.run.k8s.context import GpuContext
from harness.run.k8s.facts import plain_docs
from harness.run.k8s.readiness import dgd_readiness, event_problems, startup_budget
from harness.run.k8s.rollout import READY_MARGIN, ready_timeout
from harness.run.k8s.settings import DeploySettings
from harness.run.stage import StepFailed

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "k8s" / "recipes"


def _recipes(root: Path) -> dict:
    return {r.id: r for r in discover(root)}


def _ctx(recipe, settings: DeploySettings) -> GpuContext:
    # a client that is never called: these steps read the recipe and the runner's files only
    return GpuContext.create(Kube(k8s.ApiClient()), recipe, settings, progress=lambda _l: None, env={})


# --- 10: the operator's terminal reasons ------------------------------------------------------------------------


def _failed_dgd(reason: str) -> dict:
    """A DGD status as workloadProgramResult.Fail writes it (dgd_workload_program.go): state failed, Ready=False
    with the reason, observedGeneration of the condition only."""
    return {
        "metadata": {"generation": 1},
        "status": {
            "state": "failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": reason, "message": "m", "observedGeneration": 1}
            ],
        },
    }


@pytest.mark.parametrize("reason", ["unsupported_workload_provider", "selected_workload_provider_unavailable"])
def test_the_real_operators_terminal_reasons_are_final(reason):
    assert dgd_readiness(_failed_dgd(reason)).final


@pytest.mark.parametrize("reason", ["failed_to_reconcile_the_resources", "ValidationFailed"])
def test_a_retried_failure_and_an_event_reason_are_not_final(reason):
    readiness = dgd_readiness(_failed_dgd(reason))
    assert readiness.failed and not readiness.final


# --- 8: ready_timeout from the recipes' own startup probes -----------------------------------------------------


def test_startup_budget_is_initial_delay_plus_threshold_times_period():
    probe = {"startupProbe": {"initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 360}}
    assert startup_budget([probe, {}]) == 3630
    assert startup_budget([{"startupProbe": {}}]) == 30  # the API's defaults: 3 x 10 s
    assert startup_budget([{}], {"periodSeconds": 10, "failureThreshold": 720}) == 7200


def test_every_shipped_recipe_waits_at_least_as_long_as_its_startup_probes_allow(tmp_path):
    """45 min was below llama-3-70b's 1 h and deepseek-r1's 2 h: the run gave up on a model still loading."""
    checked = 0
    for recipe in _recipes(ROOT / "recipes").values():
        if recipe.deploy is None:
            continue
        docs = plain_docs(recipe.deploy.documents)
        probes = [p for d in docs for c in _containers(d) if isinstance(p := c.get("startupProbe"), dict)]
        longest = max(
            (
                float(p.get("initialDelaySeconds") or 0)
                + float(p.get("failureThreshold") or 3) * float(p.get("periodSeconds") or 10)
                for p in probes
            ),
            default=0.0,
        )
        wait = ready_timeout(_ctx(recipe, DeploySettings(report_dir=tmp_path)), docs)
        assert wait >= longest + READY_MARGIN, (recipe.id, wait, longest)
        checked += bool(probes)
    assert checked >= 5, "the catalogue has recipes with startup probes"
    (llama,) = [r for r in _recipes(ROOT / "recipes").values() if r.id == "llama-3-70b/vllm/agg"]
    assert ready_timeout(_ctx(llama, DeploySettings(report_dir=tmp_path)), plain_docs(llama.deploy.documents)) > 3600


def test_an_explicit_ready_timeout_wins(tmp_path):
    recipe = _recipes(TINY)["tiny/vllm/agg"]
    ctx = _ctx(recipe, DeploySettings(report_dir=tmp_path, ready_timeout=60))
    assert ready_timeout(ctx, plain_docs(recipe.deploy.documents)) == 60


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec") or {}
    out = []
    for comp in spec.get("components") or []:
        out += ((comp.get("podTemplate") or {}).get("spec") or {}).get("containers") or []
    for svc in (spec.get("services") or {}).values():
        main = ((svc or {}).get("extraPodSpec") or {}).get("mainContainer")
        out += [main] if isinstance(main, dict) else []
    return out


# --- 9: events that say why nothing comes up -------------------------------------------------------------------


def _event(uid: str, kind: str, name: str, reason: str, message: str, count: int = 1) -> dict:
    return {
        "metadata": {"uid": uid, "name": f"{name}.{uid}"},
        "involvedObject": {"kind": kind, "name": name},
        "type": "Warning",
        "reason": reason,
        "message": message,
        "count": count,
    }


QUOTA = (
    'pods "agg-worker-5d9c-x" is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=4, '
    "used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=2"
)
PSA = (
    'pods "agg-worker-5d9c-x" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
)


def test_quota_and_podsecurity_fail_at_once_with_the_events_message():
    ours = lambda kind, name: name.startswith("agg-worker")  # noqa: E731
    events = [
        _event("1", "ReplicaSet", "agg-worker-5d9c", "FailedCreate", QUOTA),
        _event("2", "ReplicaSet", "agg-worker-5d9c", "FailedCreate", PSA),
        _event("3", "Pod", "agg-worker-5d9c-y", "FailedMount", 'configmap "x" not found'),
    ]
    found = event_problems(events, ours, {})
    assert [(p.reason, p.permanent) for p in found] == [
        ("FailedCreate", True),
        ("FailedCreate", True),
        ("FailedMount", False),
    ]
    assert "exceeded quota: gpu-quota" in found[0].describe()


def test_events_of_other_runs_and_of_earlier_runs_are_not_this_runs():
    events = [
        _event("1", "ReplicaSet", "other-worker-1", "FailedCreate", QUOTA),
        _event("2", "ReplicaSet", "agg-worker-1", "FailedCreate", QUOTA, count=3),
    ]
    ours = lambda kind, name: name.startswith("agg-")  # noqa: E731
    assert event_problems(events, ours, {"2": 3}) == []  # seen with this count before the step started
    assert [p.name for p in event_problems(events, ours, {"2": 2})] == ["agg-worker-1"]  # it happened again


def test_validation_failed_is_an_event_that_fails_at_once():
    (p,) = event_problems(
        [_event("9", "DynamoGraphDeployment", "agg", "ValidationFailed", "spec.components[0]: bad")],
        lambda kind, name: (kind, name) == ("DynamoGraphDeployment", "agg"),
        {},
    )
    assert p.permanent and "ValidationFailed: spec.components[0]: bad" in p.describe()


# --- 1: the export of this run's benchmark Job only ------------------------------------------------------------


def _write_export(path: Path, value: float, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"v": value}))
    os.utime(path, (mtime, mtime))


def test_the_fetch_script_takes_the_newest_export_written_since_the_job_started(tmp_path):
    """Run by a real sh: an export of an earlier run (or another recipe's, on the same PVC) is never this run's."""
    start = int(time.time())
    _write_export(tmp_path / "other-recipe" / benchmark.EXPORT_FILE, 111, start - 3600)
    _write_export(tmp_path / "mine" / "old" / benchmark.EXPORT_FILE, 222, start - 600)
    _write_export(tmp_path / "mine" / "new" / benchmark.EXPORT_FILE, 333, start + 2)
    run = lambda roots, since: subprocess.run(  # noqa: E731
        ["sh", "-c", benchmark.export_script(roots, since)], capture_output=True, text=True, timeout=30
    )
    out = run([str(tmp_path)], start)
    assert out.returncode == 0 and json.loads(out.stdout) == {"v": 333}
    late = run([str(tmp_path / "other-recipe")], start)
    assert late.returncode == 3 and "written since the Job started" in late.stderr


def test_the_artifact_dir_is_read_from_the_jobs_env():
    env = [{"name": "ARTIFACT_DIR", "value": "/model-cache/perf/qwen3"}, {"name": "X", "valueFrom": {}}]
    assert benchmark.expand_env("$ARTIFACT_DIR", env) == "/model-cache/perf/qwen3"
    assert benchmark.expand_env("$(ARTIFACT_DIR)/a", env) == "/model-cache/perf/qwen3/a"
    assert benchmark.expand_env("${X}", env) == "${X}"  # not a plain value: left as written (all mounts searched)


# --- 5: a download Job's revision ------------------------------------------------------------------------------


def test_a_download_jobs_revision_is_what_it_fetches():
    recipe = _recipes(ROOT / "recipes")["qwen3-32b/vllm/agg-round-robin"]
    (job,) = [d for f in recipe.model_cache_files for d in plain_docs(f.documents) if d.get("kind") == "Job"]
    assert job_revision(job) == "Qwen/Qwen3-32B@9216db5781bf21249d130ec9da846c4624c16137"
    annotated = {"metadata": {"annotations": {"recipe-harness.dynamo.nvidia.com/model-revision": "m@1"}}}
    assert job_revision(annotated) == "m@1"


# --- 6: --perf-mode local --repeats N --------------------------------------------------------------------------


def test_a_failed_local_aiperf_repeat_fails_instead_of_reading_the_previous_export(tmp_path):
    recipe = _recipes(TINY)["tiny/vllm/agg"]
    ctx = _ctx(recipe, DeploySettings(report_dir=tmp_path, perf_mode="local", repeats=3))
    ctx.base_url = "http://127.0.0.1:9"  # the frontend is not asked: the runner below stands in for aiperf
    calls: list[Path] = []

    def aiperf(args: list[str], log: Path, timeout: float):
        folder = Path(args[args.index("--artifact-dir") + 1])
        calls.append(folder)
        assert not any(folder.iterdir()), "each repeat starts from an empty artifact folder"
        log.write_text("")
        if len(calls) == 1:
            (folder / benchmark.EXPORT_FILE).write_text("{}")
            return SimpleNamespace(returncode=0, timed_out=False)
        return SimpleNamespace(returncode=1, timed_out=False)

    first = benchmark.perf_local(ctx, aiperf, 1, 3)
    assert (first / benchmark.EXPORT_FILE).is_file()
    with pytest.raises(StepFailed, match=r"local aiperf exited 1 \(run 2 of 3"):
        benchmark.perf_local(ctx, aiperf, 2, 3)
    assert calls[0] != calls[1]


# --- 4: SIGTERM and SIGHUP unwind like Ctrl-C ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_raise_keyboard_interrupt_and_the_old_handlers_come_back(sig):
    before = signal.getsignal(sig)
    guard = SignalsInterrupt()
    guard.install()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), sig)
            time.sleep(1)  # the handler runs between bytecodes, before this returns
        assert isinstance(caught.value, Interrupted) and caught.value.signum == sig
        guard.shield()
        os.kill(os.getpid(), sig)  # ignored while the teardown runs
        time.sleep(0.05)
    finally:
        guard.restore()
    assert signal.getsignal(sig) == before


def test_a_gpu_run_holds_the_handlers_only_while_it_is_open(tmp_path):
    from harness.run.k8s.run import GpuRun

    recipe = _recipes(TINY)["tiny/vllm/agg"]
    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a known handler before the run, whatever ran earlier
    try:
        run = GpuRun(recipe, DeploySettings(report_dir=tmp_path), kube=Kube(k8s.ApiClient()), env={})
        run._ensure_context()
        try:
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        finally:
            run.close()  # the context never reached a namespace: teardown has nothing to delete
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, outer)
