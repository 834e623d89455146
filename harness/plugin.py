"""The pytest plugin: options, markers and one test item per recipe check or stage step.

Test ids are stable and read as the recipe id: `static::<recipe-id>::<check-id>`,
`conformance::<recipe-id>::<service>`,
`apiserver::<recipe-id>::<file>/<Kind>/<name>`, `sim::<recipe-id>::<step>`, `gpu::<recipe-id>::<step>`, and
`static::catalogue::<check-id>` for checks of the whole tree.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.checks import CheckContext, all_checks
from harness.recipe.changes import ChangeError
from harness.recipe.discovery import SelectionError, default_recipes_dir
from harness.recipe.findings import Finding, Report, Severity, sorted_findings
from harness.recipe.model import Recipe
from harness.run.expression import ExpressionError, evaluate
from harness.run.ignores import IgnoreFileError
from harness.run.k8s.settings import DeploySettings
from harness.run.k8s.settings import add_options as add_gpu_options
from harness.run.stage import SimOptions, Stage, StageOptions, StageSkip, StepRun
from harness.run.static import (
    SEVERITY_FLOORS,
    Gate,
    Selection,
    applicable_checks,
    check_options,
    context_for,
    dedupe,
    in_github_actions,
    make_gate,
    make_selection,
    run_header,
)
from harness.run.static_items import (
    AUTO_MAX_RECIPES,
    MODES,
    RecipeChecksItem,
    RecipeNode,
    Suite,
    choose_mode,
    count_tests,
    static_items,
)
from harness.run.strict import STRICT_ENV, STRICT_TIERS, StrictValueError, strict_from_env

STAGES = ("static", "sim", "gpu")
WORKER_REPORT = "recipe_harness_report"  # key of an xdist worker's findings in its workeroutput
# Runtime stages, imported only when selected so `-m static` never pays for their stacks.
STAGE_IMPLEMENTATIONS = {"sim": "harness.run.sim.stage:SimStage", "gpu": "harness.run.k8s.stage:GpuStage"}


def load_stage(name: str) -> Stage:
    """The stage named in STAGE_IMPLEMENTATIONS, imported now."""
    module, _, cls = STAGE_IMPLEMENTATIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recipe-harness", "Dynamo recipe harness")
    group.addoption(
        "--recipe",
        action="append",
        default=[],
        metavar="SEL",
        help="select recipes by model prefix (qwen3-235b), id (qwen3-32b/vllm/agg-round-robin) or glob; repeatable",
    )
    group.addoption("--recipes-dir", metavar="PATH", help="recipes tree to check (default: ./recipes)")
    group.addoption(
        "--changed-since",
        metavar="REF",
        help="only recipes touched since the merge base with REF (all when harness/ or schemas/ changed)",
    )
    group.addoption(
        "--crd",
        action="append",
        default=[],
        metavar="PATH",
        help="also validate against this CustomResourceDefinition (e.g. the operator version on your cluster)",
    )
    group.addoption(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="allowed image registry (repeatable; replaces the allow-list in recipes/versions.yaml)",
    )
    group.addoption(
        "--storage-margin",
        type=float,
        default=None,
        metavar="F",
        help="model-cache PVC size / checkpoint size (default: the catalogue's rule, 1.2 or 1.3)",
    )
    group.addoption(
        "--convention",
        choices=("catalogue", "none"),
        default=None,
        help="the tree's convention: catalogue (recipe.yaml, versions.yaml, our layout) or none (a foreign tree: "
        "convention checks do not apply, manifests are found at any depth); default: detected",
    )
    group.addoption(
        "--severity-floor",
        choices=SEVERITY_FLOORS,
        default=None,
        help="report only findings at or above this severity (default: warning, i.e. all)",
    )
    group.addoption(
        "--static-items",
        choices=MODES,
        default="auto",
        help="static tests as one pytest item per check, or one per recipe that still reports each check "
        f"(faster at scale); auto: per recipe above {AUTO_MAX_RECIPES} recipes or under xdist "
        "(under xdist, one test per recipe)",
    )
    group.addoption("--findings-json", metavar="PATH", help="write all static findings as JSON")
    group.addoption(
        "--max-file-bytes", type=int, default=None, metavar="N", help="size cap for one YAML file (default 1 MiB)"
    )
    group.addoption(
        "--report-dir", metavar="PATH", default=None, help="where runs write reports (default reports/runs/<run-id>)"
    )
    group.addoption("--sim-profile", default="ci", help="sim load profile: ci (small, default) or laptop")
    group.addoption(
        "--sim-slowdown",
        type=float,
        default=1.0,
        metavar="F",
        help="an experiment: run the mocker F times slower; the recipe is then timed against itself at normal "
        "speed, run beside it (proves regressions are caught)",
    )
    group.addoption(
        "--sim-reference",
        metavar="REF",
        default=None,
        help="time each recipe against its version at git REF's merge base, run beside it in the same run "
        "(the only timing verdict that fails a rehearsal); default: --changed-since's REF",
    )
    group.addoption(
        "--sim-rounds",
        type=int,
        default=1,
        metavar="N",
        help="simultaneous benchmark pairs per same-run measurement (default 1; a crossing is measured again)",
    )
    group.addoption("--keep-logs", action="store_true", help="keep process logs of passing sim runs")
    group.addoption("--repeats", type=int, default=1, metavar="N", help="benchmark runs per recipe (median and CV)")
    group.addoption("--update-baselines", action="store_true", help="write new baselines from valid runs")
    add_gpu_options(group.addoption)  # generated from the gpu stage's settings (harness/run/k8s/settings.py)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    _restart_with_the_joined_form(early_config)


SPACE_FORM_OPTIONS = ("--recipes-dir",)


def _startup_fds() -> tuple[int, int] | None:
    """Copies of stdout and stderr as the process started with them. pytest imports its plugins before it
    starts capturing, and redirects fds 1 and 2 into its capture files before pytest_load_initial_conftests:
    a restart must write to the terminal, not into those files. The copies close on exec."""
    try:
        return os.dup(1), os.dup(2)
    except OSError:
        return None


_STARTUP_FDS = _startup_fds()


def _restart_with_the_joined_form(config: pytest.Config) -> None:
    """pytest settles its rootdir and config file before it loads plugins, so the value of `--recipes-dir PATH`
    (the space form) is taken for a test path then: a tree outside the project roots the run in that tree,
    without the project's pyproject.toml (addopts, markers) and with ids relative to it. pytest has no public
    way to settle them again, and `--recipes-dir=PATH` never had the problem: a command-line run starts again,
    once, with that form (same interpreter, environment and working directory). An in-process run
    (`pytest.main`) cannot be restarted and is told to use the joined form."""
    given = list(config.invocation_params.args)
    spaced = [i for i, a in enumerate(given[:-1]) if a in SPACE_FORM_OPTIONS]
    if not spaced:
        return
    joined = list(given)
    for i in reversed(spaced):
        joined[i : i + 2] = [f"{given[i]}={given[i + 1]}"]
    if sys.argv[1:] != given:  # an in-process run, or an xdist worker (started by execnet, not from this argv)
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"recipe-harness: write {joined[spaced[0]]} (joined with '='): pytest settles its rootdir "
                "before it knows the option, so the space form roots the run in the recipes tree"
            ),
            2,
        )
        return
    if _STARTUP_FDS is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(_STARTUP_FDS[0], 1)
    os.dup2(_STARTUP_FDS[1], 2)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *joined])


def pytest_configure(config: pytest.Config) -> None:
    for name, text in (
        ("static", "offline recipe checks"),
        ("conformance", "real Dynamo/engine argument parsing"),
        ("apiserver", "server-side dry run through a real kube-apiserver"),
        ("sim", "CPU rehearsal with the Dynamo mocker"),
        ("gpu", "real cluster run"),
    ):
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(RecipeHarness(config), "recipe-harness-session")


class RecipeHarness:
    """Per-session state: the selection, stage runs, findings for the reporters."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.report = Report()
        self.selection: Selection | None = None
        self.ctx: CheckContext | None = None
        self.gate = Gate()
        self.runs: dict[tuple[str, str], StepRun] = {}
        self.plan_errors: dict[tuple[str, str], str] = {}
        self.unavailable: dict[str, str | None] = {}
        self.rehearsed_elsewhere: list[str] = []  # recipes whose stage run another chosen recipe's run stands for
        self.stage_options: StageOptions | None = None
        self.notes: list[str] = []
        self.session: pytest.Session | None = None
        self.from_workers = False  # xdist controller: findings arrived from the workers
        self.paths = self._take_recipe_paths()
        self.static_tests = 0  # static tests the recipe items report (a recipe item reports one per check)
        self.announcing: tuple[str, str] | None = None  # (node id, text): the step name to write as it starts
        self.announced_recipe: tuple[str, str] | None = None  # (stage, recipe) whose steps are being named
        try:
            self.strict = strict_from_env()
        except StrictValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        if self.strict and self._gpu_asked_for():
            self.strict |= {"gpu"}  # `-m gpu` on a runner without a cluster is a broken runner, not a skip

    def _take_recipe_paths(self) -> list[Path]:
        """`pytest -m static recipes/qwen3-32b`: arguments inside the recipes tree select recipes (as
        `recipe-harness check PATH` does) instead of going to pytest's collection, which finds no tests there."""
        config = self.config
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            return []
        opt = config.option
        invocation = config.invocation_params.dir
        root = Path(opt.recipes_dir).absolute() if opt.recipes_dir else default_recipes_dir(invocation)
        taken, kept = [], []
        for arg in config.args:
            path = (invocation / arg.split("::")[0]).absolute()
            if "::" not in arg and path.exists() and (path == root or root in path.parents):
                taken.append(path)
            else:
                kept.append(arg)
        if taken:
            config.args[:] = kept  # what pytest collects; recipe items are added by this plugin
        return taken

    def _gpu_asked_for(self) -> bool:
        """The mark expression names gpu and selects it (`-m gpu`, `-m "static or gpu"`; not `-m "not gpu"`)."""
        import re

        expr = self.config.option.markexpr or ""
        return bool(re.search(r"\bgpu\b", expr)) and self._stage_selected("gpu")

    # --- collection ------------------------------------------------------------------

    def _wanted(self) -> bool:
        opt = self.config.option
        if opt.recipe or opt.recipes_dir or opt.changed_since or self.paths:
            return True
        # plain `pytest` / `pytest -m static` (testpaths or no args): yes; `pytest tests/x.py`: no
        return self.config.args_source != pytest.Config.ArgsSource.ARGS

    def _stage_selected(self, stage: str) -> bool:
        expr = self.config.option.markexpr
        if not expr:
            return True
        try:
            return evaluate(expr, lambda name: name == stage)
        except ExpressionError:
            return True

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        """`pytest -m static` (or sim, gpu) selects recipe items only: the harness's own unit tests
        carry no stage marker, so importing them would only cost time. Explicit paths are honoured."""
        if config.args_source == pytest.Config.ArgsSource.ARGS or not config.option.markexpr:
            return None
        if not self._unmarked_selected():
            return True  # directories too: their conftest.py files import heavy clients
        return None

    def _unmarked_selected(self) -> bool:
        try:
            return evaluate(self.config.option.markexpr, lambda name: False)
        except ExpressionError:
            return True

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list):
        """Adds the recipe items before any other plugin sees the list; recipe-wide static items
        join after pytest's `-k`/`-m` deselection, which they do themselves per check."""
        grouped = self._add_items(session, config, items)
        result = yield
        items[:0] = grouped
        return result

    def _add_items(self, session: pytest.Session, config: pytest.Config, items: list) -> list[pytest.Item]:
        if not self._wanted():
            return []
        opt = config.option
        try:
            # a named tree must hold recipes; the default one may be absent (pytest in another project)
            self.selection = make_selection(
                opt.recipes_dir,
                opt.recipe,
                opt.changed_since,
                opt.max_file_bytes,
                opt.convention,
                require_recipes=opt.recipes_dir is not None or bool(self.paths),
                paths=self.paths,
            )
            self.gate = make_gate(self.selection, opt.severity_floor)
        except (SelectionError, ChangeError, IgnoreFileError) as exc:
            raise pytest.UsageError(str(exc)) from None
        self.notes.extend(self.selection.notes)
        if not self.selection.all:
            self.notes.append(f"no recipes found under {self.selection.root}")
        self.ctx = context_for(
            self.selection, check_options(opt.crd, opt.registry or list(self.gate.registries), opt.storage_margin)
        )
        self.report.recipes = [r.id for r in self.selection.chosen]
        new: list[pytest.Item] = []
        grouped: list[pytest.Item] = []
        if self._stage_selected("static"):
            mode = choose_mode(opt.static_items, len(self.selection.chosen), config)
            per_check, grouped = static_items(session, applicable_checks(self.selection), mode)
            new.extend(per_check)
        if self._stage_selected("conformance") and self.selection.chosen:
            from harness.run.conformance.items import conformance_items

            new.extend(conformance_items(session, self.selection.chosen))
        if self._stage_selected("apiserver") and self.selection.chosen:
            from harness.run.apiserver.items import apiserver_items

            new.extend(apiserver_items(session, self.selection.chosen))
        for stage_name in STAGE_IMPLEMENTATIONS:
            if self._stage_selected(stage_name) and self.selection.chosen:
                new.extend(self._stage_items(session, stage_name))
        items[:0] = new
        # the recipe items are made here, not by a collector: report them as collected, so the header's
        # "collected N items" counts them (it said 0 before running 836 tests)
        config.hook.pytest_collectreport(report=pytest.CollectReport("recipe-harness", "passed", None, new + grouped))
        self.static_tests = count_tests(grouped) + sum(1 for i in new if i.get_closest_marker("static"))
        return grouped

    def _stage_items(self, session: pytest.Session, stage_name: str) -> list[pytest.Item]:
        assert self.selection is not None
        suite = Suite.from_parent(session, name=stage_name, nodeid=stage_name)
        out: list[pytest.Item] = []
        try:
            stage = load_stage(stage_name)
        except ImportError as exc:
            stage = None
            self.unavailable[stage_name] = f"{stage_name} stage cannot load: {exc}"
        rehearsed_by = getattr(stage, "rehearsed_by", None)
        for recipe in self.selection.chosen:
            other = rehearsed_by(recipe, self.selection.chosen) if rehearsed_by else None
            if other is not None:
                self.rehearsed_elsewhere.append(f"{stage_name} {recipe.id}: the same run as {other.id}'s")
                continue
            node = RecipeNode.from_parent(suite, name=recipe.id)
            try:
                steps = [s.name for s in stage.steps(recipe)] if stage else ["run"]
            except Exception as exc:
                steps = ["plan"]
                self.plan_errors[(stage_name, recipe.id)] = f"cannot plan: {type(exc).__name__}: {exc}"
            for step in steps:
                item = StepItem.from_parent(node, name=step, stage_name=stage_name, stage=stage, recipe=recipe)
                item.add_marker(getattr(pytest.mark, stage_name))
                # one xdist worker runs a whole stage in order: a deployment lives across its steps,
                # and two benchmarks sharing 2 cores would measure each other
                item.add_marker(pytest.mark.xdist_group(stage_name))
                out.append(item)
        return out

    # --- stage lifecycle ---------------------------------------------------------------

    def options(self) -> StageOptions:
        if self.stage_options is None:
            opt = self.config.option
            run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
            report_dir = (
                Path(opt.report_dir) if opt.report_dir else Path(self.config.rootpath) / "reports" / "runs" / run_id
            )
            from harness.results.baselines import ReportRoots  # not at import: `-m static` never needs it

            # baselines and history live in reports/ beside the recipes tree (the repository's, or a foreign tree's)
            roots = ReportRoots.beside(
                self.selection.root if self.selection else Path(self.config.rootpath) / "recipes"
            )
            self.stage_options = StageOptions(
                report_dir=report_dir,
                baselines_root=roots.baselines,
                history_root=roots.history,
                repeats=opt.repeats,
                update_baselines=opt.update_baselines,
                sim=SimOptions(
                    profile=opt.sim_profile,
                    slowdown=opt.sim_slowdown,
                    keep_logs=opt.keep_logs,
                    reference=opt.sim_reference or opt.changed_since,
                    rounds=opt.sim_rounds,
                ),
                gpu=self._gpu_settings(report_dir),
            )
        return self.stage_options

    def _gpu_settings(self, report_dir: Path) -> DeploySettings:
        """The gpu stage's settings from its options (declared once, in harness/run/k8s/settings.py)."""
        try:
            return DeploySettings.from_pytest(self.config.option, report_dir, self.config.option.repeats)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None

    def run_for(self, item: StepItem) -> StepRun:
        key = (item.stage_name, item.recipe.id)
        if key not in self.runs:
            self.runs[key] = item.stage.open(item.recipe, self.options())
        return self.runs[key]

    def close(self, key: tuple[str, str]) -> None:
        run = self.runs.pop(key, None)
        if run is not None:
            run.close()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        session.testscollected = count_tests(session.items)  # progress counts checks, not recipe items
        if self.selection is not None:
            # the recipes, their parsed files and the items live to the end of the run: keep the
            # cyclic GC from rescanning them on every full collection (15% of the wall at 200 recipes)
            gc.freeze()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """Strict (RECIPE_HARNESS_STRICT, harness.run.strict): a skip of a strict tier's item is a failure."""
        report = yield
        if report.skipped and self.strict and not hasattr(report, "wasxfail"):
            tier = next((m.name for m in item.iter_markers() if m.name in (*STRICT_TIERS, "gpu")), None)
            if tier in self.strict:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                report.outcome = "failed"
                report.longrepr = f"{STRICT_ENV}: a skipped {tier} item fails the run: skipped: {reason}"
        return report

    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        if isinstance(item, RecipeChecksItem) and item.reports_per_check:  # one report per check (static_items)
            return item.run_protocol(nextitem)
        if isinstance(item, StepItem):
            self._announce(item)
        return None

    def stage_unavailable(self, item: StepItem) -> str | None:
        """Why the item's stage cannot run here (None: it can); asked once per stage."""
        if item.stage_name not in self.unavailable:
            self.unavailable[item.stage_name] = item.stage.available(self.options()) if item.stage else "not loadable"
        return self.unavailable[item.stage_name]

    def _announce(self, item: StepItem) -> None:
        """A sim or gpu step takes seconds to minutes: name it as it starts, also without -v (with -v pytest
        names each item as it starts), on the progress line before its result letter (`sim <recipe>: deploy .
        smoke-chat .`). Not for a stage that skips as a whole (no cluster): nothing runs there."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.config.get_verbosity() > 0 or self.stage_unavailable(item):
            self.announcing = None
            return
        previous, self.announced_recipe = self.announced_recipe, (item.stage_name, item.recipe.id)
        if previous == self.announced_recipe:
            text = f" {item.name} "
        elif previous is not None and previous[0] == item.stage_name:  # the next recipe: a line of its own
            text = f"\n{item.stage_name} {item.recipe.id}: {item.name} "
        else:  # after the `<stage> ` prefix pytest wrote
            text = f"{item.recipe.id}: {item.name} "
        self.announcing = (item.nodeid, text)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        """After the terminal wrote the progress line's prefix: the step's name, flushed before it runs."""
        if self.announcing and self.announcing[0] == nodeid:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write(self.announcing[1], flush=True)
            self.announcing = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None):
        yield
        if isinstance(item, StepItem):
            key = (item.stage_name, item.recipe.id)
            next_key = (nextitem.stage_name, nextitem.recipe.id) if isinstance(nextitem, StepItem) else None
            if next_key != key:
                self.close(key)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for key in list(self.runs):
            self.close(key)  # also on Ctrl-C and on failures: nothing the harness started survives
        self._write_run_report()
        self.report.findings = dedupe(self.report.findings)
        if hasattr(self.config, "workeroutput"):  # an xdist worker: the controller writes the findings
            self.config.workeroutput[WORKER_REPORT] = {
                "recipes": self.report.recipes,
                "findings": [f.to_dict() for f in self.report.findings],
            }
            return
        path = self.config.option.findings_json
        if path and (self.selection is not None or self.from_workers):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(self.report.to_json())

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker is done; its findings join the run's (it collected, we did not)."""
        out = (getattr(node, "workeroutput", None) or {}).get(WORKER_REPORT)
        if out:
            self.from_workers = True
            self.report.recipes = self.report.recipes or list(out["recipes"])
            self.report.findings.extend(Finding(**{**d, "severity": Severity(d["severity"])}) for d in out["findings"])

    # --- reporting ---------------------------------------------------------------------

    def _write_run_report(self) -> None:
        """summary.json, summary.md and report.html for a run that benchmarked anything."""
        opts = self.stage_options
        if opts is None or not opts.report_dir.is_dir() or hasattr(self.config, "workerinput"):
            return
        try:
            from harness.results.report import write_run_report

            written = write_run_report(opts.report_dir, opts.history_root, run_id=opts.report_dir.name)
        except Exception as exc:
            self.notes.append(f"run report not written: {type(exc).__name__}: {exc}")
            return
        if written:
            self.notes.append(f"run report: {opts.report_dir} ({', '.join(p.name for p in written)})")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        lines = []
        from harness.checks.schema import kubeconform_binary

        if kubeconform_binary() is None:
            lines.append(
                "recipe-harness: kubeconform not on PATH: manifests are validated by the built-in schemas only"
            )
        if self._wanted() and (self._stage_selected("sim") or self._stage_selected("conformance")):
            lines += self._release_header()
        return lines

    def _release_header(self) -> list[str]:
        """Which Dynamo parses and rehearses each release the selection pins (the run header)."""
        from harness.run.conformance.client import surface_header_lines
        from harness.run.sim.runtime import header_lines

        opt = self.config.option
        try:
            selection = make_selection(
                opt.recipes_dir,
                opt.recipe,
                opt.changed_since,
                opt.max_file_bytes,
                require_recipes=False,
                paths=self.paths,
            )
            releases = sorted({r for r in (x.release for x in selection.chosen) if r})
            return header_lines(releases) + surface_header_lines(releases, selection.chosen)
        except Exception:
            return []

    def pytest_report_collectionfinish(self, config: pytest.Config, start_path: Path, items: list) -> list[str]:
        """The run header: the tree and its convention, the severity floor and every ignore in effect."""
        if not self.selection:
            return []
        lines = [f"recipe-harness: {line}" for line in run_header(self.selection, self.gate)]
        grouped = sum(isinstance(i, RecipeChecksItem) for i in items)
        if self.static_tests and grouped:
            lines.append(
                f"recipe-harness: {self.static_tests} static tests in {grouped} items "
                "(each reports its checks as tests; --static-items per-check makes one item per check)"
            )
        return lines

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if self.selection is None and not self.from_workers:
            return
        tr = terminalreporter
        for note in self.notes + self.gate.summary():
            tr.write_line(f"recipe-harness: {note}")
        for line in self.rehearsed_elsewhere:
            tr.write_line(f"recipe-harness: not run again: {line} (an overlay that changes only cluster settings)")
        findings = dedupe(self.report.findings)
        failing = sorted({f.check_id for f in findings if f.severity is Severity.ERROR})
        if failing:
            tr.section("why the failing checks matter", sep="-")
            by_id = {c.id: c for c in all_checks()}
            for check_id in failing:
                why = by_id[check_id].why if check_id in by_id else ""
                tr.write_line(f"[{check_id}] {why}".rstrip() + f" (recipe-harness checks {check_id})")
        warnings = [f for f in findings if f.severity is Severity.WARNING]
        if warnings:
            tr.section("recipe warnings", sep="-", yellow=True)
            for f in sorted_findings(warnings):
                tr.write_line(f.format())
        if findings:
            errors = sum(1 for f in findings if f.severity is Severity.ERROR)
            tr.write_line(
                f"recipe-harness: {len(self.report.recipes)} recipes, {errors} error(s), {len(warnings)} warning(s)"
            )
        if in_github_actions():
            for f in sorted_findings(findings):
                tr.write_line(f.github_annotation())


