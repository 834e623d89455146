"""The model cache: the PVC and the download Job, skipped when the cache is already filled."""

from __future__ import annotations

from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import GpuContext
from harness.run.k8s.facts import model_revision
from harness.run.k8s.namespace import ensure_namespace
from harness.run.k8s.readiness import job_state
from harness.run.k8s.rollout import wait_job

CACHE_MARKER = "recipe-harness.dynamo.nvidia.com/populated-by"
# `<model id>@<revision>` the PVC holds, written after a download Job succeeded
CACHE_REVISION = "recipe-harness.dynamo.nvidia.com/model-revision"


def model_cache(ctx: GpuContext) -> None:
    """Step `model-cache`: the namespace, the model-cache PVC, and the download Job unless the PVC already
    holds the revision the recipe pins (or the engine is the mocker, which loads only a tokenizer)."""
    ensure_namespace(ctx)
    docs = ctx.cache_docs()
    pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
    jobs = [d for d in docs if d.get("kind") == "Job"]
    for pvc in pvcs:
        ctx.apply(ctx.fit_pvc(pvc), keep_existing=True)  # a PVC spec is immutable; an existing one is the cache
    if ctx.settings.engine == "mocker":
        ctx.progress("model cache: download skipped (the mocker loads only the tokenizer)")
        return
    wanted = model_revision(ctx.recipe)
    for pvc in pvcs:
        current = ctx.kube.get("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), ctx.namespace) or {}
        held = (dig(current, "metadata", "annotations") or {}).get(CACHE_REVISION)
        if held and held == wanted:
            ctx.progress(f"model cache: PVC {dig(pvc, 'metadata', 'name')} already holds {held}; download skipped")
            return
        if held:
            ctx.progress(
                f"model cache: PVC {dig(pvc, 'metadata', 'name')} holds {held}, the recipe pins {wanted}; downloading"
            )
    for job in jobs:
        name = str(dig(job, "metadata", "name"))
        existing = ctx.kube.get("batch/v1", "Job", name, ctx.namespace)
        if existing is not None:
            state = job_state(existing)
            if state.phase == "succeeded":
                ctx.progress(f"model cache: Job {name} already succeeded; download skipped")
                _mark_cache(ctx, pvcs, name)
                continue
            if state.phase == "failed":
                ctx.progress(f"model cache: Job {name} failed before ({state.message}); running it again")
                ctx.delete_and_wait("batch/v1", "Job", name)
                existing = None
        if existing is None:
            ctx.apply(job, what="model download Job")  # dry run, then create
        wait_job(ctx, name, ctx.settings.cache_timeout, "model download")
        _mark_cache(ctx, pvcs, name)


def _mark_cache(ctx: GpuContext, pvcs: list[dict], job_name: str) -> None:
    for pvc in pvcs:
        try:
            marks = {
                CACHE_MARKER: job_name,
                **({CACHE_REVISION: model_revision(ctx.recipe)} if model_revision(ctx.recipe) else {}),
            }
            ctx.kube.annotate("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), ctx.namespace, marks)
        except KubeError as exc:  # the marker only saves time on a reused namespace
            ctx.progress(f"model cache: could not mark the PVC ({exc})")
