"""The stage contract: which steps may run after an earlier one failed, decided once in StepRun."""

from __future__ import annotations

from operator import methodcaller

import pytest

from harness.run.stage import StageSkip, Step, StepFailed, StepRun, smoke_step


class Recorder(StepRun):
    """A run whose steps record their calls and fail or skip on request."""

    def __init__(self, steps: list[Step], fail: str = "", skip: str = "", crash: str = ""):
        super().__init__(steps)
        self.calls: list[str] = []
        self.fail, self.skip, self.crash = fail, skip, crash

    def act(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise StepFailed(f"{name} broke\nsecond line")
        if name == self.skip:
            raise StageSkip(f"{name} cannot run here")
        if name == self.crash:
            raise RuntimeError(name)

    def smoke(self, check: str) -> None:
        self.act(f"smoke:{check}")


STEPS = [
    Step("deploy", methodcaller("act", "deploy"), setup=True),
    smoke_step("chat_stream", requires=("deploy",)),
    Step("perf", methodcaller("act", "perf"), requires=("deploy",)),
    Step("baseline", methodcaller("act", "baseline"), requires=("perf",)),
]


def outcomes(run: StepRun) -> dict[str, str]:
    out = {}
    for name in run.steps:
        try:
            run.run_step(name)
            out[name] = "passed"
        except StageSkip as exc:
            out[name] = f"skipped: {exc}"
        except AssertionError as exc:
            out[name] = f"failed: {str(exc).splitlines()[0]}"
        except RuntimeError as exc:
            out[name] = f"crashed: {exc}"
    return out


def test_all_steps_run_in_order_and_smoke_names_come_from_the_check():
    run = Recorder(STEPS)
    assert list(run.steps) == ["deploy", "smoke-chat-stream", "perf", "baseline"]
    assert set(outcomes(run).values()) == {"passed"}
    assert run.calls == ["deploy", "smoke:chat_stream", "perf", "baseline"]


def test_a_failed_setup_step_skips_everything_after_it_with_its_reason():
    run = Recorder(STEPS, fail="deploy")
    got = outcomes(run)
    assert got["deploy"] == "failed: deploy broke"
    assert got["perf"] == got["baseline"] == "skipped: deploy did not pass: deploy broke"
    assert run.calls == ["deploy"]


def test_a_skipped_setup_step_skips_the_rest():
    got = outcomes(Recorder(STEPS, skip="deploy"))
    assert got["smoke-chat-stream"] == "skipped: deploy did not pass (skipped: deploy cannot run here)"


def test_a_failed_ordinary_step_skips_only_what_requires_it():
    run = Recorder(STEPS, fail="smoke:chat_stream")
    got = outcomes(run)
    assert got["perf"] == "passed" and got["baseline"] == "passed"
    run = Recorder(STEPS, fail="perf")
    got = outcomes(run)
    assert got["baseline"] == "skipped: perf did not pass"
    assert run.calls == ["deploy", "smoke:chat_stream", "perf"]


def test_a_crash_in_any_step_stops_the_run():
    run = Recorder(STEPS, crash="smoke:chat_stream")
    got = outcomes(run)
    assert got["smoke-chat-stream"] == "crashed: smoke:chat_stream"
    assert got["perf"] == "skipped: smoke-chat-stream did not pass: RuntimeError"


def test_an_unknown_step_fails():
    with pytest.raises(StepFailed, match="unknown step 'nope'; steps are deploy, smoke-chat-stream, perf, baseline"):
        Recorder(STEPS).run_step("nope")
