"""SIMULATIONS: what no real component offers on the local control plane, each a stand-in named as such.

The control plane itself is real (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok: see
harness/run/cluster/): admission, RBAC, quota, server-side apply, the Deployment/ReplicaSet/Job/namespace/PV/garbage
collector controllers and the scheduler all run. What is simulated here, and why:

- `RuntimeStages`: container-runtime states. kwok fakes the kubelets; a test adds kwok Stage objects
  (kwok.x-k8s.io/v1alpha1, weight 1 so they win over kwok's default stages, which have weight 0) selecting its own
  namespace's pods: Running but never Ready, CrashLoopBackOff, ErrImagePull, a Job container that exits non-zero.
  Container logs are kwok ClusterLogs objects pointing at files the test writes (kwok serves them to the API
  server as a kubelet would, so `kubectl logs` is real).
- `DgdController`: a STAND-IN for the Dynamo operator's DynamoGraphDeployment controller. The real operator cannot be
  built here: the Go module proxy refuses github.com/ai-dynamo/dynamo/deploy/operator and the repository snapshot
  is too large to fetch. The stand-in does what the operator does as far as the gpu stage can see it: the
  `nvidia.com/finalizer` finalizer, one Deployment and one Service per component named `<dgd>-<component>`
  (deploy/operator/internal/dynamo/graph.go GetDCDResourceName), pods labelled as the operator labels them
  (deploy/operator/internal/consts/consts.go KubeLabelDynamo*), and `status.state` with a `Ready` condition whose
  reasons are the operator's: `all_resources_are_ready` / `some_resources_are_not_ready`
  (deploy/operator/internal/controller/dgd_workload_result.go checkResourcesReadiness),
  `failed_to_reconcile_the_resources`, and the terminal `unsupported_workload_provider` /
  `selected_workload_provider_unavailable` (deploy/operator/internal/controller/dynamographdeployment_controller.go,
  reasonUnsupportedWorkloadProvider: a reconcile.TerminalError, never retried). `observedGeneration` is written
  only by a pass without error, as the operator's deferred status update does. Because it creates real
  Deployments, the real controller-manager makes the ReplicaSets and Pods, and admission, quota, PodSecurity and
  FailedCreate happen for real.
- `Autoscaler`: a STAND-IN for cluster-autoscaler. It adds the nodes of a node group once per scale-up and emits one
  `TriggeredScaleUp` event per pod that triggered it, once, as cluster-autoscaler's EventingScaleUpStatusProcessor
  does (kubernetes/autoscaler cluster-autoscaler/processors/status/eventing_scale_up_processor.go:
  `Recorder.Eventf(pod, Normal, "TriggeredScaleUp", "pod triggered scale-up: %v", status.ScaleUpInfos)` for the
  pods of a scale-up that was executed).
- `Provisioner`: a STAND-IN for a dynamic volume provisioner (NFS CSI, local-path): it creates a PersistentVolume for
  a claim of a class it serves (after the scheduler picked a node, for WaitForFirstConsumer classes), and the real
  PV controller binds them. A class nobody serves, or a missing class, stays Pending as on a real cluster.

Every loop runs in a daemon thread of the test process, through the stdlib client of harness/run/cluster/api.py,
and records what it could not do in `errors` (a test can assert there were none).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.run.cluster.api import Client, Response

GPU = "nvidia.com/gpu"
FINALIZER = "nvidia.com/finalizer"  # deploy/operator/internal/controller_common/finalizer.go finalizerName
LABEL_DGD = "nvidia.com/dynamo-graph-deployment-name"  # deploy/operator/internal/consts/consts.go
LABEL_COMPONENT = "nvidia.com/dynamo-component"
LABEL_COMPONENT_TYPE = "nvidia.com/dynamo-component-type"
DGD_GROUP = "nvidia.com"
DGD_PLURAL = "dynamographdeployments"
STAGE_API = "kwok.x-k8s.io/v1alpha1"
# The operator's DGD reasons (see the module docstring for where each is set).
REASON_READY = "all_resources_are_ready"
REASON_NOT_READY = "some_resources_are_not_ready"
REASON_RECONCILE_FAILED = "failed_to_reconcile_the_resources"
REASON_UNSUPPORTED_PROVIDER = "unsupported_workload_provider"
REASON_PROVIDER_UNAVAILABLE = "selected_workload_provider_unavailable"
MERGE_PATCH = "application/merge-patch+json"


def cri_log(text: str, stream: str = "stdout") -> str:
    """`text` as a container runtime writes it (the CRI log format the kubelet, and kwok, read back:
    `<RFC 3339 time> <stream> F <line>` per line; k8s.io/cri-client pkg/logs)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    return "".join(f"{stamp} {stream} F {line}\n" for line in text.split("\n")[: -1 if text.endswith("\n") else None])


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class Api:
    """The few REST calls the simulations make, on plain dicts; a failed call raises with the server's message."""

    def __init__(self, client: Client):
        self.client = client

    def _ok(self, resp: Response, what: str, allow: tuple[int, ...] = ()) -> Any:
        if resp.ok or resp.status in allow:
            return resp.body
        raise RuntimeError(f"{what}: HTTP {resp.status}: {resp.message()}")

    def get(self, path: str) -> dict | None:
        resp = self.client.get(path)
        if resp.status == 404:
            return None
        return self._ok(resp, f"GET {path}")

    def list(self, path: str) -> list[dict]:
        body = self._ok(self.client.get(path), f"GET {path}")
        return list((body or {}).get("items") or [])

    def create(self, path: str, obj: dict, exist_ok: bool = False) -> dict | None:
        return self._ok(self.client.request("POST", path, obj), f"POST {path}", (409,) if exist_ok else ())

    def merge(self, path: str, patch: dict, missing_ok: bool = False) -> dict | None:
        resp = self.client.request("PATCH", path, patch, content_type=MERGE_PATCH)
        return self._ok(resp, f"PATCH {path}", (404,) if missing_ok else ())

    def put(self, path: str, obj: dict) -> dict | None:
        return self._ok(self.client.request("PUT", path, obj), f"PUT {path}")

    def delete(self, path: str) -> None:
        self._ok(self.client.request("DELETE", path), f"DELETE {path}", (404,))

    def event(
        self, namespace: str, involved: dict, reason: str, message: str, type_: str = "Normal", source: str = ""
    ) -> None:
        """A core/v1 Event about `involved` (a Pod, a DGD), as a controller's event recorder writes it."""
        meta = involved.get("metadata") or {}
        self.create(
            f"/api/v1/namespaces/{q(namespace)}/events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion", "v1"),
                    "kind": involved.get("kind", "Pod"),
                    "name": meta.get("name"),
                    "namespace": namespace,
                    "uid": meta.get("uid"),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": source},
                "reportingComponent": source,
                "firstTimestamp": now_iso(),
                "lastTimestamp": now_iso(),
                "count": 1,
            },
        )


