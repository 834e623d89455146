"""Model pinning: the weights a recipe serves are a fixed commit, named the same in metadata and download Job."""

from __future__ import annotations

import re
from typing import Iterator

from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe, dig, pod_containers
from harness.checks import CheckContext, check

COMMIT = re.compile(r"^[0-9a-f]{40}$")


@check("model-revision-pinned", severity=Severity.WARNING, convention=True)
def model_revision_pinned(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The model revision is a 40-hex commit, and the download Job fetches that same revision for
    the recipe's model: a branch such as `main` moves, so today's benchmark and next month's
    deployment may load different weights. A warning, because some repositories publish no
    stable commit a recipe author could verify.

    Fails: `revision: main` in recipe.yaml, or MODEL_REVISION differing from it.
    """
    model = recipe.metadata.get("model")
    revision = dig(model, "revision")
    model_id = dig(model, "id")
    if isinstance(revision, str) and not COMMIT.match(revision):
        yield problem(model.loc_of("revision"), f"model revision {revision!r} is not a commit: the weights can change under the recipe",
                      "pin model.revision (and the download Job's MODEL_REVISION) to the 40-hex commit you benchmarked")
    for f in recipe.model_cache_files:
        for doc in f.documents:
            if doc.kind != "Job":
                continue
            for c in pod_containers(doc):
                if c.env.get("MODEL_ID") != model_id or "MODEL_REVISION" not in c.env:
                    continue
                if isinstance(revision, str) and c.env["MODEL_REVISION"] != revision:
                    yield problem(c.env_locs["MODEL_REVISION"],
                                  f"download Job {doc.name} fetches revision {c.env['MODEL_REVISION']!r} of {model_id}, "
                                  f"but the recipe metadata says {revision!r}",
                                  "make MODEL_REVISION and model.revision the same commit")
