"""The gpu stage's steps as data: what each one calls on a GpuRun and what it needs to have passed first.

Light on purpose: the stage lists these at collection, before the kubernetes client is imported.
"""

from __future__ import annotations

from operator import methodcaller

from harness.run.stage import Step, smoke_step

# Each setup step needs the one before it; everything after them needs a ready deployment.
SETUP_STEPS = (
    Step("preflight", methodcaller("preflight"), setup=True),
    Step("model-cache", methodcaller("model_cache"), setup=True, requires=("preflight",)),
    Step("deploy", methodcaller("deploy"), setup=True, requires=("model-cache",)),
    Step("ready", methodcaller("ready"), setup=True, requires=("deploy",)),
)


def gpu_steps(smoke: type | None) -> list[Step]:
    """Setup, one step per check of the smoke suite (without a suite, `smoke-models`: the frontend lists
    the served model), perf, baseline."""
    checks = list(smoke.CHECKS) if smoke is not None else ["models"]
    return [
        *SETUP_STEPS,
        *(smoke_step(c, requires=("ready",)) for c in checks),
        Step("perf", methodcaller("perf"), requires=("ready",)),
        Step("baseline", methodcaller("baseline"), requires=("perf",)),
    ]
