"""Fixtures for the gpu stage tests: one real control plane per test session (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok, built by `recipe-harness cluster setup`: harness/run/cluster/),
the release's CRDs installed, kwok GPU nodes, a namespace per test, and the simulations of tests/k8s/simulations.py
for what no real component offers here (the Dynamo operator, container runtimes, a cluster autoscaler, a volume
provisioner). How to use them: /work/scratch/k8s-fixtures.md, and the docstrings below.

Without the binaries every test that needs the cluster skips with the command that builds them; under
RECIPE_HARNESS_STRICT naming `apiserver` (CI) it fails instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.recipe.discovery import discover
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import to_plain
from harness.run.cluster import build, crds
from harness.run.cluster.control_plane import (
    ClusterError,
    ClusterOptions,
    ClusterState,
    ControlPlane,
    find_running,
)
from harness.run.cluster.nodes import NodePool, node_manifest
from harness.run.k8s.client import Kube, find_config
from harness.run.k8s.portforward import StaticURL
from harness.run.k8s.run import GpuRun
from harness.run.k8s.settings import DeploySettings
from harness.run.stage import StepFailed
from harness.run.strict import STRICT_ENV, strict_from_env

from .simulations import (
    Api,
    Autoscaler,
    DgdController,
    NodeGroup,
    OperatorScript,
    Provisioner,
    RuntimeStages,
    cri_log,
    q,
    run_to_completion_stage,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s"
RECIPES = FIXTURES / "recipes"
EXPORT_FIXTURE = FIXTURES / "profile_export_aiperf.json"
EXPORT = json.loads(EXPORT_FIXTURE.read_text())
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten0123456789"
SERVED = "qwen3-0.6b"
AGG = "tiny/vllm/agg"
SETUP = ["preflight", "model-cache", "deploy"]
CLUSTER_ENV = "RECIPE_HARNESS_CLUSTER"  # use this running `recipe-harness cluster up --name` cluster instead
GPU_POOL = NodePool("H200", 2)  # two 8-GPU H200 nodes: the session's GPU nodes
CPU_NODE = "cpu-node-0"
DEFAULT_CLASS = "standard"
# NotFound as containerd reports it through the kubelet (ErrImagePull's message)
NOT_FOUND = (
    'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to resolve reference '
    '"{image}": {image}: not found'
)
TOO_MANY = (
    'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to copy: httpReadSeeker: '
    "failed open: unexpected status code https://nvcr.io/v2/...: 429 Too Many Requests"
)


def unavailable(reason: str) -> None:
    """Skip with `reason`, or fail when RECIPE_HARNESS_STRICT names the apiserver tier (CI builds the binaries)."""
    try:
        strict = "apiserver" in strict_from_env()
    except ValueError:
        strict = True
    if strict:
        pytest.fail(f"{STRICT_ENV}: the gpu stage tests need the control plane: {reason}", pytrace=False)
    pytest.skip(reason)


def cpu_node(name: str = CPU_NODE, cpu: str = "16", memory: str = "64Gi", labels: dict | None = None) -> dict:
    """A kwok node without GPUs."""
    resources = {"cpu": cpu, "memory": memory, "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", **(labels or {})},
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def gpu_node(name: str, gpu: str = "H200", gpus: int | None = None) -> dict:
    """A kwok GPU node as harness/run/cluster/nodes.py makes them (capacity, GPU Feature Discovery labels);
    `gpus` overrides the GPU count."""
    node = node_manifest(NodePool(gpu, 1), name)
    if gpus is not None:
        for part in ("capacity", "allocatable"):
            node["status"][part]["nvidia.com/gpu"] = str(gpus)
        node["metadata"]["labels"]["nvidia.com/gpu.count"] = str(gpus)
    return node


def storage_class(name: str, default: bool, provisioner: str = "nfs.csi.k8s.io", binding: str = "Immediate") -> dict:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": binding,
    }


def secret_manifest(namespace: str, name: str, data: dict[str, str | bytes], type_: str = "Opaque") -> dict:
    enc = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": enc,
    }


@dataclass(frozen=True)
class Request:
    """One request to the API server as its audit log records it."""

    verb: str  # create | patch | update | delete | get | list | watch
    resource: str  # plural, e.g. dynamographdeployments
    name: str
    namespace: str
    uri: str
    code: int
    user_agent: str
    at: str  # requestReceivedTimestamp (RFC 3339, microseconds)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.uri).query).items()}

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def by_harness(self) -> bool:
        """Sent by the kubernetes Python client (the harness), not by a simulation (stdlib http.client)."""
        return self.user_agent.startswith("OpenAPI-Generator")

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}/{self.name}" + (" (dry run)" if self.dry_run else "")


def read_audit(path: Path, since: str = "") -> list[Request]:
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        at = str(ev.get("requestReceivedTimestamp") or "")
        if at < since or ev.get("stage") != "ResponseComplete":
            continue
        ref = ev.get("objectRef") or {}
        out.append(
            Request(
                verb=str(ev.get("verb") or ""),
                resource=str(ref.get("resource") or ""),
                name=str(ref.get("name") or ""),
                namespace=str(ref.get("namespace") or ""),
                uri=str(ev.get("requestURI") or ""),
                code=int((ev.get("responseStatus") or {}).get("code") or 0),
                user_agent=str(ev.get("userAgent") or ""),
                at=at,
            )
        )
    return out


@dataclass
class ControlPlaneSession:
    """The session's control plane: where it is, an admin client, and the session-wide simulations."""

    state: ClusterState
    api: Api
    operator: DgdController
    provisioner: Provisioner
    plane: ControlPlane | None = None  # None: a running cluster was reused (RECIPE_HARNESS_CLUSTER)
    started_in: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    def kube(self, timeout: float = 10.0) -> Kube:
        """The harness's own client (kubernetes Python client) for the admin kubeconfig."""
        source = find_config(str(self.kubeconfig))
        assert not isinstance(source, str), source
        return Kube.connect(source, timeout)


