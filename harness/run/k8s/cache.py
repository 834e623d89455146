"""The model cache: the PVC and the download Job, skipped when the cache already holds the pinned revision."""

from __future__ import annotations

from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import GpuContext
from harness.run.k8s.facts import model_revision
from harness.run.k8s.namespace import ensure_namespace
from harness.run.k8s.readiness import job_state
from harness.run.k8s.rollout import mark_events, wait_job
from harness.run.k8s.shared import hold, holders_of

CACHE_MARKER = "recipe-harness.dynamo.nvidia.com/populated-by"
# `<model id>@<revision>` the PVC holds, written after a download Job of that revision succeeded
CACHE_REVISION = "recipe-harness.dynamo.nvidia.com/model-revision"


def job_revision(job: dict) -> str:
    """`<model id>@<revision>` a download Job fetches: its containers' MODEL_ID and MODEL_REVISION env (the
    catalogue's model-download.yaml passes both to `hf download`), else the revision the harness annotated."""
    for c in dig(job, "spec", "template", "spec", "containers") or []:
        env = {e.get("name"): e.get("value") for e in c.get("env") or [] if isinstance(e, dict)}
        if env.get("MODEL_ID") and env.get("MODEL_REVISION"):
            return f"{env['MODEL_ID']}@{env['MODEL_REVISION']}"
    return str((dig(job, "metadata", "annotations") or {}).get(CACHE_REVISION) or "")


def model_cache(ctx: GpuContext) -> None:
    """Step `model-cache`: the namespace, the model-cache PVC, and the download Job unless the PVC already
    holds the revision the recipe pins (or the engine is the mocker, which loads only a tokenizer). A download
    Job found in the namespace is reused only when it fetches the pinned revision; another run's Job is held
    (shared.hold) so that run's teardown leaves it for this one."""
    ensure_namespace(ctx)
    mark_events(ctx)  # a reused namespace's old events about the same Job name are not this run's
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
        ref = ("batch/v1", "Job", name)
        fetches = job_revision(job) or wanted
        existing = ctx.kube.get("batch/v1", "Job", name, ctx.namespace)
        if existing is not None:
            state = job_state(existing)
            found = job_revision(existing)
            others = [h for h in holders_of(existing) if h != ctx.run_id]
            if fetches and found != fetches:
                if state.phase == "running" and others:
                    raise ctx.fail(
                        f"model download Job {name} is fetching {found or 'an unknown revision'} for run(s) "
                        f"{', '.join(others)}, this recipe pins {fetches}: wait for that run, or use --namespace"
                    )
                ctx.progress(
                    f"model cache: Job {name} fetched {found or 'an unknown revision'} ({state.phase}), "
                    f"the recipe pins {fetches}; running it again"
                )
                ctx.delete_and_wait("batch/v1", "Job", name)
                existing = None
            elif state.phase == "succeeded":
                ctx.progress(f"model cache: Job {name} already fetched {found}; download skipped")
                _mark_cache(ctx, pvcs, name, found)
                continue
            elif state.phase == "failed" and not others:
                ctx.progress(f"model cache: Job {name} failed before ({state.message}); running it again")
                ctx.delete_and_wait("batch/v1", "Job", name)
                existing = None
            elif not hold(ctx, ref):
                existing = None  # it finished and went while we looked
            else:
                ctx.progress(f"model cache: waiting for Job {name} of run(s) {', '.join(others) or 'unknown'}")
        if existing is None:
            annotations = {CACHE_REVISION: fetches} if fetches else {}
            ctx.apply(job, what="model download Job", annotations=annotations)  # dry run, then create
            hold(ctx, ref)
        done = wait_job(ctx, name, ctx.settings.cache_timeout, "model download")
        _mark_cache(ctx, pvcs, name, job_revision(done))


def _mark_cache(ctx: GpuContext, pvcs: list[dict], job_name: str, revision: str) -> None:
    """The PVC records the revision the Job that filled it fetched, never one it was not seen to fetch."""
    for pvc in pvcs:
        try:
            marks = {CACHE_MARKER: job_name, **({CACHE_REVISION: revision} if revision else {})}
            ctx.kube.annotate("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), ctx.namespace, marks)
        except KubeError as exc:  # the marker only saves time on a reused namespace
            ctx.progress(f"model cache: could not mark the PVC ({exc})")
