"""The static stage's pytest items: one per (recipe, check), or one per recipe that runs all of its
checks and still reports one test per check (`static::<recipe-id>::<check-id>`).

Why two shapes: pytest costs about 1 ms per item (setup, call and teardown hooks, the reports, the
terminal), and a recipe has ~50 checks, so at catalogue scale pytest's bookkeeping costs more than
the checks themselves. A recipe item (`RecipeChecksItem`) runs the checks in one go and logs a
call report per check through `pytest_runtest_logreport`, as pytest-subtests does (public hooks and
`pytest.TestReport`/`pytest.CallInfo` only), so JUnit, `-v`, `--durations` and the failure summary see
the same test cases as before. Under xdist a recipe item is one test (xdist's worker sends only the
running item's reports); `--static-items per-check` keeps per-check ids there. Per-check
items keep pytest's own per-item features exact (`--lf`, `--deselect ID`, `-x` stopping at the
first failing check); `--static-items auto` keeps them for small selections (see AUTO_MAX_RECIPES).
`-k` selects single checks in both shapes: a recipe item evaluates the expression per check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from harness.checks import TREE_ID, Check, run_check
from harness.recipe.discovery import RecipeTree
from harness.recipe.findings import Finding, Severity, sorted_findings
from harness.recipe.model import Recipe
from harness.run.expression import ExpressionError, evaluate

Mode = Literal["per-check", "per-recipe", "auto"]
MODES: tuple[str, ...] = ("per-check", "per-recipe", "auto")
PLUGIN_NAME = "recipe-harness-session"  # the plugin object holding the run's ctx and report (harness.plugin)
# `auto` keeps one item per check up to this many recipes: a model's recipes (`--recipe qwen3-32b`,
# a --changed-since selection), where a person iterates and pytest's per-item features (`--lf`,
# `--deselect`, `-x`) are worth ~30 ms per recipe of pytest bookkeeping (52 items at ~0.6 ms, measured
# on 2 shared cores with benchmarks/static_scale.py). The whole catalogue (13 recipes) and up are a
# gate run, where those ~0.4 s (catalogue) to ~30 s (1,000 recipes) are not.
AUTO_MAX_RECIPES = 8


def choose_mode(mode: str, recipes: int, config: pytest.Config) -> Literal["per-check", "per-recipe"]:
    """The item shape for this run. `auto`: per-recipe under xdist (every worker decides the same, so
    their collections agree; there a recipe item is one test, see RecipeChecksItem: per-check items cost
    2.2x the wall at 202 recipes under `-n auto`, 172 s against 77 s, benchmarks/static_scale.py on 2
    loaded cores), per-check for a listing (`--collect-only` prints the check ids) and for up to
    AUTO_MAX_RECIPES recipes."""
    if mode in ("per-check", "per-recipe"):
        return mode  # type: ignore[return-value]
    if hasattr(config, "workerinput") or (getattr(config.option, "numprocesses", None) or 0):
        return "per-recipe"
    if config.option.collectonly:
        return "per-check"
    return "per-check" if recipes <= AUTO_MAX_RECIPES else "per-recipe"


class Suite(pytest.Collector):
    """`static`, `sim` or `gpu`: the first part of every recipe test id."""

    def collect(self):  # items are created by the plugin, not collected from files
        return []


class RecipeNode(pytest.Collector):
    def collect(self):
        return []


class StaticFailure(Exception):
    def __init__(self, findings: list[Finding]):
        self.findings = findings


def failure_text(findings: list[Finding], chk: Check) -> str:
    """What a failing check prints: one `path:line:col: [check-id] message` per error. Its why is printed
    once per check in the run's summary (harness.plugin), not once per failing recipe."""
    return "\n".join(f.format() for f in findings)


