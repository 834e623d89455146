"""The cluster components behind the fake API, each written from the rule it stands for: the scheduler (requests
against node allocatable, nodeSelector, taints), the PV binder (access modes a provisioner serves, binding modes),
the Job controller, the kubelet (image pulls, missing secrets, probes, restarts), the namespace controller, a
cluster autoscaler and the Dynamo operator (finalizer, annotations, Services, status as 1.x writes it)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.analysis.storage import parse_quantity

from .fake_apiserver import Controller, FakeCluster, Request, now_iso

GPU = "nvidia.com/gpu"
FINALIZER = "nvidia.com/finalizer"  # deploy/operator/internal/controller_common/finalizer.go
ORIGIN_VERSION = "nvidia.com/dynamo-operator-origin-version"  # stamped by the operator's mutating webhook
WORKER_HASH = "nvidia.com/current-worker-hash"  # rolling-update bookkeeping of the DGD controller
# Access modes each provisioner serves. local-path (kind's default class): ReadWriteOnce and ReadWriteOncePod only
# (rancher/local-path-provisioner provisioner.go); an NFS CSI driver serves them all.
PROVISIONER_MODES = {
    "rancher.io/local-path": {"ReadWriteOnce", "ReadWriteOncePod"},
    "nfs.csi.k8s.io": {"ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany", "ReadWriteMany"},
    "ebs.csi.aws.com": {"ReadWriteOnce", "ReadWriteOncePod"},
}
PROVISION_ERRORS = {
    "rancher.io/local-path": "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
}


def labels_of(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def set_condition(obj: dict, type_: str, status: str, reason: str = "", message: str = "") -> None:
    conds = obj.setdefault("status", {}).setdefault("conditions", [])
    cond = next((c for c in conds if c.get("type") == type_), None)
    if cond is None:
        cond = {"type": type_}
        conds.append(cond)
    if cond.get("status") != status:
        cond["lastTransitionTime"] = now_iso()
    cond.update(status=status, reason=reason, message=message)
    if not reason:
        cond.pop("reason")
    if not message:
        cond.pop("message")


def pod_requests(pod: dict) -> dict[str, float]:
    """Effective requests: the sum over containers (the largest init container counts when larger);
    a limit without a request is the request too (the API server's defaulting)."""

    def one(c: dict) -> dict[str, float]:
        res = c.get("resources") or {}
        merged = dict(res.get("limits") or {}, **(res.get("requests") or {}))
        return {k: parse_quantity(v) or 0.0 for k, v in merged.items()}

    total: dict[str, float] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        for k, v in one(c).items():
            total[k] = total.get(k, 0.0) + v
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        for k, v in one(c).items():
            total[k] = max(total.get(k, 0.0), v)
    return total


def pvc_claims(pod: dict) -> list[str]:
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v, dict) and v.get("persistentVolumeClaim")
    ]


def tolerated(taint: dict, tolerations: list[dict]) -> bool:
    for t in tolerations:
        if (
            t.get("operator") == "Exists"
            and (not t.get("key") or t.get("key") == taint.get("key"))
            and (not t.get("effect") or t.get("effect") == taint.get("effect"))
        ):
            return True
        if (
            t.get("key") == taint.get("key")
            and t.get("value") == taint.get("value")
            and (not t.get("effect") or t.get("effect") == taint.get("effect"))
        ):
            return True
    return False


