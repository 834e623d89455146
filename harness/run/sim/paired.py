"""The same-run reference of a rehearsal: what the candidate is timed against, and the paired measurement.

A timing verdict on a CPU rehearsal needs a reference measured in the same run (see
harness/results/paired.py). There is one when the run asks a "did it get slower" question:
- an experiment (`--sim-slowdown F`): the same recipe at normal speed;
- a change (`--sim-reference REF`, or `--changed-since REF`): the recipe as it was at REF's merge base.
Without one (the plain `.ci/run`), nothing is compared: the stored baselines are for trends only.

Both arms are fresh local stacks started for the comparison; each round runs the two AIPerf
benchmarks at the same time (same workload, a new seed per round so no arm reuses cached
prefixes of an earlier round). A crossing is measured again on fresh stacks started in the
other order before it can fail.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.benchmark import AiperfInvocation
from harness.recipe.changes import ChangeError, tree_at
from harness.recipe.discovery import discover
from harness.recipe.model import Recipe
from harness.results.paired import PairedComparison, PairedPolicy, Round, judge, read_records
from harness.run.perf import Scale, run_aiperf, scaled_args
from harness.run.sim.local import DeployError, LocalDeployment
from harness.run.sim.modeldir import ensure_model_dir
from harness.run.sim.plan import FrontendCli, PlanError, SimPlan, build_plan

# Added to every paired AIPerf run (see SIM_AIPERF_ARGS in stage.py for why each saves time).
PAIRED_AIPERF_ARGS = ("--prompt-corpus", "random", "--no-server-metrics")
SEED_BASE = 1000  # round r runs with seed SEED_BASE + r: fresh prompts for both arms every round
# Requests per side in a round, whatever the Job's count: AIPerf's ~8-10 s start-up is paid once per round
# and the two runs start up to a second apart, so a round must be long enough to overlap; 150 requests per
# side fill 8 time blocks (measured in benchmarks/sim_gate.py).
PAIRED_REQUESTS = 150


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: a recipe, the speed its mockers run at, and the Dynamo that runs it
    (the recipe's own release: a change that bumps the release is timed against the old release)."""

    name: str  # "candidate" | "reference"
    recipe: Recipe
    speedup_ratio: float
    python: str = ""  # the interpreter of the release's frontend and mocker ("" until resolved)
    frontend_cli: FrontendCli | None = None


@dataclass
class Reference:
    """The reference arm and how to say what it is. `cleanup` removes an extracted tree."""

    arm: Arm
    label: str
    cleanup: Callable[[], None] = lambda: None


def reference_for(
    recipe: Recipe, *, slowdown: float, speedup_ratio: float, ref: str | None
) -> tuple[Reference | None, str]:
    """The same-run reference for this rehearsal, or None with the reason there is none."""
    if slowdown != 1.0:
        arm = Arm("reference", recipe, speedup_ratio * slowdown)
        return Reference(arm, f"the same recipe at normal speed, run beside it (--sim-slowdown {slowdown:g})"), ""
    if not ref:
        return None, "no same-run reference (no --sim-slowdown, no --sim-reference/--changed-since): timing not judged"
    tmp = Path(tempfile.mkdtemp(prefix="sim-reference-"))

    def cleanup() -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        root = tree_at(recipe.root, ref, tmp)
        old = next((r for r in discover(root) if r.id == recipe.id), None)
    except (ChangeError, OSError) as exc:
        cleanup()
        return None, f"no same-run reference: {exc}"
    if old is None:
        cleanup()
        return None, f"no same-run reference: {recipe.id} does not exist at {ref} (a new recipe)"
    if _same_files(old.path, recipe.path):
        cleanup()
        return None, f"no same-run reference needed: {recipe.id} is unchanged since {ref}"
    return Reference(Arm("reference", old, speedup_ratio), f"{recipe.id} as of {ref}, run beside it", cleanup), ""


