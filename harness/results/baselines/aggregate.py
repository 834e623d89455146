"""Aggregation: median and CV of each gated metric over a recipe's valid runs, and why a run is no measurement."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.results.baselines.policy import DEFAULT_POLICY, Policy
from harness.results.metrics import GATED_METRICS, Direction, PerfResult

OUTPUT_LENGTH_METRIC = "output_sequence_length.avg"


@dataclass(frozen=True)
class MetricSpread:
    """One gated metric over the valid runs of a recipe."""

    key: str
    direction: Direction
    unit: str
    values: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def cv(self) -> float:
        """Sample standard deviation over mean; 0 with fewer than two runs (unknown: the floor applies)."""
        if len(self.values) < 2:
            return 0.0
        mean = statistics.fmean(self.values)
        return statistics.stdev(self.values) / abs(mean) if mean else 0.0


@dataclass(frozen=True)
class InvalidRun:
    index: int  # 1-based, in run order
    reason: str


@dataclass
class RunStats:
    """What `--repeats N` runs of one recipe measured: spreads over the valid runs, and the runs that were not."""

    metrics: dict[str, MetricSpread]
    runs: int
    invalid_runs: list[InvalidRun] = field(default_factory=list)
    aiperf_version: str = ""
    aiperf_args: list[str] = field(default_factory=list)

    @property
    def valid_runs(self) -> int:
        return self.runs - len(self.invalid_runs)

    def invalid_summary(self) -> str:
        """`2 of 3 runs invalid: run 1: ...; run 3: ...`, or '' when every run is valid."""
        if not self.invalid_runs:
            return "no runs" if self.runs == 0 else ""
        details = "; ".join(f"run {r.index}: {r.reason}" for r in self.invalid_runs)
        return f"{len(self.invalid_runs)} of {self.runs} runs invalid: {details}"


def run_problem(result: PerfResult, policy: Policy = DEFAULT_POLICY) -> str:
    """Why a run is no measurement ('' when it is one): its own invalid reason (request errors,
    incomplete), or output lengths off the target (the server did not honour max/min tokens)."""
    if result.invalid_reason:
        return result.invalid_reason
    if result.error_count:
        first = f" (first: {result.errors[0]})" if result.errors else ""
        return f"{result.error_count} request error(s){first}"
    if result.expected_requests and result.completed_requests < result.expected_requests:
        return f"incomplete: {result.completed_requests} of {result.expected_requests} requests completed"
    target = result.target_output_tokens
    measured = result.value(OUTPUT_LENGTH_METRIC)
    if target and measured is not None:
        off = (measured - target) / target * 100.0
        if abs(off) > policy.output_length_tolerance_pct:
            return (
                f"output length off target: {measured:.1f} tokens on average vs {target} requested "
                f"({off:+.1f}%, allowed {policy.output_length_tolerance_pct:g}%)"
            )
    return ""


def aggregate(results: list[PerfResult], policy: Policy = DEFAULT_POLICY) -> RunStats:
    """Median and CV of every gated metric over the valid runs; invalid runs are left out and listed."""
    invalid = [InvalidRun(i, p) for i, r in enumerate(results, 1) if (p := run_problem(r, policy))]
    bad = {r.index for r in invalid}
    valid = [r for i, r in enumerate(results, 1) if i not in bad]
    metrics: dict[str, MetricSpread] = {}
    for key, direction in GATED_METRICS.items():
        values = tuple(v for r in valid if (v := r.value(key)) is not None)
        if values:
            name = key.rpartition(".")[0]
            unit = next((r.metrics[name].unit for r in valid if name in r.metrics), "")
            metrics[key] = MetricSpread(key, direction, unit, values)
    first = valid[0] if valid else (results[0] if results else PerfResult())
    return RunStats(metrics, len(results), invalid, first.aiperf_version, list(first.aiperf_args))


def format_value(value: float | None) -> str:
    """A metric value with as many digits as its size needs (`n/a` when unmeasured)."""
    if value is None:
        return "n/a"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 100 else f"{value:.2f}" if magnitude >= 1 else f"{value:.3g}"


def delta_pct(value: float, base: float) -> float | None:
    """The change from `base` in percent; None when the base is 0 (no ratio to take)."""
    return (value - base) / abs(base) * 100.0 if base else None
