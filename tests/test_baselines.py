"""Baseline verdicts, atomic updates and history (harness/baselines.py), on synthetic AIPerf results."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

from harness.results import baselines as bl
from harness.results.metrics import GATED_METRICS, PerfResult

from .conftest import perf, provenance, runs

RECIPE = "qwen3-32b/vllm/agg-round-robin"


def record(tmp_path, results: list[PerfResult]) -> bl.Baseline:
    path = bl.baseline_path("sim", RECIPE, tmp_path)
    bl.update_baseline(path, bl.aggregate(results), provenance(), recipe=RECIPE, environment="sim")
    return bl.load_baseline(path)


# --- verdicts ---------------------------------------------------------------------------


def test_unchanged_rerun_passes(tmp_path):
    baseline = record(tmp_path, runs(start=0))
    verdict = bl.compare(bl.aggregate(runs(start=2)), baseline)
    assert verdict.verdict == "pass", verdict.message()
    assert set(verdict.metrics) == set(GATED_METRICS)
    assert "within tolerance" in verdict.metrics["output_token_throughput.avg"].reason


def test_25_percent_slower_fails_naming_metric_and_delta(tmp_path):
    baseline = record(tmp_path, runs())
    verdict = bl.compare(bl.aggregate(runs(1.25)), baseline)
    assert verdict.verdict == "fail"
    throughput = verdict.metrics["output_token_throughput.avg"]
    assert throughput.verdict == "fail" and throughput.delta_pct == pytest.approx(-20.0, abs=0.1)
    ttft = verdict.metrics["time_to_first_token.p99"]
    assert ttft.verdict == "fail" and ttft.delta_pct == pytest.approx(25.0, abs=0.1)
    message = verdict.message()
    assert "output_token_throughput.avg 440.0 tokens/sec vs baseline 550.0: -20.0%" in message
    assert "tolerance 5.0%" in message and "time_to_first_token.p99" in message and RECIPE in message


def test_better_is_never_a_failure(tmp_path):
    verdict = bl.compare(bl.aggregate(runs(0.8)), record(tmp_path, runs()))
    assert verdict.verdict == "pass"
    assert "consider --update-baselines" in verdict.metrics["request_throughput.avg"].reason


def test_no_baseline(tmp_path):
    where = bl.baseline_path("sim", RECIPE, tmp_path)
    verdict = bl.compare(bl.aggregate(runs()), None, recipe=RECIPE, baseline_file=where)
    assert verdict.verdict == "no-baseline"
    assert str(where) in verdict.reason and "--update-baselines" in verdict.reason
    assert all(m.verdict == "no-baseline" and m.value is not None for m in verdict.metrics.values())


def test_baseline_of_another_profile_is_no_baseline(tmp_path):
    baseline = record(tmp_path, runs())
    laptop = bl.compare(
        bl.aggregate(runs(1.25)), baseline, provenance=dataclasses.replace(provenance(), profile="laptop")
    )
    assert laptop.verdict == "no-baseline" and laptop.baseline_ref is None
    assert "is for profile 'ci', this run used 'laptop': record one with --update-baselines" in laptop.reason
    bigger = bl.compare(bl.aggregate(runs()), baseline, provenance=dataclasses.replace(provenance(), hardware="cpu-16"))
    assert bigger.verdict == "pass" and bigger.reason.endswith("(baseline measured on cpu-2, this run on cpu-16)")


def test_tolerance_is_k_times_the_larger_cv():
    policy = bl.Policy(k=3.0, floors_pct={"throughput": 5.0, "latency": 5.0})
    spread = bl.MetricSpread("output_token_throughput.avg", "higher", "tokens/sec", (100.0, 100.0, 100.0))
    noisy = bl.BaselineMetric("higher", 100.0, cv=0.05, runs=3, unit="tokens/sec")
    quiet = bl.BaselineMetric("higher", 100.0, cv=0.001, runs=3, unit="tokens/sec")
    assert policy.tolerance_pct(spread.key, spread.cv, noisy.cv) == pytest.approx(15.0)
    assert policy.tolerance_pct(spread.key, spread.cv, quiet.cv) == 5.0  # the floor
    dropped = bl.MetricSpread(spread.key, "higher", "tokens/sec", (90.0, 90.0, 90.0))
    assert bl.judge_metric(spread.key, dropped, noisy, policy).verdict == "warn"  # -10% against 15%
    assert bl.judge_metric(spread.key, dropped, quiet, policy).verdict == "fail"  # -10% against 5%
    noisy_run = bl.MetricSpread(spread.key, "higher", "tokens/sec", (80.0, 90.0, 100.0))  # cv 11%: 33% tolerance
    assert bl.judge_metric(spread.key, noisy_run, quiet, policy).tolerance_pct == pytest.approx(33.3, abs=0.1)


def test_warn_band_between_half_and_full_tolerance():
    base = bl.BaselineMetric("lower", 100.0, cv=0.0, runs=3, unit="ms")
    key = "inter_token_latency.p50"

    def verdict(value: float) -> str:
        return bl.judge_metric(key, bl.MetricSpread(key, "lower", "ms", (value,)), base, bl.Policy()).verdict

    assert [verdict(v) for v in (102.0, 103.0, 105.5, 90.0)] == ["pass", "warn", "fail", "pass"]


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(error_count=3, errors=["HTTP 500"]), "3 request error(s) (first: HTTP 500)"),
        (dict(completed_requests=41), "incomplete: 41 of 50 requests completed"),
        (dict(osl=60.0), "output length off target: 60.0 tokens on average vs 64 requested (-6.2%"),
        (dict(invalid_reason="aiperf exited 1"), "aiperf exited 1"),
    ],
)
def test_invalid_runs_are_excluded_and_named(tmp_path, bad, words):
    results = [perf(), perf(**bad), perf(jitter=1.01)]
    stats = bl.aggregate(results)
    assert stats.valid_runs == 2 and stats.metrics["request_throughput.avg"].runs == 2
    assert (
        stats.invalid_runs == [bl.InvalidRun(2, stats.invalid_runs[0].reason)] and words in stats.invalid_runs[0].reason
    )
    verdict = bl.compare(stats, record(tmp_path, runs()))
    assert verdict.verdict == "invalid" and verdict.reason.startswith("1 of 3 runs invalid: run 2: ")
    assert verdict.metrics["request_throughput.avg"].verdict == "pass"  # the valid runs are still shown


def test_output_length_within_two_percent_is_fine():
    assert bl.run_problem(perf(osl=63.0)) == ""  # -1.6%


def test_no_valid_run_at_all():
    verdict = bl.compare(bl.aggregate([perf(error_count=50)]), None, recipe=RECIPE)
    assert verdict.verdict == "invalid" and verdict.metrics == {} and verdict.valid_runs == 0


def test_cv_is_sample_std_over_mean():
    spread = bl.MetricSpread("request_throughput.avg", "higher", "requests/sec", (9.0, 10.0, 11.0))
    assert spread.median == 10.0 and spread.cv == pytest.approx(0.1)
    assert bl.MetricSpread("x.avg", "higher", "", (5.0,)).cv == 0.0


# --- baseline files ---------------------------------------------------------------------


def test_baseline_file_layout_and_schema(tmp_path):
    baseline = record(tmp_path, runs())
    path = tmp_path / "sim" / "qwen3-32b" / "vllm" / "agg-round-robin.json"
    assert baseline.path == path
    data = json.loads(path.read_text())
    assert bl.schema_problems("baseline.json", data) == []
    metric = data["metrics"]["output_token_throughput.avg"]
    assert metric["runs"] == 3 and metric["direction"] == "higher" and len(metric["values"]) == 3
    assert metric["min"] <= metric["median"] <= metric["max"]
    prov = data["provenance"]
    assert prov["aiperfVersion"] == "0.13.0" and prov["aiperfArgs"] == ["profile", "--concurrency", "4"]
    assert prov["images"] == [{"ref": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0", "digest": None}]
    assert data["environment"] == "sim" and data["profile"] == "ci"
    assert bl.baseline_path("gpu/h200", RECIPE, tmp_path) == tmp_path / "gpu/h200/qwen3-32b/vllm/agg-round-robin.json"


def test_minimal_sim_format_loads(tmp_path):
    """The sim stage's first format (no min/max/values, no images) is a valid baseline."""
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "schemaVersion": 1,
                "recipe": RECIPE,
                "environment": "sim",
                "profile": "ci",
                "metrics": {
                    "request_throughput.avg": {
                        "direction": "higher",
                        "median": 8.6,
                        "cv": 0.02,
                        "runs": 3,
                        "unit": "requests/sec",
                    }
                },
                "provenance": {
                    "date": "2025-11-26T10:00:00Z",
                    "gitSha": "abc1234",
                    "harnessVersion": "0.1.0",
                    "dynamoVersion": "1.4.2",
                    "aiperfVersion": "0.13.0",
                    "aiperfArgs": [],
                    "hardware": "cpu-2",
                    "manifestHash": "sha256:00",
                },
            }
        )
    )
    assert bl.load_baseline(path).metrics["request_throughput.avg"].median == 8.6


