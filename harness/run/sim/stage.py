"""The sim stage: deploy a recipe locally with the mocker, smoke-test it, benchmark it, compare to its baseline."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from operator import methodcaller
from pathlib import Path
from typing import Any

from harness.analysis.benchmark import PerfConfigError, find_invocation
from harness.recipe.model import Recipe
from harness.results import baselines
from harness.results.metrics import GATED_METRICS, PerfResult
from harness.results.paired import PairedComparison
from harness.run.perf import Scale, parse_profile_export, run_aiperf, scaled_args
from harness.run.sim import runtime
from harness.run.sim.compare import sim_policy
from harness.run.sim.local import DeployError, LocalDeployment, tail
from harness.run.sim.modeldir import describe, ensure_model_dir
from harness.run.sim.paired import Arm, PairedBench, PairedError, reference_for
from harness.run.sim.plan import (
    FrontendCli,
    PlanError,
    ProcessPlan,
    SimPlan,
    build_plan,
    frontend_cli_from,
    installed_frontend_cli,
)
from harness.run.sim.profiles import PROFILES, SimProfile, get_profile
from harness.run.sim.runtime import SimRuntime
from harness.run.smoke import SmokeSuite
from harness.run.stage import StageOptions, StageSkip, Step, StepFailed, StepRun, smoke_step

# `conformance` first: the recipe's command lines through the real parsers of its Dynamo release,
# before any mocker starts (harness/run/conformance); it skips where that env is not set up. It is
# not a setup step: a skip there must not skip the rehearsal.
# `compare` is the only timing verdict that can fail a rehearsal: the recipe against a reference
# measured beside it in the same run (harness/run/sim/paired.py); it passes with a note when the run
# has no reference. The baseline step needs no live deployment, only the perf results (it skips
# without a valid one); in the sim it is a trend record: a stored baseline was measured on another
# machine at another load, so a difference from it is a warning, never a failure.
SIM_STEPS = (
    Step("conformance", methodcaller("conformance")),
    Step("deploy", methodcaller("deploy"), setup=True),
    *(smoke_step(check, requires=("deploy",)) for check in SmokeSuite.CHECKS),
    Step("perf", methodcaller("perf"), requires=("deploy",)),
    Step("compare", methodcaller("compare"), requires=("perf",)),
    Step("baseline", methodcaller("baseline")),
)
STEPS = [s.name for s in SIM_STEPS]
REQUIRED_MODULES = ("dynamo.frontend", "dynamo.mocker", "aiperf", "tokenizers")
# Sim-only AIPerf options. Random token ids skip tokenizing AIPerf's 4.8 MB corpus (10-13 s on 2
# cores) and the mocker ignores prompt content; server metrics cost a 2 s flush and are unused.
SIM_AIPERF_ARGS = {
    "--prompt-corpus random": "prompt text does not matter to the mocker; saves ~10 s of corpus tokenizing",
    "--no-server-metrics": "the sim reads worker metrics itself; saves a 2 s flush",
}


class TimingWarning(UserWarning):
    """A timing difference that is not a verdict: a one-off crossing of the same-run reference, or a
    difference from a stored baseline measured elsewhere. pytest lists it with its numbers."""


class SimStage:
    name = "sim"

    def steps(self, recipe: Recipe) -> list[Step]:
        return list(SIM_STEPS)

    def available(self, options: StageOptions) -> str | None:
        missing = [m for m in REQUIRED_MODULES if not _importable(m)]
        if missing:
            return f"{', '.join(missing)} not installed: pip install -e '.[sim]'"
        if options.sim.profile not in PROFILES:
            return f"unknown --sim-profile {options.sim.profile!r}: choose one of {', '.join(PROFILES)}"
        if options.sim.slowdown <= 0:
            return f"--sim-slowdown must be > 0, got {options.sim.slowdown}"
        return None

    def open(self, recipe: Recipe, options: StageOptions) -> SimRun:
        return SimRun(recipe, options)

    def rehearsed_by(self, recipe: Recipe, chosen: list[Recipe]) -> Recipe | None:
        """A kustomize overlay (RDMA devices, storage class, namespace, registry mirror) whose local plan, the
        processes and every argument the sim starts, equals a chosen plain recipe's: the rehearsal would be the
        same run twice, so the plain recipe's stands for both. An overlay that changes what runs is rehearsed."""
        if recipe.kustomize_build is None:
            return None
        try:
            cli = installed_frontend_cli()
            mine = _rehearsal(build_plan(recipe, frontend_cli=cli))
        except Exception:
            return None  # its own items say why it cannot be planned
        for other in chosen:
            if other.kustomize_build is not None or other.model != recipe.model or other.framework != recipe.framework:
                continue
            try:
                if _rehearsal(build_plan(other, frontend_cli=cli)) == mine:
                    return other
            except Exception:
                continue
        return None


