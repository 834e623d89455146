"""Apply the manifests and watch them come up:
the DGD's readiness, Jobs, and the pod problems that will not clear on their own."""

from __future__ import annotations

import json
from collections.abc import Callable

from harness.recipe.model import DGD_KIND
from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import DGD_LABEL, GpuContext
from harness.run.k8s.facts import (
    apply_order,
    component_resource_name,
    model_id,
    served_model_name,
)
from harness.run.k8s.mocker import MockerModel, to_mocker
from harness.run.k8s.namespace import ensure_namespace
from harness.run.k8s.readiness import (
    SCALE_UP_REASONS,
    Blocker,
    EventProblem,
    PodProblem,
    dgd_readiness,
    event_key,
    event_problems,
    job_state,
    pod_problems,
    pod_ready,
    pod_summary,
    startup_budget,
)
from harness.run.k8s.settings import fmt_duration

# --- pod problems ---------------------------------------------------------------------


def _grace(ctx: GpuContext, kind: str) -> float:
    return {
        "image": ctx.settings.image_pull_grace,
        "config": ctx.settings.config_grace,
        "unschedulable": ctx.settings.unschedulable_grace,
        "event": ctx.settings.config_grace,
    }.get(kind, 0.0)


def read_events(ctx: GpuContext) -> list[dict]:
    try:
        return ctx.kube.list("v1", "Event", ctx.namespace)
    except KubeError:
        return []


def mark_events(ctx: GpuContext) -> None:
    """Remember the namespace's events as they are before a step starts: only what happens after counts."""
    ctx.events_seen.update(dict(event_key(ev) for ev in read_events(ctx)))


def _scaling_up(ctx: GpuContext, pods: list[dict], events: list[dict]) -> set[str]:
    """Pods with a scale-up event (cluster-autoscaler TriggeredScaleUp, Karpenter Nominated) not seen before: a node
    is on its way. The autoscaler sends one per scale-up, so the pod is then awaited for the node's provisioning
    time (`scale_up_timeout`), counted from that event, not from the pod's first unschedulable look."""
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


def first_blocker(
    ctx: GpuContext, pods: list[dict], events: list[dict] | None = None, owned: Callable[[str, str], bool] | None = None
) -> Blocker | None:
    """The first problem that fails the run: a permanent one at once, the others once they outlast their grace.
    `events` (the namespace's) add the Warning events about objects `owned` accepts (FailedCreate, quota,
    PodSecurity, ProvisioningFailed, FailedMount, ValidationFailed) and the autoscaler's scale-ups."""
    now = ctx.clock()
    problems: list[PodProblem | EventProblem] = [
        p for pod in pods for p in pod_problems(pod, crashloop_restarts=ctx.settings.crashloop_restarts)
    ]
    if events is not None and owned is not None:
        problems += event_problems(events, owned, ctx.events_seen)
    current = {p.key for p in problems}
    for key in [k for k in ctx.problem_since if k not in current]:
        del ctx.problem_since[key]
    waiting_node = _scaling_up(ctx, pods, events or []) if any(p.kind == "unschedulable" for p in problems) else set()
    for p in problems:
        if isinstance(p, EventProblem):
            since = ctx.problem_since.setdefault(p.key, now)
            if p.permanent or now - since >= _grace(ctx, "event"):
                return Blocker(p.name, "event", p.describe())
            continue
        grace = _grace(ctx, p.kind)
        if p.kind == "unschedulable" and p.pod in ctx.scale_ups:
            if p.pod in waiting_node:
                ctx.problem_since[p.key] = now  # the scale-up's own clock starts now
            grace = max(grace, ctx.settings.scale_up_timeout)
        since = ctx.problem_since.setdefault(p.key, now)
        lasted = now - since
        if p.permanent or lasted >= grace:
            message = p.message if p.permanent else f"{p.message} (for {fmt_duration(lasted)})"
            if p.kind == "unschedulable" and p.pod in ctx.scale_ups:
                message += "; the autoscaler's scale-up did not bring a node in time"
            return Blocker(p.pod, p.kind, message, p.container)
    return None


def blocker_message(ctx: GpuContext, blocker: Blocker) -> str:
    msg = blocker.message
    if blocker.kind == "crash" and blocker.container:
        tail = ctx.log_tail(blocker.pod, blocker.container, previous=True)
        if tail:
            msg += "\nlast log lines:\n" + tail
    return msg


def owned_by(ctx: GpuContext, pods: list[dict], jobs: tuple[str, ...] = ()) -> Callable[[str, str], bool]:
    """Which objects' events concern this run: its DGD, what the operator made of its components
    (`<dgd>-<component>` Deployments and their ReplicaSets, graph.go GetDCDResourceName), its pods, Jobs and
    PVCs. Another DGD's objects in a shared namespace are not this run's."""
    pod_names = {str(dig(p, "metadata", "name")) for p in pods}
    dep = ctx.recipe.deployment
    prefixes = tuple(component_resource_name(ctx.dgd_name, s.name) for s in (dep.services if dep else []))
    applied = {(k, n) for _, k, n in ctx.created} | {("Job", j) for j in jobs}
    claims = {str(dig(d, "metadata", "name")) for d in ctx.cache_docs() if d.get("kind") == "PersistentVolumeClaim"}

    def owned(kind: str, name: str) -> bool:
        if kind == "Pod":
            return name in pod_names
        if (kind, name) in applied or (kind == DGD_KIND and name == ctx.dgd_name):
            return True
        if kind == "PersistentVolumeClaim":
            return name in claims
        return any(name == p or name.startswith(p + "-") for p in prefixes)

    return owned


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
        blocker = first_blocker(
            ctx,
            [p for p in pods if dig(p, "status", "phase") not in ("Succeeded", "Failed")],
            read_events(ctx),
            owned_by(ctx, pods, jobs=(name,)),
        )
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
    mark_events(ctx)
    ctx.operator_rbac_before = {
        (kind, name) for kind, name in OPERATOR_RBAC if ctx.kube.get(RBAC_API[kind], kind, name, ctx.namespace)
    }
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


