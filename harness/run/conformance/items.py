"""The pytest items of the conformance tier: `conformance::<recipe-id>::<service>`, one per Dynamo command line.

All items of a session share one batch: the first item to run parses every selected command line
(one driver process per env), the others read their result. A parse failure fails the item with
`deploy.yaml:line:col: [conformance] <flag>: <parser message>`; an env that is not set up skips it
with the setup command.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from harness.recipe.model import Recipe
from harness.run.conformance.client import Job, JobOutcome, check, failure_text, jobs_for

MARKER = "conformance"


class _Batch:
    """The session's jobs, parsed together on first use."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.outcomes: dict[str, JobOutcome] | None = None

    def outcome(self, job: Job) -> JobOutcome:
        if self.outcomes is None:
            self.outcomes = {o.job.id: o for o in check(self.jobs)}
        return self.outcomes[job.id]


class ConformanceSuite(pytest.Collector):
    def collect(self):  # items are made by conformance_items(), not collected from files
        return []


class ConformanceFailure(Exception):
    pass


class ConformanceItem(pytest.Item):
    def __init__(self, *, job: Job, batch: _Batch, **kw):
        super().__init__(**kw)
        self.job = job
        self.batch = batch

    def runtest(self) -> None:
        outcome = self.batch.outcome(self.job)
        if outcome.skipped:
            pytest.skip(outcome.skipped)
        if outcome.findings or outcome.result.kind == "driver":
            raise ConformanceFailure(failure_text(outcome))
        for note in self.job.notes:
            self.add_report_section("call", "conformance notes", note)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.job.recipe.path, None, f"conformance::{self.job.id}"


def conformance_items(session: pytest.Session, recipes: Iterable[Recipe]) -> list[pytest.Item]:
    """One item per Dynamo command line of the recipes, marked `conformance`, in one xdist group."""
    suite = ConformanceSuite.from_parent(session, name="conformance", nodeid="conformance")
    jobs = [job for recipe in recipes for job in jobs_for(recipe)]
    batch = _Batch(jobs)
    nodes: dict[str, ConformanceSuite] = {}
    out: list[pytest.Item] = []
    for job in jobs:
        node = nodes.get(job.recipe.id)
        if node is None:
            node = nodes[job.recipe.id] = ConformanceSuite.from_parent(suite, name=job.recipe.id)
        item = ConformanceItem.from_parent(node, name=job.service, job=job, batch=batch)
        item.add_marker(getattr(pytest.mark, MARKER))
        item.add_marker(pytest.mark.xdist_group(MARKER))  # one worker parses the whole batch
        out.append(item)
    return out
