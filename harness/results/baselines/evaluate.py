"""The one call a stage makes: aggregate -> find the baseline -> compare -> (update) -> append to history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.results.baselines.aggregate import RunStats, aggregate
from harness.results.baselines.compare import RecipeVerdict, compare
from harness.results.baselines.history import HistoryEntry, append_history
from harness.results.baselines.policy import Policy, load_policy
from harness.results.baselines.store import (
    BASELINES_ROOT,
    HISTORY_ROOT,
    BaselineRefused,
    Provenance,
    baseline_path,
    load_baseline,
    update_baseline,
    utc_now,
)
from harness.results.metrics import PerfResult


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


def evaluate_recipe(
    results: list[PerfResult],
    *,
    recipe: str,
    environment: str,
    provenance: Provenance,
    run_id: str,
    started_at: str | None = None,
    update: bool = False,
    policy: Policy | None = None,
    baselines_root: Path = BASELINES_ROOT,
    history_root: Path | None = HISTORY_ROOT,
    experiment: str | None = None,
) -> Evaluation:
    """aggregate -> find the baseline -> compare -> (update) -> append to history.
    A malformed baseline file is not swallowed: BaselineError propagates with its path."""
    policy = policy or load_policy()
    stats = aggregate(results, policy)
    path = baseline_path(environment, recipe, baselines_root)
    baseline = load_baseline(path) if path.exists() else None
    verdict = compare(
        stats, baseline, policy, recipe=recipe, environment=environment, baseline_file=path, provenance=provenance
    )
    updated, refused = False, ""
    if update:
        try:
            verdict.baseline_update = update_baseline(path, stats, provenance, recipe=recipe, environment=environment)
            updated = True
        except BaselineRefused as exc:
            refused = verdict.baseline_update = str(exc)
    entry = HistoryEntry(
        run_id, started_at or utc_now(), utc_now(), provenance.git_sha, verdict, policy.to_dict(), experiment
    )
    written = append_history(environment, recipe, entry, history_root) if history_root is not None else None
    return Evaluation(stats, verdict, entry, written, updated, refused)
