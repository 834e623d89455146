"""Apply the manifests and watch them come up:
the DGD's readiness, Jobs, and the pod problems that will not clear on their own."""

from __future__ import annotations

import json

from harness.recipe.model import DGD_KIND
from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import GpuContext
from harness.run.k8s.facts import (
    apply_order,
    model_id,
    served_model_name,
)
from harness.run.k8s.mocker import MockerModel, to_mocker
from harness.run.k8s.namespace import ensure_namespace
from harness.run.k8s.readiness import (
    SCALE_UP_REASONS,
    Blocker,
    dgd_readiness,
    job_state,
    pod_problems,
    pod_ready,
    pod_summary,
)
from harness.run.k8s.settings import fmt_duration

# --- pod problems ---------------------------------------------------------------------


def _grace(ctx: GpuContext, kind: str) -> float:
    return {
        "image": ctx.settings.image_pull_grace,
        "config": ctx.settings.config_grace,
        "unschedulable": ctx.settings.unschedulable_grace,
    }.get(kind, 0.0)


def _scaling_up(ctx: GpuContext, pods: list[dict]) -> set[str]:
    """Pods with a new scale-up event (cluster-autoscaler TriggeredScaleUp, Karpenter Nominated) since the
    last look: a node is on its way, which is progress, so their unschedulable clock starts again."""
    try:
        events = ctx.kube.list("v1", "Event", ctx.namespace)
    except KubeError:
        return set()
    names = {str(dig(p, "metadata", "name")) for p in pods}
    fresh: set[str] = set()
    for ev in events:
        pod = str(dig(ev, "involvedObject", "name"))
        if ev.get("reason") not in SCALE_UP_REASONS or pod not in names:
            continue
        mark = (
            dig(ev, "metadata", "uid"),
            ev.get("count"),
            ev.get("lastTimestamp"),
            dig(ev, "metadata", "resourceVersion"),
        )
        if ctx.scale_ups.get(pod) != mark:
            ctx.scale_ups[pod] = mark
            fresh.add(pod)
    return fresh


def first_blocker(ctx: GpuContext, pods: list[dict]) -> Blocker | None:
    """The first problem that fails the run: a permanent one at once, the others once they outlast their grace."""
    now = ctx.clock()
    problems = [p for pod in pods for p in pod_problems(pod, crashloop_restarts=ctx.settings.crashloop_restarts)]
    current = {p.key for p in problems}
    for key in [k for k in ctx.problem_since if k not in current]:
        del ctx.problem_since[key]
    restarted = _scaling_up(ctx, pods) if any(p.kind == "unschedulable" for p in problems) else set()
    for p in problems:
        if p.pod in restarted and p.kind == "unschedulable":
            ctx.problem_since[p.key] = now
        since = ctx.problem_since.setdefault(p.key, now)
        lasted = now - since
        if p.permanent or lasted >= _grace(ctx, p.kind):
            message = p.message if p.permanent else f"{p.message} (for {fmt_duration(lasted)})"
            return Blocker(p.pod, p.kind, message, p.container)
    return None


def blocker_message(ctx: GpuContext, blocker: Blocker) -> str:
    msg = blocker.message
    if blocker.kind == "crash" and blocker.container:
        tail = ctx.log_tail(blocker.pod, blocker.container, previous=True)
        if tail:
            msg += "\nlast log lines:\n" + tail
    return msg


# --- Jobs -----------------------------------------------------------------------------


def _job_pods(ctx: GpuContext, name: str) -> list[dict]:
    return ctx.kube.list("v1", "Pod", ctx.namespace, f"job-name={name}")