def active(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Scheduler(Controller):
    """kube-scheduler's filters that matter here: node Ready and schedulable, nodeSelector, taints, the claims'
    binding, and NodeResourcesFit (requests against allocatable minus the requests of pods already there)."""

    builtin = True

    def reconcile(self, c: FakeCluster) -> None:
        nodes = c.list("", "nodes")
        for pod in c.list("", "pods"):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or not active(pod) or pod["metadata"].get("deletionTimestamp"):
                continue
            ns = pod["metadata"]["namespace"]
            binder_problem = self._claims(c, pod)
            if binder_problem:
                reason, message = binder_problem
                self._unschedulable(c, pod, message, reason)
                continue
            fits, reasons = [], {}
            for node in nodes:
                why = self._filter(c, pod, node)
                if why:
                    for w in why:
                        reasons[w] = reasons.get(w, 0) + 1
                else:
                    fits.append(node)
            if not fits:
                detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
                self._unschedulable(
                    c,
                    pod,
                    f"0/{len(nodes)} nodes are available: {detail}. preemption: 0/{len(nodes)} nodes are available: "
                    f"{len(nodes)} No preemption victims found for incoming pod.",
                )
                continue
            node = fits[0]
            for claim in pvc_claims(pod):
                pvc = c.get("", "persistentvolumeclaims", ns, claim)
                if pvc is not None and (pvc.get("status") or {}).get("phase") != "Bound":
                    VolumeBinder.bind(c, pvc, node["metadata"]["name"])
            spec["nodeName"] = node["metadata"]["name"]
            set_condition(pod, "PodScheduled", "True")
            pod["metadata"]["resourceVersion"] = c.next_rv()
            c.add_event(
                ns,
                "Pod",
                pod["metadata"]["name"],
                "Scheduled",
                f"Successfully assigned {ns}/{pod['metadata']['name']} to {spec['nodeName']}",
                "Normal",
                "default-scheduler",
            )

    def _claims(self, c: FakeCluster, pod: dict) -> tuple[str, str] | None:
        ns = pod["metadata"]["namespace"]
        for claim in pvc_claims(pod):
            pvc = c.get("", "persistentvolumeclaims", ns, claim)
            if pvc is None:
                return "Unschedulable", f'persistentvolumeclaim "{claim}" not found'
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            sc = c.get("storage.k8s.io", "storageclasses", None, (pvc.get("spec") or {}).get("storageClassName") or "")
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return "Unschedulable", "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            error = VolumeBinder.cannot_provision(sc, pvc)
            if error:
                c.add_event(
                    ns,
                    "PersistentVolumeClaim",
                    claim,
                    "ProvisioningFailed",
                    f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": {error}',
                    "Warning",
                    sc.get("provisioner", ""),
                )
                return (
                    "SchedulerError",
                    f'running PreBind plugin "VolumeBinding": binding volumes: provisioning failed for PVC "{claim}"',
                )
        return None

    def _filter(self, c: FakeCluster, pod: dict, node: dict) -> list[str]:
        spec = pod.get("spec") or {}
        ready = condition(node, "Ready")
        if ready is None or ready.get("status") != "True":
            return ["node(s) were not ready"]
        if (node.get("spec") or {}).get("unschedulable"):
            return ["node(s) were unschedulable"]
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels_of(node).get(k) != v:
                return ["node(s) didn't match Pod's node affinity/selector"]
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(
                taint, spec.get("tolerations") or []
            ):
                return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"]
        allocatable = {
            k: parse_quantity(v) or 0.0 for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()
        }
        used: dict[str, float] = {}
        for other in c.list("", "pods"):
            if (other.get("spec") or {}).get("nodeName") == node["metadata"]["name"] and active(other):
                for k, v in pod_requests(other).items():
                    used[k] = used.get(k, 0.0) + v
        out = []
        for resource, want in sorted(pod_requests(pod).items()):
            if want and allocatable.get(resource, 0.0) - used.get(resource, 0.0) < want - 1e-9:
                out.append(f"Insufficient {resource}")
        return out

    def _unschedulable(self, c: FakeCluster, pod: dict, message: str, reason: str = "Unschedulable") -> None:
        cond = condition(pod, "PodScheduled")
        if cond and cond.get("status") == "False" and cond.get("message") == message:
            return
        set_condition(pod, "PodScheduled", "False", reason, message)
        pod["metadata"]["resourceVersion"] = c.next_rv()
        c.add_event(
            pod["metadata"]["namespace"],
            "Pod",
            pod["metadata"]["name"],
            "FailedScheduling",
            message,
            "Warning",
            "default-scheduler",
        )


class VolumeBinder(Controller):
    """The PV controller and the provisioners: an Immediate class binds at once when its provisioner serves the
    claim's access modes; WaitForFirstConsumer waits for the scheduler; otherwise the claim stays Pending."""

    builtin = True

    @staticmethod
    def cannot_provision(sc: dict, pvc: dict) -> str:
        serves = PROVISIONER_MODES.get(
            sc.get("provisioner", ""), {"ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany", "ReadWriteMany"}
        )
        wanted = set((pvc.get("spec") or {}).get("accessModes") or [])
        if wanted - serves:
            return PROVISION_ERRORS.get(
                sc.get("provisioner", ""), f"access modes {sorted(wanted - serves)} are not supported"
            )
        return ""

    @staticmethod
    def bind(c: FakeCluster, pvc: dict, node: str = "") -> None:
        spec = pvc.get("spec") or {}
        pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": list(spec.get("accessModes") or []),
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
        }
        pvc["metadata"]["resourceVersion"] = c.next_rv()

    def reconcile(self, c: FakeCluster) -> None:
        for pvc in c.list("", "persistentvolumeclaims"):
            if (pvc.get("status") or {}).get("phase") == "Bound" or pvc["metadata"].get("deletionTimestamp"):
                continue
            name = (pvc.get("spec") or {}).get("storageClassName") or ""
            sc = c.get("storage.k8s.io", "storageclasses", None, name)
            ns, claim = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
            if sc is None:
                c.add_event(
                    ns,
                    "PersistentVolumeClaim",
                    claim,
                    "ProvisioningFailed",
                    f'storageclass.storage.k8s.io "{name}" not found',
                    "Warning",
                    "persistentvolume-controller",
                )
                continue
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                c.add_event(
                    ns,
                    "PersistentVolumeClaim",
                    claim,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                    "Normal",
                    "persistentvolume-controller",
                )
                continue
            error = self.cannot_provision(sc, pvc)
            if error:
                c.add_event(
                    ns,
                    "PersistentVolumeClaim",
                    claim,
                    "ProvisioningFailed",
                    f'failed to provision volume with StorageClass "{name}": {error}',
                    "Warning",
                    sc.get("provisioner", ""),
                )
                continue
            self.bind(c, pvc)