def test_malformed_baseline_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"schemaVersion": 1,\n "recipe": }')
    with pytest.raises(bl.BaselineError, match=rf"^{path}:2:\d+: not JSON"):
        bl.load_baseline(path)
    path.write_text(json.dumps({"schemaVersion": 1, "recipe": RECIPE, "environment": "laptop"}))
    with pytest.raises(bl.BaselineError) as err:
        bl.load_baseline(path)
    assert str(err.value).startswith(f"{path}: not a valid baseline") and "environment" in str(err.value)


def test_invalid_run_never_becomes_a_baseline(tmp_path):
    path = bl.baseline_path("sim", RECIPE, tmp_path)
    stats = bl.aggregate([perf(), perf(completed_requests=10)])
    with pytest.raises(bl.BaselineRefused, match="1 of 2 runs invalid: run 2: incomplete: 10 of 50"):
        bl.update_baseline(path, stats, provenance(), recipe=RECIPE, environment="sim")
    assert not path.exists()
    record(tmp_path, runs())
    before = path.read_text()
    with pytest.raises(bl.BaselineRefused):
        bl.update_baseline(path, bl.aggregate([perf(error_count=1)]), provenance(), recipe=RECIPE, environment="sim")
    assert path.read_text() == before


def test_update_is_atomic_and_says_what_changed(tmp_path, monkeypatch):
    path = bl.baseline_path("sim", RECIPE, tmp_path)
    first = bl.update_baseline(path, bl.aggregate(runs()), provenance(), recipe=RECIPE, environment="sim")
    assert "new baseline from 3 run(s)" in first and "output_token_throughput.avg" in first
    before = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        bl.update_baseline(path, bl.aggregate(runs(1.1)), provenance(), recipe=RECIPE, environment="sim")
    assert path.read_text() == before and [p.name for p in path.parent.iterdir()] == [path.name]
    monkeypatch.undo()
    diff = bl.update_baseline(path, bl.aggregate(runs(1.25)), provenance(), recipe=RECIPE, environment="sim")
    assert f"{path}: updated from 3 run(s) (was: 2025-11-26T10:00:00Z, 0123456789ab)" in diff
    assert "request_throughput.avg" in diff and "-> " in diff and "(-20.0%;" in diff
    assert bl.load_baseline(path).metrics["request_throughput.avg"].median == pytest.approx(8.6 / 1.25)


