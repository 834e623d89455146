"""Baselines: aggregate repeated benchmark runs, judge them against a recorded baseline with a noise-aware tolerance, keep a history.

The sim and GPU stages call `evaluate_recipe` once per recipe (or the pieces: `aggregate`,
`find_baseline`, `compare`, `update_baseline`, `append_history`). Files:

- `reports/baselines/<env>/<recipe-id>.json`   (schemas/baseline.json; env = `sim` or `gpu/<hardware>`)
- `reports/history/<env>/<recipe-id>.jsonl`    (schemas/history-entry.json, one line per run)

Tolerance of a metric = max(floor of its family, k x CV) with CV the larger of the run's and the
baseline's. A change against the metric's direction beyond the tolerance fails, beyond half of it
warns. Policy defaults are below; a project overrides them in pyproject.toml:

    [tool.recipe-harness.baselines]
    k = 3.0
    warn-fraction = 0.5
    output-length-tolerance-pct = 2.0
    confirm-after = 2
    [tool.recipe-harness.baselines.floors]      # percent, by family or by exact metric key
    throughput = 5.0
    latency = 5.0
    "time_to_first_token.p99" = 15.0
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
from referencing import Registry, Resource

from harness import __version__
from harness.results.metrics import GATED_METRICS, Direction, PerfResult
from harness.recipe.schemas import SCHEMAS_DIR, errors

SCHEMA_VERSION = 1
REPORTS_DIR = Path(os.environ.get("RECIPE_HARNESS_REPORTS", "reports"))
BASELINES_ROOT = REPORTS_DIR / "baselines"
HISTORY_ROOT = REPORTS_DIR / "history"

# Worst last: a recipe's verdict is the worst of its metrics' (and `invalid` trumps everything).
VERDICTS = ("pass", "no-baseline", "warn", "fail", "invalid")
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}
OUTPUT_LENGTH_METRIC = "output_sequence_length.avg"

# Why these numbers: docs in benchmarks/regression_detection.py and the module docstring above.
DEFAULT_FLOORS_PCT: dict[str, float] = {"throughput": 5.0, "latency": 5.0}


class BaselineError(ValueError):
    """A baseline or history file that cannot be used; the message starts with its path."""


class BaselineRefused(Exception):
    """`update_baseline` would not write: the message says why (invalid runs, nothing measured)."""


class PolicyError(ValueError):
    """A malformed [tool.recipe-harness.baselines] table; the message names the file."""


# --- policy -----------------------------------------------------------------------------


def metric_family(key: str) -> str:
    """`throughput` for the *_throughput metrics, `latency` for everything else gated (TTFT, ITL, request latency)."""
    return "throughput" if key.partition(".")[0].endswith("throughput") else "latency"


@dataclass(frozen=True)
class Policy:
    """How strict the verdicts are. Floors are percentages by family, or by exact metric key (which wins)."""

    k: float = 3.0
    floors_pct: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS_PCT))
    warn_fraction: float = 0.5
    output_length_tolerance_pct: float = 2.0
    confirm_after: int = 2

    def floor_pct(self, key: str) -> float:
        if key in self.floors_pct:
            return self.floors_pct[key]
        return self.floors_pct.get(metric_family(key), DEFAULT_FLOORS_PCT[metric_family(key)])

    def tolerance_pct(self, key: str, cv: float, baseline_cv: float) -> float:
        """max(floor, k x the larger CV): the noisier side of the comparison sets the band."""
        return max(self.floor_pct(key), self.k * max(cv, baseline_cv) * 100.0)

    def to_dict(self) -> dict:
        return {
            "k": self.k, "floorsPct": dict(self.floors_pct), "warnFraction": self.warn_fraction,
            "outputLengthTolerancePct": self.output_length_tolerance_pct, "confirmAfter": self.confirm_after,
        }


DEFAULT_POLICY = Policy()
_POLICY_KEYS = {"k": float, "warn-fraction": float, "output-length-tolerance-pct": float, "confirm-after": int, "floors": dict}


def policy_from_table(table: Mapping[str, Any], source: str = "policy") -> Policy:
    """A Policy from the kebab-case TOML table; unknown keys and wrong types are errors, not silently ignored."""
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        kind = _POLICY_KEYS.get(key)
        if kind is None:
            raise PolicyError(f"{source}: unknown key {key!r} in [tool.recipe-harness.baselines] (known: {', '.join(_POLICY_KEYS)})")
        if kind is dict:
            if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()):
                raise PolicyError(f"{source}: floors must map a family (throughput, latency) or a metric key to a percentage >= 0")
            kwargs["floors_pct"] = {**DEFAULT_FLOORS_PCT, **{k: float(v) for k, v in value.items()}}
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"{source}: {key} must be a number >= 0, got {value!r}")
        else:
            kwargs[key.replace("-", "_")] = kind(value)
    policy = Policy(**kwargs)
    if policy.k <= 0 or not 0 <= policy.warn_fraction <= 1 or policy.confirm_after < 1:
        raise PolicyError(f"{source}: need k > 0, 0 <= warn-fraction <= 1 and confirm-after >= 1")
    return policy


def load_policy(pyproject: Path | None = None) -> Policy:
    """The policy from `[tool.recipe-harness.baselines]` in pyproject.toml (the nearest one above the
    working directory when no path is given); the defaults when there is no such table."""
    if pyproject is None:
        here = Path.cwd()
        pyproject = next((d / "pyproject.toml" for d in (here, *here.parents) if (d / "pyproject.toml").is_file()), None)
        if pyproject is None:
            return DEFAULT_POLICY
    try:
        data = tomllib.loads(Path(pyproject).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{pyproject}: {exc}") from None
    table = data.get("tool", {}).get("recipe-harness", {}).get("baselines")
    return DEFAULT_POLICY if table is None else policy_from_table(table, str(pyproject))


# --- aggregation ------------------------------------------------------------------------


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
            return (f"output length off target: {measured:.1f} tokens on average vs {target} requested "
                    f"({off:+.1f}%, allowed {policy.output_length_tolerance_pct:g}%)")
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


# --- the baseline file ------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_recipe_id(recipe_id: str) -> None:
    parts = recipe_id.split("/")
    if len(parts) != 3 or any(not p or p.startswith(".") for p in parts):
        raise ValueError(f"not a recipe id (<model>/<framework>/<mode>): {recipe_id!r}")


def _check_environment(env: str) -> None:
    kind, _, hardware = env.partition("/")
    if not (env == "sim" or (kind == "gpu" and hardware and "/" not in hardware and not hardware.startswith("."))):
        raise ValueError(f"environment must be 'sim' or 'gpu/<hardware>', got {env!r}")


def baseline_path(env: str, recipe_id: str, root: Path = BASELINES_ROOT) -> Path:
    """`<root>/<env>/<recipe-id>.json`: the recipe id's slashes become directories."""
    _check_environment(env)
    _check_recipe_id(recipe_id)
    return Path(root) / env / f"{recipe_id}.json"


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit being measured: GITHUB_SHA in Actions, else `git rev-parse HEAD`, else None."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def manifest_hash(documents: Iterable[str | bytes]) -> str:
    """sha256 over the rendered manifests (or a sim plan), in the given order."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.encode() if isinstance(doc, str) else doc)
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class Image:
    ref: str
    digest: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a measurement came from. `Provenance.collect(...)` fills what the process can find out."""

    profile: str
    hardware: str
    manifest_hash: str = ""
    date: str = ""
    git_sha: str | None = None
    harness_version: str = __version__
    dynamo_version: str | None = None
    backend_versions: Mapping[str, str] = field(default_factory=dict)
    images: tuple[Image, ...] = ()
    aiperf_version: str = ""
    aiperf_args: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def collect(cls, *, profile: str, hardware: str | None = None, manifest_hash: str = "",
                images: Iterable[Image] = (), backend_versions: Mapping[str, str] | None = None,
                stats: RunStats | None = None, extra: Mapping[str, Any] | None = None) -> "Provenance":
        """Date, git SHA, harness/Dynamo/AIPerf versions from this process; AIPerf arguments from the runs.
        `hardware` defaults to `cpu-<nproc>` (the sim's label)."""
        return cls(
            profile=profile, hardware=hardware or f"cpu-{os.cpu_count() or 1}", manifest_hash=manifest_hash,
            date=utc_now(), git_sha=git_sha(), dynamo_version=package_version("ai-dynamo"),
            backend_versions=dict(backend_versions or {}), images=tuple(images),
            aiperf_version=(stats.aiperf_version if stats and stats.aiperf_version else package_version("aiperf") or ""),
            aiperf_args=tuple(stats.aiperf_args if stats else ()), extra=dict(extra or {}),
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "date": self.date or utc_now(), "gitSha": self.git_sha, "harnessVersion": self.harness_version,
            "dynamoVersion": self.dynamo_version, "backendVersions": dict(self.backend_versions),
            "images": [{"ref": i.ref, "digest": i.digest} for i in self.images],
            "aiperfVersion": self.aiperf_version, "aiperfArgs": list(self.aiperf_args),
            "hardware": self.hardware, "manifestHash": self.manifest_hash,
        }
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class BaselineMetric:
    direction: Direction
    median: float
    cv: float
    runs: int
    unit: str
    min: float | None = None
    max: float | None = None
    values: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"direction": self.direction, "median": self.median, "cv": self.cv, "runs": self.runs, "unit": self.unit}
        if self.values:
            out.update(min=min(self.values), max=max(self.values), values=list(self.values))
        return out


