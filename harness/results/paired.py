"""Same-run comparison: is the candidate slower than a reference measured beside it, beyond its own noise?

A wall-clock number from a 2-core machine says as much about the machine's other work as about
the recipe: a stored baseline recorded elsewhere cannot gate a CPU rehearsal. This module judges
a candidate only against a reference measured in the same run, under the same conditions: both
benchmarks run at the same time (one round = one simultaneous pair of AIPerf runs), so whatever
else the machine does slows both alike.

The statistic carries its own noise estimate. Each round is cut into time blocks by request start;
in each block the candidate's and the reference's median (of a per-request metric) give one paired
log ratio, so a burst of outside load lands in both sides of a pair. The effect is the mean of the
block log ratios over all rounds, with a bootstrap percentile interval over the blocks (fixed seed:
the same data always gives the same verdict). A metric *crosses* when the whole interval lies
beyond the margin in the worse direction. The margin is the smallest slowdown worth failing a
change for; it also absorbs the small systematic differences two identical stacks show (measured
in benchmarks/sim_gate.py). A crossing is only a suspicion: the caller measures again on fresh
stacks, and only a confirmed crossing is a regression.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.results.metrics import Direction

# Per-request AIPerf metrics a same-run comparison reads (profile_export.jsonl), lower is better.
PAIRED_METRICS: dict[str, Direction] = {
    "inter_token_latency": "lower",
    "request_latency": "lower",
    "time_to_first_token": "lower",
}
RECORDS_FILE = "profile_export.jsonl"


@dataclass(frozen=True)
class RequestRecord:
    """One request of one benchmark run: when it started and its per-request metrics."""

    start_ns: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Round:
    """One simultaneous pair of benchmark runs: the candidate's and the reference's requests."""

    candidate: tuple[RequestRecord, ...]
    reference: tuple[RequestRecord, ...]


@dataclass(frozen=True)
class PairedPolicy:
    """How a same-run comparison decides. Each field is documented where it is used."""

    margin_pct: float = 5.0  # a slowdown smaller than this never fails (practical significance)
    confidence: float = 0.95  # two-sided level of the bootstrap interval
    blocks_per_round: int = 8  # time blocks per round; each needs MIN_PER_BLOCK requests per side
    resamples: int = 4000
    seed: int = 0  # fixed: the same measurements always give the same verdict

    def to_dict(self) -> dict:
        return {
            "marginPct": self.margin_pct,
            "confidence": self.confidence,
            "blocksPerRound": self.blocks_per_round,
            "resamples": self.resamples,
        }


MIN_PER_BLOCK = 3


@dataclass
class PairedMetric:
    """The verdict on one metric: the candidate/reference ratio, its interval, and what that means."""

    metric: str
    direction: Direction
    ratio: float | None  # candidate / reference (geometric mean of the block ratios)
    low: float | None
    high: float | None
    blocks: int
    candidate_median: float | None
    reference_median: float | None
    verdict: str  # pass | crossed | inconclusive | invalid
    reason: str

    @property
    def slower_pct(self) -> float | None:
        """How much worse the candidate is, in percent (negative: better)."""
        if self.ratio is None:
            return None
        return (self.ratio - 1.0) * 100.0 if self.direction == "lower" else (1.0 / self.ratio - 1.0) * 100.0

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "direction": self.direction,
            "ratio": _round(self.ratio),
            "low": _round(self.low),
            "high": _round(self.high),
            "blocks": self.blocks,
            "candidateMedian": _round(self.candidate_median),
            "referenceMedian": _round(self.reference_median),
            "verdict": self.verdict,
            "reason": self.reason,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def read_records(artifact_dir: Path) -> list[RequestRecord]:
    """The successful requests of one AIPerf run (its per-request export); errors carry no timing."""
    path = Path(artifact_dir) / RECORDS_FILE
    out: list[RequestRecord] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or row.get("error"):
            continue
        meta = row.get("metadata") or {}
        start = meta.get("request_start_ns")
        metrics: dict[str, float] = {}
        for name in PAIRED_METRICS:
            raw = (row.get("metrics") or {}).get(name)
            value = raw.get("value") if isinstance(raw, dict) else raw
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                metrics[name] = float(value)
        if isinstance(start, int) and metrics:
            out.append(RequestRecord(start, metrics))
    return out


def block_log_ratios(rnd: Round, metric: str, blocks: int) -> list[float]:
    """log(candidate median / reference median) per time block of one round, for blocks where both
    sides have at least MIN_PER_BLOCK requests. The blocks cut the span both runs were live together."""
    cand = [(r.start_ns, r.metrics[metric]) for r in rnd.candidate if metric in r.metrics]
    ref = [(r.start_ns, r.metrics[metric]) for r in rnd.reference if metric in r.metrics]
    if not cand or not ref:
        return []
    lo = max(min(t for t, _ in cand), min(t for t, _ in ref))
    hi = min(max(t for t, _ in cand), max(t for t, _ in ref))
    if hi <= lo:
        return []
    width = (hi - lo) / blocks
    out = []
    for b in range(blocks):
        a, z = lo + b * width, lo + (b + 1) * width
        last = b == blocks - 1
        cv = [v for t, v in cand if a <= t < z or (last and t == z)]
        rv = [v for t, v in ref if a <= t < z or (last and t == z)]
        if len(cv) >= MIN_PER_BLOCK and len(rv) >= MIN_PER_BLOCK:
            out.append(math.log(statistics.median(cv) / statistics.median(rv)))
    return out


def bootstrap_interval(values: Sequence[float], confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (deterministic for a given seed)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    return means[int(tail * (resamples - 1))], means[round((1.0 - tail) * (resamples - 1))]


def classify(ratio: float, low: float, high: float, direction: Direction, margin_pct: float) -> tuple[str, str]:
    """(verdict, why) of an estimate and its interval (candidate / reference):
    - crossed: the whole interval is beyond the margin in the worse direction;
    - inconclusive: the candidate is slower beyond doubt (the interval excludes no change) and the estimate
      is past the margin, but the interval is not: worth a warning with the numbers;
    - pass: anything else (within the margin, or no slowdown the interval can tell from noise)."""
    worse_low, worse_point = (low, ratio) if direction == "lower" else (1.0 / high, 1.0 / ratio)
    limit = 1.0 + margin_pct / 100.0
    if worse_low > limit:
        return "crossed", f"slower by more than the {margin_pct:g}% margin"
    if worse_point > limit and worse_low > 1.0:
        return "inconclusive", f"slower, and the estimate is past the {margin_pct:g}% margin but the interval is not"
    if worse_point > limit:
        return "pass", f"the estimate is past the {margin_pct:g}% margin but the interval includes no change"
    return "pass", f"within the {margin_pct:g}% margin"


def judge_metric(rounds: Iterable[Round], metric: str, policy: PairedPolicy) -> PairedMetric:
    """One metric's same-run verdict. `crossed` only when the whole interval is beyond the margin."""
    direction = PAIRED_METRICS[metric]
    rounds = list(rounds)
    logs = [x for rnd in rounds for x in block_log_ratios(rnd, metric, policy.blocks_per_round)]
    cand_all = [r.metrics[metric] for rnd in rounds for r in rnd.candidate if metric in r.metrics]
    ref_all = [r.metrics[metric] for rnd in rounds for r in rnd.reference if metric in r.metrics]
    cmed = statistics.median(cand_all) if cand_all else None
    rmed = statistics.median(ref_all) if ref_all else None
    if len(logs) < 4:
        return PairedMetric(
            metric,
            direction,
            None,
            None,
            None,
            len(logs),
            cmed,
            rmed,
            "invalid",
            f"{metric}: only {len(logs)} time blocks had {MIN_PER_BLOCK}+ requests on both sides (need 4)",
        )
    mean = sum(logs) / len(logs)
    lo, hi = bootstrap_interval(logs, policy.confidence, policy.resamples, policy.seed)
    ratio, low, high = math.exp(mean), math.exp(lo), math.exp(hi)
    level = f"{policy.confidence:.0%}"
    described = (
        f"{metric} median {cmed:.3f} ms vs {rmed:.3f} ms: ratio {ratio:.3f}, "
        f"{level} interval [{low:.3f}, {high:.3f}] over {len(logs)} paired time blocks"
    )
    verdict, why = classify(ratio, low, high, direction, policy.margin_pct)
    return PairedMetric(metric, direction, ratio, low, high, len(logs), cmed, rmed, verdict, f"{described}: {why}")


