"""Pure readings of cluster objects: is the DGD ready, is a pod stuck for good, did a Job finish, how many GPUs fit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# Waiting reasons about the image. A pull that failed is retried by the kubelet with back-off, and registry
# 429s or a slow mirror clear on their own; a name that cannot be parsed or a pull policy of Never never do.
IMAGE_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
IMAGE_NEVER_REASONS = {"InvalidImageName", "ErrImageNeverPull"}
# What the registry says when the image is not there or not ours to pull: retrying cannot help.
IMAGE_GONE = re.compile(r"(?i)\b(not found|manifest unknown|name unknown|unauthorized|denied|forbidden)\b")
# A missing Secret or ConfigMap clears when it is created; a bad command or mount does not, but both look alike.
CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError"}
CRASH_REASON = "CrashLoopBackOff"
# Events that say the cluster is getting a node for a pending pod (cluster-autoscaler; Karpenter). The
# cluster-autoscaler sends TriggeredScaleUp once per scale-up, in the loop that asks the cloud for the node
# (cluster-autoscaler/processors/status/eventing_scale_up_processor.go, EventingScaleUpStatusProcessor.Process:
# only pods in status.PodsTriggeredScaleUp; later loops count the pod as fitting the upcoming node and say
# nothing), so one event means "a node is on its way" until the autoscaler's --max-node-provision-time.
SCALE_UP_REASONS = {"TriggeredScaleUp", "Nominated"}
# The autoscaler's "no node group can help this pod" (same processor: status.PodsRemainUnschedulable).
NO_SCALE_UP_REASON = "NotTriggerScaleUp"
# Ready-condition reasons after which the operator does not try again: it fails the DGD through
# workloadProgramResult.Fail and returns reconcile.TerminalError (ai-dynamo/dynamo deploy/operator/internal/
# controller/dynamographdeployment_controller.go: reasonUnsupportedWorkloadProvider, and
# reasonSelectedWorkloadProviderUnavailable from dgd_grove_program.go / dgd_disaggregatedset_program.go).
# `ValidationFailed` is not one: it is an event reason (EventReasonValidationFailed, recorded on a
# DynamoGraphDeploymentRequest), read with the other events below.
FINAL_DGD_REASONS = {"unsupported_workload_provider", "selected_workload_provider_unavailable"}


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def condition(obj: dict, type_: str) -> dict | None:
    for cond in _get(obj, "status", "conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


@dataclass(frozen=True)
class DgdReadiness:
    """What the operator says about a DynamoGraphDeployment."""

    state: str  # initializing | pending | successful | failed | "" (no status yet)
    ready: bool
    failed: bool
    message: str
    reason: str = ""  # the Ready condition's reason
    observed_generation: int | None = None  # None: the operator did not write it

    @property
    def final(self) -> bool:
        """`failed` the operator will not retry. Any other `failed` is one pass's error: the controller requeues
        and the next good pass overwrites it (dynamographdeployment_controller.go, the deferred status update)."""
        return self.failed and self.reason in FINAL_DGD_REASONS

    def describe(self) -> str:
        text = f"state={self.state or 'none'}, Ready={'True' if self.ready else 'False'}"
        return f"{text} ({self.message})" if self.message else text


def dgd_readiness(dgd: dict | None) -> DgdReadiness:
    """Ready when state is successful and the Ready condition (when present) is True, for the
    current generation: a stale status from a previous apply must not count."""
    if not dgd:
        return DgdReadiness("", False, False, "the DynamoGraphDeployment does not exist")
    state = str(_get(dgd, "status", "state") or "")
    cond = condition(dgd, "Ready")
    message = str((cond or {}).get("message") or (cond or {}).get("reason") or "")
    reason = str((cond or {}).get("reason") or "")
    generation = _get(dgd, "metadata", "generation")
    observed = _get(dgd, "status", "observedGeneration")
    observed = observed if isinstance(observed, int) else None
    if isinstance(generation, int) and observed is not None and observed < generation:
        # the operator writes observedGeneration only after a pass without errors: this status may be the last one
        return DgdReadiness(
            state,
            False,
            state == "failed",
            f"status is for generation {observed}, spec is generation {generation}"
            + (f" ({message})" if message else ""),
            reason,
            observed,
        )
    cond_true = cond is not None and str(cond.get("status")) == "True"
    if cond is None:
        ready = state == "successful"
    else:
        ready = cond_true and state in ("successful", "")
    return DgdReadiness(state, ready, state == "failed", message, reason, observed)


@dataclass(frozen=True)
class Blocker:
    """A pod that will not become ready on its own; `message` names the pod and the cause."""

    pod: str
    kind: str  # image | crash | config | unschedulable
    message: str
    container: str = ""


def container_statuses(pod: dict) -> list[tuple[dict, dict]]:
    """(container spec, container status) pairs, init containers first."""
    spec = _get(pod, "spec") or {}
    status = _get(pod, "status") or {}
    out = []
    for spec_key, status_key in (("initContainers", "initContainerStatuses"), ("containers", "containerStatuses")):
        specs = {c.get("name"): c for c in spec.get(spec_key) or [] if isinstance(c, dict)}
        for cs in status.get(status_key) or []:
            if isinstance(cs, dict):
                out.append((specs.get(cs.get("name"), {}), cs))
    return out


@dataclass(frozen=True)
class PodProblem:
    """Something wrong with one pod now. `permanent` ones fail the run at once; the others only when they
    last longer than their grace (the caller keeps the clock per `key`)."""

    pod: str
    kind: str  # image | config | crash | unschedulable
    message: str
    container: str = ""
    permanent: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.pod, self.container, self.kind)


def pod_problems(pod: dict, *, crashloop_restarts: int) -> list[PodProblem]:
    """Every current problem of one pod, each with whether it can clear on its own."""
    name = str(_get(pod, "metadata", "name") or "?")
    out: list[PodProblem] = []
    for spec, cs in container_statuses(pod):
        waiting = _get(cs, "state", "waiting") or {}
        reason = str(waiting.get("reason") or "")
        detail = str(waiting.get("message") or "").strip()
        cname = str(cs.get("name") or "")
        image = str(spec.get("image") or cs.get("image") or "?")
        if reason in IMAGE_PULL_REASONS:
            msg = f"pod {name}: container {cname} cannot pull image {image} ({reason})"
            out.append(
                PodProblem(
                    name,
                    "image",
                    f"{msg}: {detail}" if detail else msg,
                    cname,
                    reason in IMAGE_NEVER_REASONS or bool(IMAGE_GONE.search(detail)),
                )
            )
        elif reason in CONFIG_REASONS:
            out.append(
                PodProblem(name, "config", f"pod {name}: container {cname} cannot start ({reason}): {detail}", cname)
            )
        restarts = int(cs.get("restartCount") or 0)
        if reason == CRASH_REASON and restarts >= crashloop_restarts:
            last = _get(cs, "lastState", "terminated") or {}
            why = (
                f"exit code {last.get('exitCode')}" + (f", {last.get('reason')}" if last.get("reason") else "")
                if last
                else "no exit status"
            )
            out.append(
                PodProblem(
                    name,
                    "crash",
                    f"pod {name}: container {cname} is crash-looping ({restarts} restarts, last {why})",
                    cname,
                    True,
                )
            )
    sched = condition(pod, "PodScheduled")
    if sched and str(sched.get("status")) == "False" and sched.get("reason") in ("Unschedulable", "SchedulerError"):
        out.append(
            PodProblem(name, "unschedulable", f"pod {name} is unschedulable: {str(sched.get('message') or '').strip()}")
        )
    return out


def is_unschedulable(pod: dict) -> bool:
    sched = condition(pod, "PodScheduled")
    return bool(
        sched and str(sched.get("status")) == "False" and sched.get("reason") in ("Unschedulable", "SchedulerError")
    )


def pod_ready(pod: dict) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and str(cond.get("status")) == "True")


def pod_summary(pods: list[dict]) -> str:
    """`pods 2/3 ready (frontend-0: ContainerCreating)` for progress lines."""
    if not pods:
        return "no pods yet"
    ready = [p for p in pods if pod_ready(p)]
    waiting = []
    for pod in pods:
        if pod_ready(pod):
            continue
        reason = str(_get(pod, "status", "phase") or "Pending")
        for _, cs in container_statuses(pod):
            w = _get(cs, "state", "waiting", "reason")
            if w:
                reason = str(w)
                break
        if is_unschedulable(pod):
            reason = "Unschedulable"
        waiting.append(f"{_get(pod, 'metadata', 'name')}: {reason}")
    text = f"pods {len(ready)}/{len(pods)} ready"
    if waiting:
        text += " (" + ", ".join(waiting[:3]) + (", ..." if len(waiting) > 3 else "") + ")"
    return text


@dataclass(frozen=True)
class JobState:
    phase: str  # running | succeeded | failed
    message: str = ""


def job_state(job: dict) -> JobState:
    for type_, phase in (("Complete", "succeeded"), ("Failed", "failed")):
        cond = condition(job, type_)
        if cond and str(cond.get("status")) == "True":
            return JobState(phase, str(cond.get("message") or cond.get("reason") or ""))
    status = _get(job, "status") or {}
    if int(status.get("succeeded") or 0) >= int(_get(job, "spec", "completions") or 1):
        return JobState("succeeded")
    return JobState("running", f"active={int(status.get('active') or 0)}, failed={int(status.get('failed') or 0)}")


def product_matches(label: str, product: str) -> bool:
    """`NVIDIA-H200` matches H200; `NVIDIA-GB200` does not match B200 (whole tokens only)."""
    tokens = [t for t in re.split(r"[-_ .]", label.upper()) if t]
    return product.upper() in tokens


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


@dataclass
class GpuCapacity:
    """Allocatable GPUs on schedulable, Ready nodes of one product."""

    product: str
    nodes: dict[str, int] = field(default_factory=dict)  # node name -> allocatable GPUs

    @property
    def total(self) -> int:
        return sum(self.nodes.values())

    @property
    def largest_node(self) -> int:
        return max(self.nodes.values(), default=0)

    def describe(self) -> str:
        if not self.nodes:
            return f"no schedulable node with {GPU_PRODUCT_LABEL} matching {self.product}"
        per_node = ", ".join(f"{n}: {g}" for n, g in sorted(self.nodes.items()))
        return f"{self.total} allocatable {GPU_RESOURCE} on {len(self.nodes)} {self.product} node(s) ({per_node})"


def gpu_capacity(nodes: list[dict], product: str) -> GpuCapacity:
    cap = GpuCapacity(product)
    for node in nodes:
        label = str((_get(node, "metadata", "labels") or {}).get(GPU_PRODUCT_LABEL) or "")
        if not label or not product_matches(label, product):
            continue
        if _get(node, "spec", "unschedulable"):
            continue
        ready = condition(node, "Ready")
        if ready is not None and str(ready.get("status")) != "True":
            continue
        cap.nodes[str(_get(node, "metadata", "name"))] = _quantity(
            (_get(node, "status", "allocatable") or {}).get(GPU_RESOURCE)
        )
    return cap


def products_on(nodes: list[dict]) -> list[str]:
    """Distinct GPU products of the cluster, for the hint when none matches."""
    return sorted(
        {
            str((_get(n, "metadata", "labels") or {}).get(GPU_PRODUCT_LABEL))
            for n in nodes
            if (_get(n, "metadata", "labels") or {}).get(GPU_PRODUCT_LABEL)
        }
    )


# --- events that say why nothing comes up ------------------------------------------------------------------------

# Warning events of the controllers and the kubelet that name a cause the pod list never shows: a ReplicaSet or Job
# that cannot create its pods (ResourceQuota, PodSecurity admission, a webhook: FailedCreate), a claim the
# provisioner cannot fill (ProvisioningFailed), a volume the kubelet cannot mount (FailedMount), and the Dynamo
# operator's validation (ValidationFailed). Sources: k8s.io/kubernetes pkg/controller/controller_utils.go
# (FailedCreatePodReason = "FailedCreate"), pkg/controller/volume/events/event.go (ProvisioningFailed),
# pkg/kubelet/events/event.go (FailedMountVolume = "FailedMount"), ai-dynamo/dynamo deploy/operator/api/v1beta1
# (EventReasonValidationFailed = "ValidationFailed").
BLOCKING_EVENT_REASONS = {"FailedCreate", "ProvisioningFailed", "FailedMount", "ValidationFailed"}
# Messages that cannot clear while the run waits: admission refused the pod, the class does not exist. ("is
# forbidden: error looking up service account" is not one: the operator creates a planner's ServiceAccount
# beside its pods, and the controller retries.)
PERMANENT_EVENT = re.compile(
    r"(?i)exceeded quota|violates PodSecurity|admission webhook .* denied|"
    r"storageclass\.storage\.k8s\.io \"[^\"]*\" not found|Invalid value"
)


def event_key(ev: dict) -> tuple[str, int]:
    """(uid, count): a repeated event keeps its uid and counts up, a new one has a new uid."""
    return str(_get(ev, "metadata", "uid") or _get(ev, "metadata", "name") or ""), int(ev.get("count") or 1)


@dataclass(frozen=True)
class EventProblem:
    """A Warning event about one of the run's objects that explains why it cannot come up."""

    kind: str  # the involved object's kind
    name: str
    reason: str
    message: str
    permanent: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (f"{self.kind}/{self.name}", "", f"event:{self.reason}")

    def describe(self) -> str:
        return f"{self.kind} {self.name}: {self.reason}: {self.message}"


