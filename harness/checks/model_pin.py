"""Model pinning: the weights a recipe serves are a fixed commit, named the same in metadata and download Job."""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.analysis.downloads import downloads
from harness.checks import CheckContext, check
from harness.recipe.container import pod_containers
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig

COMMIT = re.compile(r"^[0-9a-f]{40}$")


@check("model-revision-pinned", severity=Severity.WARNING, convention=True)
def model_revision_pinned(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The model revision is a 40-hex commit: a branch such as `main` moves, so today's
    benchmark and next month's deployment may load different weights. A warning, because some
    repositories publish no stable commit a recipe author could verify. (A download Job that
    fetches another revision than the metadata names is an error:
    `model-revision-matches-download`.)

    Fails: `revision: main` in recipe.yaml.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    Hugging Face Hub revisions: a branch name (`main`) moves, a 40-hex commit does not (huggingface_hub
    `hf download --revision`, `snapshot_download(revision=...)`); recipe.yaml `model.revision` is our
    metadata. A warning by design.
    """
    model = recipe.metadata.get("model")
    revision = dig(model, "revision")
    if isinstance(revision, str) and not COMMIT.match(revision):
        yield problem(
            model.loc_of("revision"),
            f"model revision {revision!r} is not a commit: the weights can change under the recipe",
            "pin model.revision (and the download Job's MODEL_REVISION) to the 40-hex commit you benchmarked",
        )


@check("model-revision-matches-download")
def model_revision_matches_download(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The download Job fetches the revision recipe.yaml `model.revision` names: the revision its
    `hf download --revision` / `huggingface-cli download --revision` /
    `snapshot_download(revision=...)` call passes (a call without one fetches the default
    branch, `main`), else its MODEL_REVISION env. The workers load what the Job cached
    (HF_HUB_OFFLINE), so another revision means the benchmark, the baselines and the docs
    describe weights nobody runs.

    Fails: `MODEL_REVISION: 0000...` in model-download.yaml while recipe.yaml says `9216db57...`.
    Fix: one commit in both places.

    Source: huggingface_hub `hf download` (`--revision`, default the repository's main branch)
    and `snapshot_download(revision=None)`.
    """
    model = recipe.metadata.get("model")
    revision = dig(model, "revision")
    model_id = dig(model, "id")
    if not isinstance(revision, str) or not isinstance(model_id, str):
        return
    calls = [d for d in downloads(recipe) if d.repo is not None and d.repo.value == model_id]
    for call in calls:
        fetched = call.revision.value if call.revision is not None else "main"
        if fetched != revision:
            where = call.revision.loc if call.revision is not None else call.at.loc
            yield problem(
                where,
                f"download Job {call.pod.doc.name} fetches revision {fetched!r} of {model_id}"
                f"{'' if call.revision is not None else ' (no --revision: the default branch)'}, "
                f"but the recipe metadata says {revision!r}",
                "make the download's revision (MODEL_REVISION) and model.revision the same commit",
            )
    if calls:
        return
    for f in recipe.model_cache_files:  # a Job whose command is not a recognised download call: its env
        for doc in f.documents:
            if doc.kind != "Job":
                continue
            for c in pod_containers(doc):
                if c.env.get("MODEL_ID") != model_id or "MODEL_REVISION" not in c.env:
                    continue
                if c.env["MODEL_REVISION"] != revision:
                    yield problem(
                        c.env_locs["MODEL_REVISION"],
                        f"download Job {doc.name} fetches revision {c.env['MODEL_REVISION']!r} of {model_id}, "
                        f"but the recipe metadata says {revision!r}",
                        "make MODEL_REVISION and model.revision the same commit",
                    )
