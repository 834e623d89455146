"""The static run: discover and select recipes, decide which checks apply, run them, collect the findings.

`applicable_checks` is the one answer to "which checks run on this selection": the pytest plugin
makes a test item of each pair and `recipe-harness check` runs them, so both give the same findings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.recipe.changes import select_changed
from harness.checks import TREE_ID, Check, CheckContext, all_checks, run_check
from harness.checks.images import RegistryOptions
from harness.checks.schema import SchemaOptions
from harness.checks.storage import StorageOptions
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
    named_root: bool = False  # the tree was named (--recipes-dir): a foreign tree, checked as a whole

    @property
    def tree(self) -> RecipeTree:
        return RecipeTree(self.root, self.all, self.cache)

    @property
    def whole_tree(self) -> bool:
        return len(self.chosen) == len(self.all)

    @property
    def checks_tree(self) -> bool:
        """Tree checks (docs in sync, layout of the tree) run when the whole tree is chosen, or the
        tree was named explicitly; a one-recipe selection in our own tree is about that recipe."""
        return self.whole_tree or self.named_root


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
    return Selection(root, recipes, chosen, cache, notes, named_root=recipes_dir is not None)


def check_options(crd: Iterable[str | Path] = (), registries: Iterable[str] = (),
                  storage_margin: float | None = None) -> tuple[Any, ...]:
    """The checks' typed options from the run's arguments (`--crd`, `--registry`, `--storage-margin`)."""
    return (
        SchemaOptions(tuple(Path(p) for p in crd)),
        RegistryOptions(tuple(r.strip() for arg in registries for r in str(arg).split(",") if r.strip())),
        StorageOptions(storage_margin),
    )


def context_for(selection: Selection, options: Sequence[Any] = ()) -> CheckContext:
    return CheckContext(selection.root, tuple(options))


def applicable_checks(selection: Selection, checks: Iterable[Check] | None = None) -> list[tuple[Check, Recipe | RecipeTree]]:
    """(check, subject) for every check a static run over the selection executes, in run order:
    the tree checks once (when `selection.checks_tree`), then each chosen recipe's checks."""
    checks = list(checks) if checks is not None else all_checks()
    out: list[tuple[Check, Recipe | RecipeTree]] = []
    if selection.checks_tree:
        tree = selection.tree
        out += [(chk, tree) for chk in checks if chk.scope == "tree"]
    for recipe in selection.chosen:
        out += [(chk, recipe) for chk in checks if chk.scope == "recipe"]
    return out


def run_static(selection: Selection, ctx: CheckContext, checks: list[Check] | None = None) -> Report:
    """Every applicable check (see `applicable_checks`) over the selection, findings deduplicated."""
    report = Report(recipes=[r.id for r in selection.chosen])
    for chk, subject in applicable_checks(selection, checks):
        report.findings.extend(run_check(chk, subject, ctx))
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


__all__ = ["Selection", "make_selection", "check_options", "context_for", "applicable_checks", "run_static", "summary_line",
           "TREE_ID", "Severity"]