def event_problems(events: list[dict], owned: Any, seen: dict[str, int]) -> list[EventProblem]:
    """Blocking Warning events about objects `owned(kind, name)` accepts that are new since `seen` (uid -> count
    at the start of the step): an event of an earlier run in a reused namespace never fails this one."""
    out = []
    for ev in events:
        reason = str(ev.get("reason") or "")
        if reason not in BLOCKING_EVENT_REASONS or ev.get("type") not in ("Warning", None):
            continue
        uid, count = event_key(ev)
        if uid in seen and seen[uid] >= count:
            continue
        kind = str(_get(ev, "involvedObject", "kind") or "")
        name = str(_get(ev, "involvedObject", "name") or "")
        if not owned(kind, name):
            continue
        message = str(ev.get("message") or "").strip()
        permanent = reason == "ValidationFailed" or bool(PERMANENT_EVENT.search(message))
        out.append(EventProblem(kind, name, reason, message, permanent))
    return out


def startup_budget(containers: list[dict], default_probe: dict | None = None) -> float:
    """Seconds the kubelet lets the slowest container start before it restarts it: a startupProbe's
    initialDelaySeconds + failureThreshold x periodSeconds (the API defaults: 0, 3, 10 s; k8s.io/api core/v1
    Probe), else `default_probe` (what the operator sets when the recipe sets none), else the readiness probe's
    initial delay."""
    longest = 0.0
    for c in containers:
        probe = c.get("startupProbe") if isinstance(c.get("startupProbe"), dict) else default_probe
        if isinstance(probe, dict):
            longest = max(
                longest,
                float(probe.get("initialDelaySeconds") or 0)
                + float(probe.get("failureThreshold") or 3) * float(probe.get("periodSeconds") or 10),
            )
        elif isinstance(c.get("readinessProbe"), dict):
            longest = max(longest, float(c["readinessProbe"].get("initialDelaySeconds") or 0))
    return longest
