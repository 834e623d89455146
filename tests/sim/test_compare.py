"""Baseline verdicts: an unchanged rerun passes, a 2x slowdown fails, a missing baseline says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.perf import parse_profile_export
from harness.results import GATED_METRICS, MetricStat, PerfResult
from harness.sim import compare

AIPERF = Path(__file__).parent.parent / "fixtures" / "sim" / "aiperf"
SCHEMA = Path(__file__).parent.parent.parent / "schemas" / "baseline.json"


def result_scaled(base: PerfResult, throughput: float = 1.0, latency: float = 1.0) -> PerfResult:
    """The same run with throughput and latency multiplied, as a slowed-down mocker would produce."""
    metrics = {}
    for name, m in base.metrics.items():
        f = throughput if name.endswith("throughput") else latency
        metrics[name] = MetricStat(name, m.unit, *(None if v is None else v * f for v in (m.avg, m.p50, m.p90, m.p99, m.min, m.max, m.std)))
    return PerfResult(metrics=metrics, expected_requests=base.expected_requests, completed_requests=base.completed_requests)


@pytest.fixture
def run() -> PerfResult:
    return parse_profile_export(AIPERF / "complete")


@pytest.fixture
def baseline(run) -> dict:
    prov = compare.provenance(Path(__file__).parent, run.aiperf_args, run.aiperf_version)
    return compare.build_baseline("qwen3-32b/vllm/agg-round-robin", "ci", [run], prov)


def test_baseline_has_the_shared_format(baseline):
    assert baseline["schemaVersion"] == 1 and baseline["environment"] == "sim" and baseline["profile"] == "ci"
    assert set(baseline["metrics"]) == set(GATED_METRICS)
    m = baseline["metrics"]["request_throughput.avg"]
    assert (m["direction"], m["runs"], m["cv"], m["unit"]) == ("higher", 1, 0.0, "requests/sec")
    prov = baseline["provenance"]
    assert prov["hardware"].startswith("cpu-") and prov["manifestHash"].startswith("sha256:")
    assert prov["aiperfVersion"] == "0.13.0" and prov["harnessVersion"]


def test_baseline_validates_against_the_project_schema(baseline):
    if not SCHEMA.exists():
        pytest.skip("schemas/baseline.json not present")
    import jsonschema

    jsonschema.validate(baseline, json.loads(SCHEMA.read_text()))


def test_unchanged_rerun_passes(run, baseline):
    verdicts = compare.compare(result_scaled(run, 0.97, 1.05), baseline)
    assert compare.overall(verdicts) == "pass", [v.describe() for v in verdicts]


def test_two_times_slower_fails(run, baseline):
    verdicts = compare.compare(result_scaled(run, 0.5, 2.0), baseline)
    assert compare.overall(verdicts) == "fail"
    assert {v.metric for v in verdicts if v.verdict == "fail"} == set(GATED_METRICS)
    itl = next(v for v in verdicts if v.metric == "inter_token_latency.p50")
    assert itl.delta_pct == pytest.approx(100.0)
    assert "+100.0%" in itl.describe() and "lower is better" in itl.describe()


def test_ttft_p99_tolerates_the_queueing_noise_of_a_shared_machine(baseline):
    base = compare.read_metrics(baseline)["time_to_first_token.p99"]
    assert compare.judge("time_to_first_token.p99", base.median * 1.5, base).verdict == "warn"
    assert compare.judge("time_to_first_token.p99", base.median * 1.7, base).verdict == "fail"


def test_faster_is_never_a_regression(run, baseline):
    assert compare.overall(compare.compare(result_scaled(run, 2.0, 0.5), baseline)) == "pass"


def test_between_half_and_full_tolerance_warns(run, baseline):
    verdicts = compare.compare(result_scaled(run, 0.9, 1.0), baseline)  # -10 % vs a 15 % floor
    assert {v.verdict for v in verdicts if v.metric.endswith("throughput.avg")} == {"warn"}
    assert compare.overall(verdicts) == "warn"


def test_noisy_baseline_widens_the_tolerance():
    key = "request_latency.p99"
    assert compare.tolerance(key, 0.0) == 0.25
    assert compare.tolerance(key, 0.12) == pytest.approx(0.36)
    noisy = compare.BaselineMetric("lower", 100.0, 0.12, 3, "ms")
    assert compare.judge(key, 130.0, noisy).verdict == "warn"
    assert compare.judge(key, 140.0, noisy).verdict == "fail"


def test_no_baseline(run):
    verdicts = compare.compare(run, None)
    assert compare.overall(verdicts) == "no-baseline"


def test_write_and_load_round_trip(tmp_path, baseline):
    path = compare.baseline_path(tmp_path, "qwen3-32b/vllm/agg-round-robin")
    assert path == tmp_path / "sim" / "qwen3-32b" / "vllm" / "agg-round-robin.json"
    compare.write_baseline(path, baseline)
    assert compare.load_baseline(path) == baseline
    assert compare.load_baseline(tmp_path / "missing.json") is None


def test_invalid_runs_never_become_baselines(run):
    bad = parse_profile_export(AIPERF / "partial-errors")
    with pytest.raises(ValueError, match="valid runs"):
        compare.build_baseline("a/b/c", "ci", [run, bad], {})
