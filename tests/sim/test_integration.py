"""The real stack on this machine: a recipe comes up, is probed, and leaves no process or port behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.run.sim.local import DeployError, LocalDeployment, group_usage
from harness.run.sim.modeldir import ensure_model_dir
from harness.run.sim.plan import build_plan
from harness.run.sim.stage import STEPS, SimStage
from harness.run.stage import SimOptions, StageOptions, StageSkip, StepFailed

REPO = Path(__file__).parent.parent.parent


def listening_ports() -> set[int]:
    """Ports some socket LISTENs on (TIME_WAIT leftovers of closed connections do not count)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def assert_nothing_left(pgids: set[int], ports: list[int]) -> None:
    assert group_usage(pgids).processes == 0, f"processes left in groups {pgids}"
    busy = sorted(set(ports) & listening_ports())
    assert not busy, f"ports still listening: {busy}"


def run_steps(stage: SimStage, run, steps: list[str]) -> dict[str, str]:
    outcome = {}
    for step in steps:
        try:
            run.run_step(step)
            outcome[step] = "passed"
        except StageSkip as e:
            outcome[step] = f"skipped: {e}"
        except (StepFailed, AssertionError) as e:
            outcome[step] = f"failed: {e}"
    return outcome


@pytest.fixture
def options(tmp_path, sim_cache) -> StageOptions:
    return StageOptions(
        report_dir=tmp_path / "report",
        baselines_root=tmp_path / "baselines",
        history_root=tmp_path / "history",
        sim=SimOptions(cache_dir=sim_cache),
    )


def test_stage_smoke_passes_and_a_benchmark_asking_for_the_wrong_model_fails(broken_recipe, options):
    recipe = broken_recipe("tiny/vllm/perf-wrong-model")
    stage = SimStage()
    assert stage.available(options) is None
    run = stage.open(recipe, options)
    try:
        # the conformance step depends on a conformance env; tests/test_conformance.py covers it
        outcome = run_steps(stage, run, [s for s in STEPS if s != "conformance"])
        pgids, ports = set(run.deployment.pids()), run.deployment.ports()
    finally:
        run.close()
    assert [s for s, o in outcome.items() if o != "passed"] == ["perf", "compare", "baseline"], outcome
    assert "requests model 'Tiny/Model-Typo' but the deployment serves 'tiny-model'" in outcome["perf"]
    assert outcome["compare"] == "skipped: perf did not pass"
    assert outcome["baseline"].startswith("skipped: no valid perf result")
    assert_nothing_left(pgids, ports)
    result = json.loads((run.report_dir / "result.json").read_text())
    assert result["steps"]["smoke-load-spread"]["outcome"] == "passed"
    assert result["usage"]["after_deploy"]["processes"] == 3
    plan = json.loads((run.report_dir / "plan.json").read_text())
    assert plan["expected_instances"] == {"backend": 2}
    assert (run.report_dir / "logs" / "frontend.log").exists()  # kept: the run failed


def test_a_slowdown_fails_only_against_the_same_run_reference_never_the_stored_baseline(fixture_recipe, options):
    """The stored baseline was measured elsewhere: a difference from it is a warning. The timing verdict
    is the compare step's, against the same recipe at normal speed run beside it, confirmed on fresh stacks."""
    from harness.run.sim.stage import TimingWarning

    recipe = fixture_recipe("tiny/vllm/agg-two-workers")
    stage = SimStage()
    record = stage.open(recipe, replace(options, update_baselines=True))
    try:
        outcome = run_steps(stage, record, ["deploy", "perf", "compare", "baseline"])
    finally:
        record.close()
    assert set(outcome.values()) == {"passed"}, outcome
    baseline = json.loads(Path(record.baseline_written).read_text())
    assert baseline["metrics"]["request_throughput.avg"]["median"] > 0
    assert "<sim-model-dir>" in baseline["provenance"]["aiperfArgs"]
    result = json.loads((record.report_dir / "result.json").read_text())
    assert result["comparison"]["verdict"] == "none"
    assert result["comparison"]["reason"].startswith("no same-run reference")

    slow = stage.open(
        recipe, replace(options, sim=replace(options.sim, slowdown=2.0), report_dir=options.report_dir / "slow")
    )
    try:
        with pytest.warns(TimingWarning, match="a stored baseline from another machine and load"):
            outcome = run_steps(stage, slow, ["deploy", "perf", "compare", "baseline"])
    finally:
        slow.close()
    assert outcome["perf"] == "passed"
    assert outcome["baseline"] == "passed", outcome  # a trend record, not a verdict
    assert outcome["compare"].startswith(
        "failed: same-run comparison against the same recipe at normal speed, run beside it (--sim-slowdown 2): "
        "fail: slower than the same-run reference, confirmed on fresh stacks"
    ), outcome
    assert "confirmation: inter_token_latency median" in outcome["compare"]
    result = json.loads((slow.report_dir / "result.json").read_text())
    assert result["comparison"]["verdict"] == "fail" and result["speedupRatio"] == 0.5
    itl = next(m for m in result["comparison"]["confirmation"] if m["metric"] == "inter_token_latency")
    assert itl["verdict"] == "crossed" and itl["low"] > 1.5, itl
    assert result["verdict"]["verdict"] == "fail"  # the stored-baseline comparison, kept for the record
    assert (slow.report_dir / "compare" / "confirmation" / "reference" / "round-1").is_dir()
    # the run went into the history beside the baselines, where the trend report reads it
    history = options.history_root / "sim"
    assert list(history.rglob("*.jsonl"))
    # ... marked as an experiment: no trend point and no regression streak comes from it
    from harness.results.baselines import confirm_regressions, history_path, read_history
    from harness.results.report import trend_points

    entries = read_history(history_path("sim", recipe.id, options.history_root))
    assert [e.experiment for e in entries] == [None, "--sim-slowdown 2"]
    assert entries[-1].started_at < entries[-1].finished_at  # the run's real start, not the baseline step's
    assert result["startedAt"] == entries[-1].started_at
    assert result["experiment"] == "--sim-slowdown 2"
    assert len(trend_points("inter_token_latency.p50", entries)) == 1
    assert confirm_regressions(entries) == {}
    # the Dynamo that rehearsed: this env's 1.4.x for a 1.4.0 recipe
    plan = json.loads((slow.report_dir / "plan.json").read_text())
    assert plan["dynamo"]["python"] == sys.executable and plan["dynamo"]["release"].startswith("1.4.")


