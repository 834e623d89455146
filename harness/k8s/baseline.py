"""GPU baselines: where a recipe's reference numbers live and a minimal tolerance comparison against them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..results import GATED_METRICS, PerfResult

DEFAULT_TOLERANCE = 0.10  # run-to-run noise of a dedicated GPU node stays well inside 10 %


def baseline_path(baselines_root: Path, hardware: str, recipe_id: str) -> Path:
    """`reports/baselines/gpu/<hardware>/<recipe-id>.json`."""
    return baselines_root / "gpu" / hardware / f"{recipe_id}.json"


@dataclass
class Regression:
    metric: str
    baseline: float
    measured: float
    limit: float

    def describe(self) -> str:
        change = (self.measured - self.baseline) / self.baseline * 100 if self.baseline else 0.0
        return f"{self.metric}: {self.measured:.4g} vs baseline {self.baseline:.4g} ({change:+.1f}%, limit {self.limit:.4g})"


@dataclass
class Comparison:
    regressions: list[Regression] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions


def load_baseline(path: Path) -> tuple[dict[str, float], float]:
    """(metric key -> value, tolerance). Format: {"metrics": {"output_token_throughput.avg": 1234.5, ...}, "tolerance": 0.1}."""
    data = json.loads(path.read_text())
    metrics = {str(k): float(v) for k, v in (data.get("metrics") or {}).items() if isinstance(v, (int, float))}
    return metrics, float(data.get("tolerance", DEFAULT_TOLERANCE))


def compare(result: PerfResult, baseline: dict[str, float], tolerance: float) -> Comparison:
    out = Comparison()
    for key, direction in GATED_METRICS.items():
        ref, got = baseline.get(key), result.value(key)
        if ref is None or got is None:
            continue
        out.compared.append(key)
        limit = ref * (1 - tolerance) if direction == "higher" else ref * (1 + tolerance)
        if (direction == "higher" and got < limit) or (direction == "lower" and got > limit):
            out.regressions.append(Regression(key, ref, got, limit))
    return out


def write_baseline(path: Path, result: PerfResult, source: str) -> None:
    metrics = {k: v for k in GATED_METRICS if (v := result.value(k)) is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": metrics, "tolerance": DEFAULT_TOLERANCE, "source": source}, indent=2, sort_keys=True) + "\n")