class Loop:
    """A daemon thread calling step() every `interval` seconds until stop(); exceptions are kept in `errors`."""

    interval = 0.2

    def __init__(self, api: Api):
        self.api = api
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    def start(self) -> Loop:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.step()
            except Exception:
                self.errors.append(traceback.format_exc(limit=3))
                del self.errors[:-20]
            self._stop.wait(self.interval)

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# --- container runtime: kwok stages and logs -----------------------------------------------------------------------


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def _conditions(ready: bool) -> str:
    status = "True" if ready else "False"
    return (
        "conditions:\n"
        '- type: Initialized\n  status: "True"\n'
        f'- type: Ready\n  status: "{status}"\n'
        + ("" if ready else "  reason: ContainersNotReady\n")
        + f'- type: ContainersReady\n  status: "{status}"\n'
        '- type: PodScheduled\n  status: "True"\n'
    )


class RuntimeStages:
    """kwok Stage objects of one test, selecting only pods of the test's namespaces; removed by cleanup()."""

    def __init__(self, api: Api):
        self.api = api
        self.names: list[str] = []
        self.log_names: list[str] = []

    def add(
        self,
        name: str,
        namespace: str,
        match: list[dict],
        status_template: str,
        delay_ms: int = 0,
        weight: int = 1,
        event: tuple[str, str, str] | None = None,
    ) -> str:
        """A pod Stage for `namespace`'s pods matching `match` (kwok selector expressions); `event` = (type,
        reason, message) is recorded on the pod when it applies, as the kubelet records its own."""
        full = f"sim-{namespace}-{name}"[:253]
        spec: dict[str, Any] = {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.namespace", "operator": "In", "values": [namespace]},
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    *match,
                ]
            },
            "weight": weight,
            "next": {"statusTemplate": status_template},
        }
        if delay_ms:
            spec["delay"] = {"durationMilliseconds": delay_ms}
        if event:
            spec["next"]["event"] = {"type": event[0], "reason": event[1], "message": event[2]}
        self.api.create(
            "/apis/kwok.x-k8s.io/v1alpha1/stages",
            {"apiVersion": STAGE_API, "kind": "Stage", "metadata": {"name": full}, "spec": spec},
        )
        self.names.append(full)
        return full

    @staticmethod
    def select(label: str, *values: str) -> dict:
        return {"key": f'.metadata.labels["{label}"]', "operator": "In", "values": list(values)}

    def never_ready(self, namespace: str, match: list[dict]) -> str:
        """Containers start and stay unready (a model that never finishes loading; a failing readiness probe)."""
        template = (
            _conditions(False) + "containerStatuses:\n"
            "{{ range .spec.containers }}\n"
            "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n  started: true\n"
            "  restartCount: 0\n  state:\n    running:\n      startedAt: {{ Now | Quote }}\n"
            "{{ end }}\n"
            "phase: Running\n"
            "hostIP: 127.0.0.1\n"
            "podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}\n"
            "startTime: {{ Now | Quote }}\n"
        )
        pending = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
        probe = ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")
        return self.add("never-ready", namespace, [*match, pending], template, event=probe)

    def crash_loop(self, namespace: str, match: list[dict], restarts: int = 3, exit_code: int = 1) -> str:
        """The main container exits `exit_code` at every start: CrashLoopBackOff after `restarts` restarts."""
        template = (
            _conditions(False) + "containerStatuses:\n"
            "{{ range .spec.containers }}\n"
            "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n  started: false\n"
            f"  restartCount: {restarts}\n"
            "  state:\n    waiting:\n      reason: CrashLoopBackOff\n"
            "      message: back-off 40s restarting failed container={{ .name }} pod={{ $.metadata.name }}\n"
            "  lastState:\n    terminated:\n"
            f"      exitCode: {exit_code}\n      reason: Error\n"
            "      startedAt: {{ Now | Quote }}\n      finishedAt: {{ Now | Quote }}\n"
            "{{ end }}\n"
            "phase: Running\n"
            "hostIP: 127.0.0.1\n"
            "startTime: {{ Now | Quote }}\n"
        )
        pending = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
        backoff = ("Warning", "BackOff", "Back-off restarting failed container")
        return self.add("crash-loop", namespace, [*match, pending], template, event=backoff)

    def image_pull(
        self, namespace: str, image: str, message: str, reason: str = "ErrImagePull", clears_after: float | None = None
    ) -> str:
        """Containers of `image` cannot be pulled: the kubelet's `reason` with the registry's `message`; with
        `clears_after` seconds the pull then goes through (registry 429s that stop) and the pod gets ready."""
        template = (
            _conditions(False) + "containerStatuses:\n"
            "{{ range .spec.containers }}\n"
            "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n  started: false\n"
            "  restartCount: 0\n"
            f"  state:\n    waiting:\n      reason: {reason}\n      message: {json.dumps(message)}\n"
            "{{ end }}\n"
            "phase: Pending\n"
            "hostIP: 127.0.0.1\n"
        )
        match = [
            {"key": ".spec.containers.[].image", "operator": "In", "values": [image]},
            {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
        ]
        if clears_after is not None:  # else the stage keeps matching (the same status again: kwok patches nothing),
            # so kwok's own pod-ready (weight 0) never gets the pod; here the pull stage below must get it
            match.append({"key": ".status.containerStatuses.[].state.waiting.reason", "operator": "NotIn",
                          "values": [reason]})  # fmt: skip
        failed = ("Warning", "Failed", f'Failed to pull image "{image}": {message}')
        name = self.add("image-pull", namespace, match, template, event=failed)
        if clears_after is not None:
            pulled = [
                {"key": ".spec.containers.[].image", "operator": "In", "values": [image]},
                {"key": ".status.containerStatuses.[].state.waiting.reason", "operator": "In", "values": [reason]},
            ]
            ready = (
                _conditions(True) + "containerStatuses:\n"
                "{{ range .spec.containers }}\n"
                "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: true\n  started: true\n"
                "  restartCount: 0\n  state:\n    running:\n      startedAt: {{ Now | Quote }}\n"
                "{{ end }}\n"
                "phase: Running\n"
                "hostIP: 127.0.0.1\n"
                "startTime: {{ Now | Quote }}\n"
            )
            self.add("image-pulled", namespace, pulled, ready, delay_ms=int(clears_after * 1000))
        return name

    def exits(self, namespace: str, match: list[dict], exit_code: int, after_ms: int = 0, name: str = "exits") -> str:
        """A running container of a pod that does not restart (a Job's, a helper pod's) ends with `exit_code`."""
        phase = "Succeeded" if exit_code == 0 else "Failed"
        reason = "Completed" if exit_code == 0 else "Error"
        template = (
            "containerStatuses:\n"
            "{{ range .spec.containers }}\n"
            "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n  started: false\n"
            "  restartCount: 0\n"
            f"  state:\n    terminated:\n      exitCode: {exit_code}\n      reason: {reason}\n"
            "      startedAt: {{ Now | Quote }}\n      finishedAt: {{ Now | Quote }}\n"
            "{{ end }}\n"
            f"phase: {phase}\n"
        )
        match = [*match, {"key": ".status.phase", "operator": "In", "values": ["Running"]}]
        return self.add(name, namespace, match, template, delay_ms=after_ms)

    def job_fails(self, namespace: str, job: str, exit_code: int = 1) -> str:
        return self.exits(namespace, [self.select("job-name", job)], exit_code, name=f"job-{job}-fails")

    def job_takes(self, namespace: str, job: str, seconds: float) -> str:
        return self.exits(namespace, [self.select("job-name", job)], 0, int(seconds * 1000), name=f"job-{job}-takes")

    def logs(self, namespace: str, container: str, path: str, previous: str | None = None) -> str:
        """What `kubectl logs` returns for `container` of every pod in `namespace`: the file at `path`, in the CRI
        log format (`cri_log`; `previous`: the file for --previous)."""
        name = f"sim-{namespace}-{container}"[:253]
        log: dict[str, Any] = {"containers": [container], "logsFile": path, "follow": False}
        if previous:
            log["previousLogsFile"] = previous
        self.api.create(
            "/apis/kwok.x-k8s.io/v1alpha1/clusterlogs",
            {
                "apiVersion": STAGE_API,
                "kind": "ClusterLogs",
                "metadata": {"name": name},
                "spec": {"selector": {"matchNamespaces": [namespace]}, "logs": [log]},
            },
        )
        self.log_names.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            self.api.delete(f"/apis/kwok.x-k8s.io/v1alpha1/stages/{q(name)}")
        for name in self.log_names:
            self.api.delete(f"/apis/kwok.x-k8s.io/v1alpha1/clusterlogs/{q(name)}")
        self.names, self.log_names = [], []


class ExportSequence(Loop):
    """What AIPerf writes, run after run: before the export fetch of each new benchmark Job `job` in `namespace`,
    the file kwok serves as the fetch pod's log becomes the next export of `exports` (a benchmark run on the same
    deployment measures slightly different numbers each time)."""

    interval = 0.05

    def __init__(self, api: Api, namespace: str, job: str, path: str, exports: list[str]):
        super().__init__(api)
        self.namespace, self.job, self.path, self.exports = namespace, job, path, exports
        self.seen: list[str] = []

    def step(self) -> None:
        job = self.api.get(f"/apis/batch/v1/namespaces/{q(self.namespace)}/jobs/{q(self.job)}")
        if job is None or job["metadata"]["uid"] in self.seen:
            return
        text = self.exports[min(len(self.seen), len(self.exports) - 1)]
        with open(self.path, "w") as f:
            f.write(cri_log(text + "\n"))
        self.seen.append(job["metadata"]["uid"])


def run_to_completion_stage() -> dict:
    """A container of a pod that is not restarted (restartPolicy Never/OnFailure: Jobs, helper pods) ends with
    exit code 0 once running: the session-wide default, as kwok's own pod-complete does for Job pods only."""
    return {
        "apiVersion": STAGE_API,
        "kind": "Stage",
        "metadata": {"name": "sim-run-to-completion"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                    {"key": ".spec.restartPolicy", "operator": "In", "values": ["Never", "OnFailure"]},
                ]
            },
            "next": {
                "statusTemplate": (
                    "containerStatuses:\n"
                    "{{ range .spec.containers }}\n"
                    "- name: {{ .name | Quote }}\n  image: {{ .image | Quote }}\n  ready: false\n"
                    "  started: false\n  restartCount: 0\n"
                    "  state:\n    terminated:\n      exitCode: 0\n      reason: Completed\n"
                    "      startedAt: {{ Now | Quote }}\n      finishedAt: {{ Now | Quote }}\n"
                    "{{ end }}\n"
                    "phase: Succeeded\n"
                )
            },
        },
    }


