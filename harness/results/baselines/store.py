"""The baseline file: where baselines and history live, provenance, schema validation, atomic load and update."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from harness import __version__
from harness.recipe.schemas import SCHEMAS_DIR, errors
from harness.results.baselines.aggregate import RunStats, delta_pct, format_value
from harness.results.metrics import Direction

SCHEMA_VERSION = 1
REPORTS_DIR = Path(os.environ.get("RECIPE_HARNESS_REPORTS", "reports"))


@dataclass(frozen=True)
class ReportRoots:
    """Where baselines and the run history are kept: the one place these folders are named and defaulted."""

    baselines: Path
    history: Path

    @classmethod
    def under(cls, reports: Path) -> ReportRoots:
        return cls(Path(reports) / "baselines", Path(reports) / "history")

    @classmethod
    def beside(cls, recipes_root: Path) -> ReportRoots:
        """reports/ next to a recipes tree (the repository's, or a foreign tree's): what a pytest run uses."""
        return cls.under(Path(recipes_root).parent / "reports")


def repo_relative(path: Path | str | None) -> str:
    """How a report names a file: relative to the repository that holds it (the nearest parent with
    `.git`), else to the working directory when below it, else as given. Reports travel (CI
    artifacts, the nightly summary): an absolute path names a machine, not a file."""
    if path is None or str(path) == "":
        return ""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    for parent in p.parents:
        if (parent / ".git").exists():
            return os.path.relpath(p, parent)
    cwd = Path.cwd()
    try:
        return str(p.relative_to(cwd))
    except ValueError:
        return str(p)


# The library's and the CLI's default: $RECIPE_HARNESS_REPORTS, else ./reports.
DEFAULT_ROOTS = ReportRoots.under(REPORTS_DIR)
BASELINES_ROOT = DEFAULT_ROOTS.baselines
HISTORY_ROOT = DEFAULT_ROOTS.history


class BaselineError(ValueError):
    """A baseline or history file that cannot be used; the message starts with its path."""


class BaselineRefused(Exception):
    """`update_baseline` would not write: the message says why (invalid runs, nothing measured)."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_recipe_id(recipe_id: str) -> None:
    parts = recipe_id.split("/")
    if len(parts) != 3 or any(not p or p.startswith(".") for p in parts):
        raise ValueError(f"not a recipe id (<model>/<framework>/<mode>): {recipe_id!r}")


def check_environment(env: str) -> None:
    kind, _, hardware = env.partition("/")
    if not (env == "sim" or (kind == "gpu" and hardware and "/" not in hardware and not hardware.startswith("."))):
        raise ValueError(f"environment must be 'sim' or 'gpu/<hardware>', got {env!r}")


def baseline_path(env: str, recipe_id: str, root: Path = BASELINES_ROOT) -> Path:
    """`<root>/<env>/<recipe-id>.json`: the recipe id's slashes become directories."""
    check_environment(env)
    check_recipe_id(recipe_id)
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
    def collect(
        cls,
        *,
        profile: str,
        hardware: str | None = None,
        manifest_hash: str = "",
        images: Iterable[Image] = (),
        backend_versions: Mapping[str, str] | None = None,
        stats: RunStats | None = None,
        extra: Mapping[str, Any] | None = None,
        dynamo_version: str | None = None,
    ) -> Provenance:
        """Date, git SHA, harness/Dynamo/AIPerf versions from this process; AIPerf arguments from the runs.
        `hardware` defaults to `cpu-<nproc>` (the sim's label). `dynamo_version` is the Dynamo that ran
        when it is not this process's (the sim rehearses in a managed env of the recipe's release)."""
        return cls(
            profile=profile,
            hardware=hardware or f"cpu-{os.cpu_count() or 1}",
            manifest_hash=manifest_hash,
            date=utc_now(),
            git_sha=git_sha(),
            dynamo_version=dynamo_version or package_version("ai-dynamo"),
            backend_versions=dict(backend_versions or {}),
            images=tuple(images),
            aiperf_version=(
                stats.aiperf_version if stats and stats.aiperf_version else package_version("aiperf") or ""
            ),
            aiperf_args=tuple(stats.aiperf_args if stats else ()),
            extra=dict(extra or {}),
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "date": self.date or utc_now(),
            "gitSha": self.git_sha,
            "harnessVersion": self.harness_version,
            "dynamoVersion": self.dynamo_version,
            "backendVersions": dict(self.backend_versions),
            "images": [{"ref": i.ref, "digest": i.digest} for i in self.images],
            "aiperfVersion": self.aiperf_version,
            "aiperfArgs": list(self.aiperf_args),
            "hardware": self.hardware,
            "manifestHash": self.manifest_hash,
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
        out: dict[str, Any] = {
            "direction": self.direction,
            "median": self.median,
            "cv": self.cv,
            "runs": self.runs,
            "unit": self.unit,
        }
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
    def from_stats(cls, stats: RunStats, provenance: Provenance, *, recipe: str, environment: str) -> Baseline:
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
            "schemaVersion": SCHEMA_VERSION,
            "recipe": self.recipe,
            "environment": self.environment,
            "profile": self.profile,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> Baseline:
        metrics = {
            k: BaselineMetric(
                m["direction"],
                float(m["median"]),
                float(m["cv"]),
                int(m["runs"]),
                m["unit"],
                m.get("min"),
                m.get("max"),
                tuple(m.get("values", ())),
            )
            for k, m in data["metrics"].items()
        }
        return cls(data["recipe"], data["environment"], data["profile"], metrics, dict(data["provenance"]), path)


@cache
def _registry() -> Registry:
    """Our result schemas reference each other (summary -> baseline, history-entry -> summary)."""
    resources = []
    for name in ("baseline.json", "summary.json", "history-entry.json"):
        schema = json.loads((SCHEMAS_DIR / name).read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
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
    """Write via a temporary file in the same directory and os.replace: readers see the old or the new
    file, never half."""
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
            lines.append(f"  {key:<{width}}  {format_value(m.median)} {m.unit} (new)")
        else:
            delta = delta_pct(m.median, before.median)
            change = f"{delta:+.1f}%" if delta is not None else "n/a"
            lines.append(
                f"  {key:<{width}}  {format_value(before.median)} -> {format_value(m.median)} {m.unit} "
                f"({change}; cv {before.cv:.1%} -> {m.cv:.1%})"
            )
    for key in old.metrics if old else {}:
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