def frontend_cli_of(rt: SimRuntime) -> FrontendCli:
    """The option strings of the runtime's own `dynamo.frontend` (read in its interpreter when it is another)."""
    if rt.python == sys.executable:
        return installed_frontend_cli()
    return frontend_cli_from(runtime.frontend_cli_data(rt.python))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class SimRun(StepRun):
    """One recipe's rehearsal; holds the local deployment between steps and always writes result.json."""

    def __init__(self, recipe: Recipe, options: StageOptions):
        super().__init__(SIM_STEPS)
        self.recipe = recipe
        self.options = options
        self.profile: SimProfile = get_profile(options.sim.profile)
        self.report_dir = options.report_dir / "sim" / recipe.id
        self.baselines_root = options.baselines_root
        self.history_root = options.history_root
        self.plan: SimPlan | None = None
        self.model_dir: Path | None = None
        self.deployment: LocalDeployment | None = None
        self.suite: SmokeSuite | None = None
        self.last_result: PerfResult | None = None  # the latest --repeats run
        self.results: list[PerfResult] = []  # one per --repeats run, all on the same deployment
        self.evaluation: baselines.Evaluation | None = None
        self.comparison: PairedComparison | None = None  # the same-run timing verdict
        self.comparison_note = ""  # why there was none
        self.frontend_cli: FrontendCli | None = None
        self.progress: list[str] = []
        self.aiperf_changes: list[str] = []
        self.baseline_written = ""
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.runtime: SimRuntime | None = None  # the Dynamo release that rehearses
        self.failed = False
        self.started = time.monotonic()
        self.started_at = baselines.utc_now()  # wall-clock start, for the history and the run report
        self._closed = False

    @property
    def experiment(self) -> str | None:
        """A slowed-down run proves the gate catches a regression: it is recorded as an experiment and kept
        out of the trend plots and of regression confirmation (harness/results/baselines/history.py)."""
        return f"--sim-slowdown {self.options.sim.slowdown:g}" if self.options.sim.slowdown != 1.0 else None

    @property
    def speedup_ratio(self) -> float:
        return self.profile.speedup_ratio / self.options.sim.slowdown

    # ---- StepRun -------------------------------------------------------------------------------

    def execute(self, step: Step) -> None:
        """Run the step and record its outcome and time for result.json."""
        t0 = time.monotonic()
        outcome = "passed"
        message = ""
        try:
            step.run(self)
        except StageSkip as e:
            outcome, message = "skipped", str(e)
            raise
        except BaseException as e:
            self.failed = True
            outcome, message = "failed", str(e) or type(e).__name__
            raise
        finally:
            self.outcomes[step.name] = {
                "outcome": outcome,
                "seconds": round(time.monotonic() - t0, 2),
                **({"message": message} if message else {}),
            }

    def close(self) -> None:
        """Tear down, write result.json, drop logs of a clean run unless --keep-logs. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.deployment is not None:
                self.deployment.stop()
        finally:
            try:
                if self.suite is not None:
                    self.suite.close()
                self._write_result()
                if not self.options.sim.keep_logs and not self.failed:
                    shutil.rmtree(self.report_dir / "logs", ignore_errors=True)
            except Exception:  # close() must never raise: the report is best effort
                pass

    # ---- steps ---------------------------------------------------------------------------------

    def conformance(self) -> None:
        """A worker the real Dynamo/engine parser rejects would crash at start: the rehearsal fails here.
        Reuses the parses of `-m conformance` in the same session; never builds an env."""
        from harness.run.conformance.client import check_recipes, failure_text

        outcomes = check_recipes([self.recipe])
        failed = [o for o in outcomes if o.findings or o.result.kind == "driver"]
        if failed:
            raise StepFailed("\n".join(failure_text(o) for o in failed))
        skipped = sorted({o.result.unavailable for o in outcomes if o.result.unavailable})  # no env set up
        if skipped:
            raise StageSkip("; ".join(skipped))

    def deploy(self) -> None:
        try:
            self.runtime = runtime.resolve(self.recipe.release)
            cli = self.frontend_cli = frontend_cli_of(self.runtime)
        except runtime.RuntimeError_ as e:
            raise StepFailed(f"{self.recipe.id}: {e}") from None
        try:
            self.plan = build_plan(
                self.recipe,
                speedup_ratio=self.speedup_ratio,
                max_data_parallel=self.profile.max_data_parallel,
                frontend_cli=cli,
            )
        except PlanError as e:
            raise StepFailed(str(e)) from None
        self.model_dir = ensure_model_dir(self.plan.model_id, self.options.sim.cache_dir)
        self._write_json(
            "plan.json",
            {
                **self.plan.to_dict(),
                "dynamo": self.runtime.to_dict(),
                "profile": self.profile.to_dict(),
                "simSlowdown": self.options.sim.slowdown,
                "modelDir": describe(self.model_dir),
            },
        )
        self.deployment = LocalDeployment(
            self.plan,
            self.model_dir,
            self.report_dir / "logs",
            self.profile.startup_timeout_s,
            python=self.runtime.python,
        )
        try:
            self.deployment.start()
        except DeployError as e:
            raise StepFailed(f"{self.recipe.id}: the local stack did not come up: {e}") from None
        self.usage["startup_s"] = round(self.deployment.startup_s or 0.0, 2)
        self.usage["after_deploy"] = asdict(self.deployment.usage())
        self.suite = SmokeSuite(
            self.deployment.base_url,
            self.plan.served_model_name,
            router_mode=self.plan.router_mode,
            request_counts=self.deployment.worker_request_counts,
        )

    def _live(self) -> LocalDeployment:
        assert self.deployment is not None and self.plan is not None, "the step requires deploy"
        try:
            self.deployment.check_alive()
        except DeployError as e:
            raise StepFailed(str(e)) from None
        return self.deployment

    def smoke(self, check: str) -> None:
        dep = self._live()
        assert self.suite is not None
        getattr(self.suite, f"check_{check}")()
        try:
            dep.check_alive()  # a request that crashes a worker is a defect even if it got an answer
        except DeployError as e:
            raise StepFailed(str(e)) from None

    def perf(self) -> None:
        dep = self._live()
        assert self.plan is not None and self.model_dir is not None
        try:
            inv = find_invocation(self.recipe)
        except PerfConfigError as e:
            raise StepFailed(str(e)) from None
        served = self.plan.served_model_name
        if inv.model is not None and inv.model != served:
            raise StepFailed(
                f"{inv.where}: the benchmark requests model {inv.model!r} but the deployment serves {served!r}: "
                f"every request would get 404"
            )
        repeats = max(1, self.options.repeats)
        shutil.rmtree(self.report_dir / "aiperf", ignore_errors=True)
        self.results = []
        for i in range(repeats):
            artifact_dir = self.report_dir / "aiperf" / (f"run-{i + 1}" if repeats > 1 else "")
            result = self._perf_run(dep, inv, served, artifact_dir)
            self.results.append(result)
            self.last_result = result
            if not result.valid:
                log_path = self.report_dir / "logs" / "aiperf.log"
                raise StepFailed(
                    f"the benchmark is not a measurement (run {i + 1} of {repeats}): {result.invalid_reason}\n"
                    f"last lines of {log_path}:\n{tail(log_path)}"
                )
            self._live()

    def _perf_run(self, dep: LocalDeployment, inv: Any, served: str, artifact_dir: Path) -> PerfResult:
        p = self.profile
        plan = scaled_args(
            inv,
            model=served,
            url=dep.base_url,
            tokenizer=self.model_dir,
            artifact_dir=artifact_dir,
            scale=Scale(p.max_concurrency, p.request_count, p.max_input_tokens, p.max_output_tokens),
        )
        for option, why in SIM_AIPERF_ARGS.items():
            plan.args += option.split()
            plan.changes.append(f"{option} added ({why})")
        self.aiperf_changes = plan.changes
        log_path = self.report_dir / "logs" / "aiperf.log"
        run = run_aiperf(plan.args, log_path, p.perf_timeout_s, cwd=self.report_dir)
        result = parse_profile_export(
            artifact_dir,
            plan.expected_requests,
            plan.output_tokens,
            aiperf_args=portable_args(plan.args, dep.base_url, self.model_dir, artifact_dir),
        )
        if run.timed_out:
            result.invalid_reason = f"AIPerf did not finish within {p.perf_timeout_s:.0f} s (sim profile {p.name})"
        elif run.returncode and result.valid:
            result.invalid_reason = f"AIPerf exited with code {run.returncode}"
        self.usage["aiperf_wall_s"] = round(self.usage.get("aiperf_wall_s", 0.0) + run.wall_s, 2)
        self.usage["after_perf"] = asdict(dep.usage())
        return result

    def compare(self) -> None:
        """The timing verdict: this recipe against a reference measured beside it in the same run
        (harness/run/sim/paired.py). Fails only on a crossing confirmed on fresh stacks; a one-off crossing
        or an inconclusive estimate is a warning that carries the numbers. Without a reference it passes
        and says why nothing was judged."""
        assert self.plan is not None and self.model_dir is not None and self.runtime is not None
        reference, why = reference_for(
            self.recipe,
            slowdown=self.options.sim.slowdown,
            speedup_ratio=self.speedup_ratio,
            ref=self.options.sim.reference,
        )
        if reference is None:
            self.comparison_note = why
            return
        if self.deployment is not None:
            self.deployment.stop()  # both arms get fresh stacks; this one's work is done
        p = self.profile
        try:
            reference.arm = self._with_runtime(reference.arm)
        except (runtime.RuntimeError_, ValueError) as exc:
            reference.cleanup()
            self.comparison_note = f"no same-run reference: {reference.label} cannot run here: {exc}"
            warnings.warn(TimingWarning(f"{self.recipe.id}: {self.comparison_note}"), stacklevel=1)
            return
        bench = PairedBench(
            candidate=Arm("candidate", self.recipe, self.speedup_ratio, self.runtime.python, self.frontend_cli),
            reference=reference,
            invocation=find_invocation(self.recipe),
            scale=Scale(p.max_concurrency, p.request_count, p.max_input_tokens, p.max_output_tokens),
            model_cache=self.options.sim.cache_dir,
            out_dir=self.report_dir / "compare",
            max_data_parallel=p.max_data_parallel,
            startup_timeout_s=p.startup_timeout_s,
            perf_timeout_s=p.perf_timeout_s,
            rounds_per_measurement=max(1, self.options.sim.rounds),
            say=self.say,
        )
        try:
            self.comparison = bench.compare()
        except PairedError as exc:
            if exc.arm == "candidate":
                raise StepFailed(f"same-run comparison against {reference.label}: {exc}") from None
            self.comparison_note = f"no timing verdict: {exc}"
            warnings.warn(TimingWarning(f"{self.recipe.id}: {self.comparison_note}"), stacklevel=1)
            return
        finally:
            reference.cleanup()
        verdict = self.comparison.verdict
        if verdict == "fail":
            raise StepFailed(self.comparison.message())
        if verdict in ("warn", "invalid"):
            warnings.warn(TimingWarning(f"{self.recipe.id}: {self.comparison.message()}"), stacklevel=1)

    def _with_runtime(self, arm: Arm) -> Arm:
        """The arm with the frontend and mocker of its recipe's own release (this run's when they match)."""
        assert self.runtime is not None
        release = arm.recipe.release
        if release == self.runtime.recipe_release:
            return dataclasses.replace(arm, python=self.runtime.python, frontend_cli=self.frontend_cli)
        rt = runtime.resolve(release)
        return dataclasses.replace(arm, python=rt.python, frontend_cli=frontend_cli_of(rt))

    def baseline(self) -> None:
        """Trend record against reports/baselines/sim/<recipe>.json via the baselines library; appends the
        run to reports/history/sim/ (the trend report reads it). The stored baseline was measured on
        another machine at another load: a difference is a warning with its numbers, never a failure
        (a timing verdict needs the same-run reference of the compare step)."""
        valid = [r for r in self.results if r.valid]
        if not valid:
            raise StageSkip(f"no valid perf result for sim::{self.recipe.id} to compare")
        update = self.options.update_baselines
        if update and self.options.sim.slowdown != 1.0:
            raise StepFailed(
                f"refusing to record a baseline at --sim-slowdown {self.options.sim.slowdown:g}: run at normal speed"
            )
        files = [self.recipe.path / name for name in ("deploy.yaml", "perf.yaml")]
        provenance = baselines.Provenance.collect(
            profile=self.profile.name,
            manifest_hash=baselines.manifest_hash(f.read_bytes() for f in files if f.is_file()),
            stats=baselines.aggregate(valid, sim_policy()),
            extra={
                "simProfile": self.profile.to_dict(),
                "simSlowdown": self.options.sim.slowdown,
                "startupSeconds": self.usage.get("startup_s"),
            },
            # the release whose frontend and mocker rehearsed (a managed env), not this process's ai-dynamo
            dynamo_version=self.runtime.release if self.runtime else None,
            backend_versions={"mocker": self.runtime.release} if self.runtime else None,
        )
        try:
            self.evaluation = baselines.evaluate_recipe(
                self.results,
                recipe=self.recipe.id,
                environment="sim",
                provenance=provenance,
                run_id=self.options.report_dir.name,
                started_at=self.started_at,
                update=update,
                policy=sim_policy(),
                baselines_root=self.baselines_root,
                history_root=self.history_root,
                experiment=self.experiment,
            )
        except baselines.BaselineError as e:
            raise StepFailed(str(e)) from None
        if self.evaluation.updated:
            self.baseline_written = baselines.repo_relative(
                baselines.baseline_path("sim", self.recipe.id, self.baselines_root)
            )
        failure = self.evaluation.failure()
        if failure and (self.evaluation.update_refused or self.evaluation.verdict.verdict == "invalid"):
            raise StepFailed(f"{failure}\n(--sim-slowdown {self.options.sim.slowdown:g}, profile {self.profile.name})")
        if failure:
            warnings.warn(
                TimingWarning(
                    f"{failure}\n(a stored baseline from another machine and load: a trend, not a verdict; "
                    f"--sim-slowdown {self.options.sim.slowdown:g}, profile {self.profile.name})"
                ),
                stacklevel=1,
            )
        if self.evaluation.verdict.verdict == "no-baseline" and not self.evaluation.updated:
            raise StageSkip(self.evaluation.verdict.message() + ": run with --update-baselines to record one")

    def say(self, message: str) -> None:
        """Progress of a long step, kept for result.json and appended to logs/progress.log."""
        self.progress.append(message)
        log = self.report_dir / "logs" / "progress.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {message}\n")
        except OSError:
            pass

    # ---- report --------------------------------------------------------------------------------

    def _write_result(self) -> None:
        perf = self.last_result
        self._write_json(
            "result.json",
            {
                "recipe": self.recipe.id,
                "stage": "sim",
                "profile": self.profile.name,
                "simSlowdown": self.options.sim.slowdown,
                "experiment": self.experiment,
                "speedupRatio": self.speedup_ratio,
                "dynamo": None if self.runtime is None else self.runtime.to_dict(),
                "startedAt": self.started_at,
                "finishedAt": baselines.utc_now(),
                "wallSeconds": round(time.monotonic() - self.started, 2),
                "steps": self.outcomes,
                "usage": self.usage,
                "plan": None
                if self.plan is None
                else {
                    "servedModelName": self.plan.served_model_name,
                    "routerMode": self.plan.router_mode,
                    "workers": len(self.plan.workers),
                    "expectedInstances": self.plan.expected_instances,
                    "notes": len(self.plan.notes),
                    "skippedServices": list(self.plan.skipped_services),
                },
                "perf": None
                if perf is None
                else {
                    "valid": perf.valid,
                    "invalidReason": perf.invalid_reason,
                    "expectedRequests": perf.expected_requests,
                    "completedRequests": perf.completed_requests,
                    "errorCount": perf.error_count,
                    "errors": perf.errors,
                    "metrics": {k: perf.value(k) for k in GATED_METRICS},
                    "aiperfArgs": perf.aiperf_args,
                    "changesFromPerfJob": self.aiperf_changes,
                    "artifactDir": perf.artifact_dir,
                },
                "runs": len(self.results),
                "comparison": self.comparison.to_dict()
                if self.comparison
                else ({"verdict": "none", "reason": self.comparison_note} if self.comparison_note else None),
                "verdict": self.evaluation.verdict.to_dict() if self.evaluation else None,
                "baselineWritten": self.baseline_written or None,
            },
        )

    def _write_json(self, name: str, data: dict) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / name).write_text(json.dumps(data, indent=2, default=str) + "\n")


def portable_args(args: list[str], url: str, model_dir: Path, artifact_dir: Path) -> list[str]:
    """AIPerf args with this machine's ports and paths replaced, so baselines compare across runs."""
    swap = {url: "http://127.0.0.1:<port>", str(model_dir): "<sim-model-dir>", str(artifact_dir): "<artifact-dir>"}
    return [swap.get(a, a) for a in args]


def _rehearsal(plan: SimPlan) -> tuple:
    """What a sim run starts and measures: the processes' modules, arguments, roles and sizes, the served name and
    the router; not the recipe id nor environment the mocker does not read (RDMA and NCCL settings)."""

    def proc(p: ProcessPlan) -> tuple:
        return (p.module, p.args, p.role, p.service, p.replica, p.data_parallel_size)

    return (plan.served_model_name, plan.model_id, plan.backend, plan.router_mode, proc(plan.frontend),
            tuple(proc(w) for w in plan.workers))  # fmt: skip
