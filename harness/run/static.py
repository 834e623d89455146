"""The static run: discover and select recipes, run every check, collect the findings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.recipe.changes import select_changed
from harness.checks import TREE_ID, Check, CheckContext, all_checks, run_check
from harness.recipe.discovery import RecipeTree, default_recipes_dir, discover, select
from harness.recipe.findings import Finding, Report, Severity
from harness.recipe.model import FileCache, Recipe


@dataclass
class Selection:
    """The recipes one run works on, and the tree they came from."""

    root: Path
    all: list[Recipe]
    chosen: list[Recipe]
    cache: FileCache
    notes: list[str] = field(default_factory=list)

    @property
    def tree(self) -> RecipeTree:
        return RecipeTree(self.root, self.all, self.cache)

    @property
    def whole_tree(self) -> bool:
        return len(self.chosen) == len(self.all)


def make_selection(recipes_dir: str | Path | None, selectors: Iterable[str] = (), changed_since: str | None = None,
                   max_bytes: int | None = None) -> Selection:
    """Raises discovery.SelectionError for an unknown selector, changes.ChangeError for a bad ref."""
    root = Path(recipes_dir).absolute() if recipes_dir else default_recipes_dir()
    cache = FileCache(root, max_bytes)
    recipes = discover(root, cache)
    chosen = select(recipes, [s for s in selectors if s])
    notes = []
    if changed_since:
        before = len(chosen)
        chosen = [r for r in select_changed(chosen, root, changed_since)]
        notes.append(f"--changed-since {changed_since}: {len(chosen)} of {before} recipes touched")
    return Selection(root, recipes, chosen, cache, notes)


def context_for(selection: Selection, options: dict[str, Any] | None = None) -> CheckContext:
    return CheckContext(selection.root, dict(options or {}))


def run_static(selection: Selection, ctx: CheckContext, checks: list[Check] | None = None) -> Report:
    """Every check over every chosen recipe (tree checks once, when the whole tree is chosen
    or the tree itself changed)."""
    checks = checks if checks is not None else all_checks()
    report = Report(recipes=[r.id for r in selection.chosen])
    for chk in checks:
        if chk.scope == "tree":
            report.findings.extend(run_check(chk, selection.tree, ctx))
    for recipe in selection.chosen:
        for chk in checks:
            if chk.scope == "recipe":
                report.findings.extend(run_check(chk, recipe, ctx))
    report.findings = dedupe(report.findings)
    return report


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Model-cache files are shared by a model's recipes: report each place once per check."""
    seen: set[tuple] = set()
    out = []
    for f in findings:
        key = (f.check_id, f.file, f.line, f.column, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def summary_line(report: Report) -> str:
    return (f"{len(report.recipes)} recipes checked: {report.errors} error(s), {report.warnings} warning(s)")


__all__ = ["Selection", "make_selection", "context_for", "run_static", "summary_line", "TREE_ID", "Severity"]