def test_a_recipe_on_a_newer_release_rehearses_on_that_release(fixture_recipe, options, tmp_path):
    """A 1.6.1 recipe runs the 1.6.1 frontend and mocker from a managed env (built on first use)."""
    import shutil

    from harness.recipe.discovery import discover, select
    from harness.run.sim import runtime

    try:
        rt = runtime.resolve("1.6.1")
    except runtime.RuntimeError_ as e:
        pytest.skip(f"no ai-dynamo 1.6.1 env could be set up here: {e}")
    root = tmp_path / "recipes"
    src = REPO / "tests/fixtures/sim/recipes/tiny/vllm/agg-two-workers"
    dst = root / "tiny/vllm/agg-two-workers"
    shutil.copytree(src, dst)
    for f in dst.glob("*.yaml"):
        f.write_text(f.read_text().replace("vllm-runtime:1.4.0", "vllm-runtime:1.6.1"))
    recipe = select(discover(root), ["tiny/vllm/agg-two-workers"])[0]
    stage = SimStage()
    run = stage.open(recipe, options)
    try:
        outcome = run_steps(stage, run, ["deploy", "smoke-models", "smoke-chat"])
        pgids, ports = set(run.deployment.pids()), run.deployment.ports()
        frontend = run.deployment.processes[0].popen.args
    finally:
        run.close()
    assert set(outcome.values()) == {"passed"}, outcome
    assert frontend[0] == rt.python != sys.executable
    plan = json.loads((run.report_dir / "plan.json").read_text())
    assert plan["dynamo"]["release"] == "1.6.1" and plan["dynamo"]["recipe_release"] == "1.6.1"
    assert "without aisimulate" in plan["dynamo"]["note"]
    assert_nothing_left(pgids, ports)


def test_a_worker_that_dies_fails_the_deploy_with_its_log_and_leaves_nothing(fixture_recipe, sim_cache, tmp_path):
    plan = build_plan(fixture_recipe("tiny/vllm/agg-two-workers"))
    broken = replace(plan.workers[1], args=(*plan.workers[1].args, "--no-such-mocker-flag"))
    plan = replace(plan, workers=(plan.workers[0], broken))
    dep = LocalDeployment(plan, ensure_model_dir("tiny", sim_cache), tmp_path / "logs", startup_timeout_s=30)
    with pytest.raises(
        DeployError, match=r"(?s)vllmworker-1 exited with code 2.*unrecognized arguments: --no-such-mocker-flag"
    ):
        dep.start()
    assert_nothing_left(set(dep.pids()), dep.ports())
    assert dep.work_dir is not None and not dep.work_dir.exists()


def test_readiness_timeout_names_what_is_missing(fixture_recipe, sim_cache, tmp_path):
    plan = build_plan(fixture_recipe("tiny/vllm/agg-two-workers"))
    dep = LocalDeployment(plan, ensure_model_dir("tiny", sim_cache), tmp_path / "logs", startup_timeout_s=0.5)
    with pytest.raises(DeployError, match=r"not ready after 0 s:.*\nlast lines of .*\.log"):
        dep.start()
    assert_nothing_left(set(dep.pids()), dep.ports())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_harness_leaves_no_orphans(sig, sim_cache, tmp_path):
    """SIGKILL: the children's parent-death signal; SIGTERM: the harness's own safety net."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from harness.recipe.discovery import discover, select
        from harness.run.sim.local import LocalDeployment
        from harness.run.sim.modeldir import ensure_model_dir
        from harness.run.sim.plan import build_plan
        recipe = select(discover(Path({str(REPO / "tests/fixtures/sim/recipes")!r})), ["tiny/vllm/agg-two-workers"])[0]
        dep = LocalDeployment(build_plan(recipe), ensure_model_dir("tiny", Path({str(sim_cache)!r})), Path({str(tmp_path)!r}))
        dep.start()
        print(json.dumps({{"pids": dep.pids(), "ports": dep.ports()}}), flush=True)
        time.sleep(120)
    """)
    harness = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = harness.stdout.readline()
        assert line, "the harness process did not start the deployment"
        started = json.loads(line)
        os.kill(harness.pid, sig)
        harness.wait(timeout=30)
        deadline = time.monotonic() + 15
        while group_usage(set(started["pids"])).processes and time.monotonic() < deadline:
            time.sleep(0.3)
        assert_nothing_left(set(started["pids"]), started["ports"])
    finally:
        if harness.poll() is None:
            harness.kill()
