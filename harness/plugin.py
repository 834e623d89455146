"""The pytest plugin: options, markers and one test item per recipe check or stage step.

Test ids are stable and read as the recipe id: `static::<recipe-id>::<check-id>`,
`sim::<recipe-id>::<step>`, `gpu::<recipe-id>::<step>`, and
`static::catalogue::<check-id>` for checks of the whole tree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness.checks import TREE_ID, Check, CheckContext, all_checks, run_check
from harness.recipe.changes import ChangeError
from harness.recipe.discovery import SelectionError
from harness.recipe.findings import Finding, Report, Severity, sorted_findings
from harness.recipe.model import Recipe
from harness.run.stage import StageOptions, StageRun, StageSkip, load_stage
from harness.run.static import Selection, context_for, dedupe, in_github_actions, make_selection

STAGES = ("static", "sim", "gpu")
# Steps whose failure or skip leaves nothing for the later steps of the recipe to test.
SETUP_STEPS = ("plan", "preflight", "model-cache", "deploy", "ready")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recipe-harness", "Dynamo recipe harness")
    group.addoption("--recipe", action="append", default=[], metavar="SEL",
                    help="select recipes by model prefix (qwen3-235b), id (qwen3-32b/vllm/agg-round-robin) or glob; repeatable")
    group.addoption("--recipes-dir", metavar="PATH", help="recipes tree to check (default: ./recipes)")
    group.addoption("--changed-since", metavar="REF", help="only recipes touched since the merge base with REF (all when harness/ or schemas/ changed)")
    group.addoption("--crd", action="append", default=[], metavar="PATH",
                    help="also validate against this CustomResourceDefinition (e.g. the operator version on your cluster)")
    group.addoption("--registry", action="append", default=[], metavar="HOST",
                    help="allowed image registry (repeatable; replaces the allow-list in recipes/versions.yaml)")
    group.addoption("--findings-json", metavar="PATH", help="write all static findings as JSON")
    group.addoption("--max-file-bytes", type=int, default=None, metavar="N", help="size cap for one YAML file (default 1 MiB)")
    group.addoption("--report-dir", metavar="PATH", default=None, help="where runs write reports (default reports/runs/<run-id>)")
    group.addoption("--sim-profile", default="ci", help="sim load profile: ci (small, default) or laptop")
    group.addoption("--sim-slowdown", type=float, default=1.0, metavar="F", help="run the mocker F times slower (proves regressions are caught)")
    group.addoption("--keep-logs", action="store_true", help="keep process logs of passing sim runs")
    group.addoption("--repeats", type=int, default=1, metavar="N", help="benchmark runs per recipe (median and CV)")
    group.addoption("--update-baselines", action="store_true", help="write new baselines from valid runs")
    group.addoption("--engine", choices=("real", "mocker"), default="real", help="gpu stage: real engines, or the Dynamo mocker on a CPU cluster")
    group.addoption("--keep", action="store_true", help="gpu stage: keep the namespace after the run")
    group.addoption("--perf-mode", choices=("job", "local"), default="job", help="gpu stage: run perf.yaml in the cluster, or AIPerf locally through the port-forward")
    group.addoption("--kubeconfig", default=None, metavar="PATH", help="gpu stage: kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster)")
    group.addoption("--namespace", default=None, help="gpu stage: use this namespace instead of the model's own (rh-<model>)")
    group.addoption("--time-budget", type=float, default=None, metavar="MIN",
                    help="gpu stage: finish each recipe's run, diagnostics and teardown included, within MIN minutes (set it below the CI job's limit)")
    group.addoption("--gpu-option", action="append", default=[], metavar="KEY=VALUE",
                    help="gpu stage: set a DeploySettings field, e.g. unschedulable_grace=900 or poll_interval=2; repeatable")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in (("static", "offline recipe checks"), ("sim", "CPU rehearsal with the Dynamo mocker"), ("gpu", "real cluster run")):
        config.addinivalue_line("markers", f"{name}: {text}")
    config.pluginmanager.register(RecipeHarness(config), "recipe-harness-session")


class RecipeHarness:
    """Per-session state: the selection, stage runs, findings for the reporters."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.report = Report()
        self.selection: Selection | None = None
        self.ctx: CheckContext | None = None
        self.runs: dict[tuple[str, str], StageRun] = {}
        self.failed_step: dict[tuple[str, str], str] = {}
        self.unavailable: dict[str, str | None] = {}
        self.stage_options: StageOptions | None = None
        self.notes: list[str] = []

    # --- collection ------------------------------------------------------------------

    def _wanted(self) -> bool:
        opt = self.config.option
        if opt.recipe or opt.recipes_dir or opt.changed_since:
            return True
        # plain `pytest` / `pytest -m static` (testpaths or no args): yes; `pytest tests/x.py`: no
        return self.config.args_source != pytest.Config.ArgsSource.ARGS

    def _stage_selected(self, stage: str) -> bool:
        expr = self.config.option.markexpr
        if not expr:
            return True
        from _pytest.mark.expression import Expression

        try:
            return Expression.compile(expr).evaluate(lambda name, **kw: name == stage)
        except Exception:  # noqa: BLE001 - let pytest report a bad expression itself
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
        from _pytest.mark.expression import Expression

        try:
            return Expression.compile(self.config.option.markexpr).evaluate(lambda name, **kw: False)
        except Exception:  # noqa: BLE001
            return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list) -> None:
        if not self._wanted():
            return
        opt = config.option
        try:
            self.selection = make_selection(opt.recipes_dir, opt.recipe, opt.changed_since, opt.max_file_bytes)
        except (SelectionError, ChangeError) as exc:
            raise pytest.UsageError(str(exc)) from None
        self.notes.extend(self.selection.notes)
        if not self.selection.all:
            self.notes.append(f"no recipes found under {self.selection.root}")
        self.ctx = context_for(self.selection, {"crd": [Path(p) for p in opt.crd], "registries": opt.registry or None})
        self.report.recipes = [r.id for r in self.selection.chosen]
        new: list[pytest.Item] = []
        if self._stage_selected("static"):
            new.extend(self._static_items(session))
        for stage_name in ("sim", "gpu"):
            if self._stage_selected(stage_name) and self.selection.chosen:
                new.extend(self._stage_items(session, stage_name))
        items[:0] = new

    def _static_items(self, session: pytest.Session) -> list[pytest.Item]:
        assert self.selection is not None
        suite = Suite.from_parent(session, name="static", nodeid="static")
        checks = all_checks()
        out: list[pytest.Item] = []
        if self.selection.whole_tree or self.config.option.recipes_dir:
            node = RecipeNode.from_parent(suite, name=TREE_ID)
            out += [StaticCheckItem.from_parent(node, name=c.id, check=c, subject=self.selection.tree) for c in checks if c.scope == "tree"]
        for recipe in self.selection.chosen:
            node = RecipeNode.from_parent(suite, name=recipe.id)
            out += [StaticCheckItem.from_parent(node, name=c.id, check=c, subject=recipe) for c in checks if c.scope == "recipe"]
        for item in out:
            item.add_marker(pytest.mark.static)
        return out

    def _stage_items(self, session: pytest.Session, stage_name: str) -> list[pytest.Item]:
        assert self.selection is not None
        suite = Suite.from_parent(session, name=stage_name, nodeid=stage_name)
        out: list[pytest.Item] = []
        try:
            stage = load_stage(stage_name)
        except ImportError as exc:
            stage = None
            self.unavailable[stage_name] = f"{stage_name} stage cannot load: {exc}"
        for recipe in self.selection.chosen:
            node = RecipeNode.from_parent(suite, name=recipe.id)
            try:
                steps = stage.steps(recipe) if stage else ["run"]
            except Exception as exc:  # noqa: BLE001 - a broken recipe is a failing item, not a crash
                steps = ["plan"]
                self.failed_step[(stage_name, recipe.id)] = f"cannot plan: {type(exc).__name__}: {exc}"
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
            report_dir = Path(opt.report_dir) if opt.report_dir else Path(self.config.rootpath) / "reports" / "runs" / run_id
            self.stage_options = StageOptions(
                report_dir=report_dir, sim_profile=opt.sim_profile, sim_slowdown=opt.sim_slowdown, keep_logs=opt.keep_logs,
                repeats=opt.repeats, update_baselines=opt.update_baselines, engine=opt.engine, keep=opt.keep,
                perf_mode=opt.perf_mode, kubeconfig=opt.kubeconfig, namespace=opt.namespace,
                extra=dict(self._report_roots(), **self._gpu_options()),
            )
        return self.stage_options

    def _gpu_options(self) -> dict[str, str | float]:
        """--gpu-option KEY=VALUE pairs and --time-budget (minutes -> seconds) for the gpu stage's settings."""
        opt = self.config.option
        out: dict[str, str | float] = {}
        for item in getattr(opt, "gpu_option", None) or []:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise pytest.UsageError(f"--gpu-option {item!r}: expected KEY=VALUE")
            out[key.strip()] = value.strip()
        if getattr(opt, "time_budget", None):
            out["time_budget"] = float(opt.time_budget) * 60.0
        return out

    def _report_roots(self) -> dict[str, str]:
        """Baselines and history live in reports/ beside the recipes tree (the repository's, or a foreign tree's)."""
        tree = self.selection.root if self.selection else Path(self.config.rootpath) / "recipes"
        return {"baselines_root": str(tree.parent / "reports" / "baselines"), "history_root": str(tree.parent / "reports" / "history")}

    def run_for(self, item: "StepItem") -> StageRun:
        key = (item.stage_name, item.recipe.id)
        if key not in self.runs:
            self.runs[key] = item.stage.open(item.recipe, self.options())
        return self.runs[key]

    def close(self, key: tuple[str, str]) -> None:
        run = self.runs.pop(key, None)
        if run is not None:
            run.close()

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
        path = self.config.option.findings_json
        if path and self.selection is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(self.report.to_json())

    # --- reporting ---------------------------------------------------------------------

    def _write_run_report(self) -> None:
        """summary.json, summary.md and report.html for a run that benchmarked anything."""
        opts = self.stage_options
        if opts is None or not opts.report_dir.is_dir() or hasattr(self.config, "workerinput"):
            return
        history = Path(opts.extra["history_root"])
        try:
            from harness.results.report import write_run_report

            written = write_run_report(opts.report_dir, history, run_id=opts.report_dir.name)
        except Exception as exc:  # noqa: BLE001 - a report problem must not hide the test results
            self.notes.append(f"run report not written: {type(exc).__name__}: {exc}")
            return
        if written:
            self.notes.append(f"run report: {opts.report_dir} ({', '.join(p.name for p in written)})")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        lines = []
        from harness.checks.schema import kubeconform_binary

        if kubeconform_binary() is None:
            lines.append("recipe-harness: kubeconform not on PATH: manifests are validated by the built-in schemas only")
        return lines

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if self.selection is None:
            return
        tr = terminalreporter
        for note in self.notes:
            tr.write_line(f"recipe-harness: {note}")
        findings = dedupe(self.report.findings)
        warnings = [f for f in findings if f.severity is Severity.WARNING]
        if warnings:
            tr.section("recipe warnings", sep="-", yellow=True)
            for f in sorted_findings(warnings):
                tr.write_line(f.format())
        if findings:
            errors = sum(1 for f in findings if f.severity is Severity.ERROR)
            tr.write_line(f"recipe-harness: {len(self.report.recipes)} recipes, {errors} error(s), {len(warnings)} warning(s)")
        if in_github_actions():
            for f in sorted_findings(findings):
                tr.write_line(f.github_annotation())


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