class StepItem(pytest.Item):
    def __init__(self, *, stage_name: str, stage: Stage | None, recipe: Recipe, **kw):
        super().__init__(**kw)
        self.stage_name = stage_name
        self.stage = stage
        self.recipe = recipe

    def runtest(self) -> None:
        harness: RecipeHarness = self.config.pluginmanager.get_plugin("recipe-harness-session")
        key = (self.stage_name, self.recipe.id)
        reason = harness.stage_unavailable(self)
        if reason:
            pytest.skip(reason)
        if key in harness.plan_errors:  # the recipe's only item, named `plan`
            pytest.fail(harness.plan_errors[key], pytrace=False)
        skipped = failed = None
        try:  # the run decides whether this step can run after the earlier ones (harness.run.stage.StepRun)
            harness.run_for(self).run_step(self.name)
        except StageSkip as exc:
            skipped = str(exc)
        except AssertionError as exc:
            failed = str(exc) or f"{self.name} failed"
        # outside the except blocks: the report shows the step's message once, not a chained traceback
        if skipped is not None:
            pytest.skip(skipped)
        if failed is not None:
            pytest.fail(failed, pytrace=False)

    def reportinfo(self):
        return self.recipe.path, None, f"{self.stage_name}::{self.recipe.id}::{self.name}"