@dataclass
class Baseline:
    """A loaded reports/baselines file. `provenance` stays the raw mapping: it is shown, never computed with."""

    recipe: str
    environment: str
    profile: str
    metrics: dict[str, BaselineMetric]
    provenance: dict[str, Any]
    path: Path | None = None

    @classmethod
    def from_stats(cls, stats: RunStats, provenance: Provenance, *, recipe: str, environment: str) -> "Baseline":
        metrics = {
            k: BaselineMetric(s.direction, s.median, s.cv, s.runs, s.unit, min(s.values), max(s.values), s.values)
            for k, s in stats.metrics.items()
        }
        if not provenance.aiperf_args and stats.aiperf_args:
            provenance = replace(provenance, aiperf_args=tuple(stats.aiperf_args))
        if not provenance.aiperf_version and stats.aiperf_version:
            provenance = replace(provenance, aiperf_version=stats.aiperf_version)
        return cls(recipe, environment, provenance.profile, metrics, provenance.to_dict())

    def to_dict(self) -> dict:
        return {
            "schemaVersion": SCHEMA_VERSION, "recipe": self.recipe, "environment": self.environment, "profile": self.profile,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()}, "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> "Baseline":
        metrics = {
            k: BaselineMetric(m["direction"], float(m["median"]), float(m["cv"]), int(m["runs"]), m["unit"],
                              m.get("min"), m.get("max"), tuple(m.get("values", ())))
            for k, m in data["metrics"].items()
        }
        return cls(data["recipe"], data["environment"], data["profile"], metrics, dict(data["provenance"]), path)


