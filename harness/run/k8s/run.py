"""One recipe's gpu run, the stage's only orchestrator: the step functions in order over one GpuContext,
diagnostics on failure, teardown on close."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.recipe.model import Recipe
from harness.results.metrics import PerfResult
from harness.run.interrupt import SignalsInterrupt
from harness.run.k8s import benchmark, cache, frontend, preflight, rollout, teardown
from harness.run.k8s.client import Kube
from harness.run.k8s.config import find_config
from harness.run.k8s.context import GpuContext
from harness.run.k8s.facts import router_mode, served_model_name
from harness.run.k8s.portforward import FrontendAccess
from harness.run.k8s.settings import DeploySettings
from harness.run.k8s.steps import gpu_steps
from harness.run.stage import StageSkip, Step, StepFailed, StepRun


def parse_export(path: Path) -> PerfResult:
    from harness.run.perf import parse_profile_export

    return parse_profile_export(path)


class GpuRun(StepRun):
    """One recipe on the cluster; steps run in order, `close()` always tears down."""

    def __init__(
        self,
        recipe: Recipe,
        settings: DeploySettings,
        *,
        smoke: type | None = None,
        update_baselines: bool = False,
        kube: Kube | None = None,
        access: FrontendAccess | None = None,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        env: dict[str, str] | None = None,
        perf_runner: Callable[[list[str], Path, float], Any] | None = None,
        baselines_root: Path | None = None,
        history_root: Path | None = None,
    ):
        super().__init__(gpu_steps(smoke))
        self.recipe = recipe
        self.settings = settings
        self.suite_class = smoke  # the smoke suite (None: only /v1/models is checked)
        self.update_baselines = update_baselines
        self._kube = kube
        self._context_kw: dict[str, Any] = {
            "access": access,
            "progress": progress,
            "sleep": sleep,
            "clock": clock,
            "env": env,
        }
        self.perf_runner = perf_runner
        self.baselines_root = (
            baselines_root  # None: harness.results.baselines' defaults (reports/baselines, reports/history)
        )
        self.history_root = history_root
        self.context: GpuContext | None = None
        self.signals = SignalsInterrupt()  # SIGTERM/SIGHUP unwind the run like Ctrl-C while it holds cluster objects
        self.suite: Any = None
        self.export_path: Path | None = None
        self.result: PerfResult | None = None  # the last run's
        self.results: list[PerfResult] = []  # one per --repeats run, all on the same deployment

    def _ensure_context(self) -> GpuContext:
        if self.context is None:
            kube = self._kube
            if kube is None:
                source = find_config(self.settings.kubeconfig)
                if isinstance(source, str):
                    raise StageSkip(source)
                kube = Kube.connect(source, self.settings.api_timeout)
            self.context = GpuContext.create(kube, self.recipe, self.settings, **self._context_kw)
            self.signals.install()
        return self.context

    def execute(self, step: Step) -> None:
        """Run the step; a defect comes back redacted, with the diagnostics collected for it. Any exception
        counts (KubeError, a port-forward's, urllib3 transport errors, an AssertionError of the smoke suite):
        never a raw traceback, whose locals and headers may hold a token."""
        ctx = self._ensure_context()
        try:
            step.run(self)
        except StageSkip:
            raise
        except Exception as exc:
            text = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            message = ctx.redactor.text(text)
            where = teardown.collect_diagnostics(ctx, step.name, message)
            raise StepFailed(message + (f"\ndiagnostics: {where}" if where else "")) from None

    @property
    def ctx(self) -> GpuContext:
        assert self.context is not None, "execute() connects to the cluster before any step"
        return self.context

    # ---- steps ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        preflight.preflight(self.ctx)

    def model_cache(self) -> None:
        cache.model_cache(self.ctx)

    def deploy(self) -> None:
        rollout.deploy(self.ctx)

    def ready(self) -> None:
        rollout.wait_ready(self.ctx)

    def smoke(self, check: str) -> None:
        ctx = self.ctx
        url = frontend.frontend_url(ctx)  # also waits until the served model is listed
        if self.suite_class is None:
            if check == "models":
                return  # frontend_url() has just asserted /v1/models lists the served model
            raise StepFailed(f"no smoke suite installed for check {check!r}")
        if self.suite is None:
            self.suite = self.suite_class(
                url,
                served_model_name(self.recipe),
                router_mode=router_mode(self.recipe),
                request_counts=lambda: frontend.worker_request_counts(ctx),
            )
        getattr(self.suite, f"check_{check}")()

    def perf(self) -> None:
        """The benchmark `repeats` times on the one deployment; the baseline step judges their median and CV."""
        ctx = self.ctx
        runs = max(1, self.settings.repeats)
        self.results = []
        for run in range(1, runs + 1):
            self.export_path = (
                benchmark.perf_local(ctx, self.perf_runner, run, runs)
                if self.settings.perf_mode == "local"
                else benchmark.perf_job(ctx, run, runs)
            )
            self.result = parse_export(self.export_path)
            if not self.result.valid:
                raise StepFailed(
                    f"the benchmark is not a measurement (run {run} of {runs}): {self.result.invalid_reason} "
                    f"(export: {self.export_path})"
                )
            self.results.append(self.result)
            ctx.progress(
                f"benchmark{f' run {run}/{runs}' if runs > 1 else ''}: "
                + ", ".join(
                    f"{k}={v:.4g}"
                    for k in ("output_token_throughput.avg", "time_to_first_token.p99")
                    if (v := self.result.value(k)) is not None
                )
            )

    def baseline(self) -> None:
        if self.settings.engine == "mocker":
            raise StageSkip("--engine mocker: mocker numbers are not comparable with GPU baselines")
        if self.result is None or not self.result.valid:
            raise StageSkip("no valid benchmark result to compare")
        ctx = self.ctx
        from harness.results import baselines

        hardware = ctx.report.hardware or "unknown"
        manifests = baselines.manifest_hash(json.dumps(m, sort_keys=True) for m in rollout.manifests(ctx))
        images = sorted(
            {
                str(s.main.image)
                for s in (self.recipe.deployment.services if self.recipe.deployment else [])
                if s.main and s.main.image
            }
        )
        provenance = baselines.Provenance.collect(
            profile="gpu",
            hardware=hardware,
            manifest_hash=manifests,
            images=[baselines.Image(i) for i in images],
            extra={"cluster": ctx.report.server, "namespace": ctx.namespace},
        )
        roots = {
            k: v
            for k, v in (("baselines_root", self.baselines_root), ("history_root", self.history_root))
            if v is not None
        }
        try:
            # run_id: the report folder, as the sim stage has it; the run report finds the run in the history by it
            evaluation = baselines.evaluate_recipe(
                self.results or [self.result],
                recipe=self.recipe.id,
                environment=f"gpu/{hardware.lower()}",
                provenance=provenance,
                run_id=self.settings.report_dir.name,
                update=self.update_baselines,
                **roots,
            )
        except baselines.BaselineError as exc:
            raise StepFailed(str(exc)) from None
        failure = evaluation.failure()
        if failure:
            raise StepFailed(failure)
        if evaluation.verdict.verdict == "no-baseline" and not evaluation.updated:
            raise StageSkip(
                evaluation.verdict.message()
                or f"no gpu/{hardware.lower()} baseline for {self.recipe.id}: run with --update-baselines to record one"
            )
        ctx.progress(f"baseline: {evaluation.verdict.verdict}" + (" (baseline updated)" if evaluation.updated else ""))

    def close(self) -> None:
        self.signals.shield()
        try:
            if self.suite is not None and hasattr(self.suite, "close"):
                try:
                    self.suite.close()
                except Exception:
                    pass
            if self.context is not None:
                teardown.teardown(self.context)
        finally:
            self.signals.restore()