# --- policy -----------------------------------------------------------------------------


def test_policy_from_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.recipe-harness.baselines]\nk = 2.5\nwarn-fraction = 0.6\n"
        '[tool.recipe-harness.baselines.floors]\nlatency = 8\n"time_to_first_token.p99" = 20\n'
    )
    policy = bl.load_policy(pyproject)
    assert policy.k == 2.5 and policy.warn_fraction == 0.6
    assert policy.floor_pct("inter_token_latency.p50") == 8.0 and policy.floor_pct("time_to_first_token.p99") == 20.0
    assert policy.floor_pct("request_throughput.avg") == bl.DEFAULT_FLOORS_PCT["throughput"]
    pyproject.write_text("[tool.recipe-harness.baselines]\nkk = 2\n")
    with pytest.raises(bl.PolicyError, match=rf"{pyproject}: unknown key 'kk'"):
        bl.load_policy(pyproject)
    pyproject.write_text("[project]\nname = 'x'\n")
    assert bl.load_policy(pyproject) == bl.DEFAULT_POLICY


# --- history ----------------------------------------------------------------------------


def entry(run_id: str, slowdown: float, baseline: bl.Baseline | None) -> bl.HistoryEntry:
    verdict = bl.compare(bl.aggregate(runs(slowdown)), baseline, recipe=RECIPE, environment="sim")
    return bl.HistoryEntry(run_id, "2025-11-26T10:00:00Z", "2025-11-26T10:05:00Z", None, verdict)


def test_history_appends_validated_lines(tmp_path):
    baseline = record(tmp_path / "b", runs())
    for i, slowdown in enumerate((1.0, 1.25)):
        path = bl.append_history("sim", RECIPE, entry(f"r{i}", slowdown, baseline), tmp_path / "h")
    assert path == tmp_path / "h" / "sim" / "qwen3-32b" / "vllm" / "agg-round-robin.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(bl.schema_problems("history-entry.json", json.loads(x)) == [] for x in lines)
    back = bl.read_history(path)
    assert [e.result.verdict for e in back] == ["pass", "fail"]
    assert back[1].result.metrics["request_latency.p99"].delta_pct == pytest.approx(25.0, abs=0.1)
    assert list(bl.iter_history(tmp_path / "h")) == [("sim", RECIPE, path)]
    path.write_text(path.read_text() + "{oops\n")
    with pytest.raises(bl.BaselineError, match=rf"{path}:3: not JSON"):
        bl.read_history(path)


