"""Sim verdicts through the baselines library with the sim policy: an unchanged rerun passes,
a 2x slowdown fails, a missing baseline says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results import baselines
from harness.results.metrics import GATED_METRICS, MetricStat, PerfResult
from harness.run.perf import parse_profile_export
from harness.run.sim.compare import SIM_FLOORS_PCT, sim_policy

AIPERF = Path(__file__).parent.parent / "fixtures" / "sim" / "aiperf"
RECIPE = "qwen3-32b/vllm/agg-round-robin"


def result_scaled(base: PerfResult, throughput: float = 1.0, latency: float = 1.0) -> PerfResult:
    """The same run with throughput and latency multiplied, as a slowed-down mocker would produce."""
    metrics = {}
    for name, m in base.metrics.items():
        f = (
            throughput
            if name.endswith("throughput")
            else latency
            if ("latency" in name or name.startswith("time_to"))
            else 1.0
        )
        metrics[name] = MetricStat(
            name, m.unit, *(None if v is None else v * f for v in (m.avg, m.p50, m.p90, m.p99, m.min, m.max, m.std))
        )
    return PerfResult(
        metrics=metrics,
        expected_requests=base.expected_requests,
        completed_requests=base.completed_requests,
        target_output_tokens=base.target_output_tokens,
        aiperf_version=base.aiperf_version,
        aiperf_args=base.aiperf_args,
    )


@pytest.fixture
def run() -> PerfResult:
    return parse_profile_export(AIPERF / "complete")


@pytest.fixture
def baseline(run) -> baselines.Baseline:
    stats = baselines.aggregate([run], sim_policy())
    prov = baselines.Provenance.collect(profile="ci", stats=stats)
    return baselines.Baseline.from_stats(stats, prov, recipe=RECIPE, environment="sim")


def verdict(result: PerfResult, baseline: baselines.Baseline | None) -> baselines.RecipeVerdict:
    stats = baselines.aggregate([result], sim_policy())
    return baselines.compare(stats, baseline, sim_policy(), recipe=RECIPE, environment="sim")


def test_baseline_from_one_sim_run_validates(baseline):
    data = baseline.to_dict()
    assert not baselines.schema_problems("baseline.json", data)
    assert set(GATED_METRICS) <= set(data["metrics"]) and data["provenance"]["hardware"].startswith("cpu-")


def test_unchanged_rerun_passes(run, baseline):
    v = verdict(result_scaled(run, 0.97, 1.05), baseline)
    assert v.verdict == "pass", v.message()


def test_two_times_slower_fails_naming_metric_and_delta(run, baseline):
    v = verdict(result_scaled(run, 0.5, 2.0), baseline)
    assert v.verdict == "fail"
    assert "output_token_throughput.avg" in v.message() and "-50" in v.message()


def test_faster_is_never_a_regression(run, baseline):
    assert verdict(result_scaled(run, 2.0, 0.5), baseline).verdict == "pass"


def test_ttft_p99_has_the_measured_wide_floor(run, baseline):
    # +50 % TTFT p99 alone is within its 60 % floor (a noisy tail), other metrics unchanged
    v = verdict(result_with(run, "time_to_first_token", p99=1.5), baseline)
    assert v.metrics["time_to_first_token.p99"].verdict in ("pass", "warn"), v.message()
    v = verdict(result_with(run, "time_to_first_token", p99=1.7), baseline)
    assert v.metrics["time_to_first_token.p99"].verdict == "fail", v.message()


def result_with(base: PerfResult, metric: str, **factors: float) -> PerfResult:
    out = result_scaled(base)
    m = out.metrics[metric]
    out.metrics[metric] = MetricStat(
        m.name,
        m.unit,
        **{
            s: (getattr(m, s) * factors.get(s, 1.0) if getattr(m, s) is not None else None)
            for s in ("avg", "p50", "p90", "p99", "min", "max", "std")
        },
    )
    return out


def test_sim_policy_never_lowers_a_configured_floor():
    strict = baselines.Policy(floors_pct={"throughput": 30.0, "latency": 5.0})
    p = sim_policy(strict)
    assert p.floor_pct("request_throughput.avg") == 30.0  # configured higher: kept
    assert p.floor_pct("inter_token_latency.p50") == SIM_FLOORS_PCT["latency"]
    assert p.floor_pct("time_to_first_token.p99") == SIM_FLOORS_PCT["time_to_first_token.p99"]


def test_no_baseline(run):
    assert verdict(run, None).verdict == "no-baseline"
