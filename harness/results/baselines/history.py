"""The run history: one validated JSON line per run of a recipe, and regressions confirmed over consecutive runs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.results.baselines.compare import RecipeVerdict
from harness.results.baselines.policy import DEFAULT_POLICY, Policy
from harness.results.baselines.store import (
    HISTORY_ROOT,
    SCHEMA_VERSION,
    BaselineError,
    check_environment,
    check_recipe_id,
    schema_problems,
)


@dataclass
class HistoryEntry:
    """One run of one recipe, as kept in reports/history (and, per run, in summary.json)."""

    run_id: str
    started_at: str
    finished_at: str
    git_sha: str | None
    result: RecipeVerdict
    policy: dict | None = None
    # What made the run an experiment (e.g. "--sim-slowdown 2"): kept for the record, left out of the
    # trend plots and of the verdict history that confirms regressions. None: a measurement.
    experiment: str | None = None

    def to_dict(self) -> dict:
        out = {
            "schemaVersion": SCHEMA_VERSION,
            "runId": self.run_id,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "gitSha": self.git_sha,
            **self.result.to_dict(),
        }
        if self.policy:
            out["policy"] = self.policy
        if self.experiment:
            out["experiment"] = self.experiment
        return out

    @classmethod
    def from_dict(cls, d: dict) -> HistoryEntry:
        return cls(
            d["runId"],
            d["startedAt"],
            d["finishedAt"],
            d.get("gitSha"),
            RecipeVerdict.from_dict(d),
            d.get("policy"),
            d.get("experiment"),
        )


def history_path(env: str, recipe_id: str, root: Path = HISTORY_ROOT) -> Path:
    """`<root>/<env>/<recipe-id>.jsonl`: the recipe id's slashes become directories."""
    check_environment(env)
    check_recipe_id(recipe_id)
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
        if entry.experiment:
            continue  # a deliberately slowed run proves the gate; it is no evidence about the recipe
        for key, m in entry.result.metrics.items():
            if m.verdict == "fail":
                streaks.setdefault(key, []).append(entry.run_id)
            elif m.verdict in ("pass", "warn"):
                streaks.pop(key, None)
    return {
        key: Regression(key, "confirmed" if len(runs) >= policy.confirm_after else "suspect", tuple(runs))
        for key, runs in streaks.items()
    }