def _run(chk: Check, subject: Recipe | RecipeTree, config: pytest.Config) -> tuple[list[Finding], list[Finding]]:
    """Run one check for the session: (all findings, recorded for the reporters; its errors, sorted)."""
    harness = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert harness is not None and harness.ctx is not None
    findings = harness.gate.admit(run_check(chk, subject, harness.ctx))  # severity floor, ignore file
    harness.report.findings.extend(findings)
    return findings, sorted_findings([f for f in findings if f.severity is Severity.ERROR])


def _path_of(subject: Recipe | RecipeTree):
    return subject.path if isinstance(subject, Recipe) else subject.root


class StaticCheckItem(pytest.Item):
    """One check on one recipe (or on the tree)."""

    def __init__(self, *, check: Check, subject: Any, **kw):
        super().__init__(**kw)
        self.check = check
        self.subject = subject

    def runtest(self) -> None:
        _, errors = _run(self.check, self.subject, self.config)
        if errors:
            raise StaticFailure(errors)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, StaticFailure):
            return failure_text(excinfo.value.findings, self.check)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return _path_of(self.subject), None, f"static::{self.parent.name}::{self.name}"


@dataclass
class _Outcome:
    check: Check
    errors: list[Finding]
    start: float
    stop: float


class RecipeChecksItem(pytest.Item):
    """All selected checks of one recipe (or of the tree) as one item that reports one test per check.

    Run through `run_protocol` (called from the plugin's pytest_runtest_protocol): setup and teardown
    go through pytest as for any item, with their own reports kept back; the test reports logged are
    one call report per check, with the check's node id and location.

    On an xdist worker (`reports_per_check` false) it is an ordinary item with one report: xdist's
    worker sends only reports of the item it runs (remote.py asserts the node id), and reaching
    around that takes its private fields. Its failure lists every failing check with its id."""

    def __init__(self, *, checks: list[Check], subject: Any, **kw):
        super().__init__(**kw)
        self.checks = checks
        self.subject = subject
        self.outcomes: list[_Outcome] = []
        self.reports_per_check = not hasattr(self.config, "workerinput")  # xdist's documented worker attribute

    def runtest(self) -> None:
        self.outcomes = []
        for chk in self.checks:
            start = time.time()
            _, errors = _run(chk, self.subject, self.config)
            self.outcomes.append(_Outcome(chk, errors, start, time.time()))
        failing = [o for o in self.outcomes if o.errors]
        if failing and not self.reports_per_check:
            raise StaticFailure([f for o in failing for f in o.errors])

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, StaticFailure):
            return "\n\n".join(failure_text(o.errors, o.check) for o in self.outcomes if o.errors)
        return super().repr_failure(excinfo, style)

    def check_nodeid(self, chk: Check) -> str:
        return f"{self.nodeid}::{chk.id}"

    def run_protocol(self, nextitem: pytest.Item | None) -> bool:
        """pytest's protocol for one item (setup, call, teardown through the public hooks), its own
        reports kept back; then one call report per check, logged with `pytest_runtest_logreport`."""
        ihook = self.ihook
        ihook.pytest_runtest_logstart(nodeid=self.nodeid, location=self.location)
        reports = [self._phase("setup")]
        if reports[0].passed:
            reports.append(self._phase("call"))
        reports.append(self._phase("teardown", nextitem=nextitem))
        broken = next((r for r in reports if r.failed), None)  # the harness itself failed: every check says so
        path = self.location[0]  # relative to the rootdir, as pytest puts it in a per-check item's location
        for chk in self.checks:
            outcome = next((o for o in self.outcomes if o.check is chk), None)
            nodeid = self.check_nodeid(chk)
            location = (path, None, f"static::{self.name}::{chk.id}")
            keywords = {"static": 1, self.name: 1, chk.id: 1}
            stamps = (outcome.start, outcome.stop) if outcome else (time.time(), time.time())
            if broken is not None and outcome is None:
                result: tuple[str, Any] = ("failed", broken.longrepr)
            elif outcome is not None and outcome.errors:
                result = ("failed", failure_text(outcome.errors, chk))
            else:
                result = ("passed", None)
            # the call report only, as pytest-subtests logs a subtest: a check has no setup or teardown
            # of its own, and the terminal keeps every report it sees (2 x 50,000 more at 1,000 recipes)
            report = pytest.TestReport(
                nodeid,
                location,
                keywords,
                result[0],
                result[1],
                "call",
                duration=stamps[1] - stamps[0],
                start=stamps[0],
                stop=stamps[1],
            )
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=self.nodeid, location=self.location)
        return True

    def _phase(self, when: str, **kw: Any) -> pytest.TestReport:
        """One phase as pytest's runner does it, through public API: the phase hook under
        `pytest.CallInfo`, its report from `pytest_runtest_makereport`, and the debugger's hook on an error."""
        hook = getattr(self.ihook, f"pytest_runtest_{when}")
        reraise: tuple[type[BaseException], ...] = (pytest.exit.Exception,)
        if not self.config.getoption("usepdb", False):
            reraise += (KeyboardInterrupt,)
        call = pytest.CallInfo.from_call(lambda: hook(item=self, **kw), when=when, reraise=reraise)  # type: ignore[arg-type]
        report = self.ihook.pytest_runtest_makereport(item=self, call=call)
        if call.excinfo is not None and report.failed:
            self.ihook.pytest_exception_interact(node=self, call=call, report=report)
        return report

    def reportinfo(self):
        return _path_of(self.subject), None, f"static::{self.name}"