# --- the DGD controller stand-in -----------------------------------------------------------------------------------


@dataclass
class OperatorScript:
    """How the stand-in's passes go for one namespace: `terminal` = (reason, message) fails the DGD for good (no
    further pass), `errors` = (start, end, message) windows, seconds after the first pass, in which each pass
    fails and is retried; `observed_generation` off models an operator that never writes it; `delay` is the
    requeue period; `version` is stamped as the operator's origin-version annotation."""

    terminal: tuple[str, str] | None = None
    errors: list[tuple[float, float, str]] = field(default_factory=list)
    observed_generation: bool = True
    delay: float = 0.3
    version: str = "1.4.0"


ORIGIN_VERSION = "nvidia.com/dynamo-operator-origin-version"


def _dgd_path(namespace: str, version: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{DGD_GROUP}/{version}/namespaces/{q(namespace)}/{DGD_PLURAL}"
    return path + (f"/{q(name)}" if name else "") + (f"/{sub}" if sub else "")


def component_name(dgd: str, component: str) -> str:
    """deploy/operator/internal/dynamo/graph.go GetDCDResourceName: `<dgd>-<lowercased component>`, no dots."""
    return f"{dgd}-{component.lower()}".replace(".", "-")


def components(dgd: dict) -> list[tuple[str, dict, str]]:
    """(name, spec, component type) per component: v1alpha1 `spec.services` or v1beta1 `spec.components`."""
    spec = dgd.get("spec") or {}
    if isinstance(spec.get("services"), dict):
        return [(n, s or {}, str((s or {}).get("componentType", ""))) for n, s in spec["services"].items()]
    return [
        (str(c.get("name")), c, str(c.get("type", ""))) for c in spec.get("components") or [] if isinstance(c, dict)
    ]


def pod_template(dgd: dict, name: str, svc: dict, ctype: str) -> dict:
    """The pod template the operator renders for one component (the parts the gpu stage depends on)."""
    spec = dgd.get("spec") or {}
    dgd_name = dgd["metadata"]["name"]
    if "podTemplate" in svc:  # v1beta1
        pod_spec = copy.deepcopy((svc.get("podTemplate") or {}).get("spec") or {})
        containers = pod_spec.setdefault("containers", [{"name": "main"}])
        main = next((c for c in containers if c.get("name") == "main"), containers[0])
    else:  # v1alpha1
        extra = copy.deepcopy(svc.get("extraPodSpec") or {})
        main = dict(extra.pop("mainContainer", {}) or {}, name="main")
        pod_spec = dict(extra, containers=[main])
        res = svc.get("resources") or {}
        converted: dict[str, dict] = {}
        for part in ("requests", "limits"):
            vals = {
                (GPU if k == "gpu" else k): str(v)
                for k, v in (res.get(part) or {}).items()
                if k in ("cpu", "memory", "gpu")
            }
            if vals:
                converted[part] = vals
        gpu = (converted.get("requests") or {}).get(GPU) or (converted.get("limits") or {}).get(GPU)
        if gpu:  # an extended resource: the limit is required and the request equals it
            converted.setdefault("limits", {})[GPU] = gpu
            converted.get("requests", {}).pop(GPU, None)
        if converted:
            main["resources"] = {k: v for k, v in converted.items() if v}
        env = list(spec.get("envs") or []) + list(svc.get("envs") or []) + list(main.get("env") or [])
        if env:
            main["env"] = env
        if svc.get("envFromSecret"):
            main["envFrom"] = list(main.get("envFrom") or []) + [{"secretRef": {"name": svc["envFromSecret"]}}]
        claims = {p.get("name") for p in spec.get("pvcs") or [] if isinstance(p, dict)}
        for vm in svc.get("volumeMounts") or []:
            if vm.get("name") in claims:
                pod_spec.setdefault("volumes", []).append(
                    {"name": vm["name"], "persistentVolumeClaim": {"claimName": vm["name"]}}
                )
                main.setdefault("volumeMounts", []).append(
                    {"name": vm["name"], "mountPath": vm.get("mountPoint") or f"/{vm['name']}"}
                )
    if not main.get("ports"):
        main["ports"] = (
            [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
            if ctype == "frontend"
            else [{"name": "system", "containerPort": 9090, "protocol": "TCP"}]
        )
    pod_spec["restartPolicy"] = "Always"
    pod_spec.setdefault("terminationGracePeriodSeconds", 60)
    labels = {
        LABEL_DGD: dgd_name,
        LABEL_COMPONENT: name,
        LABEL_COMPONENT_TYPE: ctype,
    }
    return {"metadata": {"labels": labels}, "spec": pod_spec}


class DgdController(Loop):
    """STAND-IN for the Dynamo operator's DGD controller (see the module docstring for what it does and why)."""

    interval = 0.2

    def __init__(self, api: Api):
        super().__init__(api)
        self.scripts: dict[str, OperatorScript] = {}  # namespace -> script; others get the default
        self.first_pass: dict[str, float] = {}
        self.last_pass: dict[str, float] = {}
        self.passes: list[tuple[float, str, int, str]] = []  # (time, ns/name, generation, state)
        self.done: set[tuple[str, int]] = set()  # (uid, generation) failed for good: no further pass

    def script(self, namespace: str, script: OperatorScript) -> OperatorScript:
        self.scripts[namespace] = script
        return script

    def _version(self, dgd: dict) -> str:
        """The version the DGD was written in (its manager's apiVersion): the CRD converts nothing here, so the
        spec is read in the version whose fields it holds."""
        for entry in (dgd.get("metadata") or {}).get("managedFields") or []:
            if entry.get("subresource") != "status" and str(entry.get("apiVersion", "")).startswith(DGD_GROUP + "/"):
                return str(entry["apiVersion"]).split("/", 1)[1]
        return str(dgd.get("apiVersion", "nvidia.com/v1beta1")).split("/", 1)[1]

    def step(self) -> None:
        for listed in self.api.list(f"/apis/{DGD_GROUP}/v1beta1/{DGD_PLURAL}"):
            try:
                self._one(listed)
            except Exception:  # one DGD's error (its namespace terminating) must not starve the others
                self.errors.append(traceback.format_exc(limit=3))
                del self.errors[:-20]

    def _one(self, listed: dict) -> None:
        meta = listed["metadata"]
        ns, name = meta["namespace"], meta["name"]
        version = self._version(listed)
        dgd = listed if version == "v1beta1" else self.api.get(_dgd_path(ns, version, name))
        if dgd is None:
            return
        if dgd["metadata"].get("deletionTimestamp"):
            self._finalize(dgd, version)
            return
        script = self.scripts.get(ns) or OperatorScript()
        key = f"{ns}/{name}"
        now = time.monotonic()
        if now - self.last_pass.get(key, -1e9) < script.delay:
            return
        if (meta["uid"], int(dgd["metadata"].get("generation", 1))) in self.done:
            return
        self.last_pass[key] = now
        self.first_pass.setdefault(key, now)
        self._pass(dgd, version, script, now - self.first_pass[key])

    def _pass(self, dgd: dict, version: str, script: OperatorScript, elapsed: float) -> None:
        meta = dgd["metadata"]
        ns, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
        window = next((w for w in script.errors if w[0] <= elapsed < w[1]), None)
        write_observed = script.observed_generation
        if script.terminal is not None:
            state, (reason, message) = "failed", script.terminal
            self.done.add((meta["uid"], generation))
            write_observed = False
        elif window is not None:
            state, reason, message = "failed", REASON_RECONCILE_FAILED, window[2]
            write_observed = False
        else:
            self._ensure_meta(dgd, version, script)
            state, reason, message = self._reconcile_children(dgd)
        status = {
            "state": state,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if state == "successful" else "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now_iso(),
                    "observedGeneration": generation,
                }
            ],
        }
        if write_observed:
            status["observedGeneration"] = generation
        self.api.merge(_dgd_path(ns, version, name, "status"), {"status": status}, missing_ok=True)
        self.passes.append((time.monotonic(), f"{ns}/{name}", generation, state))

    def _ensure_meta(self, dgd: dict, version: str, script: OperatorScript) -> None:
        meta = dgd["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        annotations = meta.get("annotations") or {}
        patch: dict[str, Any] = {}
        if FINALIZER not in finalizers:
            patch["finalizers"] = [*finalizers, FINALIZER]
        if ORIGIN_VERSION not in annotations:
            patch["annotations"] = {ORIGIN_VERSION: script.version}
        if patch:
            self.api.merge(_dgd_path(meta["namespace"], version, meta["name"]), {"metadata": patch}, missing_ok=True)

    def _owner(self, dgd: dict) -> dict:
        return {
            "apiVersion": dgd["apiVersion"],
            "kind": "DynamoGraphDeployment",
            "name": dgd["metadata"]["name"],
            "uid": dgd["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _reconcile_children(self, dgd: dict) -> tuple[str, str, str]:
        meta = dgd["metadata"]
        ns, dgd_name = meta["namespace"], meta["name"]
        not_ready: list[str] = []
        for comp, svc, ctype in components(dgd):
            res_name = component_name(dgd_name, comp)
            template = pod_template(dgd, comp, svc, ctype)
            replicas = int(svc.get("replicas", 1) if svc.get("replicas") is not None else 1)
            selector = {LABEL_DGD: dgd_name, LABEL_COMPONENT: comp}
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": res_name,
                    "namespace": ns,
                    "labels": {LABEL_DGD: dgd_name, LABEL_COMPONENT: comp},
                    "ownerReferences": [self._owner(dgd)],
                },
                "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
            }
            path = f"/apis/apps/v1/namespaces/{q(ns)}/deployments"
            live = self.api.get(f"{path}/{q(res_name)}")
            if live is None:
                self.api.create(path, deployment, exist_ok=True)
                live = deployment
            elif live["spec"].get("replicas") != replicas or json.dumps(
                live["spec"]["template"]["spec"].get("containers", [{}])[0].get("args"), sort_keys=True
            ) != json.dumps(template["spec"]["containers"][0].get("args"), sort_keys=True):
                self.api.merge(f"{path}/{q(res_name)}", {"spec": {"replicas": replicas, "template": template}})
                live = self.api.get(f"{path}/{q(res_name)}") or live
            self._ensure_service(dgd, res_name, comp, ctype)
            st = live.get("status") or {}
            fresh = st.get("observedGeneration", 0) >= (live.get("metadata") or {}).get("generation", 1)
            ready = int(st.get("readyReplicas") or 0)
            updated = int(st.get("updatedReplicas") or 0)
            if not (fresh and ready >= replicas and updated >= replicas and int(st.get("replicas") or 0) == replicas):
                not_ready.append(f"{res_name}: {ready}/{replicas} ready")
        if not not_ready:
            return "successful", REASON_READY, "All resources are ready"
        return "pending", REASON_NOT_READY, f"Resources not ready: {'; '.join(sorted(not_ready))}"

    def _ensure_service(self, dgd: dict, res_name: str, comp: str, ctype: str) -> None:
        ns = dgd["metadata"]["namespace"]
        path = f"/api/v1/namespaces/{q(ns)}/services"
        if self.api.get(f"{path}/{q(res_name)}") is not None:
            return
        port = (
            {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
            if ctype == "frontend"
            else {"name": "system", "port": 9090, "targetPort": "system", "protocol": "TCP"}
        )
        self.api.create(
            path,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": res_name,
                    "namespace": ns,
                    "labels": {LABEL_DGD: dgd["metadata"]["name"]},
                    "ownerReferences": [self._owner(dgd)],
                },
                "spec": {
                    "selector": {LABEL_DGD: dgd["metadata"]["name"], LABEL_COMPONENT: comp},
                    "ports": [port],
                    "type": "ClusterIP",
                },
            },
            exist_ok=True,
        )

    def _finalize(self, dgd: dict, version: str) -> None:
        """The finalizer: the children go with the DGD (the garbage collector deletes them by their owner
        reference, as it does the operator's); the finalizer is removed."""
        meta = dgd["metadata"]
        fins = list(meta.get("finalizers") or [])
        if FINALIZER in fins:
            fins.remove(FINALIZER)
            self.api.merge(
                _dgd_path(meta["namespace"], version, meta["name"]),
                {"metadata": {"finalizers": fins or None, "resourceVersion": meta["resourceVersion"]}},
                missing_ok=True,
            )


