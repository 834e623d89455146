"""The contract between the pytest plugin and a runtime stage (sim, gpu).

A stage turns one recipe into an ordered list of named steps (deploy, smoke checks,
perf, baseline). The plugin makes one pytest item per step, named
`<stage>::<recipe-id>::<step>`, opens the stage's run lazily before the first step of
a recipe and always closes it after the last one (also on failure and Ctrl-C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.recipe.model import Recipe


class StageSkip(Exception):
    """The stage cannot run here (no cluster, sim extra not installed): the reason says what to do."""


class StepFailed(AssertionError):
    """A step found a defect; the message is what the user reads."""


@dataclass
class StageOptions:
    """Command-line options every stage sees (set by the pytest plugin or the CLI)."""

    report_dir: Path
    sim_profile: str = "ci"
    sim_slowdown: float = 1.0
    keep_logs: bool = False
    repeats: int = 1
    update_baselines: bool = False
    engine: str = "real"  # gpu stage: real | mocker
    keep: bool = False  # gpu stage: keep the namespace
    perf_mode: str = "job"  # gpu stage: job | local
    kubeconfig: str | None = None
    namespace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StageRun(Protocol):
    """One recipe's live run: holds the deployment between steps."""

    def run_step(self, step: str) -> None:
        """Run one step; raise StepFailed (or AssertionError) on a defect, StageSkip to skip."""

    def close(self) -> None:
        """Tear down everything the run started. Must be idempotent and never raise."""


class Stage(Protocol):
    name: str

    def steps(self, recipe: Recipe) -> list[str]:
        """Step names, in order; the first one is usually `deploy`."""

    def available(self, options: StageOptions) -> str | None:
        """None when the stage can run here, else one line saying what is missing and what to do."""

    def open(self, recipe: Recipe, options: StageOptions) -> StageRun:
        """Start a run for the recipe (cheap: heavy work belongs in the first step)."""


def load_stage(name: str) -> Stage:
    """Import a stage lazily so `-m static` never pays for the runtime stacks."""
    if name == "sim":
        from harness.run.sim.stage import SimStage

        return SimStage()
    if name == "gpu":
        from harness.run.k8s.stage import GpuStage

        return GpuStage()
    raise ValueError(f"unknown stage {name!r}")
