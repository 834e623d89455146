"""The static run: discover and select recipes, decide which checks apply, run them, collect the findings.

`applicable_checks` is the one answer to "which checks run on this selection": the pytest plugin
makes a test item of each pair and `recipe-harness check` runs them, so both give the same findings.
The selection carries the tree's convention (harness.recipe.convention): on a foreign tree the
checks registered with `convention=True` do not apply. The `Gate` decides what of the findings a
run reports (its severity floor and the tree's ignore file, harness.run.ignores); `run_header`
states both, for the CLI and the pytest header alike.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import RENDERED_NOTE, TREE_ID, Check, CheckContext, all_checks, run_check
from harness.checks.images import RegistryOptions
from harness.checks.kustomize import KustomizeOptions
from harness.checks.schema import SchemaOptions
from harness.checks.storage import StorageOptions
from harness.recipe.changes import select_changed
from harness.recipe.convention import CATALOGUE, Convention, choose_convention
from harness.recipe.discovery import RecipeTree, SelectionError, default_recipes_dir, discover, select
from harness.recipe.findings import Finding, Report, Severity
from harness.recipe.model import FileCache, Recipe
from harness.recipe.versions import VERSIONS_FILE
from harness.run.ignores import SEVERITY_FLOORS, Ignores, RunConfig, load_config
from harness.run.strict import StrictValueError, strict_from_env

DEFAULT_CONVENTION = Convention(CATALOGUE, "the default")  # frozen: one shared default is safe
_DEFAULT_HINT = " (the default: ./recipes of the repository; name a tree with --recipes-dir)"


@dataclass
class Selection:
    """The recipes one run works on, and the tree they came from."""

    root: Path
    all: list[Recipe]
    chosen: list[Recipe]
    cache: FileCache
    notes: list[str] = field(default_factory=list)
    named_root: bool = False  # the tree was named (--recipes-dir): a foreign tree, checked as a whole
    convention: Convention = DEFAULT_CONVENTION  # which conventions the tree follows

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


def make_selection(
    recipes_dir: str | Path | None,
    selectors: Iterable[str] = (),
    changed_since: str | None = None,
    max_bytes: int | None = None,
    convention: str | None = None,
    require_recipes: bool = True,
    paths: Sequence[str | Path] = (),
) -> Selection:
    """Raises discovery.SelectionError for an unknown selector, a path that selects no recipe, a missing
    tree or one without a recipe (unless `require_recipes` is false: a pytest run in another project),
    changes.ChangeError for a bad ref. `convention` (catalogue|none) overrides the tree's detected
    convention. `paths` select the recipes at or below them, or holding them (`recipe-harness check
    recipes/qwen3-32b/vllm/agg-round-robin/deploy.yaml`), as ruff and kubeconform take paths; with
    --recipe selectors, a recipe either selects is chosen."""
    paths = [Path(p).absolute() for p in paths]
    named = recipes_dir is not None  # --recipes-dir: a tree checked as a whole (paths inside it narrow it)
    if recipes_dir is None and paths:
        recipes_dir = tree_holding(paths[0])
    root = Path(recipes_dir).absolute() if recipes_dir else default_recipes_dir()
    if require_recipes and not root.is_dir():
        # a typo in a CI path must not pass as "0 recipes checked" (ruff's E902, kubeconform's exit 1)
        raise SelectionError(f"recipes directory {root}: no such directory" + ("" if recipes_dir else _DEFAULT_HINT))
    chosen_convention = choose_convention(root, convention)
    cache = FileCache(root, max_bytes)
    recipes = discover(root, cache, foreign=not chosen_convention.catalogue)
    if require_recipes and not recipes:
        raise SelectionError(
            f"recipes directory {root}: no recipe found (a catalogue tree holds <model>/<framework>/<mode>/"
            "deploy.yaml; a foreign tree any YAML file with a DynamoGraphDeployment)"
        )
    selectors = [s for s in selectors if s]
    chosen = select(recipes, selectors)
    if paths:
        by_path = {r.id for p in paths for r in recipes_at(recipes, root, p)}
        by_selector = {r.id for r in chosen} if selectors else set()
        chosen = [r for r in recipes if r.id in by_path or r.id in by_selector]
    notes = []
    if changed_since:
        before = len(chosen)
        chosen = [r for r in select_changed(chosen, root, changed_since)]
        notes.append(f"--changed-since {changed_since}: {len(chosen)} of {before} recipes touched")
    if not chosen_convention.catalogue:
        skipped = [c.id for c in all_checks() if c.convention]
        notes.append(
            f"foreign tree: {len(skipped)} convention checks did not apply ({', '.join(skipped)}); "
            "`--convention catalogue` applies them"
        )
    return Selection(root, recipes, chosen, cache, notes, named_root=named, convention=chosen_convention)


def tree_holding(path: Path) -> Path:
    """The recipes tree a path lies in: the repository's `recipes/`, else the nearest ancestor that is a
    catalogue (versions.yaml at its top) or is named `recipes`; raises SelectionError when there is none."""
    path = path.absolute()
    default = default_recipes_dir(path if path.is_dir() else path.parent)
    if path == default or default in path.parents:
        return default
    for d in (path, *path.parents):
        if (d / VERSIONS_FILE).is_file() or d.name == "recipes":
            return d
    raise SelectionError(f"{path} is not inside a recipes tree: name the tree with --recipes-dir")


def recipes_at(recipes: Sequence[Recipe], root: Path, path: Path) -> list[Recipe]:
    """The recipes a path names: the tree (all), a directory (those at or below it), a recipe's manifest,
    a file or directory inside a recipe, or a model's shared file (model-cache/, README.md: that model's)."""
    if not path.exists():
        raise SelectionError(f"{path}: no such file or directory")
    if path == root:
        return list(recipes)
    if root not in path.parents:
        raise SelectionError(f"{path} is not inside the recipes tree {root}")
    by_manifest = [r for r in recipes if r.manifest == path]
    if by_manifest:
        return by_manifest
    hits = [r for r in recipes if r.path == path or path in r.path.parents or r.path in path.parents]
    if not hits:
        model = root / path.relative_to(root).parts[0]
        hits = [r for r in recipes if model == r.path or model in r.path.parents]
    if not hits:
        raise SelectionError(f"{path} holds no recipe and belongs to none")
    return hits


def check_options(
    crd: Iterable[str | Path] = (), registries: Iterable[str] = (), storage_margin: float | None = None
) -> tuple[Any, ...]:
    """The checks' typed options from the run's arguments (`--crd`, `--registry`, `--storage-margin`)."""
    return (
        SchemaOptions(tuple(Path(p) for p in crd)),
        RegistryOptions(tuple(r.strip() for arg in registries for r in str(arg).split(",") if r.strip())),
        StorageOptions(storage_margin),
        KustomizeOptions(required=bool(strict_from_env_or_none())),
    )


def strict_from_env_or_none() -> frozenset[str]:
    """The strict tiers of RECIPE_HARNESS_STRICT (harness.run.strict); a malformed value is reported by the
    plugin and the commands that read it first, so here it counts as not strict."""
    try:
        return strict_from_env()
    except StrictValueError:
        return frozenset()


def context_for(selection: Selection, options: Sequence[Any] = ()) -> CheckContext:
    return CheckContext(selection.root, tuple(options), catalogue=selection.convention.catalogue)


@dataclass
class Gate:
    """What a run reports of its findings: those at or above the severity floor that the tree's
    ignore file (`.recipe-harness.yaml`) does not ignore, so a tree can adopt the gate gradually."""

    floor: Severity = Severity.WARNING
    ignores: Ignores | None = None
    below_floor: int = 0  # findings left out for their severity
    config: RunConfig | None = None  # where the ignores (and the floor and registries, when set) came from

    @property
    def registries(self) -> tuple[str, ...]:
        """The configuration's registry allow-list (the command line's --registry replaces it)."""
        return self.config.registries if self.config else ()

    def admit(self, findings: Iterable[Finding]) -> list[Finding]:
        out = []
        for f in findings:
            if self.floor is Severity.ERROR and f.severity is not Severity.ERROR:
                self.below_floor += 1
            elif not (self.ignores and self.ignores.ignored(f)):
                out.append(f)
        return out

    def summary(self) -> list[str]:
        lines = self.ignores.summary() if self.ignores else []
        if self.below_floor:
            lines.append(f"--severity-floor {self.floor.value}: {self.below_floor} finding(s) below it not reported")
        return lines


def make_gate(selection: Selection, severity_floor: str | None = None, every_check: bool = True) -> Gate:
    """The run's gate from the command line and the configuration (harness.run.ignores: `.recipe-harness.yaml`
    or `[tool.recipe-harness]`, the command line's floor wins); raises ignores.IgnoreFileError (message
    `path:line: ...`) for a malformed configuration. An ignore entry is reported unused only after a run of
    `every_check` over the whole tree."""
    config = load_config(selection.root, (c.id for c in all_checks()))
    config.ignores.report_unused = every_check and selection.whole_tree
    floor = severity_floor or config.severity_floor
    return Gate(Severity(floor) if floor else Severity.WARNING, config.ignores, config=config)


def run_header(selection: Selection, gate: Gate | None = None) -> list[str]:
    """What the run applies, before any finding: the tree and its convention, the severity floor, every ignore."""
    lines = [f"recipes tree {selection.root}: {selection.convention.describe()}"]
    if gate is not None and gate.floor is not Severity.WARNING:
        lines.append(f"severity floor: {gate.floor.value} (findings below it are not reported)")
    config = gate.config if gate is not None else None
    if config is not None and config.path is not None:
        sets = (["ignores"] if config.ignores.entries else []) + (["severity-floor"] if config.severity_floor else [])
        sets += ["registries"] if config.registries else []
        lines.append(f"configuration {config.path}: {', '.join(sets) or 'sets nothing'}")
        lines.extend(f"  {e.describe()}" for e in config.ignores.entries)
        lines.extend(f"  {w}" for w in config.ignores.warnings)
    return lines


def applicable_checks(
    selection: Selection, checks: Iterable[Check] | None = None
) -> list[tuple[Check, Recipe | RecipeTree]]:
    """(check, subject) for every check a static run over the selection executes, in run order:
    the tree checks once (when `selection.checks_tree`), then each chosen recipe's checks."""
    checks = list(checks) if checks is not None else all_checks()
    if not selection.convention.catalogue:
        checks = [c for c in checks if not c.convention]
    out: list[tuple[Check, Recipe | RecipeTree]] = []
    if selection.checks_tree:
        tree = selection.tree
        out += [(chk, tree) for chk in checks if chk.scope == "tree"]
    for recipe in selection.chosen:
        # a kustomization's rendered objects are judged as objects: the catalogue's layout and metadata
        # conventions are about its recipe directories, not about the overlays beside them
        rendered = recipe.kustomize_build is not None
        out += [(chk, recipe) for chk in checks if chk.scope == "recipe" and not (rendered and chk.convention)]
    return out