def count_tests(items: Iterable[pytest.Item]) -> int:
    """How many test reports the items make: a recipe item makes one per check (one on an xdist worker)."""
    return sum(len(i.checks) if isinstance(i, RecipeChecksItem) and i.reports_per_check else 1 for i in items)


def keyword_selects(expr: str, names: Iterable[str]) -> bool:
    """pytest's `-k` on one check: substrings of the names its per-check item would carry (the
    suite `static`, the recipe id, the check id, the `static` marker), case-insensitive."""
    lowered = [n.lower() for n in names]
    try:
        return evaluate(expr, lambda sub: any(sub.lower() in n for n in lowered))
    except ExpressionError:
        return True  # pytest itself rejects an expression it cannot read


def static_items(
    session: pytest.Session, pairs: list[tuple[Check, Recipe | RecipeTree]], mode: Literal["per-check", "per-recipe"]
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(per-check items, recipe items) for the (check, subject) pairs of the run, in run order.

    Per-check items go through pytest's own `-k`/`-m` deselection; recipe items are selected here,
    one check at a time, and must be kept out of pytest's deselection (the plugin adds them after
    it), since an expression like `-k "not schema-valid"` is about checks, not recipes."""
    suite = Suite.from_parent(session, name="static", nodeid="static")
    by_subject: dict[str, tuple[Recipe | RecipeTree, list[Check]]] = {}
    for chk, subject in pairs:
        name = subject.id if isinstance(subject, Recipe) else TREE_ID
        by_subject.setdefault(name, (subject, []))[1].append(chk)
    if mode == "per-check":
        out: list[pytest.Item] = []
        for name, (subject, checks) in by_subject.items():
            node = RecipeNode.from_parent(suite, name=name)
            for chk in checks:
                item = StaticCheckItem.from_parent(node, name=chk.id, check=chk, subject=subject)
                item.add_marker(pytest.mark.static)
                out.append(item)
        return out, []
    expr = (session.config.option.keyword or "").strip()
    groups: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for name, (subject, checks) in by_subject.items():
        chosen = [c for c in checks if not expr or keyword_selects(expr, ("static", name, c.id))]
        item = RecipeChecksItem.from_parent(suite, name=name, checks=chosen or checks, subject=subject)
        item.add_marker(pytest.mark.static)
        (groups if chosen else deselected).append(item)
    if deselected:
        session.config.hook.pytest_deselected(items=deselected)
    return [], groups
