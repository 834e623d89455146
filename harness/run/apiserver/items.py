"""The pytest items of the API-server tier: `apiserver::<recipe-id>::<file>/<Kind>/<name>`, one per object a recipe
applies, and one per pod the operator would create from its DGD (`.../<component>/Pod(<role>)`, from render).

The first item of a recipe dry-runs all of the recipe's objects in its namespace; the others read their outcome.
The control plane is opened once per session (harness.run.apiserver.session) and closed at its end. Without one
the items skip with the reason and the setup command; `RECIPE_HARNESS_STRICT` (harness.run.strict) turns that skip
into a failure.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from harness.recipe.model import Recipe
from harness.run.apiserver.dryrun import Outcome, RecipeDryRun
from harness.run.apiserver.objects import RENDER_SOURCE
from harness.run.apiserver.session import ApiServerSession, Unavailable
from harness.run.strict import STRICT_ENV, strict_from_env

MARKER = "apiserver"
MARKER_HELP = "apiserver: every object a recipe applies (and the operator's pods) through a real API server, dry run"


class ApiServerSuite(pytest.Collector):
    def collect(self):  # items are made by apiserver_items(), not collected from files
        return []


class ApiServerFailure(Exception):
    pass


class _RecipeBatch:
    """One recipe's dry run, done on first use and shared by its items."""

    def __init__(self, recipe: Recipe, session: ApiServerSession):
        self.recipe = recipe
        self.session = session
        self.outcomes: dict[str, Outcome] | None = None
        self.dry_run: RecipeDryRun | None = None

    def plan(self, client=None) -> RecipeDryRun:
        if self.dry_run is None:
            self.dry_run = RecipeDryRun(client, self.recipe)
        return self.dry_run

    def outcome(self, label: str) -> Outcome:
        if self.outcomes is None:
            client = self.session.client()  # raises Unavailable
            run = self.plan()
            run.client = client
            try:
                self.outcomes = {o.target.label: o for o in run.run()}
            finally:
                run.cleanup()
        return self.outcomes[label]


def _skip(reason: str) -> None:
    try:
        strict = "apiserver" in strict_from_env()
    except ValueError:
        strict = True
    if strict:
        raise ApiServerFailure(f"{STRICT_ENV}: a skipped apiserver item fails the run: skipped: {reason}")
    pytest.skip(reason)


class ApiServerItem(pytest.Item):
    def __init__(self, *, batch: _RecipeBatch, label: str, origin: str, **kw):
        super().__init__(**kw)
        self.batch = batch
        self.label = label
        self.origin = origin

    def runtest(self) -> None:
        try:
            outcome = self.batch.outcome(self.label)
        except Unavailable as exc:
            _skip(str(exc))
            return
        if outcome.skipped:
            _skip(outcome.skipped)
        if outcome.findings:
            text = "\n".join(f.format() for f in outcome.findings)
            if self.origin == "render":
                text += f"\nnote: this pod comes from {RENDER_SOURCE}"
            raise ApiServerFailure(text)
        if self.origin == "render":
            self.add_report_section("call", "apiserver notes", f"pod built by {RENDER_SOURCE}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ApiServerFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.batch.recipe.path, None, f"apiserver::{self.batch.recipe.id}::{self.label}"


def apiserver_items(
    session: pytest.Session, recipes: Iterable[Recipe], api: ApiServerSession | None = None
) -> list[pytest.Item]:
    """One item per object of each recipe, marked `apiserver`, all in one xdist group (one control plane)."""
    api = api or ApiServerSession()
    session.config.add_cleanup(api.close)
    suite = ApiServerSuite.from_parent(session, name="apiserver", nodeid="apiserver")
    out: list[pytest.Item] = []
    for recipe in recipes:
        batch = _RecipeBatch(recipe, api)
        run = batch.plan()
        if not run.targets:
            continue
        node = ApiServerSuite.from_parent(suite, name=recipe.id)
        for target in run.targets:
            item = ApiServerItem.from_parent(
                node, name=target.label, batch=batch, label=target.label, origin=target.origin
            )
            item.add_marker(getattr(pytest.mark, MARKER))
            item.add_marker(pytest.mark.xdist_group(MARKER))
            out.append(item)
    return out