def _baseline(api: Api) -> None:
    """What every test starts from: the GPU pool, a CPU node, one default RWX class, the user's token secret in
    `default`, and the session-wide run-to-completion stage."""
    for name in GPU_POOL.node_names():
        api.create("/api/v1/nodes", gpu_node(name, GPU_POOL.gpu), exist_ok=True)
    api.create("/api/v1/nodes", cpu_node(), exist_ok=True)
    api.create("/apis/storage.k8s.io/v1/storageclasses", storage_class(DEFAULT_CLASS, True), exist_ok=True)
    api.create(
        "/api/v1/namespaces/default/secrets",
        secret_manifest("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN}),
        exist_ok=True,
    )
    api.create("/apis/kwok.x-k8s.io/v1alpha1/stages", run_to_completion_stage(), exist_ok=True)


DGD_CRD = "dynamographdeployments.nvidia.com"


def store_dgd_as(api: Api, version: str, probe: dict | None = None) -> None:
    """Make `version` the DGD CRD's storage version. No conversion webhook runs here (harness/run/cluster/crds.py
    sets the strategy to None), so the API server relabels an object to the storage version and prunes what that
    version's schema lacks (apiextensions-apiserver customresource_handler.go, unstructuredSchemaCoercer): a
    v1alpha1 `spec.services` stored as v1beta1 would vanish. The tests store each recipe's DGD in the version it
    is written in. `probe` (a DGD of that version) is dry-run created until the API server keeps its spec."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{DGD_CRD}"
    crd = api.get(path)
    if crd is None:
        return  # the test removed it (the harness must say so)
    if any(v["storage"] != (v["name"] == version) for v in crd["spec"]["versions"]):
        for v in crd["spec"]["versions"]:
            v["storage"] = v["name"] == version
        api.put(path, crd)
    if probe is None:
        return
    body = json.loads(json.dumps(probe))
    body["metadata"] = {"name": "storage-probe", "namespace": "default"}
    # The field that holds the components in each version: kept, the storage version is `version`.
    marks = {"services", "components"} & set(body.get("spec") or {})

    def kept() -> bool:
        resp = api.client.request(
            "POST", f"/apis/nvidia.com/{version}/namespaces/default/dynamographdeployments?dryRun=All", body
        )
        if not resp.ok:  # the probe itself is refused (not the storage's doing): give the switch a second
            time.sleep(1.0)
            return True
        return marks <= set(resp.body.get("spec") or {})

    wait_for(kept, 30, f"the API server storing DGDs as {version}")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlaneSession]:
    """One real control plane for the session (per xdist worker): started here and stopped at the end (on Ctrl-C
    and SIGTERM too), or a running `recipe-harness cluster up` one named by RECIPE_HARNESS_CLUSTER."""
    started = time.monotonic()
    plane = None
    name = os.environ.get(CLUSTER_ENV)
    if name:
        state = find_running(name)
        if state is None:
            unavailable(f"{CLUSTER_ENV}={name}: no such cluster is running (`recipe-harness cluster status`)")
    else:
        binaries = build.find_binaries()
        if binaries is None:
            unavailable(build.missing_reason())
        assert binaries is not None
        missing = [n for n in build.OPTIONAL if n not in binaries.paths]
        if missing:
            unavailable(f"the gpu stage tests need {', '.join(missing)} besides etcd and kube-apiserver "
                        f"({binaries.source}): run `{build.SETUP_COMMAND}`")  # fmt: skip
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        plane = ControlPlane(binaries, ClusterOptions(name=f"pytest-k8s-{os.getpid()}{worker}"))
        try:
            state = plane.start()
        except ClusterError as exc:
            unavailable(f"the control plane did not start: {exc}")
    assert state is not None
    if not state.kwok_crds:
        if plane is not None:
            plane.stop()
        unavailable("kwok runs without its Stage CRD (no kwok-crds.yaml beside it, nor its module in the build)")
    api = Api(state.client())
    crds.install(state.client())
    store_dgd_as(api, "v1alpha1")  # the tiny recipes' version (make_run switches per recipe)
    _baseline(api)
    operator = DgdController(api).start()
    provisioner = Provisioner(api).start()
    session = ControlPlaneSession(state, api, operator, provisioner, plane, time.monotonic() - started)
    try:
        yield session
    finally:
        operator.stop()
        provisioner.stop()
        if plane is not None:
            plane.stop()


class K8s:
    """One test's view of the session's cluster: namespaces it creates (deleted at its end), kwok stages and
    logs, operator scripts, node and storage-class changes (undone at its end), and reads."""

    def __init__(self, session: ControlPlaneSession, test_name: str, tmp_path: Path):
        self.session = session
        self.api = session.api
        self.operator = session.operator
        self.runtime = RuntimeStages(self.api)
        self.tmp_path = tmp_path
        self.slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:30].strip("-")
        self.namespaces: list[str] = []
        self.autoscalers: list[Autoscaler] = []
        self._node_undo: list[Callable[[], None]] = []
        self._class_undo: list[Callable[[], None]] = []
        self._crd_undo: list[Callable[[], None]] = []
        self._kube: Kube | None = None
        self._fixed: list[str] = []
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"

    @property
    def kubeconfig(self) -> Path:
        return self.session.kubeconfig

    @property
    def kube(self) -> Kube:
        """The harness's client for the admin kubeconfig (one per test)."""
        if self._kube is None:
            self._kube = self.session.kube()
        return self._kube

    # --- namespaces --------------------------------------------------------------------------------------------

    def namespace(self, name: str | None = None, create: bool = True) -> str:
        """A namespace of this test: `name`, or a fresh `t-<test>-<hex>`; created unless `create=False` (then only
        deleted at the end: a namespace the harness creates, e.g. its default `rh-<model>`)."""
        ns = name or f"t-{self.slug}-{uuid.uuid4().hex[:5]}"
        if name:
            self._fixed.append(ns)  # a later test may use the name again: its deletion is waited for
        if create:
            self.api.create(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, exist_ok=True
            )
            wait_for(
                lambda: self.api.get(f"/api/v1/namespaces/{q(ns)}/serviceaccounts/default"),
                30,
                f"the default ServiceAccount of {ns} (the controller-manager's service-account controller)",
            )
        if ns not in self.namespaces:
            self.namespaces.append(ns)
        return ns

    def secret(self, namespace: str, name: str, data: dict[str, str | bytes], type_: str = "Opaque") -> None:
        self.api.create(f"/api/v1/namespaces/{q(namespace)}/secrets", secret_manifest(namespace, name, data, type_))

    def operator_script(self, namespace: str, **kw: Any) -> OperatorScript:
        """How the DGD controller stand-in treats DGDs of `namespace` (simulations.OperatorScript)."""
        return self.operator.script(namespace, OperatorScript(**kw))

    # --- nodes, classes, CRDs (cluster-wide: undone at the end) ------------------------------------------------

    def replace_nodes(self, nodes: list[dict]) -> None:
        """The cluster's nodes become `nodes` for this test; the session's return at its end."""
        before = self.api.list("/api/v1/nodes")
        for node in before:
            self.api.delete(f"/api/v1/nodes/{q(node['metadata']['name'])}")
        for node in nodes:
            self.api.create("/api/v1/nodes", node, exist_ok=True)
        self._wait_nodes_ready([n["metadata"]["name"] for n in nodes])

        def undo() -> None:
            for node in self.api.list("/api/v1/nodes"):
                self.api.delete(f"/api/v1/nodes/{q(node['metadata']['name'])}")
            for node in before:
                clean = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        k: node["metadata"][k] for k in ("name", "labels", "annotations") if k in node["metadata"]
                    },
                    "spec": {},
                    "status": {k: node["status"][k] for k in ("capacity", "allocatable")},
                }
                self.api.create("/api/v1/nodes", clean, exist_ok=True)
            self._wait_nodes_ready([n["metadata"]["name"] for n in before])

        self._node_undo.append(undo)

    def add_node(self, node: dict) -> None:
        """One more node for this test (removed at its end)."""
        self.api.create("/api/v1/nodes", node)
        name = node["metadata"]["name"]
        self._node_undo.append(lambda: self.api.delete(f"/api/v1/nodes/{q(name)}"))
        self._wait_nodes_ready([name])

    def _wait_nodes_ready(self, names: list[str]) -> None:
        def ready() -> bool:
            items = {n["metadata"]["name"]: n for n in self.api.list("/api/v1/nodes")}
            return all(
                any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (items.get(n, {}).get("status") or {}).get("conditions") or []
                )
                for n in names
            )

        wait_for(ready, 30, f"nodes {names} Ready (kwok)")

    def replace_storage_classes(self, classes: list[dict]) -> None:
        """The cluster's StorageClasses become `classes` for this test."""
        before = self.api.list("/apis/storage.k8s.io/v1/storageclasses")
        for sc in before:
            self.api.delete(f"/apis/storage.k8s.io/v1/storageclasses/{q(sc['metadata']['name'])}")
        for sc in classes:
            self.api.create("/apis/storage.k8s.io/v1/storageclasses", sc)

        def undo() -> None:
            for sc in self.api.list("/apis/storage.k8s.io/v1/storageclasses"):
                self.api.delete(f"/apis/storage.k8s.io/v1/storageclasses/{q(sc['metadata']['name'])}")
            for sc in before:
                meta = {k: sc["metadata"][k] for k in ("name", "annotations", "labels") if k in sc["metadata"]}
                self.api.create(
                    "/apis/storage.k8s.io/v1/storageclasses",
                    {k: v for k, v in dict(sc, metadata=meta).items() if k != "status"},
                    exist_ok=True,
                )

        self._class_undo.append(undo)

    def remove_crd(self, name: str) -> None:
        """Delete one of the session's CRDs for this test; it is installed again at the end."""
        self.api.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{q(name)}")
        wait_for(
            lambda: self.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{q(name)}") is None,
            60,
            f"CRD {name} deleted",
        )

        def undo() -> None:
            crds.install(self.session.state.client())
            store_dgd_as(self.api, "v1alpha1")

        self._crd_undo.append(undo)

    def serve_only(self, crd: str, versions: list[str]) -> None:
        """The CRD serves only `versions` for this test (an older operator's CRD); all again at its end."""
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{q(crd)}"

        def serve(which: Callable[[str], bool]) -> None:
            obj = self.api.get(path)
            assert obj is not None, f"no CRD {crd}"
            for v in obj["spec"]["versions"]:
                v["served"] = which(v["name"])
            self.api.put(path, obj)

        serve(lambda v: v in versions)
        self._crd_undo.append(lambda: serve(lambda v: True))

    def autoscaler(self, namespaces: list[str], groups: list[NodeGroup]) -> Autoscaler:
        """Start the cluster-autoscaler stand-in for this test (its nodes are removed at the end)."""
        scaler = Autoscaler(self.api, namespaces, groups).start()
        self.autoscalers.append(scaler)
        return scaler

    # --- reads -------------------------------------------------------------------------------------------------

    def get(self, path: str) -> dict | None:
        return self.api.get(path)

    def pods(self, namespace: str) -> list[dict]:
        return self.api.list(f"/api/v1/namespaces/{q(namespace)}/pods")

    def events(self, namespace: str) -> list[dict]:
        return self.api.list(f"/api/v1/namespaces/{q(namespace)}/events")

    def dgd(self, namespace: str, name: str, version: str = "v1alpha1") -> dict | None:
        return self.api.get(f"/apis/nvidia.com/{version}/namespaces/{q(namespace)}/dynamographdeployments/{q(name)}")

    def names(self, namespace: str, plural: str, group_version: str = "v1") -> list[str]:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return sorted(o["metadata"]["name"] for o in self.api.list(f"{base}/namespaces/{q(namespace)}/{plural}"))

    def leftovers(self, namespace: str, settle: float = 20.0) -> list[str]:
        """What a run left in `namespace` once the garbage collector and kwok caught up: every DGD, Deployment,
        ReplicaSet, Job, Pod, Service, ConfigMap and Secret (not the cache PVC, events, the default
        ServiceAccount or the root CA ConfigMap the controller-manager puts in every namespace)."""
        kinds = [
            ("nvidia.com/v1beta1", "dynamographdeployments"),
            ("apps/v1", "deployments"),
            ("apps/v1", "replicasets"),
            ("batch/v1", "jobs"),
            ("v1", "pods"),
            ("v1", "services"),
            ("v1", "configmaps"),
            ("v1", "secrets"),
        ]

        def left() -> list[str]:
            out = []
            for gv, plural in kinds:
                for name in self.names(namespace, plural, gv):
                    if plural == "configmaps" and name == "kube-root-ca.crt":
                        continue
                    out.append(f"{plural}/{name}")
            return out

        deadline = time.monotonic() + settle
        current = left()
        while current and time.monotonic() < deadline:
            time.sleep(0.3)
            current = left()
        return current

    def requests(self, namespace: str | None = None, harness_only: bool = True) -> list[Request]:
        """The API server's audit log since this test began: what the harness (or anyone) asked of it, in order,
        with each request's URI (dry run, field manager, field validation)."""
        return [
            r
            for r in read_audit(self.session.state.audit_log, self.started_at)
            if (namespace is None or r.namespace == namespace) and (r.by_harness or not harness_only)
        ]

    def write(self, name: str, text: str) -> str:
        """A container log of this test, written as a container runtime writes it (CRI format), for
        `k8s.runtime.logs`; returns its absolute path."""
        path = self.tmp_path / "sim" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cri_log(text))
        return str(path)

    # --- end of the test ---------------------------------------------------------------------------------------

    def close(self) -> None:
        errors = []
        for scaler in self.autoscalers:
            scaler.stop()
        for undo in [*reversed(self._crd_undo), *reversed(self._class_undo)]:
            try:
                undo()
            except Exception as exc:  # keep cleaning up
                errors.append(str(exc))
        with contextlib.suppress(Exception):
            self.runtime.cleanup()
        for ns in self.namespaces:
            self.operator.scripts.pop(ns, None)
            self.api.delete(f"/api/v1/namespaces/{q(ns)}")
        for ns in self._fixed:
            try:
                wait_for(lambda ns=ns: self.api.get(f"/api/v1/namespaces/{q(ns)}") is None, 90, f"namespace {ns} gone")
            except AssertionError as exc:
                errors.append(str(exc))
        for undo in reversed(self._node_undo):
            try:
                undo()
            except Exception as exc:
                errors.append(str(exc))
        if self._kube is not None:
            self._kube.close()
        if errors:
            raise AssertionError("cleanup after the test: " + "; ".join(errors))