def _same_files(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    try:
        return files(a) == files(b)
    except OSError:
        return False


@dataclass
class PairedBench:
    """Runs both arms' stacks and their simultaneous benchmarks; always stops what it started."""

    candidate: Arm
    reference: Reference
    invocation: AiperfInvocation  # the candidate's perf Job: both arms run the same workload
    scale: Scale
    model_cache: Path | None  # where model folders are cached (None: the user cache)
    out_dir: Path
    max_data_parallel: int
    startup_timeout_s: float
    perf_timeout_s: float
    rounds_per_measurement: int = 1
    policy: PairedPolicy = field(default_factory=PairedPolicy)
    say: Callable[[str], None] = lambda _: None

    def compare(self) -> PairedComparison:
        """Measure; when a metric crosses, measure again on fresh stacks started the other way round."""
        label = self.reference.label
        first_rounds = self._measure("first", order=(self.candidate, self.reference.arm), seed_offset=0)
        result = PairedComparison(label, judge(first_rounds, self.policy), policy=self.policy)
        result.rounds = len(first_rounds)
        if result.crossed:
            self.say(f"crossed on {', '.join(result.crossed)}: measuring again on fresh stacks")
            again = self._measure(
                "confirmation", order=(self.reference.arm, self.candidate), seed_offset=self.rounds_per_measurement
            )
            result.confirmation = judge(again, self.policy)
            result.rounds += len(again)
        return result

    def _measure(self, phase: str, order: tuple[Arm, Arm], seed_offset: int) -> list[Round]:
        deployments: dict[str, LocalDeployment] = {}
        plans: dict[str, SimPlan] = {}
        try:
            for arm in order:
                try:
                    plans[arm.name] = build_plan(
                        arm.recipe,
                        speedup_ratio=arm.speedup_ratio,
                        max_data_parallel=self.max_data_parallel,
                        frontend_cli=arm.frontend_cli,
                    )
                except PlanError as exc:
                    raise PairedError(
                        arm.name, f"the {arm.name} ({self._what(arm)}) cannot be planned: {exc}"
                    ) from None
                dep = LocalDeployment(
                    plans[arm.name],
                    ensure_model_dir(plans[arm.name].model_id, self.model_cache),
                    self.out_dir / phase / arm.name / "logs",
                    self.startup_timeout_s,
                    python=arm.python or None,
                )
                deployments[arm.name] = dep
                try:
                    dep.start()
                except DeployError as exc:
                    raise PairedError(
                        arm.name, f"the {arm.name} stack ({self._what(arm)}) did not come up: {exc}"
                    ) from None
            rounds = []
            for r in range(self.rounds_per_measurement):
                self.say(f"{phase} round {r + 1}/{self.rounds_per_measurement}: both benchmarks at once")
                rounds.append(self._round(deployments, plans, phase, r, seed=SEED_BASE + seed_offset + r))
            return rounds
        finally:
            for dep in deployments.values():
                dep.stop()

    def _what(self, arm: Arm) -> str:
        return "the recipe under test" if arm is self.candidate else self.reference.label

    def _round(
        self, deployments: dict[str, LocalDeployment], plans: dict[str, SimPlan], phase: str, r: int, seed: int
    ) -> Round:
        dirs: dict[str, Path] = {}
        codes: dict[str, int | None] = {}

        def bench(name: str) -> None:
            dep = deployments[name]
            artifact_dir = self.out_dir / phase / name / f"round-{r + 1}"
            shutil.rmtree(artifact_dir, ignore_errors=True)
            plan = scaled_args(
                self.invocation,
                model=plans[name].served_model_name,
                url=dep.base_url,
                tokenizer=dep.model_dir,
                artifact_dir=artifact_dir,
                scale=self.scale,
            )
            args = _with_option(_with_option(plan.args, "--random-seed", seed), "--request-count", PAIRED_REQUESTS)
            args += list(PAIRED_AIPERF_ARGS)
            run = run_aiperf(args, self.out_dir / phase / name / f"aiperf-round-{r + 1}.log", self.perf_timeout_s)
            dirs[name] = artifact_dir
            codes[name] = None if run.timed_out else run.returncode

        threads = [threading.Thread(target=bench, args=(name,), daemon=True) for name in deployments]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, dep in deployments.items():
            try:
                dep.check_alive()
            except DeployError as exc:
                raise PairedError(name, f"{phase} round {r + 1}: the {name} stack died: {exc}") from None
            if codes.get(name) != 0:
                raise PairedError(
                    name,
                    f"{phase} round {r + 1}: the {name} benchmark "
                    f"{'timed out' if codes.get(name) is None else f'exited with {codes[name]}'} "
                    f"(log {self.out_dir / phase / name / f'aiperf-round-{r + 1}.log'})",
                )
        cand, ref = read_records(dirs["candidate"]), read_records(dirs["reference"])
        return Round(tuple(cand), tuple(ref))


class PairedError(RuntimeError):
    """The paired measurement could not be made (a stack or a benchmark failed); the message says which.
    `arm` names the side that failed: a broken candidate is a defect, a broken reference only means no verdict."""

    def __init__(self, arm: str, message: str):
        super().__init__(message)
        self.arm = arm


def _with_option(args: list[str], flag: str, value: int) -> list[str]:
    """`args` with `flag` set to `value` (any earlier value of it dropped)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        out.append(a)
    return [*out, flag, str(value)]
