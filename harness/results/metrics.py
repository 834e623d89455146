"""Typed benchmark results shared by the sim and GPU stages, the baselines and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["higher", "lower"]

# The metrics a verdict is given on: "<aiperf metric>.<statistic>" -> which way is better.
GATED_METRICS: dict[str, Direction] = {
    "output_token_throughput.avg": "higher",
    "request_throughput.avg": "higher",
    "time_to_first_token.p50": "lower",
    "time_to_first_token.p99": "lower",
    "inter_token_latency.p50": "lower",
    "inter_token_latency.p99": "lower",
    "request_latency.p99": "lower",
}

STATISTICS = ("avg", "p50", "p90", "p99", "min", "max", "std")


@dataclass(frozen=True)
class MetricStat:
    """One AIPerf metric as exported in profile_export_aiperf.json."""

    name: str
    unit: str
    avg: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None

    def get(self, statistic: str) -> float | None:
        return getattr(self, statistic, None) if statistic in STATISTICS else None


@dataclass
class PerfResult:
    """One benchmark run. `valid` is False for an incomplete run or any request error:
    such a run is an error, never a measurement."""

    metrics: dict[str, MetricStat] = field(default_factory=dict)
    expected_requests: int = 0
    completed_requests: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    target_output_tokens: int | None = None
    aiperf_version: str = ""
    aiperf_args: list[str] = field(default_factory=list)
    artifact_dir: str = ""
    invalid_reason: str = ""

    @property
    def valid(self) -> bool:
        return not self.invalid_reason

    def value(self, key: str) -> float | None:
        """`key` is "<metric>.<statistic>", e.g. "time_to_first_token.p99"."""
        metric, _, statistic = key.rpartition(".")
        stat = self.metrics.get(metric)
        return stat.get(statistic) if stat else None