@lru_cache(maxsize=None)
def _registry() -> Registry:
    """Our result schemas reference each other (summary -> baseline, history-entry -> summary)."""
    resources = []
    for name in ("baseline.json", "summary.json", "history-entry.json"):
        schema = json.loads((SCHEMAS_DIR / name).read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def schema_validator(name: str) -> jsonschema.Validator:
    """Validator for schemas/<name> (baseline.json, summary.json, history-entry.json)."""
    schema = json.loads((SCHEMAS_DIR / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


def schema_problems(name: str, instance: Any) -> list[str]:
    """Every schema violation as `<json path>: <message>`; empty when valid."""
    return [e.message for e in errors(schema_validator(name), instance, name)]


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file; BaselineError names the file and every problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    problems = schema_problems("baseline.json", data)
    if problems:
        raise BaselineError(f"{path}: not a valid baseline (schemas/baseline.json): " + "; ".join(problems))
    return Baseline.from_dict(data, path)


def find_baseline(env: str, recipe_id: str, root: Path = BASELINES_ROOT) -> Baseline | None:
    """The recipe's baseline, None when none was recorded; a malformed file raises BaselineError."""
    path = baseline_path(env, recipe_id, root)
    return load_baseline(path) if path.exists() else None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and os.replace: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def refusal_reason(stats: RunStats) -> str:
    """Why these runs must not become a baseline ('' when they may)."""
    if stats.runs == 0:
        return "no runs"
    if stats.invalid_runs:
        return stats.invalid_summary()
    if not stats.metrics:
        return "no gated metric was measured"
    return ""


def update_baseline(path: Path, stats: RunStats, provenance: Provenance, *, recipe: str, environment: str) -> str:
    """Record `stats` as the new baseline at `path`, atomically, and say what changed.
    Raises BaselineRefused when any run is invalid: a broken run never becomes the bar."""
    path = Path(path)
    reason = refusal_reason(stats)
    if reason:
        raise BaselineRefused(f"{path}: baseline not updated: {reason}")
    old: Baseline | None = None
    note = ""
    if path.exists():
        try:
            old = load_baseline(path)
        except BaselineError as exc:
            note = f" (replaced an unreadable file: {exc})"
    new = Baseline.from_stats(stats, provenance, recipe=recipe, environment=environment)
    data = new.to_dict()
    problems = schema_problems("baseline.json", data)
    if problems:  # a harness bug, not a user error: never write a file the next run cannot read
        raise BaselineRefused(f"{path}: baseline not updated: it would not validate: " + "; ".join(problems))
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return describe_change(old, new, path) + note


def describe_change(old: Baseline | None, new: Baseline, path: Path) -> str:
    """The human diff of a baseline update: per metric old -> new and the delta."""
    runs = max((m.runs for m in new.metrics.values()), default=0)
    if old is None:
        head = f"{path}: new baseline from {runs} run(s)"
    else:
        was = old.provenance
        head = f"{path}: updated from {runs} run(s) (was: {was.get('date', '?')}, {str(was.get('gitSha') or '?')[:12]})"
    lines = [head]
    width = max((len(k) for k in (*new.metrics, *(old.metrics if old else ()))), default=0)
    for key, m in new.metrics.items():
        before = old.metrics.get(key) if old else None
        if before is None:
            lines.append(f"  {key:<{width}}  {_fmt(m.median)} {m.unit} (new)")
        else:
            delta = _delta_pct(m.median, before.median)
            change = f"{delta:+.1f}%" if delta is not None else "n/a"
            lines.append(f"  {key:<{width}}  {_fmt(before.median)} -> {_fmt(m.median)} {m.unit} ({change}; cv {before.cv:.1%} -> {m.cv:.1%})")
    for key in (old.metrics if old else {}):
        if key not in new.metrics:
            lines.append(f"  {key:<{width}}  removed (not measured)")
    if old is not None:
        for field_name in ("aiperfVersion", "dynamoVersion", "harnessVersion", "hardware", "manifestHash"):
            a, b = old.provenance.get(field_name), new.provenance.get(field_name)
            if a != b:
                lines.append(f"  provenance {field_name}: {a} -> {b}")
        if old.profile != new.profile:
            lines.append(f"  profile: {old.profile} -> {new.profile}")
    return "\n".join(lines)


# --- comparison -------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 100 else f"{value:.2f}" if magnitude >= 1 else f"{value:.3g}"


def _delta_pct(value: float, base: float) -> float | None:
    return (value - base) / abs(base) * 100.0 if base else None


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
            "name": self.key, "direction": self.direction, "unit": self.unit, "value": self.value, "baseline": self.baseline,
            "deltaPct": _round(self.delta_pct), "tolerancePct": _round(self.tolerance_pct), "cv": _round(self.cv, 5),
            "baselineCv": _round(self.baseline_cv, 5), "verdict": self.verdict, "reason": self.reason,
        }
        if self.regression:
            out["regression"] = self.regression
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "MetricVerdict":
        return cls(d["name"], d["direction"], d["unit"], d["verdict"], d["reason"], d["value"], d["baseline"], d["deltaPct"],
                   d["tolerancePct"], d["cv"], d.get("baselineCv"), d.get("regression"))


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
        lines += [f"  {m.verdict}: {m.reason}" for m in self.metrics.values() if m.verdict not in ("pass", "no-baseline")]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {
            "recipe": self.recipe, "environment": self.environment, "verdict": self.verdict, "reason": self.reason,
            "runs": self.runs, "validRuns": self.valid_runs,
            "invalidRuns": [{"index": r.index, "reason": r.reason} for r in self.invalid_runs],
            "baseline": self.baseline_ref, "metrics": [m.to_dict() for m in self.metrics.values()],
        }
        if self.regression:
            out["regression"] = self.regression
        if self.baseline_update:
            out["baselineUpdate"] = self.baseline_update
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RecipeVerdict":
        return cls(
            d["recipe"], d["environment"], d["verdict"], d["reason"], d["runs"], d["validRuns"],
            [InvalidRun(r["index"], r["reason"]) for r in d["invalidRuns"]],
            {m["name"]: MetricVerdict.from_dict(m) for m in d["metrics"]}, d["baseline"], d.get("baselineUpdate", ""),
        )


def judge_metric(key: str, spread: MetricSpread | None, base: BaselineMetric | None, policy: Policy) -> MetricVerdict:
    """One metric's verdict. The reason names the metric, value, baseline, delta and tolerance."""
    direction = GATED_METRICS.get(key) or (base.direction if base else "higher")
    unit = spread.unit if spread and spread.unit else (base.unit if base else "")
    if spread is None:
        return MetricVerdict(key, direction, unit, "invalid", f"{key}: not measured by any valid run",
                             baseline=base.median if base else None, baseline_cv=base.cv if base else None)
    value, cv = spread.median, spread.cv
    shown = f"{key} {_fmt(value)} {unit}".rstrip()
    if base is None:
        return MetricVerdict(key, direction, unit, "no-baseline", f"{shown}: no baseline for this metric", value, cv=cv)
    delta = _delta_pct(value, base.median)
    if delta is None:
        return MetricVerdict(key, direction, unit, "no-baseline", f"{shown}: baseline median is 0, nothing to compare",
                             value, base.median, cv=cv, baseline_cv=base.cv)
    tolerance = policy.tolerance_pct(key, cv, base.cv)
    worse = -delta if direction == "higher" else delta  # > 0: moved the wrong way
    better_word = "higher" if direction == "higher" else "lower"
    head = f"{shown} vs baseline {_fmt(base.median)}: {delta:+.1f}%"
    if worse > tolerance:
        verdict, tail = "fail", f"worse beyond tolerance {tolerance:.1f}% ({better_word} is better)"
    elif worse > tolerance * policy.warn_fraction:
        verdict, tail = "warn", f"worse by more than {policy.warn_fraction:g} of tolerance {tolerance:.1f}%"
    elif -worse > tolerance:
        verdict, tail = "pass", f"better beyond tolerance {tolerance:.1f}%: consider --update-baselines"
    else:
        verdict, tail = "pass", f"within tolerance {tolerance:.1f}%"
    return MetricVerdict(key, direction, unit, verdict, f"{head}, {tail}", value, base.median, delta, tolerance, cv, base.cv)


def compare(stats: RunStats, baseline: Baseline | None, policy: Policy = DEFAULT_POLICY, *, recipe: str = "",
            environment: str = "", baseline_file: Path | None = None, provenance: Provenance | None = None) -> RecipeVerdict:
    """Judge aggregated runs against a baseline (None: no baseline recorded yet).
    `recipe`/`environment` default to the baseline's; `baseline_file` is where one was looked for; with the
    run's `provenance`, a baseline of another profile counts as none and one from other hardware is named."""
    recipe = recipe or (baseline.recipe if baseline else "")
    environment = environment or (baseline.environment if baseline else "sim")
    where = baseline.path if baseline and baseline.path else baseline_file
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
        ref = {"path": str(where or ""), "date": baseline.provenance.get("date"), "gitSha": baseline.provenance.get("gitSha"), "runs": runs}
    verdict, reason = _recipe_verdict(stats, baseline, metrics, where)
    if baseline is None and verdict == "no-baseline" and note:
        reason = f"{note}: record one with --update-baselines"
    elif note:
        reason = f"{reason} ({note})"
    return RecipeVerdict(recipe, environment, verdict, reason, stats.runs, stats.valid_runs, list(stats.invalid_runs), metrics, ref)


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


def _recipe_verdict(stats: RunStats, baseline: Baseline | None, metrics: dict[str, MetricVerdict], where: Path | None) -> tuple[str, str]:
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


# --- history ----------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    """One run of one recipe, as kept in reports/history (and, per run, in summary.json)."""

    run_id: str
    started_at: str
    finished_at: str
    git_sha: str | None
    result: RecipeVerdict
    policy: dict | None = None

    def to_dict(self) -> dict:
        out = {"schemaVersion": SCHEMA_VERSION, "runId": self.run_id, "startedAt": self.started_at,
               "finishedAt": self.finished_at, "gitSha": self.git_sha, **self.result.to_dict()}
        if self.policy:
            out["policy"] = self.policy
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "HistoryEntry":
        return cls(d["runId"], d["startedAt"], d["finishedAt"], d.get("gitSha"), RecipeVerdict.from_dict(d), d.get("policy"))


def history_path(env: str, recipe_id: str, root: Path = HISTORY_ROOT) -> Path:
    """`<root>/<env>/<recipe-id>.jsonl`: the recipe id's slashes become directories."""
    _check_environment(env)
    _check_recipe_id(recipe_id)
    return Path(root) / env / f"{recipe_id}.jsonl"


def append_history(env: str, recipe_id: str, entry: HistoryEntry, root: Path = HISTORY_ROOT) -> Path:
    """Append one validated JSON line (a single O_APPEND write, so parallel writers do not interleave)."""
    data = entry.to_dict()
    problems = schema_problems("history-entry.json", data)
    if problems:
        raise BaselineError(f"history entry for {recipe_id} would not validate: " + "; ".join(problems))
    path = history_path(env, recipe_id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(data, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)
    return path


def read_history(path: Path) -> list[HistoryEntry]:
    """Every entry of one history file, in append order; a malformed line raises BaselineError with path:line."""
    entries = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BaselineError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
        problems = schema_problems("history-entry.json", data)
        if problems:
            raise BaselineError(f"{path}:{lineno}: not a history entry: " + "; ".join(problems[:3]))
        entries.append(HistoryEntry.from_dict(data))
    return entries


def iter_history(root: Path = HISTORY_ROOT, env: str | None = None) -> Iterable[tuple[str, str, Path]]:
    """(environment, recipe id, file) for every history file under root (optionally one environment)."""
    root = Path(root)
    for path in sorted(root.rglob("*.jsonl")):
        parts = path.relative_to(root).with_suffix("").parts
        split = 2 if parts[0] == "gpu" else 1
        file_env, recipe_id = "/".join(parts[:split]), "/".join(parts[split:])
        if (env is None or file_env == env) and recipe_id.count("/") == 2:
            yield file_env, recipe_id, path


@dataclass(frozen=True)
class Regression:
    metric: str
    status: str  # "suspect" (one failing run) | "confirmed" (confirm_after consecutive ones)
    run_ids: tuple[str, ...]  # the failing streak, oldest first


def confirm_regressions(history: list[HistoryEntry], policy: Policy = DEFAULT_POLICY) -> dict[str, Regression]:
    """Nightly mode, for one recipe's history (oldest first): a metric failing in its latest measured run is
    `suspect`; failing in `confirm_after` (2) consecutive measured runs it is `confirmed`. Runs that measured
    nothing for the metric (invalid, no baseline) neither extend nor break a streak; a pass or warn breaks it."""
    streaks: dict[str, list[str]] = {}
    for entry in history:
        for key, m in entry.result.metrics.items():
            if m.verdict == "fail":
                streaks.setdefault(key, []).append(entry.run_id)
            elif m.verdict in ("pass", "warn"):
                streaks.pop(key, None)
    return {
        key: Regression(key, "confirmed" if len(runs) >= policy.confirm_after else "suspect", tuple(runs))
        for key, runs in streaks.items()
    }


# --- the one call a stage makes ---------------------------------------------------------


@dataclass
class Evaluation:
    stats: RunStats
    verdict: RecipeVerdict
    entry: HistoryEntry
    history_file: Path | None
    updated: bool = False
    update_refused: str = ""

    def failure(self) -> str | None:
        """What the baseline step should fail with, or None. With --update-baselines only a refused update fails."""
        if self.update_refused:
            return self.update_refused
        if self.updated:
            return None
        return self.verdict.message() if self.verdict.verdict in ("fail", "invalid") else None


def evaluate_recipe(results: list[PerfResult], *, recipe: str, environment: str, provenance: Provenance,
                    run_id: str, started_at: str | None = None, update: bool = False, policy: Policy | None = None,
                    baselines_root: Path = BASELINES_ROOT, history_root: Path | None = HISTORY_ROOT) -> Evaluation:
    """aggregate -> find the baseline -> compare -> (update) -> append to history.
    A malformed baseline file is not swallowed: BaselineError propagates with its path."""
    policy = policy or load_policy()
    stats = aggregate(results, policy)
    path = baseline_path(environment, recipe, baselines_root)
    baseline = load_baseline(path) if path.exists() else None
    verdict = compare(stats, baseline, policy, recipe=recipe, environment=environment, baseline_file=path, provenance=provenance)
    updated, refused = False, ""
    if update:
        try:
            verdict.baseline_update = update_baseline(path, stats, provenance, recipe=recipe, environment=environment)
            updated = True
        except BaselineRefused as exc:
            refused = verdict.baseline_update = str(exc)
    entry = HistoryEntry(run_id, started_at or utc_now(), utc_now(), provenance.git_sha, verdict, policy.to_dict())
    written = append_history(environment, recipe, entry, history_root) if history_root is not None else None
    return Evaluation(stats, verdict, entry, written, updated, refused)