@dataclass
class PairedComparison:
    """A same-run comparison: a first measurement and, when it crossed, the confirmation on fresh stacks."""

    reference: str  # what the candidate was compared with, in words
    first: list[PairedMetric]
    confirmation: list[PairedMetric] = field(default_factory=list)
    rounds: int = 0
    policy: PairedPolicy = field(default_factory=PairedPolicy)

    @property
    def crossed(self) -> list[str]:
        return [m.metric for m in self.first if m.verdict == "crossed"]

    @property
    def regressions(self) -> list[PairedMetric]:
        """Metrics that crossed in the first measurement AND in the confirmation."""
        first = set(self.crossed)
        return [m for m in self.confirmation if m.verdict == "crossed" and m.metric in first]

    @property
    def verdict(self) -> str:
        """fail (a confirmed regression), warn (crossed once, or inconclusive), invalid, or pass."""
        if self.regressions:
            return "fail"
        every = self.first + self.confirmation
        if any(m.verdict in ("crossed", "inconclusive") for m in every):
            return "warn"
        if any(m.verdict == "invalid" for m in self.first):
            return "invalid"
        return "pass"

    def message(self) -> str:
        head = {
            "fail": "slower than the same-run reference, confirmed on fresh stacks",
            "warn": "not a confirmed regression (a one-off crossing or an inconclusive estimate)",
            "invalid": "too few paired measurements to judge",
            "pass": "no slowdown beyond the margin",
        }[self.verdict]
        lines = [f"same-run comparison against {self.reference}: {self.verdict}: {head}"]
        lines += [f"  first: {m.reason}" for m in self.first]
        lines += [f"  confirmation: {m.reason}" for m in self.confirmation]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "verdict": self.verdict,
            "rounds": self.rounds,
            "policy": self.policy.to_dict(),
            "first": [m.to_dict() for m in self.first],
            "confirmation": [m.to_dict() for m in self.confirmation],
        }


def judge(rounds: Sequence[Round], policy: PairedPolicy) -> list[PairedMetric]:
    """Every paired metric's verdict over `rounds`."""
    return [judge_metric(rounds, metric, policy) for metric in PAIRED_METRICS]