# What the operator creates in a DGD's namespace besides the DGD's own objects, when it runs cluster-wide: the
# planner's ServiceAccount and its RoleBinding `<sa>-binding` for every DGD, the EPP's for a DGD with an EPP
# (ai-dynamo/dynamo deploy/operator/internal/controller/dynamographdeployment_controller.go reconcileResources ->
# internal/rbac/manager.go EnsureServiceAccountWithRBAC; names from internal/consts/consts.go
# PlannerServiceAccountName, EPPServiceAccountName).
OPERATOR_RBAC = (
    ("ServiceAccount", "planner-serviceaccount"),
    ("RoleBinding", "planner-serviceaccount-binding"),
    ("ServiceAccount", "epp-serviceaccount"),
    ("RoleBinding", "epp-serviceaccount-binding"),
)
RBAC_API = {"ServiceAccount": "v1", "RoleBinding": "rbac.authorization.k8s.io/v1"}
# What the operator gives a worker's main container when the recipe sets no startupProbe: 10 s x 720 = 2 h
# (deploy/operator/internal/dynamo/component_worker.go).
WORKER_DEFAULT_STARTUP = {"periodSeconds": 10, "failureThreshold": 720}
WORKER_TYPES = {"worker", "prefill", "decode"}
# Scheduling, image pulls and the operator's own passes on top of the slowest startup probe.
READY_MARGIN = 15 * 60.0


def _dgd_containers(dgd: dict) -> list[tuple[bool, list[dict]]]:
    """(is a worker, its containers) per component of a DGD, v1beta1 `components` or v1alpha1 `services`."""
    spec = dgd.get("spec") or {}
    out = []
    for comp in spec.get("components") or []:
        if isinstance(comp, dict):
            containers = dig(comp, "podTemplate", "spec", "containers") or []
            out.append((comp.get("type") in WORKER_TYPES, [c for c in containers if isinstance(c, dict)]))
    services = spec.get("services")
    for svc in services.values() if isinstance(services, dict) else []:
        if isinstance(svc, dict):
            main = dig(svc, "extraPodSpec", "mainContainer")
            worker = svc.get("componentType") in WORKER_TYPES or svc.get("subComponentType") in WORKER_TYPES
            out.append((worker, [main] if isinstance(main, dict) else [{}]))
    return out


def ready_timeout(ctx: GpuContext, docs: list[dict]) -> float:
    """How long `ready` waits: the setting when given (`--gpu-option ready_timeout=S`), else what the recipe's own
    startup probes allow its slowest container (initialDelaySeconds + failureThreshold x periodSeconds, the
    operator's 2 h for a worker without one) plus READY_MARGIN: a run must not give up on a model the kubelet
    is still letting load."""
    if ctx.settings.ready_timeout:
        return ctx.settings.ready_timeout
    longest = 0.0
    for doc in docs:
        if doc.get("kind") != DGD_KIND:
            continue
        for worker, containers in _dgd_containers(doc):
            longest = max(longest, startup_budget(containers, WORKER_DEFAULT_STARTUP if worker else None))
    return longest + READY_MARGIN


def wait_ready(ctx: GpuContext) -> None:
    """Step `ready`: wait until the DGD is ready (and its status is not one from before our apply); fail at once
    on a problem that will not clear, or once a transient one outlasts its grace. Only this DGD's pods count
    (the operator labels them nvidia.com/dynamo-graph-deployment-name, deploy/operator/internal/consts
    KubeLabelDynamoGraphDeploymentName): another DGD in the namespace is not this run's."""
    start = ctx.clock()
    last_line, last_progress = "", None
    timeout, cut = ctx.budget(ready_timeout(ctx, manifests(ctx)))
    failed_since: float | None = None
    ready_since: float | None = None
    while True:
        try:
            dgd = ctx.kube.get(ctx.dgd_api_version, DGD_KIND, ctx.dgd_name, ctx.namespace)
        except KubeError as exc:
            raise ctx.fail(f"cannot read {DGD_KIND} {ctx.dgd_name}: {exc}") from None
        readiness = dgd_readiness(dgd)
        elapsed = ctx.clock() - start
        pods = [p for p in dgd_pods(ctx) if dig(p, "status", "phase") != "Succeeded"]
        if pods and all(pod_ready(p) for p in pods):
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
        blocker = first_blocker(ctx, pods, read_events(ctx), owned_by(ctx, pods))
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


def dgd_pods(ctx: GpuContext) -> list[dict]:
    """The pods the operator made for this run's DGD, by its label."""
    return ctx.kube.list("v1", "Pod", ctx.namespace, f"{DGD_LABEL}={ctx.dgd_name}")