def wait_job(ctx: GpuContext, name: str, timeout: float, what: str) -> dict:
    """Wait for a Job of the run to succeed; its failure, a blocked pod or the timeout fail the step."""
    start = ctx.clock()
    timeout, cut = ctx.budget(timeout)
    last_progress = None
    while True:
        job = ctx.kube.get("batch/v1", "Job", name, ctx.namespace)
        if job is None:
            raise ctx.fail(f"{what} Job {name} disappeared from namespace {ctx.namespace}")
        state = job_state(job)
        elapsed = ctx.clock() - start
        if state.phase == "succeeded":
            ctx.progress(f"{what}: Job {name} succeeded after {fmt_duration(elapsed)}")
            return job
        pods = _job_pods(ctx, name)
        if state.phase == "failed":
            tail = ""
            for pod in pods:
                for c in dig(pod, "spec", "containers") or []:
                    tail = tail or ctx.log_tail(str(dig(pod, "metadata", "name")), str(c.get("name")))
            raise ctx.fail(
                f"{what} Job {name} failed: {state.message or 'no reason given'}"
                + (f"\nlast log lines:\n{tail}" if tail else "")
            )
        blocker = first_blocker(ctx, [p for p in pods if dig(p, "status", "phase") not in ("Succeeded", "Failed")])
        if blocker:
            raise ctx.fail(f"{what} Job {name}: {blocker_message(ctx, blocker)}")
        if elapsed >= timeout:
            raise ctx.fail(
                f"{what} Job {name} did not finish {ctx.timed_out('', timeout, cut).strip()} "
                f"({state.message}); {pod_summary(pods)}"
            )
        if last_progress is None or ctx.clock() - last_progress >= ctx.settings.progress_every:
            last_progress = ctx.clock()
            line = ""
            for pod in pods:
                if dig(pod, "status", "phase") == "Running":
                    c = (dig(pod, "spec", "containers") or [{}])[0].get("name", "")
                    line = ctx.log_tail(str(dig(pod, "metadata", "name")), str(c), lines=1)[-160:]
                    break
            ctx.progress(
                f"{what}: Job {name} running {fmt_duration(elapsed)}/{fmt_duration(timeout)} ({state.message})"
                + (f": {line}" if line else "")
            )
        ctx.sleep(ctx.settings.poll_interval)


# --- the DGD ----------------------------------------------------------------------------


def manifests(ctx: GpuContext) -> list[dict]:
    """deploy.yaml as it will be applied: ordered, and rewritten for the mocker when asked."""
    docs = apply_order(ctx.deploy_docs())
    if ctx.settings.engine != "mocker":
        return docs
    release = ctx.settings.dynamo_release or ctx.recipe.release
    if not release:
        raise ctx.fail(
            "--engine mocker needs the Dynamo release (a Dynamo image tag or recipe.yaml versions.dynamo) "
            "to pick the mocker image"
        )
    model = MockerModel(model_id(ctx.recipe), served_model_name(ctx.recipe), release, ctx.settings.mocker_speedup)
    assert ctx.recipe.deployment is not None
    out = []
    for doc in docs:
        if doc.get("kind") == "ComputeDomain":
            continue  # the mocker claims no GPUs, so no NVLink domain either
        out.append(to_mocker(doc, ctx.recipe.deployment, model) if doc.get("kind") == DGD_KIND else doc)
    return out


def deploy(ctx: GpuContext) -> None:
    """Step `deploy`: every manifest of deploy.yaml passes the server-side dry run, then all are applied."""
    ensure_namespace(ctx)
    docs = manifests(ctx)
    # every manifest passes the dry run before any is created: no half-applied recipe
    for doc in docs:
        try:
            ctx.kube.apply(doc, ctx.namespace, dry_run_only=True)
        except KubeError as exc:
            raise ctx.fail(f"deploy.yaml: the server-side dry run rejected {exc}") from None
    ctx.dgd_before = ctx.kube.get(ctx.dgd_api_version, DGD_KIND, ctx.dgd_name, ctx.namespace)
    for doc in docs:
        ctx.apply(doc)
    ctx.dgd_applied = ctx.kube.get(ctx.dgd_api_version, DGD_KIND, ctx.dgd_name, ctx.namespace)