class NamespaceController(Controller):
    """Deletes what a Terminating namespace holds (objects with finalizers wait for their controllers) and
    removes the namespace once it is empty, `grace` seconds at the earliest."""

    builtin = True

    def __init__(self, grace: float = 5.0):
        self.grace = grace
        self.since: dict[str, float] = {}

    def reconcile(self, c: FakeCluster) -> None:
        for ns in c.list("", "namespaces"):
            name = ns["metadata"]["name"]
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            self.since.setdefault(name, c.now())
            content = [k for k in c.objects if k[2] == name]
            for key in content:
                c.request_delete(key[0], key[1], key[2], key[3])
            if not [k for k in c.objects if k[2] == name] and c.now() - self.since[name] >= self.grace:
                c.remove("", "namespaces", None, name)
                self.since.pop(name, None)


class JobController(Controller):
    """batch/v1 Jobs: one pod at a time from the template, a new one per failure up to backoffLimit, then the
    Failed condition; Complete when a pod succeeds."""

    builtin = True

    def reconcile(self, c: FakeCluster) -> None:
        for job in c.list("batch", "jobs"):
            if job["metadata"].get("deletionTimestamp") or condition(job, "Complete") or condition(job, "Failed"):
                continue
            ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
            pods = [p for p in c.list("", "pods", ns) if labels_of(p).get("job-name") == name]
            succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
            failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
            status = job.setdefault("status", {})
            status.setdefault("startTime", now_iso())
            if succeeded:
                status.update(succeeded=1, active=0, failed=failed, completionTime=now_iso())
                set_condition(
                    job, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                )
                set_condition(
                    job, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                )
            elif failed > int((job.get("spec") or {}).get("backoffLimit", 6)):
                status.update(failed=failed, active=0)
                set_condition(
                    job, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
                set_condition(
                    job, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            elif not [p for p in pods if active(p)]:
                template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
                meta = template.setdefault("metadata", {})
                uid = job["metadata"]["uid"]
                meta.update(
                    name=f"{name}-{uuid.uuid4().hex[:5]}",
                    namespace=ns,
                    labels=dict(
                        meta.get("labels") or {},
                        **{
                            "job-name": name,
                            "batch.kubernetes.io/job-name": name,
                            "controller-uid": uid,
                            "batch.kubernetes.io/controller-uid": uid,
                        },
                    ),
                )
                c.put(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": meta,
                        "spec": template.get("spec") or {},
                        "status": {"phase": "Pending"},
                    }
                )
                status.update(active=1, failed=failed)
            else:
                status.update(active=1, failed=failed)
            job["metadata"]["resourceVersion"] = c.next_rv()


@dataclass
class Behaviour:
    """What a container does once it runs: serve (Ready after `ready_after`, never when None), run to completion
    after `runs_for` with `exit_code`, or crash-loop. `on_exit` writes the pod's output (files on a PVC, its log)."""

    kind: str = "serve"  # serve | run | crash
    ready_after: float | None = 1.0
    runs_for: float = 5.0
    exit_code: int = 0
    log: str = ""
    previous_log: str = ""
    on_exit: Callable[[FakeCluster, dict], tuple[int, str]] | None = None


class Kubelet(Controller):
    """Runs scheduled pods: pulls images (failures come from `pull_failures`: image -> (until, message)), checks the
    Secrets and ConfigMaps the pod reads (CreateContainerConfigError while one is missing), starts the containers,
    marks them Ready, restarts crashing ones with back-off, and finishes pods that run to completion."""

    builtin = True

    def __init__(self, behaviour: Callable[[dict], Behaviour]):
        self.behaviour = behaviour
        self.pull_failures: dict[str, tuple[float, str]] = {}
        self.started: dict[str, float] = {}

    def reconcile(self, c: FakeCluster) -> None:
        for pod in c.list("", "pods"):
            meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.setdefault("status", {})
            if meta.get("deletionTimestamp"):
                c.remove("", "pods", meta.get("namespace"), meta["name"])  # grace period elapsed at once
                continue
            if not spec.get("nodeName") or not active(pod):
                continue
            containers = spec.get("containers") or []
            uid = meta["uid"]
            before = json.dumps(status, sort_keys=True)
            if uid not in self.started:
                waiting = self._waiting(c, pod)
                if waiting:
                    reason, message = waiting
                    status.update(
                        phase="Pending",
                        containerStatuses=[
                            {
                                "name": x["name"],
                                "image": x.get("image"),
                                "imageID": "",
                                "ready": False,
                                "restartCount": 0,
                                "started": False,
                                "state": {"waiting": {"reason": reason, "message": message}},
                            }
                            for x in containers
                        ],
                    )
                    if json.dumps(status, sort_keys=True) != before:
                        meta["resourceVersion"] = c.next_rv()
                    continue
                self.started[uid] = c.now()
            self._run(c, pod, self.behaviour(pod), c.now() - self.started[uid])
            if json.dumps(status, sort_keys=True) != before:
                meta["resourceVersion"] = c.next_rv()

    def _waiting(self, c: FakeCluster, pod: dict) -> tuple[str, str] | None:
        ns = pod["metadata"]["namespace"]
        for x in (pod.get("spec") or {}).get("containers") or []:
            image = str(x.get("image") or "")
            failure = self.pull_failures.get(image)
            if failure and c.now() < failure[0]:
                # the kubelet alternates ErrImagePull (a try) and ImagePullBackOff (waiting for the next one)
                reason = "ErrImagePull" if int(c.now() / 10) % 2 == 0 else "ImagePullBackOff"
                message = failure[1] if reason == "ErrImagePull" else f'Back-off pulling image "{image}"'
                c.add_event(
                    ns,
                    "Pod",
                    pod["metadata"]["name"],
                    "Failed",
                    f'Failed to pull image "{image}": {failure[1]}',
                    "Warning",
                    "kubelet",
                )
                return reason, message
            for ref in self._secret_refs(pod, x):
                if c.get("", "secrets", ns, ref) is None:
                    c.add_event(
                        ns,
                        "Pod",
                        pod["metadata"]["name"],
                        "Failed",
                        f'Error: secret "{ref}" not found',
                        "Warning",
                        "kubelet",
                    )
                    return "CreateContainerConfigError", f'secret "{ref}" not found'
        return None

    @staticmethod
    def _secret_refs(pod: dict, container: dict) -> list[str]:
        refs = [
            e["secretRef"]["name"]
            for e in container.get("envFrom") or []
            if e.get("secretRef") and not e["secretRef"].get("optional")
        ]
        refs += [
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env") or []
            if (e.get("valueFrom") or {}).get("secretKeyRef") and not e["valueFrom"]["secretKeyRef"].get("optional")
        ]
        return refs

    def _run(self, c: FakeCluster, pod: dict, b: Behaviour, elapsed: float) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        status = pod["status"]
        containers = (pod.get("spec") or {}).get("containers") or []
        main = containers[0]["name"] if containers else "main"
        if b.log:
            c.set_log(ns, name, main, b.log)
        running = {"running": {"startedAt": now_iso()}}
        if b.kind == "crash":
            restarts = 1 + int(elapsed // 10)
            status.update(
                phase="Running",
                containerStatuses=[
                    {
                        "name": x["name"],
                        "image": x.get("image"),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": restarts,
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off {min(300, 10 * 2**restarts)}s restarting failed container={x['name']} pod={name}",
                            }
                        },
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                    for x in containers
                ],
            )
            set_condition(pod, "Ready", "False", "ContainersNotReady", f"containers with unready status: [{main}]")
            if b.previous_log:
                c.set_log(ns, name, main, b.previous_log, previous=True)
            return
        if b.kind == "run" and elapsed >= b.runs_for:
            code, log = b.on_exit(c, pod) if b.on_exit else (b.exit_code, b.log)
            if log:
                c.set_log(ns, name, main, log)
            status.update(
                phase="Succeeded" if code == 0 else "Failed",
                containerStatuses=[
                    {
                        "name": x["name"],
                        "image": x.get("image"),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}},
                    }
                    for x in containers
                ],
            )
            set_condition(pod, "Ready", "False", "PodCompleted")
            return
        ready = b.kind == "serve" and b.ready_after is not None and elapsed >= b.ready_after
        if b.kind == "serve" and not ready and elapsed >= 10:  # the readiness probe has run and failed
            c.add_event(
                ns,
                "Pod",
                name,
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                "Warning",
                "kubelet",
            )
        status.update(
            phase="Running",
            containerStatuses=[
                {
                    "name": x["name"],
                    "image": x.get("image"),
                    "imageID": "",
                    "ready": ready,
                    "started": True,
                    "restartCount": 0,
                    "state": copy.deepcopy(running),
                }
                for x in containers
            ],
        )
        set_condition(
            pod,
            "Ready",
            "True" if ready else "False",
            "" if ready else "ContainersNotReady",
            "" if ready else f"containers with unready status: [{main}]",
        )


