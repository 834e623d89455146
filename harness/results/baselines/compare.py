"""Comparison: judge aggregated runs against a baseline, metric by metric, with a noise-aware tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.results.baselines.aggregate import InvalidRun, MetricSpread, RunStats, delta_pct, format_value
from harness.results.baselines.policy import DEFAULT_POLICY, Policy
from harness.results.baselines.store import Baseline, BaselineMetric, Provenance, repo_relative
from harness.results.metrics import GATED_METRICS, Direction

# Worst last: a recipe's verdict is the worst of its metrics' (and `invalid` trumps everything).
VERDICTS = ("pass", "no-baseline", "warn", "fail", "invalid")
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}


@dataclass
class MetricVerdict:
    key: str
    direction: Direction
    unit: str
    verdict: str
    reason: str
    value: float | None = None
    baseline: float | None = None
    delta_pct: float | None = None
    tolerance_pct: float | None = None
    cv: float | None = None
    baseline_cv: float | None = None
    regression: str | None = None  # nightly: "suspect" | "confirmed"

    def to_dict(self) -> dict:
        out = {
            "name": self.key,
            "direction": self.direction,
            "unit": self.unit,
            "value": self.value,
            "baseline": self.baseline,
            "deltaPct": _round(self.delta_pct),
            "tolerancePct": _round(self.tolerance_pct),
            "cv": _round(self.cv, 5),
            "baselineCv": _round(self.baseline_cv, 5),
            "verdict": self.verdict,
            "reason": self.reason,
        }
        if self.regression:
            out["regression"] = self.regression
        return out

    @classmethod
    def from_dict(cls, d: dict) -> MetricVerdict:
        return cls(
            d["name"],
            d["direction"],
            d["unit"],
            d["verdict"],
            d["reason"],
            d["value"],
            d["baseline"],
            d["deltaPct"],
            d["tolerancePct"],
            d["cv"],
            d.get("baselineCv"),
            d.get("regression"),
        )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class RecipeVerdict:
    """The judgement on one recipe's runs: the worst metric verdict, or `invalid` when any run was."""

    recipe: str
    environment: str
    verdict: str
    reason: str
    runs: int
    valid_runs: int
    invalid_runs: list[InvalidRun]
    metrics: dict[str, MetricVerdict]
    baseline_ref: dict | None = None
    baseline_update: str = ""

    @property
    def regression(self) -> str | None:
        """Nightly mode: `confirmed` when any metric's regression is, else `suspect` when any is."""
        found = {m.regression for m in self.metrics.values()}
        return next((s for s in ("confirmed", "suspect") if s in found), None)

    def message(self) -> str:
        """The reason, then one line per metric that did not pass: what a failing step prints."""
        lines = [f"{self.recipe} [{self.environment}]: {self.verdict}: {self.reason}"]
        lines += [
            f"  {m.verdict}: {m.reason}" for m in self.metrics.values() if m.verdict not in ("pass", "no-baseline")
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {
            "recipe": self.recipe,
            "environment": self.environment,
            "verdict": self.verdict,
            "reason": self.reason,
            "runs": self.runs,
            "validRuns": self.valid_runs,
            "invalidRuns": [{"index": r.index, "reason": r.reason} for r in self.invalid_runs],
            "baseline": self.baseline_ref,
            "metrics": [m.to_dict() for m in self.metrics.values()],
        }
        if self.regression:
            out["regression"] = self.regression
        if self.baseline_update:
            out["baselineUpdate"] = self.baseline_update
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RecipeVerdict:
        return cls(
            d["recipe"],
            d["environment"],
            d["verdict"],
            d["reason"],
            d["runs"],
            d["validRuns"],
            [InvalidRun(r["index"], r["reason"]) for r in d["invalidRuns"]],
            {m["name"]: MetricVerdict.from_dict(m) for m in d["metrics"]},
            d["baseline"],
            d.get("baselineUpdate", ""),
        )


def judge_metric(key: str, spread: MetricSpread | None, base: BaselineMetric | None, policy: Policy) -> MetricVerdict:
    """One metric's verdict. The reason names the metric, value, baseline, delta and tolerance."""
    direction = GATED_METRICS.get(key) or (base.direction if base else "higher")
    unit = spread.unit if spread and spread.unit else (base.unit if base else "")
    if spread is None:
        return MetricVerdict(
            key,
            direction,
            unit,
            "invalid",
            f"{key}: not measured by any valid run",
            baseline=base.median if base else None,
            baseline_cv=base.cv if base else None,
        )
    value, cv = spread.median, spread.cv
    shown = f"{key} {format_value(value)} {unit}".rstrip()
    if base is None:
        return MetricVerdict(key, direction, unit, "no-baseline", f"{shown}: no baseline for this metric", value, cv=cv)
    delta = delta_pct(value, base.median)
    if delta is None:
        return MetricVerdict(
            key,
            direction,
            unit,
            "no-baseline",
            f"{shown}: baseline median is 0, nothing to compare",
            value,
            base.median,
            cv=cv,
            baseline_cv=base.cv,
        )
    tolerance = policy.tolerance_pct(key, cv, base.cv)
    worse = -delta if direction == "higher" else delta  # > 0: moved the wrong way
    better_word = "higher" if direction == "higher" else "lower"
    head = f"{shown} vs baseline {format_value(base.median)}: {delta:+.1f}%"
    if worse > tolerance:
        verdict, tail = "fail", f"worse beyond tolerance {tolerance:.1f}% ({better_word} is better)"
    elif worse > tolerance * policy.warn_fraction:
        verdict, tail = "warn", f"worse by more than {policy.warn_fraction:g} of tolerance {tolerance:.1f}%"
    elif -worse > tolerance:
        verdict, tail = "pass", f"better beyond tolerance {tolerance:.1f}%: consider --update-baselines"
    else:
        verdict, tail = "pass", f"within tolerance {tolerance:.1f}%"
    return MetricVerdict(
        key, direction, unit, verdict, f"{head}, {tail}", value, base.median, delta, tolerance, cv, base.cv
    )


def compare(
    stats: RunStats,
    baseline: Baseline | None,
    policy: Policy = DEFAULT_POLICY,
    *,
    recipe: str = "",
    environment: str = "",
    baseline_file: Path | None = None,
    provenance: Provenance | None = None,
) -> RecipeVerdict:
    """Judge aggregated runs against a baseline (None: no baseline recorded yet).
    `recipe`/`environment` default to the baseline's; `baseline_file` is where one was looked for; with the
    run's `provenance`, a baseline of another profile counts as none and one from other hardware is named."""
    recipe = recipe or (baseline.recipe if baseline else "")
    environment = environment or (baseline.environment if baseline else "sim")
    where = baseline.path if baseline and baseline.path else baseline_file
    where = Path(repo_relative(where)) if where else None  # reports name files relative to the repository
    baseline, note = _comparable(baseline, provenance, where)
    keys = list(GATED_METRICS) + [k for k in (baseline.metrics if baseline else {}) if k not in GATED_METRICS]
    metrics = {}
    for key in keys:
        spread, base = stats.metrics.get(key), baseline.metrics.get(key) if baseline else None
        if spread is None and base is None:
            continue  # neither side has it (e.g. TTFT of a non-streaming benchmark): nothing to judge
        metrics[key] = judge_metric(key, spread, base, policy)
    ref = None
    if baseline is not None:
        runs = max((m.runs for m in baseline.metrics.values()), default=None)
        ref = {
            "path": str(where or ""),
            "date": baseline.provenance.get("date"),
            "gitSha": baseline.provenance.get("gitSha"),
            "runs": runs,
        }
    verdict, reason = _recipe_verdict(stats, baseline, metrics, where)
    if baseline is None and verdict == "no-baseline" and note:
        reason = f"{note}: record one with --update-baselines"
    elif note:
        reason = f"{reason} ({note})"
    return RecipeVerdict(
        recipe, environment, verdict, reason, stats.runs, stats.valid_runs, list(stats.invalid_runs), metrics, ref
    )


def _comparable(baseline: Baseline | None, run: Provenance | None, where: Path | None) -> tuple[Baseline | None, str]:
    """Numbers of another benchmark profile are another workload: no baseline. Other hardware is only named."""
    if baseline is None or run is None:
        return baseline, ""
    if baseline.profile != run.profile:
        return None, f"the baseline at {where} is for profile {baseline.profile!r}, this run used {run.profile!r}"
    hardware = baseline.provenance.get("hardware")
    if hardware and hardware != run.hardware:
        return baseline, f"baseline measured on {hardware}, this run on {run.hardware}"
    return baseline, ""


def _recipe_verdict(
    stats: RunStats, baseline: Baseline | None, metrics: dict[str, MetricVerdict], where: Path | None
) -> tuple[str, str]:
    if stats.invalid_runs or stats.runs == 0:
        return "invalid", stats.invalid_summary()
    if not metrics:
        return "invalid", "no gated metric was measured"
    worst = max((m.verdict for m in metrics.values()), key=SEVERITY.__getitem__)
    named = [m for m in metrics.values() if m.verdict == worst]
    if worst == "invalid":
        return worst, "; ".join(m.reason for m in named)
    if worst in ("fail", "warn"):
        parts = [f"{m.key} {m.delta_pct:+.1f}% (tolerance {m.tolerance_pct:.1f}%)" for m in named[:3]]
        more = f" and {len(named) - 3} more" if len(named) > 3 else ""
        word = "regressed" if worst == "fail" else "near the tolerance"
        return worst, f"{len(named)} metric(s) {word}: " + ", ".join(parts) + more
    if worst == "no-baseline":
        if baseline is None:
            return worst, f"no baseline{f' at {where}' if where else ''}: record one with --update-baselines"
        return worst, "no baseline for: " + ", ".join(m.key for m in named)
    return "pass", f"{len(metrics)} metric(s) within tolerance of the baseline"