class StaticCheckItem(pytest.Item):
    def __init__(self, *, check: Check, subject: Any, **kw):
        super().__init__(**kw)
        self.check = check
        self.subject = subject

    def runtest(self) -> None:
        harness: RecipeHarness = self.config.pluginmanager.get_plugin("recipe-harness-session")
        assert harness.ctx is not None
        findings = run_check(self.check, self.subject, harness.ctx)
        harness.report.findings.extend(findings)
        errors = [f for f in findings if f.severity is Severity.ERROR]
        if errors:
            raise StaticFailure(sorted_findings(errors))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, StaticFailure):
            return "\n".join(f.format() for f in excinfo.value.findings) + f"\n\nwhy [{self.check.id}]: {self.check.why}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        path = self.subject.path if isinstance(self.subject, Recipe) else self.subject.root
        return path, None, f"static::{self.parent.name}::{self.name}"


class StepItem(pytest.Item):
    def __init__(self, *, stage_name: str, stage: Any, recipe: Recipe, **kw):
        super().__init__(**kw)
        self.stage_name = stage_name
        self.stage = stage
        self.recipe = recipe

    def runtest(self) -> None:
        harness: RecipeHarness = self.config.pluginmanager.get_plugin("recipe-harness-session")
        key = (self.stage_name, self.recipe.id)
        if self.stage_name not in harness.unavailable:
            harness.unavailable[self.stage_name] = self.stage.available(harness.options()) if self.stage else "stage not loadable"
        reason = harness.unavailable[self.stage_name]
        if reason:
            pytest.skip(reason)
        if key in harness.failed_step:
            if self.name == "plan":
                pytest.fail(harness.failed_step[key], pytrace=False)
            pytest.skip(f"an earlier step failed: {harness.failed_step[key]}")
        skipped = failed = None
        try:
            harness.run_for(self).run_step(self.name)
        except StageSkip as exc:
            skipped = str(exc)
            if self.name in SETUP_STEPS:  # nothing after a skipped setup step can run
                harness.failed_step[key] = f"{self.name} skipped"
        except AssertionError as exc:
            failed = str(exc) or f"{self.name} failed"
            if self.name in SETUP_STEPS:
                harness.failed_step[key] = f"{self.name}: {failed.splitlines()[0]}"
        except Exception as exc:
            harness.failed_step[key] = f"{self.name}: {type(exc).__name__}"
            raise
        # outside the except blocks: the report shows the step's message once, not a chained traceback
        if skipped is not None:
            pytest.skip(skipped)
        if failed is not None:
            pytest.fail(failed, pytrace=False)

    def reportinfo(self):
        return self.recipe.path, None, f"{self.stage_name}::{self.recipe.id}::{self.name}"