@dataclass
class ScaleUp:
    """A node group the autoscaler can grow: after `delay` seconds from the first unschedulable pod a node joins."""

    node: str
    product: str | None
    gpus: int
    delay: float
    group: str = "gpu-pool"
    events_every: float = 60.0  # the autoscaler re-announces a scale-up in progress


class Autoscaler(Controller):
    """cluster-autoscaler: a pod that does not fit gets `TriggeredScaleUp` events until the new node joins."""

    builtin = True

    def __init__(self, plans: list[ScaleUp]):
        self.plans = plans
        self.started: dict[str, float] = {}
        self.announced: dict[str, float] = {}

    def reconcile(self, c: FakeCluster) -> None:
        pending = [
            p for p in c.list("", "pods") if (condition(p, "PodScheduled") or {}).get("reason") == "Unschedulable"
        ]
        for plan in self.plans:
            if c.get("", "nodes", None, plan.node) is not None:
                continue
            if pending and plan.node not in self.started:
                self.started[plan.node] = c.now()
            if plan.node not in self.started:
                continue
            if c.now() - self.started[plan.node] >= plan.delay:
                c.add_node(plan.node, plan.product, plan.gpus)
                continue
            if c.now() - self.announced.get(plan.node, -1e9) >= plan.events_every:
                self.announced[plan.node] = c.now()
                for pod in pending:
                    c.add_event(
                        pod["metadata"]["namespace"],
                        "Pod",
                        pod["metadata"]["name"],
                        "TriggeredScaleUp",
                        f"pod triggered scale-up: [{{{plan.group} 0->1 (max: 4)}}]",
                        "Normal",
                        "cluster-autoscaler",
                    )