def test_two_consecutive_failures_confirm_a_regression(tmp_path):
    baseline = record(tmp_path, runs())
    ok, bad = (lambda i: entry(f"ok{i}", 1.0, baseline)), (lambda i: entry(f"bad{i}", 1.25, baseline))
    invalid = bl.HistoryEntry("broken", "", "", None, bl.compare(bl.aggregate([perf(error_count=2)]), baseline))
    key = "output_token_throughput.avg"
    assert bl.confirm_regressions([ok(1)]) == {}
    assert bl.confirm_regressions([ok(1), bad(1)])[key].status == "suspect"
    assert bl.confirm_regressions([bad(1), bad(2)])[key] == bl.Regression(key, "confirmed", ("bad1", "bad2"))
    assert bl.confirm_regressions([bad(1), ok(1), bad(2)])[key].status == "suspect"
    assert (
        bl.confirm_regressions([bad(1), invalid, bad(2)])[key].status == "confirmed"
    )  # an invalid run measured nothing
    assert bl.confirm_regressions([bad(1), bad(2), ok(1)]) == {}


def test_evaluate_recipe_records_then_passes_then_fails(tmp_path):
    kw = dict(
        recipe=RECIPE,
        environment="sim",
        provenance=provenance(),
        policy=bl.DEFAULT_POLICY,
        baselines_root=tmp_path / "baselines",
        history_root=tmp_path / "history",
    )
    first = bl.evaluate_recipe(runs(), run_id="r1", update=True, **kw)
    assert first.updated and first.failure() is None and first.verdict.verdict == "no-baseline"
    assert "new baseline from 3 run(s)" in first.verdict.baseline_update
    assert bl.evaluate_recipe(runs(start=1), run_id="r2", **kw).failure() is None
    slow = bl.evaluate_recipe(runs(1.25), run_id="r3", **kw)
    assert slow.verdict.verdict == "fail" and "-20.0%" in slow.failure()
    refused = bl.evaluate_recipe([perf(error_count=1)], run_id="r4", update=True, **kw)
    assert refused.failure().endswith("baseline not updated: 1 of 1 runs invalid: run 1: 1 request error(s)")
    history = bl.read_history(first.history_file)
    assert [e.run_id for e in history] == ["r1", "r2", "r3", "r4"]
    assert [e.result.verdict for e in history] == ["no-baseline", "pass", "fail", "invalid"]


def test_regression_detection_scores_saved_runs(tmp_path, capsys):
    """benchmarks/regression_detection.py rescoring saved runs (no sim stack needed)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "regression_detection.py"
    spec = importlib.util.spec_from_file_location("regression_detection", script)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    try:
        spec.loader.exec_module(bench)
    finally:
        del sys.modules[spec.name]
    trials = [
        {
            level: [bench.to_dict(r) for r in runs(slowdown, start=t + i)]
            for i, (level, slowdown) in enumerate((("baseline", 1.0), ("1.00", 1.0), ("1.10", 1.1)))
        }
        for t in range(3)
    ]
    saved = tmp_path / "runs.json"
    saved.write_text(json.dumps({"recipe": RECIPE, "profile": "ci", "repeats": 3, "trials": trials}))
    assert bench.main(["--from-runs", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "10% slowdown flagged 3/3 = 100% (target >= 95%): met" in out
    assert "0% slowdown flagged 0/3 = 0% (target <= 5%): met" in out
    assert "10% slowdown flagged 9/9 = 100%" in out  # every trial's deployment against every baseline


def test_provenance_names_the_dynamo_that_ran_not_this_process():
    """The sim rehearses in a managed env of the recipe's release (1.6.1) while this process may hold
    another ai-dynamo (the '[all]' extra's 1.4.x): the baseline must name the one that ran."""
    from harness.results.baselines import Provenance

    ran = Provenance.collect(profile="ci", dynamo_version="1.6.1", backend_versions={"mocker": "1.6.1"})
    assert ran.to_dict()["dynamoVersion"] == "1.6.1" and ran.to_dict()["backendVersions"] == {"mocker": "1.6.1"}
