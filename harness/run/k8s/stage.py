"""The `gpu` stage: the recipe exactly as shipped, on a real cluster, as ordered pytest steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.recipe.model import Recipe
from harness.run.k8s.config import ConfigSource, find_config
from harness.run.k8s.settings import PROBE_TIMEOUT, DeploySettings
from harness.run.k8s.steps import gpu_steps
from harness.run.stage import StageOptions, Step

if TYPE_CHECKING:
    from harness.run.k8s.run import GpuRun

# Heavy imports (the kubernetes client, ~2 s) wait until a cluster config exists: a machine
# without one must hear "no cluster" at once; available() answers within PROBE_TIMEOUT, well under 5 s,
# even for a black-holed API.


def smoke_suite_class() -> type | None:
    """The shared OpenAI smoke suite of the sim stage, when it is installed."""
    try:
        from harness.run.smoke import SmokeSuite
    except ImportError:
        return None
    return SmokeSuite


class GpuStage:
    name = "gpu"

    def __init__(self, smoke: type | str | None = "auto"):
        self.smoke = smoke_suite_class() if smoke == "auto" else smoke

    def steps(self, recipe: Recipe) -> list[Step]:
        return gpu_steps(self.smoke)  # type: ignore[arg-type]

    def available(self, options: StageOptions) -> str | None:
        source = find_config(settings_for(options).kubeconfig)
        if isinstance(source, str):
            return source
        return probe(source, PROBE_TIMEOUT)

    def open(self, recipe: Recipe, options: StageOptions) -> GpuRun:
        from harness.run.k8s.run import GpuRun

        return GpuRun(
            recipe,
            settings_for(options),
            smoke=self.smoke,  # type: ignore[arg-type]
            update_baselines=options.update_baselines,
            baselines_root=options.baselines_root,
            history_root=options.history_root,
        )


def settings_for(options: StageOptions) -> DeploySettings:
    """The run's gpu settings (the plugin builds them from its options), else the defaults for its report folder."""
    if options.gpu is not None:
        return options.gpu
    return DeploySettings(report_dir=options.report_dir, repeats=max(1, int(options.repeats or 1)))


def probe(source: ConfigSource, timeout: float) -> str | None:
    """None when the API answers /version within `timeout` (one try), else one line on what to do."""
    from harness.run.k8s.client import Kube, api_client, transport_error

    try:
        api = api_client(source, retries=0)
    except Exception as exc:
        return (
            f"cannot load the {source.describe()} ({type(exc).__name__}: {str(exc)[:200]}): "
            "fix it, set KUBECONFIG, or use -m sim"
        )
    kube = Kube(api)
    try:
        kube.server_version(timeout, retries=False)
    except Exception as exc:
        return (
            f"no Kubernetes cluster reachable at {kube.host} ({transport_error(exc)}; {source.describe()}): "
            "start the cluster or fix the KUBECONFIG context, or use -m sim"
        )
    finally:
        kube.close()
    return None
