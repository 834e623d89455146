"""The contract between the pytest plugin and a runtime stage (sim, gpu); it imports no stage.

A stage turns one recipe into an ordered list of `Step`s (deploy, smoke checks, perf,
baseline). The plugin makes one pytest item per step, named `<stage>::<recipe-id>::<step>`,
opens the stage's run lazily before the first step of a recipe and always closes it after the
last one (also on failure and Ctrl-C). Steps are data, so what may run after a failure is
decided here, once, by `StepRun.run_step`: a step whose requirement did not pass is skipped,
and nothing runs after a failed or skipped setup step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.recipe.model import Recipe

if TYPE_CHECKING:  # the contract imports no stage: the plugin builds the gpu settings and passes them in
    from harness.run.k8s.settings import DeploySettings


class StageSkip(Exception):
    """The stage cannot run here (no cluster, sim extra not installed): the reason says what to do."""


class StepFailed(AssertionError):
    """A step found a defect; the message is what the user reads."""


@dataclass(frozen=True)
class Step:
    """One named step of a stage. `run` is called with the stage's run object (e.g. `methodcaller("deploy")`)."""

    name: str
    run: Callable[[Any], None]
    setup: bool = False  # a failure or skip leaves nothing for the later steps to test
    requires: tuple[str, ...] = ()  # steps that must have passed before this one can run


def smoke_step(check: str, requires: tuple[str, ...]) -> Step:
    """The step of one smoke-suite check (`chat_stream` -> `smoke-chat-stream`); it calls `run.smoke(check)`."""
    return Step("smoke-" + check.replace("_", "-"), methodcaller("smoke", check), requires=requires)


@dataclass
class SimOptions:
    """Options only the sim stage reads."""

    profile: str = "ci"  # load profile: ci | laptop
    slowdown: float = 1.0  # run the mocker this many times slower (an experiment: timed against normal speed)
    reference: str | None = None  # git ref whose version of the recipe is the same-run timing reference
    rounds: int = 1  # simultaneous benchmark pairs per same-run measurement
    keep_logs: bool = False  # keep process logs of passing runs
    cache_dir: Path | None = None  # where the sim's model folders are cached (None: the user cache)


@dataclass
class StageOptions:
    """Options every stage sees (set by the pytest plugin from its registered options, or by a test)."""

    report_dir: Path  # this run's reports
    baselines_root: Path  # reports/baselines: the plugin puts it beside the recipes tree
    history_root: Path  # reports/history: one line per run, read by the trend report
    repeats: int = 1  # benchmark runs per recipe
    update_baselines: bool = False
    sim: SimOptions = field(default_factory=SimOptions)
    gpu: DeploySettings | None = None  # the gpu stage's settings (None: its defaults, for this report_dir)


def first_line(exc: BaseException) -> str:
    return next(iter(str(exc).splitlines()), "")


class StepRun:
    """One recipe's live run of a stage: holds the deployment between its steps.

    A stage's run class derives from this and overrides `execute` (to record, redact or collect
    diagnostics around a step) and `close`. `run_step` is the one place that decides whether a
    step can run at all."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = {s.name: s for s in steps}
        self.passed: set[str] = set()
        self.blocked = ""  # why nothing more can run (a setup step failed or was skipped, a step crashed)

    def run_step(self, name: str) -> None:
        """Run one step; raise StepFailed (or AssertionError) on a defect, StageSkip when it cannot run."""
        step = self.steps.get(name)
        if step is None:
            raise StepFailed(f"unknown step {name!r}; steps are {', '.join(self.steps)}")
        if self.blocked:
            raise StageSkip(self.blocked)
        missing = next((r for r in step.requires if r not in self.passed), None)
        if missing is not None:
            raise StageSkip(f"{missing} did not pass")
        try:
            self.execute(step)
        except StageSkip as exc:
            if step.setup:
                self.blocked = f"{name} did not pass (skipped: {first_line(exc)})"
            raise
        except AssertionError as exc:
            if step.setup:
                self.blocked = f"{name} did not pass: {first_line(exc) or 'failed'}"
            raise
        except Exception as exc:  # a crash leaves the deployment in an unknown state
            self.blocked = f"{name} did not pass: {type(exc).__name__}"
            raise
        self.passed.add(name)

    def execute(self, step: Step) -> None:
        step.run(self)

    def close(self) -> None:
        """Tear down everything the run started. Must be idempotent and never raise."""


class Stage(Protocol):
    name: str

    def steps(self, recipe: Recipe) -> list[Step]:
        """The steps, in order; the first one is usually `deploy`. Cheap: called at collection."""

    def available(self, options: StageOptions) -> str | None:
        """None when the stage can run here, else one line saying what is missing and what to do."""

    def open(self, recipe: Recipe, options: StageOptions) -> StepRun:
        """Start a run for the recipe (cheap: heavy work belongs in the first step)."""

    def rehearsed_by(self, recipe: Recipe, chosen: list[Recipe]) -> Recipe | None:
        """Another chosen recipe whose run would be this one's exactly (a kustomize overlay that changes only what
        the stage does not model), so the recipe gets no items of its own; None to run it. Cheap: at collection."""