def component_service_name(dgd: str, component: str) -> str:
    """graph.go GetDCDResourceName + GenerateComponentService: `<dgd>-<lower(component)>`, dots -> hyphens."""
    return f"{dgd}-{component.lower()}".replace(".", "-")


@dataclass
class OperatorScript:
    """How the operator's reconcile passes go: `errors` are (start, end, message) windows in which every pass
    fails (state `failed`, requeued), `validation_error` fails for good (ValidationFailed, no requeue),
    `observed_generation` off models operators that do not write it, `delay` the requeue period."""

    errors: list[tuple[float, float, str]] = field(default_factory=list)
    validation_error: str = ""
    observed_generation: bool = True
    delay: float = 2.0
    version: str = "1.4.0"


class DynamoOperator(Controller):
    """The DGD controller of the Dynamo 1.x operator, as far as the harness can see it: the finalizer, the
    annotations, one pod per replica of every component (labels as the operator sets them), a Service per
    component, and `status.state` / the `Ready` condition / `observedGeneration` written at the end of each pass."""

    builtin = True

    def __init__(self, script: OperatorScript | None = None):
        self.script = script or OperatorScript()
        self.last_pass: dict[str, float] = {}
        self.passes: list[tuple[float, str, int, str]] = []  # (time, dgd, generation, state)

    def reconcile(self, c: FakeCluster) -> None:
        for dgd in c.list("nvidia.com", "dynamographdeployments"):
            key = f"{dgd['metadata']['namespace']}/{dgd['metadata']['name']}"
            if dgd["metadata"].get("deletionTimestamp"):
                self._finalize(c, dgd)
                continue
            if c.now() - self.last_pass.get(key, -1e9) < self.script.delay:
                continue
            self.last_pass[key] = c.now()
            self._pass(c, dgd)

    def _components(self, dgd: dict) -> list[tuple[str, dict, str]]:
        spec = dgd.get("spec") or {}
        if isinstance(spec.get("services"), dict):
            return [(n, s, s.get("componentType", "")) for n, s in spec["services"].items()]
        return [(s["name"], s, s.get("type", "")) for s in spec.get("components") or []]

    def _pod(self, dgd: dict, name: str, svc: dict, ctype: str, index: int) -> dict:
        ns, dgd_name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        spec = dgd.get("spec") or {}
        if "podTemplate" in svc:  # v1beta1
            pod_spec = copy.deepcopy((svc.get("podTemplate") or {}).get("spec") or {})
            containers = pod_spec.setdefault("containers", [{"name": "main"}])
            main = next((x for x in containers if x.get("name") == "main"), containers[0])
        else:  # v1alpha1
            extra = copy.deepcopy(svc.get("extraPodSpec") or {})
            main = dict(extra.pop("mainContainer", {}) or {}, name="main")
            pod_spec = dict(extra, containers=[main])
            res = svc.get("resources") or {}
            conv = {}
            for part in ("requests", "limits"):
                vals = {
                    (GPU if k == "gpu" else k): str(v)
                    for k, v in (res.get(part) or {}).items()
                    if k in ("cpu", "memory", "gpu")
                }
                if vals:
                    conv[part] = vals
            if conv:
                main["resources"] = conv
            env = list(spec.get("envs") or []) + list(svc.get("envs") or []) + list(main.get("env") or [])
            if env:
                main["env"] = env
            if svc.get("envFromSecret"):
                main["envFrom"] = list(main.get("envFrom") or []) + [{"secretRef": {"name": svc["envFromSecret"]}}]
            claims = {p["name"] for p in spec.get("pvcs") or []}
            for vm in svc.get("volumeMounts") or []:
                if vm.get("name") in claims:
                    pod_spec.setdefault("volumes", []).append(
                        {"name": vm["name"], "persistentVolumeClaim": {"claimName": vm["name"]}}
                    )
                    main.setdefault("volumeMounts", []).append(
                        {"name": vm["name"], "mountPath": vm.get("mountPoint", "/" + vm["name"])}
                    )
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 60)
        labels = {
            "nvidia.com/dynamo-graph-deployment-name": dgd_name,
            "nvidia.com/dynamo-component": name,
            "nvidia.com/dynamo-component-type": ctype,
            "nvidia.com/dgd-generation": str(dgd["metadata"].get("generation", 1)),
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{component_service_name(dgd_name, name)}-{index}",
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": dgd["apiVersion"],
                        "kind": "DynamoGraphDeployment",
                        "name": dgd_name,
                        "uid": dgd["metadata"]["uid"],
                    }
                ],
            },
            "spec": pod_spec,
            "status": {"phase": "Pending"},
        }

    def pods_of(self, c: FakeCluster, dgd: dict) -> list[dict]:
        return [
            p
            for p in c.list("", "pods", dgd["metadata"]["namespace"])
            if labels_of(p).get("nvidia.com/dynamo-graph-deployment-name") == dgd["metadata"]["name"]
        ]

    def _pass(self, c: FakeCluster, dgd: dict) -> None:
        meta = dgd["metadata"]
        ns, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
        error = self.script.validation_error
        window = next((w for w in self.script.errors if w[0] <= c.now() < w[1]), None)
        state, reason, message = "pending", "pods_not_ready", ""
        if not error and window is None:
            if FINALIZER not in (meta.get("finalizers") or []):
                meta.setdefault("finalizers", []).append(FINALIZER)
            ann = meta.setdefault("annotations", {})
            ann.setdefault(ORIGIN_VERSION, self.script.version)
            ann[WORKER_HASH] = f"{generation:08x}"
            wanted: dict[str, dict] = {}
            for comp, svc, ctype in self._components(dgd):
                for i in range(int(svc.get("replicas", 1) or 1)):
                    pod = self._pod(dgd, comp, svc, ctype, i)
                    wanted[pod["metadata"]["name"]] = pod
                svc_name = component_service_name(name, comp)
                if c.get("", "services", ns, svc_name) is None:
                    port = (
                        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
                        if ctype == "frontend"
                        else {"name": "system", "port": 9090, "targetPort": "system", "protocol": "TCP"}
                    )
                    c.put(
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "metadata": {
                                "name": svc_name,
                                "namespace": ns,
                                "labels": {"nvidia.com/dynamo-graph-deployment-name": name},
                            },
                            "spec": {
                                "selector": {"nvidia.com/dynamo-component": comp},
                                "ports": [port],
                                "type": "ClusterIP",
                            },
                        }
                    )
            for pod in self.pods_of(c, dgd):
                stale = labels_of(pod).get("nvidia.com/dgd-generation") != str(generation)
                if pod["metadata"]["name"] not in wanted or stale:
                    c.request_delete("", "pods", ns, pod["metadata"]["name"])
            for pod_name, pod in wanted.items():
                if c.get("", "pods", ns, pod_name) is None:
                    c.put(pod)
            pods = [p for p in self.pods_of(c, dgd) if not p["metadata"].get("deletionTimestamp")]
            not_ready = [p["metadata"]["name"] for p in pods if (condition(p, "Ready") or {}).get("status") != "True"]
            if pods and not not_ready and len(pods) == len(wanted):
                state, reason, message = "successful", "all_resources_are_ready", "All resources are ready"
            else:
                message = f"Resources not ready: {', '.join(sorted(not_ready)) or 'pods being created'}"
        elif error:
            state, reason, message = "failed", "ValidationFailed", error
        else:
            state, reason, message = "failed", "failed_to_reconcile_the_resources", window[2]
        status = dgd.setdefault("status", {})
        status["state"] = state
        set_condition(dgd, "Ready", "True" if state == "successful" else "False", reason, message)
        if state != "failed" and self.script.observed_generation:
            status["observedGeneration"] = generation  # only passes without an error write it
        meta["resourceVersion"] = c.next_rv()
        self.passes.append((c.now(), name, generation, state))

    def _finalize(self, c: FakeCluster, dgd: dict) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        for pod in self.pods_of(c, dgd):
            c.request_delete("", "pods", ns, pod["metadata"]["name"])
        for svc in c.list("", "services", ns):
            if labels_of(svc).get("nvidia.com/dynamo-graph-deployment-name") == name:
                c.remove("", "services", ns, svc["metadata"]["name"])
        fins = [f for f in dgd["metadata"].get("finalizers") or [] if f != FINALIZER]
        dgd["metadata"]["finalizers"] = fins
        if not fins:
            c.remove("nvidia.com", "dynamographdeployments", ns, name)


def install(
    c: FakeCluster,
    behaviour: Callable[[dict], Behaviour],
    script: OperatorScript | None = None,
    scale_ups: list[ScaleUp] | None = None,
) -> tuple[Kubelet, DynamoOperator]:
    """The components every fake cluster runs, in the order a real one would act on a request."""
    kubelet = Kubelet(behaviour)
    operator = DynamoOperator(script)
    c.controllers = (
        [NamespaceController(), VolumeBinder(), operator, JobController(), Scheduler(), kubelet]
        + ([Autoscaler(scale_ups)] if scale_ups else [])
        + [c for c in c.controllers if not getattr(c, "builtin", False)]
    )
    return kubelet, operator


def request_is(req: Request, method: str, plural: str) -> bool:
    return req.method == method and req.plural == plural


__all__ = [
    "Autoscaler",
    "Behaviour",
    "DynamoOperator",
    "JobController",
    "Kubelet",
    "NamespaceController",
    "OperatorScript",
    "ScaleUp",
    "Scheduler",
    "VolumeBinder",
    "component_service_name",
    "install",
    "pod_requests",
    "request_is",
]
