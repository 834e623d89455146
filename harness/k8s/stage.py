"""The `gpu` stage: the recipe exactly as shipped, on a real cluster, as ordered pytest steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..model import Recipe
from ..results import PerfResult
from ..stages import StageOptions, StageSkip, StepFailed
from .baseline import baseline_path, compare, load_baseline, write_baseline
from .client import ConfigSource, Kube, KubeError, api_client, find_config
from .deployer import Deployer, DeploySettings, served_model_name
from .portforward import FrontendAccess, PortForwardError

SETUP_STEPS = ["preflight", "model-cache", "deploy", "ready"]
PROBE_TIMEOUT = 2.0  # available() must answer in well under 5 s, even for a black-holed API


def smoke_suite_class() -> type | None:
    """The shared OpenAI smoke suite of the sim stage, when it is installed."""
    try:
        from .. import smoke
    except ImportError:
        return None
    return getattr(smoke, "SmokeSuite", None)


def smoke_checks(suite: type | None) -> list[str]:
    """Check names in suite order: its CHECKS, else its `check_*` methods as defined."""
    if suite is None:
        return []
    names = getattr(suite, "CHECKS", None)
    if names:
        return [str(n) for n in names]
    return [n[len("check_"):] for n in vars(suite) if n.startswith("check_") and callable(getattr(suite, n))]


def _step_name(check: str) -> str:
    return "smoke-" + check.replace("_", "-")


def parse_export(path: Path) -> PerfResult | None:
    """The shared AIPerf parser of the sim stage, when it is installed."""
    try:
        from ..perf import parse_profile_export
    except ImportError:
        return None
    return parse_profile_export(path)


class GpuStage:
    name = "gpu"

    def __init__(self, smoke: type | None | str = "auto"):
        self.smoke = smoke_suite_class() if smoke == "auto" else smoke

    def steps(self, recipe: Recipe) -> list[str]:
        checks = smoke_checks(self.smoke)  # type: ignore[arg-type]
        smoke = [_step_name(c) for c in checks] if checks else ["smoke-models"]
        return SETUP_STEPS + smoke + ["perf", "baseline"]

    def available(self, options: StageOptions) -> str | None:
        source = find_config(options.kubeconfig)
        if isinstance(source, str):
            return source
        return probe(source, PROBE_TIMEOUT)

    def open(self, recipe: Recipe, options: StageOptions) -> "GpuRun":
        return GpuRun(recipe, DeploySettings.from_options(options), smoke=self.smoke, update_baselines=options.update_baselines)  # type: ignore[arg-type]


def probe(source: ConfigSource, timeout: float) -> str | None:
    """None when the API answers /version within `timeout` (one try), else one line on what to do."""
    try:
        api = api_client(source, retries=0)
    except Exception as exc:  # noqa: BLE001 - a broken kubeconfig is a reason, not a crash
        return f"cannot load the {source.describe()} ({type(exc).__name__}: {str(exc)[:200]}): fix it, set KUBECONFIG, or use -m sim"
    kube = Kube(api)
    try:
        kube.server_version(timeout)
    except Exception as exc:  # noqa: BLE001
        return (f"no Kubernetes cluster reachable at {kube.host} ({type(exc).__name__}, {source.describe()}): "
                "start the cluster or fix the KUBECONFIG context, or use -m sim")
    finally:
        kube.close()
    return None


class GpuRun:
    """One recipe on the cluster; steps run in order, `close()` always tears down."""

    def __init__(self, recipe: Recipe, settings: DeploySettings, *, smoke: type | None = None, update_baselines: bool = False,
                 kube: Kube | None = None, access: FrontendAccess | None = None, progress: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 env: dict[str, str] | None = None, perf_runner: Callable[[list[str], float], tuple[int, str]] | None = None,
                 baselines_root: Path | None = None):
        self.recipe = recipe
        self.settings = settings
        self.smoke = smoke
        self.update_baselines = update_baselines
        self._kube = kube
        self._deployer_kw: dict[str, Any] = {"access": access, "progress": progress, "sleep": sleep, "clock": clock, "env": env}
        self.perf_runner = perf_runner
        self.baselines_root = baselines_root or recipe.root.parent / "reports" / "baselines"
        self.deployer: Deployer | None = None
        self.done: set[str] = set()
        self.suite: Any = None
        self.export_path: Path | None = None
        self.result: PerfResult | None = None

    def _ensure_deployer(self) -> Deployer:
        if self.deployer is None:
            kube = self._kube
            if kube is None:
                source = find_config(self.settings.kubeconfig)
                if isinstance(source, str):
                    raise StageSkip(source)
                kube = Kube.connect(source, self.settings.api_timeout)
            self.deployer = Deployer(kube, self.recipe, self.settings, **self._deployer_kw)
        return self.deployer

    @staticmethod
    def requirement(step: str) -> str | None:
        if step in SETUP_STEPS:
            i = SETUP_STEPS.index(step)
            return SETUP_STEPS[i - 1] if i else None
        if step == "baseline":
            return "perf"
        return "ready"

    def run_step(self, step: str) -> None:
        needed = self.requirement(step)
        if needed and needed not in self.done:
            raise StageSkip(f"{needed} did not pass")
        dep = self._ensure_deployer()
        try:
            self._dispatch(dep, step)
        except StageSkip:
            raise
        except (StepFailed, AssertionError, KubeError, PortForwardError, OSError) as exc:
            message = dep.redactor.text(str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}")
            where = dep.collect_diagnostics(step, message)
            raise StepFailed(message + (f"\ndiagnostics: {where}" if where else "")) from None
        except Exception as exc:  # urllib3 transport errors and the like: same treatment, never a raw traceback with headers
            message = dep.redactor.text(f"{type(exc).__name__}: {exc}")
            where = dep.collect_diagnostics(step, message)
            raise StepFailed(message + (f"\ndiagnostics: {where}" if where else "")) from None
        self.done.add(step)

    def _dispatch(self, dep: Deployer, step: str) -> None:
        if step == "preflight":
            dep.preflight()
        elif step == "model-cache":
            dep.model_cache()
        elif step == "deploy":
            dep.deploy()
        elif step == "ready":
            dep.wait_ready()
        elif step.startswith("smoke-"):
            self._smoke(dep, step[len("smoke-"):].replace("-", "_"))
        elif step == "perf":
            self._perf(dep)
        elif step == "baseline":
            self._baseline(dep)
        else:
            raise StepFailed(f"unknown gpu step {step!r}")

    def _smoke(self, dep: Deployer, check: str) -> None:
        url = dep.frontend_url()  # also waits until the served model is listed
        if self.smoke is None:
            if check == "models":
                return  # frontend_url() has just asserted /v1/models lists the served model
            raise StepFailed(f"no smoke suite installed for check {check!r}")
        if self.suite is None:
            self.suite = self.smoke(url, served_model_name(self.recipe))
        getattr(self.suite, f"check_{check}")()

    def _perf(self, dep: Deployer) -> None:
        self.export_path = dep.perf_local(self.perf_runner) if self.settings.perf_mode == "local" else dep.perf_job()
        self.result = parse_export(self.export_path)
        if self.result is not None and not self.result.valid:
            raise StepFailed(f"the benchmark is not a measurement: {self.result.invalid_reason} (export: {self.export_path})")

    def _baseline(self, dep: Deployer) -> None:
        if self.settings.engine == "mocker":
            raise StageSkip("--engine mocker: mocker numbers are not comparable with GPU baselines")
        if self.result is None:
            raise StageSkip(f"no AIPerf parser installed (harness.perf.parse_profile_export); the export is at {self.export_path}")
        hardware = dep.report.hardware or "unknown"
        path = baseline_path(self.baselines_root, hardware, self.recipe.id)
        if not path.is_file():
            if self.update_baselines:
                write_baseline(path, self.result, f"gpu run {dep.run_id} on {dep.report.server}")
                dep.progress(f"baseline written: {path}")
                return
            raise StageSkip(f"no baseline at {path}: run with --update-baselines on {hardware} to record one")
        metrics, tolerance = load_baseline(path)
        outcome = compare(self.result, metrics, tolerance)
        if not outcome.ok:
            raise StepFailed(f"regression against {path}:\n" + "\n".join(r.describe() for r in outcome.regressions))
        if self.update_baselines:
            write_baseline(path, self.result, f"gpu run {dep.run_id} on {dep.report.server}")

    def close(self) -> None:
        if self.deployer is not None:
            self.deployer.teardown()