@pytest.fixture
def k8s(control_plane: ControlPlaneSession, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[K8s]:
    """This test's view of the session's control plane (see K8s); everything it changed is undone at its end."""
    view = K8s(control_plane, request.node.name, tmp_path)
    try:
        yield view
    finally:
        view.close()


@pytest.fixture
def default_secret(k8s):
    """Replace `default/hf-token-secret` for this test: call with the Secret to put there (None: none)."""
    path = "/api/v1/namespaces/default/secrets"

    def put(secret: dict | None) -> None:
        k8s.api.delete(f"{path}/hf-token-secret")
        if secret is not None:
            k8s.api.create(path, secret)

    yield put
    k8s.api.delete(f"{path}/hf-token-secret")
    k8s.api.create(path, secret_manifest("default", "hf-token-secret", {"HF_TOKEN": FAKE_TOKEN}))


@pytest.fixture(scope="session")
def recipes() -> dict[str, Recipe]:
    return {r.id: r for r in discover(RECIPES)}


# Real seconds: every wait is short, and each grace a few seconds, so a timeout costs little.
FAST = dict(
    poll_interval=0.2,
    progress_every=0.0,
    api_timeout=10.0,
    cache_timeout=60.0,
    ready_timeout=60.0,
    model_timeout=5.0,
    perf_timeout=60.0,
    fetch_timeout=30.0,
    unschedulable_grace=4.0,
    image_pull_grace=4.0,
    config_grace=4.0,
    failed_grace=4.0,
    stale_status_grace=2.0,
    teardown_reserve=0.0,
)


@pytest.fixture
def settings(tmp_path: Path) -> DeploySettings:
    """The defaults with real but short waits (FAST) and the report folder in tmp_path."""
    return DeploySettings(report_dir=tmp_path / "report", **FAST)


class _OpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def _send(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": SERVED, "object": "model", "owned_by": "dynamo"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/v1/chat/completions" and body.get("model") == SERVED:
            self._send(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": SERVED,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                },
            )
        else:
            self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def openai_url() -> Iterator[str]:
    """A stand-in for the port-forwarded Dynamo frontend (kwok pods run no process to forward to)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class RecordingSuite:
    """The smoke suite's interface (base URL + served model, one method per check), recording calls."""

    CHECKS = ("models", "chat")
    calls: ClassVar[list[str]] = []

    def __init__(self, base_url: str, model: str, **kw: Any):
        self.base_url, self.model, self.kw = base_url, model, kw

    def check_models(self) -> None:
        with urllib.request.urlopen(f"{self.base_url}/v1/models", timeout=5) as resp:
            ids = [m["id"] for m in json.load(resp)["data"]]
        RecordingSuite.calls.append("models")
        assert self.model in ids, f"{self.model} not in {ids}"

    def check_chat(self) -> None:
        req = urllib.request.Request(
            f"{self.base_url}/v1/chat/completions",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps(
                {"model": self.model, "messages": [{"role": "user", "content": "Capital of France?"}]}
            ).encode(),
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            content = json.load(resp)["choices"][0]["message"]["content"]
        RecordingSuite.calls.append("chat")
        assert content.strip(), "empty completion"


def make_run(
    recipe: Recipe,
    settings: DeploySettings,
    k8s: K8s,
    *,
    url: str = "http://127.0.0.1:9",
    lines: list[str] | None = None,
    **kw: Any,
) -> GpuRun:
    """A GpuRun against the session's cluster through the admin kubeconfig, the frontend at `url`."""
    kw.setdefault("env", {})
    kw.setdefault("access", StaticURL(url))
    doc = recipe.dgd_doc
    if doc is not None:
        dgd = to_plain(doc.data)
        store_dgd_as(k8s.api, str(dgd.get("apiVersion", "")).rpartition("/")[2], dgd)
    return GpuRun(
        recipe,
        settings,
        smoke=RecordingSuite,
        kube=k8s.session.kube(settings.api_timeout),
        progress=(lines.append if lines is not None else (lambda _: None)),
        **kw,
    )


def run_steps(run: GpuRun, steps: list[str]) -> None:
    for step in steps:
        run.run_step(step)


def fail_at(run: GpuRun, step: str, before: list[str] = (), exc: type[BaseException] | None = None) -> str:
    """Run the steps before `step`, expect `step` to raise `exc` (StepFailed), always tear down; the message."""
    try:
        run_steps(run, list(before))
        with pytest.raises(exc or StepFailed) as info:
            run.run_step(step)
    finally:
        run.close()
    return str(info.value)


def export_logs(k8s: K8s, namespace: str, export: dict | None = None) -> str:
    """What the export fetch pod prints (`fetch` container logs, served by kwok): the AIPerf export."""
    path = k8s.write(f"{namespace}-export.json", json.dumps(export or EXPORT, indent=2) + "\n")
    k8s.runtime.logs(namespace, "fetch", path)
    return path
