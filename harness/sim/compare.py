"""Minimal baseline comparison for sim runs: read/write reports/baselines/sim/<recipe-id>.json, give verdicts.

The file format is the one the baselines work uses (schemas/baseline.json); this module only
needs one run per baseline and a fixed policy: tolerance = max(floor, 3 x CV).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .. import __version__
from ..results import GATED_METRICS, PerfResult

SCHEMA_VERSION = 1
ENVIRONMENT = "sim"
K_CV = 3.0
# Measured on a shared 2-core machine (qwen3-32b, ci profile): an unchanged rerun moves throughput,
# TTFT p50, ITL and request latency p99 by < 15 %; --sim-slowdown 2 moves throughput by -47 %, ITL
# by +100 %, request latency p99 by +85 %, TTFT p50 by +31-38 %. TTFT p99 over 50 requests is the
# slowest request's queueing: it moved by up to 75 % between unchanged runs under CPU contention
# and by only +24-64 % at 2x, so it gets a wide floor and the other metrics carry the gate.
FLOORS = {"throughput": 0.15, "latency": 0.25}
FLOOR_OVERRIDES = {"time_to_first_token.p99": 0.60}
WARN_FRACTION = 0.5


@dataclass(frozen=True)
class BaselineMetric:
    direction: str
    median: float
    cv: float
    runs: int
    unit: str


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    verdict: str  # pass | warn | fail | no-baseline
    value: float | None
    baseline: float | None = None
    delta_pct: float | None = None  # signed change against the baseline
    tolerance_pct: float | None = None
    unit: str = ""
    direction: str = ""

    def describe(self) -> str:
        if self.baseline is None or self.value is None or self.delta_pct is None:
            return f"{self.metric}: {self.verdict}"
        return (f"{self.metric}: {self.value:.4g} {self.unit} vs baseline {self.baseline:.4g} ({self.delta_pct:+.1f}%, "
                f"{self.direction} is better, tolerance {self.tolerance_pct:.0f}%) -> {self.verdict}")


def baseline_path(baselines_root: Path, recipe_id: str) -> Path:
    return baselines_root / ENVIRONMENT / f"{recipe_id}.json"


def metric_family(key: str) -> str:
    return "throughput" if key.partition(".")[0].endswith("throughput") else "latency"


def tolerance(key: str, cv: float) -> float:
    return max(FLOOR_OVERRIDES.get(key, FLOORS[metric_family(key)]), K_CV * cv)


def judge(key: str, value: float | None, base: BaselineMetric | None) -> MetricVerdict:
    """One metric's verdict: fail beyond the tolerance in the worse direction, warn beyond half of it."""
    direction = GATED_METRICS[key]
    if base is None or value is None or not base.median:
        return MetricVerdict(key, "no-baseline", value, direction=direction)
    delta = (value - base.median) / base.median
    worse = -delta if direction == "higher" else delta
    tol = tolerance(key, base.cv)
    verdict = "fail" if worse > tol else "warn" if worse > tol * WARN_FRACTION else "pass"
    return MetricVerdict(key, verdict, value, base.median, delta * 100, tol * 100, base.unit, direction)


def compare(result: PerfResult, baseline: dict | None) -> list[MetricVerdict]:
    metrics = read_metrics(baseline) if baseline else {}
    return [judge(key, result.value(key), metrics.get(key)) for key in GATED_METRICS]


def overall(verdicts: list[MetricVerdict]) -> str:
    """The worst verdict; metrics missing from the baseline do not hide the others."""
    present = {v.verdict for v in verdicts}
    return next((v for v in ("fail", "warn", "pass") if v in present), "no-baseline")


def read_metrics(baseline: dict) -> dict[str, BaselineMetric]:
    out: dict[str, BaselineMetric] = {}
    for key, m in (baseline.get("metrics") or {}).items():
        if isinstance(m, dict) and isinstance(m.get("median"), (int, float)):
            out[key] = BaselineMetric(str(m.get("direction") or GATED_METRICS.get(key, "higher")), float(m["median"]),
                                      float(m.get("cv") or 0.0), int(m.get("runs") or 1), str(m.get("unit") or ""))
    return out


def load_baseline(path: Path) -> dict | None:
    """The baseline document, or None when there is none. A broken file is an error, not a missing one."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("schemaVersion") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a schemaVersion {SCHEMA_VERSION} baseline")
    return data


def build_baseline(recipe_id: str, profile: str, results: list[PerfResult], provenance: dict) -> dict:
    """A baseline document from valid runs: median and CV (sample std / mean) of each gated metric."""
    if not results or not all(r.valid for r in results):
        raise ValueError("a baseline is only written from valid runs")
    metrics: dict[str, dict] = {}
    for key, direction in GATED_METRICS.items():
        values = [v for v in (r.value(key) for r in results) if v is not None]
        if not values:
            continue
        median = statistics.median(values)
        cv = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 and statistics.mean(values) else 0.0
        unit = results[0].metrics[key.rpartition(".")[0]].unit
        metrics[key] = {"direction": direction, "median": median, "cv": cv, "runs": len(values), "unit": unit, "values": values}
    return {"schemaVersion": SCHEMA_VERSION, "recipe": recipe_id, "environment": ENVIRONMENT, "profile": profile,
            "metrics": metrics, "provenance": provenance}


def write_baseline(path: Path, baseline: dict) -> None:
    """Atomic: a reader never sees half a baseline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".baseline-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(baseline, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def manifest_hash(recipe_dir: Path) -> str:
    """sha256 over deploy.yaml then perf.yaml: the baseline belongs to these manifests."""
    h = hashlib.sha256()
    for name in ("deploy.yaml", "perf.yaml"):
        p = recipe_dir / name
        h.update(p.read_bytes() if p.exists() else b"")
    return "sha256:" + h.hexdigest()


def provenance(recipe_dir: Path, aiperf_args: list[str], aiperf_version: str, extra: dict | None = None) -> dict:
    dynamo = _version("ai-dynamo")
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gitSha": _git_sha(recipe_dir),
        "harnessVersion": __version__,
        "dynamoVersion": dynamo,
        "backendVersions": {"mocker": dynamo} if dynamo else {},
        "aiperfVersion": aiperf_version or _version("aiperf") or "",
        "aiperfArgs": aiperf_args,
        "hardware": f"cpu-{os.cpu_count()}",
        "manifestHash": manifest_hash(recipe_dir),
        **({"extra": extra} if extra else {}),
    }


def verdicts_to_dicts(verdicts: list[MetricVerdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_sha(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