def _stale(ctx: GpuContext, dgd: dict, all_pods_ready_for: float) -> bool:
    """A `successful` that may predate our apply: the operator wrote no observedGeneration, our apply changed the
    spec (the generation moved), and the status is still the one we found. It counts once the operator has
    written anything since, or when every pod has been Ready for `stale_status_grace`."""
    if ctx.dgd_before is None or ctx.dgd_applied is None or isinstance(dig(dgd, "status", "observedGeneration"), int):
        return False
    if dig(ctx.dgd_applied, "metadata", "generation") == dig(ctx.dgd_before, "metadata", "generation"):
        return False
    unchanged = json.dumps(dgd.get("status"), sort_keys=True) == json.dumps(
        ctx.dgd_before.get("status"), sort_keys=True
    )
    return unchanged and all_pods_ready_for < ctx.settings.stale_status_grace


def wait_ready(ctx: GpuContext) -> None:
    """Step `ready`: wait until the DGD is ready (and its status is not one from before our apply); fail at once
    on a problem that will not clear, or once a transient one outlasts its grace."""
    start = ctx.clock()
    last_line, last_progress = "", None
    timeout, cut = ctx.budget(ctx.settings.ready_timeout)
    failed_since: float | None = None
    ready_since: float | None = None
    while True:
        try:
            dgd = ctx.kube.get(ctx.dgd_api_version, DGD_KIND, ctx.dgd_name, ctx.namespace)
        except KubeError as exc:
            raise ctx.fail(f"cannot read {DGD_KIND} {ctx.dgd_name}: {exc}") from None
        readiness = dgd_readiness(dgd)
        elapsed = ctx.clock() - start
        pods = [p for p in ctx.kube.list("v1", "Pod", ctx.namespace) if dig(p, "status", "phase") != "Succeeded"]
        ours = [
            p
            for p in pods
            if (dig(p, "metadata", "labels") or {}).get("nvidia.com/dynamo-graph-deployment-name") == ctx.dgd_name
        ]
        if ours and all(pod_ready(p) for p in ours):
            ready_since = ctx.clock() if ready_since is None else ready_since
        else:
            ready_since = None
        if readiness.ready and not _stale(ctx, dgd or {}, 0.0 if ready_since is None else ctx.clock() - ready_since):
            ctx.progress(f"ready: {ctx.dgd_name} {readiness.state or 'Ready'} after {fmt_duration(elapsed)}")
            return
        if readiness.failed:
            failed_since = ctx.clock() if failed_since is None else failed_since
            if readiness.final or ctx.clock() - failed_since >= ctx.settings.failed_grace:
                lasted = "" if readiness.final else f" for {fmt_duration(ctx.clock() - failed_since)}"
                raise ctx.fail(
                    f"{DGD_KIND} {ctx.dgd_name} failed{lasted}: {readiness.message or 'the operator gives no reason'}"
                )
        else:
            failed_since = None
        blocker = first_blocker(ctx, pods)
        if blocker:
            raise ctx.fail(f"{DGD_KIND} {ctx.dgd_name} cannot become ready: {blocker_message(ctx, blocker)}")
        line = f"{readiness.describe()}; {pod_summary(pods)}"
        if elapsed >= timeout:
            raise ctx.fail(
                f"{DGD_KIND} {ctx.dgd_name} not ready after {fmt_duration(timeout)}"
                + (" (the run's time budget, less the teardown reserve)" if cut else "")
                + f": {line}"
            )
        if line != last_line or last_progress is None or ctx.clock() - last_progress >= ctx.settings.progress_every:
            ctx.progress(f"waiting for {ctx.dgd_name} {fmt_duration(elapsed)}/{fmt_duration(timeout)}: {line}")
            last_line, last_progress = line, ctx.clock()
        ctx.sleep(ctx.settings.poll_interval)