# --- the autoscaler stand-in ---------------------------------------------------------------------------------------


@dataclass
class NodeGroup:
    """A node group the autoscaler grows: `count` nodes made by `make_node(index)`, `delay` seconds after the
    scale-up was triggered (a GPU node takes 5-10 min to join a real cluster)."""

    name: str
    make_node: Callable[[int], dict]
    delay: float
    count: int = 1
    max_size: int = 4


class Autoscaler(Loop):
    """STAND-IN for cluster-autoscaler (see the module docstring): per node group, one scale-up when pods of the
    watched namespaces are unschedulable, one TriggeredScaleUp event per such pod, the nodes after `delay`."""

    interval = 0.3

    def __init__(self, api: Api, namespaces: list[str], groups: list[NodeGroup]):
        super().__init__(api)
        self.namespaces = namespaces
        self.groups = groups
        self.size = {g.name: 0 for g in groups}
        self.scale_ups: list[tuple[float, str, list[str]]] = []  # (time, group, pods)
        self._pending_join: list[tuple[float, NodeGroup, int]] = []

    def _unschedulable(self) -> list[dict]:
        out = []
        for ns in self.namespaces:
            for pod in self.api.list(f"/api/v1/namespaces/{q(ns)}/pods"):
                if pod["metadata"].get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
                    continue
                cond = next(
                    (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                    None,
                )
                if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                    out.append(pod)
        return out

    def step(self) -> None:
        now = time.monotonic()
        for at, group, index in list(self._pending_join):
            if now >= at:
                self.api.create("/api/v1/nodes", group.make_node(index), exist_ok=True)
                self._pending_join.remove((at, group, index))
        if self._pending_join:
            return  # a scale-up in flight: the pods wait for its nodes, no new scale-up and no new event
        pods = self._unschedulable()
        if not pods:
            return
        group = next((g for g in self.groups if self.size[g.name] < min(g.count, g.max_size)), None)
        if group is None:
            return
        before = self.size[group.name]
        after = min(group.count, group.max_size)
        info = f"[{{{group.name} {before}->{after} (max: {group.max_size})}}]"
        for pod in pods:
            self.api.event(
                pod["metadata"]["namespace"], pod, "TriggeredScaleUp", f"pod triggered scale-up: {info}",
                source="cluster-autoscaler",
            )  # fmt: skip
        self.scale_ups.append((now, group.name, [p["metadata"]["name"] for p in pods]))
        for index in range(before, after):
            self._pending_join.append((now + group.delay, group, index))
        self.size[group.name] = after


# --- the volume provisioner stand-in -------------------------------------------------------------------------------


class Provisioner(Loop):
    """STAND-IN for a dynamic provisioner (see the module docstring): a PersistentVolume per pending claim of a
    class whose provisioner is in `serves`; the real PV controller binds the two."""

    interval = 0.3

    def __init__(self, api: Api, serves: tuple[str, ...] = ("nfs.csi.k8s.io", "rancher.io/local-path")):
        super().__init__(api)
        self.serves = serves
        self.made: set[str] = set()

    def step(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.api.list("/apis/storage.k8s.io/v1/storageclasses")}
        default = next(
            (
                n
                for n, c in classes.items()
                if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
            ),
            None,
        )
        for pvc in self.api.list("/api/v1/persistentvolumeclaims"):
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            if (
                meta["uid"] in self.made
                or (pvc.get("status") or {}).get("phase") != "Pending"
                or spec.get("volumeName")
            ):
                continue
            cls = classes.get(spec.get("storageClassName") or default or "")
            if cls is None or cls.get("provisioner") not in self.serves:
                continue
            annotations = meta.get("annotations") or {}
            if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not annotations.get(
                "volume.kubernetes.io/selected-node"
            ):
                continue
            size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            self.api.create(
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {
                        "name": f"pvc-{meta['uid']}",
                        "annotations": {"pv.kubernetes.io/provisioned-by": cls["provisioner"]},
                    },
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": cls["metadata"]["name"],
                        "claimRef": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "namespace": meta["namespace"],
                            "name": meta["name"],
                            "uid": meta["uid"],
                        },
                        "hostPath": {"path": f"/tmp/recipe-harness-sim/{meta['uid']}"},
                    },
                },
                exist_ok=True,
            )
            self.made.add(meta["uid"])
