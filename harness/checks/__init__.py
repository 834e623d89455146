"""The check registry: each check is one function with a stable id, a severity and a why.

A check lives in `harness/checks/<topic>.py`, is registered with `@check(...)`, receives a
loaded Recipe (or the whole RecipeTree for `scope="tree"`) and a CheckContext, and yields
Problems. It never prints, exits or reads files on its own (the Recipe loads them).
Its docstring is its documentation: first paragraph = why, then `Fails:` with an example.
A check with options declares them as a frozen dataclass with defaults (`@check(..., options=X)`)
and reads them with `ctx.options_for(X)`; the CLI and the plugin fill them from typed arguments.

A check that judges a recipe against this catalogue's own conventions (layout, `recipe.yaml`
metadata, the model README format, `versions.yaml`, generated docs) rather than against what
Dynamo, Kubernetes or an engine accepts is registered with `convention=True`: it runs only on a
tree that follows the catalogue convention (harness.recipe.convention); on a foreign tree it does
not apply, and the run says how many such checks it left out.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.recipe.discovery import RecipeTree
from harness.recipe.findings import Finding, Loc, Problem, Severity, display_path
from harness.recipe.model import Recipe
from harness.recipe.templates import placeholder_lines

Scope = Literal["recipe", "tree"]
OptionsT = TypeVar("OptionsT")
TREE_ID = "catalogue"  # the pseudo recipe id of tree-level checks: static::catalogue::<check-id>


@dataclass(frozen=True)
class Check:
    id: str
    severity: Severity
    scope: Scope
    topic: str
    fn: Callable[..., Iterable[Problem]]
    options: type | None = None  # its typed options (a dataclass with defaults), if it has any
    convention: bool = False  # judges the catalogue's own conventions: runs only on a catalogue-convention tree

    @property
    def why(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.split("\n\n")[0].replace("\n", " ")

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    @property
    def source(self) -> str:
        """The file that defines it, from the repository root (`harness/checks/images.py`): the function
        there is named as the id is (`image-release-consistent` -> `image_release_consistent`)."""
        return f"{self.fn.__module__.replace('.', '/')}.py"


REGISTRY: dict[str, Check] = {}


def check(
    id: str,
    severity: Severity = Severity.ERROR,
    scope: Scope = "recipe",
    options: type | None = None,
    convention: bool = False,
) -> Callable:
    """Register a check function under a stable id (with the dataclass of its options, if any;
    `convention=True` for a check of the catalogue's own conventions, see the module docstring)."""

    def register(fn: Callable) -> Callable:
        if id in REGISTRY and REGISTRY[id].fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"duplicate check id {id!r}")
        topic = fn.__module__.rsplit(".", 1)[-1]
        REGISTRY[id] = Check(id, severity, scope, topic, fn, options, convention)
        return fn

    return register


def all_checks() -> list[Check]:
    """Import every module of this package once, then list the registered checks."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return sorted(REGISTRY.values(), key=lambda c: (c.scope != "tree", c.topic, c.id))


@dataclass
class CheckContext:
    """What the checks of one run share: the tree's root, its convention and the checks' typed options."""

    root: Path
    options: Sequence[Any] = ()  # option objects (StorageOptions(margin=1.5), ...); a kind not given has its defaults
    catalogue: bool = True  # the tree follows the catalogue convention (versions.yaml is its release matrix)

    def options_for(self, kind: type[OptionsT]) -> OptionsT:
        """The run's options of this kind, else its defaults."""
        return next((o for o in self.options if isinstance(o, kind)), None) or kind()


def run_check(chk: Check, subject: Recipe | RecipeTree, ctx: CheckContext) -> list[Finding]:
    """Run one check; an exception inside a check becomes a finding, never a crash."""
    recipe_id = subject.id if isinstance(subject, Recipe) else TREE_ID
    build = subject.kustomize_build if isinstance(subject, Recipe) else None
    note = rendered_note(subject, ctx.root) if isinstance(subject, Recipe) else ""
    findings: list[Finding] = []
    try:
        for p in chk.fn(subject, ctx) or ():
            rendered = build is not None and p.loc.file in build.sources
            findings.append(to_finding(chk, p, recipe_id, note if rendered else ""))
        if isinstance(subject, Recipe) and chk.id != PLACEHOLDER_CHECK:
            findings = without_placeholder_errors(findings, subject)
    except Exception as exc:
        where = subject.path if isinstance(subject, Recipe) else subject.root
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        findings.append(
            Finding(
                chk.id,
                Severity.ERROR,
                display_path(where),
                1,
                1,
                f"internal error in check {chk.id}: {type(exc).__name__}: {exc} "
                f"(at {Path(tb.filename).name}:{tb.lineno})",
                "this is a harness bug: please report it with the recipe that triggers it",
                recipe_id,
            )
        )
    return findings


PLACEHOLDER_CHECK = "template-placeholders"  # reports the placeholders once (harness/checks/templates.py)


def without_placeholder_errors(findings: list[Finding], recipe: Recipe) -> list[Finding]:
    """No error on a line that holds a placeholder the recipe documents (or a template token without a
    sample value): a value the user replaces is not the recipe's defect (harness.recipe.templates)."""
    if not any(f.severity is Severity.ERROR for f in findings):
        return findings
    lines = {(display_path(path), line) for path, line in placeholder_lines(recipe)}
    return [f for f in findings if f.severity is not Severity.ERROR or (f.file, f.line) not in lines]


RENDERED_NOTE = " (rendered by `kustomize build {}`)"  # harness.run.static.dedupe merges these


def rendered_note(recipe: Recipe, root: Path) -> str:
    """What a finding on a kustomization's rendered objects (a place in a file its build read) says about
    the build that rendered them."""
    if recipe.kustomize_build is None:
        return ""
    try:
        rel = recipe.path.relative_to(root).as_posix()
    except ValueError:
        rel = display_path(recipe.path)
    return RENDERED_NOTE.format(rel)


def to_finding(chk: Check, p: Problem, recipe_id: str, note: str = "") -> Finding:
    loc: Loc = p.loc
    return Finding(
        chk.id,
        p.severity or chk.severity,
        display_path(loc.file),
        max(loc.line, 1),
        max(loc.column, 1),
        p.message + note,
        p.hint,
        recipe_id,
    )