def run_static(
    selection: Selection, ctx: CheckContext, checks: list[Check] | None = None, gate: Gate | None = None
) -> Report:
    """Every applicable check (see `applicable_checks`) over the selection, findings deduplicated,
    then those the gate (severity floor, ignore file) admits."""
    report = Report(recipes=[r.id for r in selection.chosen])
    for chk, subject in applicable_checks(selection, checks):
        report.findings.extend(run_check(chk, subject, ctx))
    report.findings = dedupe(report.findings)
    if gate is not None:
        report.findings = gate.admit(report.findings)
    return report


_RENDERED = re.compile(re.escape(RENDERED_NOTE).replace(r"\{\}", "(?P<dirs>[^`]*)") + "$")


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Model-cache files are shared by a model's recipes, a kustomize base by its overlays: report each
    place once per check (a base's finding names every overlay that rendered it)."""
    seen: dict[tuple, int] = {}
    out: list[Finding] = []
    for f in findings:
        m = _RENDERED.search(f.message)
        message = f.message[: m.start()] if m else f.message
        key = (f.check_id, f.file, f.line, f.column, message)
        if key not in seen:
            seen[key] = len(out)
            out.append(f)
        elif m:
            kept = out[seen[key]]
            before = _RENDERED.search(kept.message)
            dirs = [*(before.group("dirs").split(", ") if before else []), m.group("dirs")]
            joined = RENDERED_NOTE.format(", ".join(dict.fromkeys(dirs)))
            out[seen[key]] = dataclasses.replace(kept, message=message + joined)
    return out


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def summary_line(report: Report) -> str:
    return f"{len(report.recipes)} recipes checked: {report.errors} error(s), {report.warnings} warning(s)"


__all__ = [
    "SEVERITY_FLOORS",
    "TREE_ID",
    "Gate",
    "Selection",
    "Severity",
    "applicable_checks",
    "check_options",
    "context_for",
    "make_gate",
    "make_selection",
    "run_header",
    "run_static",
    "summary_line",
]
