"""Deploys one recipe to a Kubernetes cluster and watches it: preflight, model cache, apply, readiness, benchmark Job, diagnostics, teardown."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.recipe.model import DEFAULT_ROUTER_MODE, DGD_GROUP, DGD_KIND, Recipe, dig
from harness.run.stage import StageOptions, StageSkip, StepFailed
from harness.recipe.yamlsrc import Document, to_plain
from harness.run.k8s.client import BUILTIN_KINDS, Kube, KubeError, transport_error
from harness.run.k8s.diagnostics import Diagnostics, Redactor
from harness.run.k8s.mocker import MockerModel, image_tag, to_mocker
from harness.run.k8s.portforward import FrontendAccess, PortForwardError, default_access
from harness.run.k8s.readiness import (GPU_RESOURCE, Blocker, dgd_readiness, gpu_capacity, is_unschedulable, job_state, pod_blocker,
                        pod_summary, products_on)

FRONTEND_PORT = 8000
SYSTEM_PORT = 9090  # the workers' metrics/health port the operator sets (DYN_SYSTEM_PORT)
MANAGED_BY = {"app.kubernetes.io/managed-by": "recipe-harness"}
CACHE_MARKER = "recipe-harness.dynamo.nvidia.com/populated-by"
EXPORT_FILE = "profile_export_aiperf.json"
OPERATOR_HINT = ("install the Dynamo operator (the dynamo-platform Helm chart, see the Dynamo Kubernetes install guide) "
                 "or point KUBECONFIG at a cluster that has it")
CRD_HINTS = {
    DGD_GROUP: OPERATOR_HINT,
    "resource.nvidia.com": "install the NVIDIA DRA driver for GPUs (it provides ComputeDomain for multi-node NVLink)",
}
# ConfigMaps first (workers mount them at start), then the ComputeDomain the DGD claims, then the DGD.
APPLY_ORDER = {"ConfigMap": 0, "Secret": 0, "ServiceAccount": 1, "Role": 1, "RoleBinding": 2, "PersistentVolumeClaim": 2,
               "ComputeDomain": 3, DGD_KIND: 5}


@dataclass
class DeploySettings:
    """Knobs of one gpu run. Timeouts are seconds; tests shrink them to milliseconds."""

    report_dir: Path
    namespace: str | None = None
    keep: bool = False
    engine: str = "real"  # real | mocker
    perf_mode: str = "job"  # job | local
    kubeconfig: str | None = None
    api_timeout: float = 15.0
    probe_timeout: float = 2.0
    poll_interval: float = 5.0
    progress_every: float = 30.0
    cache_timeout: float = 4 * 3600.0
    ready_timeout: float = 45 * 60.0
    model_timeout: float = 300.0  # frontend up -> served model listed
    perf_timeout: float = 2 * 3600.0
    fetch_timeout: float = 300.0
    unschedulable_grace: float = 120.0  # GPUs of a previous run may still be draining
    crashloop_restarts: int = 2
    hf_secret: str = "hf-token-secret"
    hf_secret_key: str = "HF_TOKEN"
    hf_token_env: str = "HF_TOKEN"
    secret_source_namespace: str = "default"
    dynamo_release: str | None = None
    mocker_speedup: float | None = None
    frontend_url: str | None = None
    log_tail_lines: int = 2000

    @classmethod
    def from_options(cls, options: StageOptions) -> "DeploySettings":
        """The gpu stage's options; timeouts keep their defaults (tests construct the settings directly)."""
        gpu = options.gpu
        return cls(report_dir=Path(options.report_dir), namespace=gpu.namespace, keep=gpu.keep, engine=gpu.engine,
                   perf_mode=gpu.perf_mode, kubeconfig=gpu.kubeconfig)


def fmt_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def recipe_slug(recipe: Recipe) -> str:
    return recipe.id.replace("/", "_")


def new_namespace_name(recipe: Recipe, run_id: str) -> str:
    model = re.sub(r"[^a-z0-9-]+", "-", recipe.model.lower()).strip("-")[:30].strip("-")
    return f"rh-{model}-{run_id}" if model else f"rh-{run_id}"


def gpu_products(recipe: Recipe) -> list[str]:
    hw = recipe.metadata.get("hardware") or {}
    out = [str(hw.get("gpu"))] if isinstance(hw, dict) and hw.get("gpu") else []
    for alt in (hw.get("alternatives") or []) if isinstance(hw, dict) else []:
        if str(alt) not in out:
            out.append(str(alt))
    return out


def _worker_flags(recipe: Recipe) -> dict[str, str]:
    dep = recipe.deployment
    for worker in dep.workers if dep else []:
        if worker.module is not None:
            return {k: t.value for k, t in worker.flags.last().items()}
    return {}


def served_model_name(recipe: Recipe) -> str:
    """What /v1/models lists: the workers' --served-model-name, else the metadata, else the model id."""
    flags = _worker_flags(recipe)
    name = flags.get("--served-model-name") or dig(recipe.metadata, "model", "servedName")
    return str(name or model_id(recipe))


def model_id(recipe: Recipe) -> str:
    flags = _worker_flags(recipe)
    return str(dig(recipe.metadata, "model", "id") or flags.get("--model") or flags.get("--model-path") or "")


def dynamo_release(recipe: Recipe) -> str:
    """The Dynamo release of the recipe (metadata versions.dynamo, else a worker image tag)."""
    release = dig(recipe.metadata, "versions", "dynamo")
    if release:
        return str(release)
    dep = recipe.deployment
    for svc in dep.services if dep else []:
        tag = image_tag(svc.main.image if svc.main else None)
        if tag:
            return tag
    return ""


def plain_docs(docs: list[Document]) -> list[dict]:
    return [to_plain(d.data) for d in docs if isinstance(d.data, dict) and d.kind]


def apply_order(docs: list[dict]) -> list[dict]:
    return sorted(docs, key=lambda d: APPLY_ORDER.get(str(d.get("kind")), 4))


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def referenced_secrets(docs: list[dict]) -> list[str]:
    """Secrets the manifests read (env, envFrom, volumes, image pulls, DGD envFromSecret) and do not define."""
    names: list[str] = []
    for doc in docs:
        for key, value in _walk(doc):
            found = None
            if key == "envFromSecret" and isinstance(value, str):
                found = value
            elif key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found = value.get("name")
            elif key == "secret" and isinstance(value, dict):
                found = value.get("secretName")
            elif key == "imagePullSecrets" and isinstance(value, list):
                names += [str(v.get("name")) for v in value if isinstance(v, dict) and v.get("name") and str(v.get("name")) not in names]
            if isinstance(found, str) and found and found not in names:
                names.append(found)
    defined = {str(dig(d, "metadata", "name")) for d in docs if d.get("kind") == "Secret"}
    return [n for n in names if n not in defined]


def router_mode(recipe: Recipe) -> str:
    """The frontend's routing (`--router-mode`, DYN_ROUTER_MODE); the Dynamo frontend's default otherwise."""
    dep = recipe.deployment
    for fe in dep.frontends if dep else []:
        if fe.main is not None and not fe.router_mode.is_default:
            return fe.router_mode.value
    return DEFAULT_ROUTER_MODE


def local_aiperf_args(options: tuple[tuple[str, str | None], ...], base_url: str, artifact_dir: Path, tokenizer: str | None) -> list[str]:
    """`aiperf profile` with the Job's own options, pointed at the port-forward and a local artifact folder."""
    args = ["profile"]
    for flag, value in options:
        if flag in ("--url", "--artifact-dir", "--ui-type", "--ui") or (flag == "--tokenizer" and tokenizer):
            continue
        args += [flag] if value is None else [flag, value]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    return args + ["--url", base_url, "--artifact-dir", str(artifact_dir), "--ui-type", "none"]


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class PreflightReport:
    """What preflight found; `hardware` is the GPU product the run will be compared on."""

    server: str = ""
    dgd_versions: list[str] = field(default_factory=list)
    hardware: str = ""
    gpus_needed: int = 0
    gpus_allocatable: int = 0
    storage_class: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # name -> present | from-env | copy


class Deployer:
    """One recipe's life on the cluster. Every method is a step the stage calls in order;
    `teardown()` undoes what the run created, whatever happened before."""

    def __init__(self, kube: Kube, recipe: Recipe, settings: DeploySettings, *, progress: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 access: FrontendAccess | None = None, env: dict[str, str] | None = None):
        self.kube = kube
        self.recipe = recipe
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.env = dict(os.environ) if env is None else env
        self._progress = progress or _stderr_progress
        self.access = access
        self.run_id = uuid.uuid4().hex[:6]
        self.namespace = settings.namespace or new_namespace_name(recipe, self.run_id)
        self.owns_namespace = False  # True once this run created the namespace
        self.namespace_ready = False
        self.created: list[tuple[str, str, str]] = []  # (apiVersion, kind, name) in creation order
        self.redactor = Redactor()
        self.redactor.add(self.env.get(settings.hf_token_env))
        self.report = PreflightReport()
        self.base_url: str | None = None
        self.closed = False
        self._unschedulable_since: dict[str, float] = {}
        self._secret_plan: dict[str, str] = {}
        dep = recipe.deployment
        self.dgd_name = dep.name if dep else ""
        self.dgd_api_version = dep.api_version if dep else ""

    # --- plumbing ----------------------------------------------------------------------

    def progress(self, line: str) -> None:
        self._progress(self.redactor.text(f"[gpu {self.recipe.id}] {line}"))

    def fail(self, message: str) -> StepFailed:
        return StepFailed(self.redactor.text(message))

    @property
    def slug(self) -> str:
        return recipe_slug(self.recipe)

    @property
    def diagnostics_dir(self) -> Path:
        return self.settings.report_dir / "diagnostics" / self.slug

    def _deploy_docs(self) -> list[dict]:
        f = self.recipe.deploy
        if f is None or not f.documents:
            raise self.fail(f"{self.recipe.path / 'deploy.yaml'}: missing or empty; nothing to deploy")
        return plain_docs(f.documents)

    def _cache_docs(self) -> list[dict]:
        return [d for f in self.recipe.model_cache_files for d in plain_docs(f.documents)]

    def _perf_docs(self) -> list[dict]:
        f = self.recipe.perf
        return plain_docs(f.documents) if f else []

    # --- preflight ---------------------------------------------------------------------

    def preflight(self) -> PreflightReport:
        """Read-only checks, cheapest first; each gap says what to do."""
        try:
            self.report.server = self.kube.server_version(self.settings.probe_timeout)
        except Exception as exc:  # noqa: BLE001 - any transport error means the same thing here
            raise self.fail(f"Kubernetes API at {self.kube.host} unreachable ({transport_error(exc)}): check the cluster and the KUBECONFIG context") from None
        docs = self._deploy_docs()
        if not any(d.get("kind") == DGD_KIND for d in docs):
            raise self.fail(f"{self.recipe.path / 'deploy.yaml'}: no {DGD_KIND}; nothing to wait for")
        self._check_crds(docs)
        if self.settings.engine != "mocker":
            self._check_gpus()
        else:
            self.report.hardware = "mocker"
        self._check_storage()
        self._check_secrets(docs + self._cache_docs() + self._perf_docs())
        self.progress(f"preflight: API {self.report.server}, {DGD_KIND} served as {', '.join(self.report.dgd_versions)}, "
                      f"GPUs {self.report.gpus_allocatable}/{self.report.gpus_needed} on {self.report.hardware}, "
                      f"storage class {self.report.storage_class or '-'}, namespace {self.namespace}")
        return self.report

    def _check_crds(self, docs: list[dict]) -> None:
        for doc in docs:
            api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
            group, _, version = api_version.rpartition("/")
            if (group, kind) in BUILTIN_KINDS or (self.settings.engine == "mocker" and kind == "ComputeDomain"):
                continue
            hint = CRD_HINTS.get(group, "install the operator that provides it")
            try:
                res = self.kube.resource(api_version, kind)
                crd = self.kube.crd(f"{res.plural}.{group}")
            except KubeError as exc:
                raise self.fail(f"{kind} ({api_version}) is not known to the cluster at {self.kube.host}: {exc}; {hint}") from None
            if crd is None:
                raise self.fail(f"CustomResourceDefinition {res.plural}.{group} is not installed on the cluster at {self.kube.host}: "
                                f"{kind} cannot be created; {hint}")
            served = [str(v.get("name")) for v in dig(crd, "spec", "versions") or [] if v.get("served")]
            if kind == DGD_KIND:
                self.report.dgd_versions = served
            if version not in served:
                raise self.fail(f"deploy.yaml uses {api_version} {kind}, but the cluster serves only {', '.join(served) or 'no version'} of it: "
                                f"upgrade the operator to a release that serves {version}, or use a recipe for the installed API")

    def _check_gpus(self) -> None:
        dep = self.recipe.deployment
        needed = dep.total_gpus if dep else 0
        needed = needed or int(self.recipe.metadata.get("gpus") or 0)
        per_pod = max((w.gpu_limit for w in dep.workers), default=0) if dep else 0
        self.report.gpus_needed = needed
        products = gpu_products(self.recipe)
        if not products:
            raise self.fail(f"{self.recipe.path / 'recipe.yaml'}: hardware.gpu is missing, so no node can be matched")
        try:
            nodes = self.kube.list("v1", "Node")
        except KubeError as exc:
            raise self.fail(f"cannot list nodes: {exc}") from None
        seen = []
        for product in products:
            cap = gpu_capacity(nodes, product)
            seen.append(cap)
            if cap.total >= needed and cap.largest_node >= per_pod:
                self.report.hardware, self.report.gpus_allocatable = product, cap.total
                return
        best = max(seen, key=lambda c: c.total)
        self.report.gpus_allocatable = best.total
        here = products_on(nodes)
        raise StageSkip(self.redactor.text(
            f"needs {needed} {GPU_RESOURCE} ({per_pod} in the largest pod) on {' or '.join(products)} nodes; "
            + "; ".join(c.describe() for c in seen)
            + f". GPU products on this cluster: {', '.join(here) or 'none'}. Run on a cluster with enough {products[0]} GPUs, or use --engine mocker"))

    def _check_storage(self) -> None:
        pvcs = [d for d in self._cache_docs() + self._deploy_docs() if d.get("kind") == "PersistentVolumeClaim"]
        if not pvcs:
            return
        try:
            classes = self.kube.list("storage.k8s.io/v1", "StorageClass")
        except KubeError as exc:
            raise self.fail(f"cannot list storage classes: {exc}") from None
        names = [str(dig(c, "metadata", "name")) for c in classes]
        default = [n for c, n in zip(classes, names)
                   if str((dig(c, "metadata", "annotations") or {}).get("storageclass.kubernetes.io/is-default-class")) == "true"]
        for pvc in pvcs:
            wanted = dig(pvc, "spec", "storageClassName")
            name = dig(pvc, "metadata", "name")
            if wanted:
                if wanted not in names:
                    raise self.fail(f"PVC {name} asks for storage class {wanted!r}, which the cluster does not have "
                                    f"(it has: {', '.join(names) or 'none'}): create it or set storageClassName in model-cache.yaml")
                self.report.storage_class = str(wanted)
            elif not default:
                raise self.fail(f"PVC {name} names no storage class and the cluster has no default one (classes: {', '.join(names) or 'none'}): "
                                "mark one default (storageclass.kubernetes.io/is-default-class=true) or set storageClassName")
            else:
                self.report.storage_class = default[0]

    def _check_secrets(self, docs: list[dict]) -> None:
        ns_exists = self.kube.get("v1", "Namespace", self.namespace) is not None
        for name in referenced_secrets(docs):
            values = self.kube.secret_values(self.namespace, name) if ns_exists else None
            if values is not None:
                plan = "present"
            elif name == self.settings.hf_secret and self.env.get(self.settings.hf_token_env):
                plan, values = "from-env", {}
            else:
                values = self.kube.secret_values(self.settings.secret_source_namespace, name)
                plan = "copy" if values is not None else ""
            for value in (values or {}).values():
                self.redactor.add(value)
            if not plan:
                how = (f"export {self.settings.hf_token_env} on the runner, or create it: kubectl create secret generic {name} "
                       f"--from-literal={self.settings.hf_secret_key}=<your token> -n {self.settings.secret_source_namespace}"
                       if name == self.settings.hf_secret else
                       f"create secret {name} in namespace {self.settings.secret_source_namespace} (it is copied into each run's namespace)")
                raise self.fail(f"secret {name} (used by the recipe) not found in namespace {self.namespace} or "
                                f"{self.settings.secret_source_namespace}: {how}")
            self._secret_plan[name] = plan
        self.report.secrets = dict(self._secret_plan)

    # --- namespace and secrets -----------------------------------------------------------

    def ensure_namespace(self) -> None:
        if self.namespace_ready:
            return
        if self.kube.get("v1", "Namespace", self.namespace) is None:
            labels = dict(MANAGED_BY, **{"recipe-harness/recipe": self.slug[:63].strip("_-.")})
            try:
                self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}}, None)
            except KubeError as exc:
                raise self.fail(f"cannot create namespace {self.namespace}: {exc}") from None
            self.owns_namespace = True
            self.progress(f"namespace {self.namespace} created")
        self.namespace_ready = True
        for name, plan in self._secret_plan.items():
            if plan == "present":
                continue
            if plan == "from-env":
                data = {self.settings.hf_secret_key: self.env.get(self.settings.hf_token_env, "")}
                source = f"${self.settings.hf_token_env}"
            else:
                data = self.kube.secret_values(self.settings.secret_source_namespace, name) or {}
                source = f"namespace {self.settings.secret_source_namespace}"
            secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "labels": dict(MANAGED_BY)},
                      "stringData": data}
            try:
                self.kube.apply(secret, self.namespace, keep_existing=True)
            except KubeError as exc:
                raise self.fail(f"cannot create secret {name}: {exc}") from None
            self.created.append(("v1", "Secret", name))
            self.progress(f"secret {name} created from {source}")

    def _apply(self, doc: dict, *, keep_existing: bool = False, what: str = "") -> str:
        kind, name = str(doc.get("kind")), str(dig(doc, "metadata", "name"))
        try:
            action = self.kube.apply(doc, self.namespace, keep_existing=keep_existing)
        except KubeError as exc:
            raise self.fail(f"{what or kind} {name} rejected by the API server: {exc}") from None
        if action == "created":
            self.created.append((str(doc.get("apiVersion")), kind, name))
        self.progress(f"{kind} {name} {action}")
        return action

    # --- model cache -------------------------------------------------------------------

    def model_cache(self) -> None:
        self.ensure_namespace()
        docs = self._cache_docs()
        pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
        jobs = [d for d in docs if d.get("kind") == "Job"]
        for pvc in pvcs:
            self._apply(pvc, keep_existing=True)  # a PVC spec is immutable; an existing one is the cache
        if self.settings.engine == "mocker":
            self.progress("model cache: download skipped (the mocker loads only the tokenizer)")
            return
        for pvc in pvcs:
            current = self.kube.get("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace) or {}
            marker = (dig(current, "metadata", "annotations") or {}).get(CACHE_MARKER)
            if marker:
                self.progress(f"model cache: PVC {dig(pvc, 'metadata', 'name')} already populated by {marker}; download skipped")
                return
        for job in jobs:
            name = str(dig(job, "metadata", "name"))
            existing = self.kube.get("batch/v1", "Job", name, self.namespace)
            if existing is not None:
                state = job_state(existing)
                if state.phase == "succeeded":
                    self.progress(f"model cache: Job {name} already succeeded; download skipped")
                    self._mark_cache(pvcs, name)
                    continue
                if state.phase == "failed":
                    self.progress(f"model cache: Job {name} failed before ({state.message}); running it again")
                    self._delete_and_wait("batch/v1", "Job", name)
                    existing = None
            if existing is None:
                self._apply(job, what="model download Job")  # dry run, then create
            self._wait_job(name, self.settings.cache_timeout, "model download")
            self._mark_cache(pvcs, name)

    def _mark_cache(self, pvcs: list[dict], job_name: str) -> None:
        for pvc in pvcs:
            try:
                self.kube.annotate("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace, {CACHE_MARKER: job_name})
            except KubeError as exc:  # the marker only saves time on a reused namespace
                self.progress(f"model cache: could not mark the PVC ({exc})")

    def _delete_and_wait(self, api_version: str, kind: str, name: str, timeout: float = 60.0) -> None:
        self.kube.delete(api_version, kind, name, self.namespace)
        start = self.clock()
        while self.kube.get(api_version, kind, name, self.namespace) is not None:
            if self.clock() - start > timeout:
                raise self.fail(f"{kind} {name} was not deleted within {fmt_duration(timeout)}")
            self.sleep(self.settings.poll_interval)

    def _blocker(self, pods: list[dict]) -> Blocker | None:
        now = self.clock()
        for pod in pods:
            name = str(dig(pod, "metadata", "name"))
            if is_unschedulable(pod):
                self._unschedulable_since.setdefault(name, now)
            else:
                self._unschedulable_since.pop(name, None)
            since = self._unschedulable_since.get(name)
            blocker = pod_blocker(pod, crashloop_restarts=self.settings.crashloop_restarts,
                                  unschedulable_for=None if since is None else now - since,
                                  unschedulable_grace=self.settings.unschedulable_grace)
            if blocker:
                return blocker
        return None

    def _blocker_message(self, blocker: Blocker) -> str:
        msg = blocker.message
        if blocker.kind == "crash" and blocker.container:
            tail = self._log_tail(blocker.pod, blocker.container, previous=True)
            if tail:
                msg += "\nlast log lines:\n" + tail
        return msg

    def _log_tail(self, pod: str, container: str, previous: bool = False, lines: int = 20) -> str:
        try:
            return self.kube.pod_log(self.namespace, pod, container, previous=previous, tail_lines=lines).rstrip()
        except KubeError:
            return ""

    def _job_pods(self, name: str) -> list[dict]:
        return self.kube.list("v1", "Pod", self.namespace, f"job-name={name}")

    def _wait_job(self, name: str, timeout: float, what: str) -> dict:
        start = self.clock()
        last_progress = None
        while True:
            job = self.kube.get("batch/v1", "Job", name, self.namespace)
            if job is None:
                raise self.fail(f"{what} Job {name} disappeared from namespace {self.namespace}")
            state = job_state(job)
            elapsed = self.clock() - start
            if state.phase == "succeeded":
                self.progress(f"{what}: Job {name} succeeded after {fmt_duration(elapsed)}")
                return job
            pods = self._job_pods(name)
            if state.phase == "failed":
                tail = ""
                for pod in pods:
                    for c in dig(pod, "spec", "containers") or []:
                        tail = tail or self._log_tail(str(dig(pod, "metadata", "name")), str(c.get("name")))
                raise self.fail(f"{what} Job {name} failed: {state.message or 'no reason given'}" + (f"\nlast log lines:\n{tail}" if tail else ""))
            blocker = self._blocker([p for p in pods if dig(p, "status", "phase") not in ("Succeeded", "Failed")])
            if blocker:
                raise self.fail(f"{what} Job {name}: {self._blocker_message(blocker)}")
            if elapsed >= timeout:
                raise self.fail(f"{what} Job {name} did not finish within {fmt_duration(timeout)} ({state.message}); {pod_summary(pods)}")
            if last_progress is None or self.clock() - last_progress >= self.settings.progress_every:
                last_progress = self.clock()
                line = ""
                for pod in pods:
                    if dig(pod, "status", "phase") == "Running":
                        c = (dig(pod, "spec", "containers") or [{}])[0].get("name", "")
                        line = self._log_tail(str(dig(pod, "metadata", "name")), str(c), lines=1)[-160:]
                        break
                self.progress(f"{what}: Job {name} running {fmt_duration(elapsed)}/{fmt_duration(timeout)} ({state.message})"
                              + (f": {line}" if line else ""))
            self.sleep(self.settings.poll_interval)

    # --- deploy and readiness ----------------------------------------------------------

    def manifests(self) -> list[dict]:
        """deploy.yaml as it will be applied: ordered, and rewritten for the mocker when asked."""
        docs = apply_order(self._deploy_docs())
        if self.settings.engine != "mocker":
            return docs
        release = self.settings.dynamo_release or dynamo_release(self.recipe)
        if not release:
            raise self.fail("--engine mocker needs the Dynamo release (recipe.yaml versions.dynamo or a worker image tag) to pick the mocker image")
        model = MockerModel(model_id(self.recipe), served_model_name(self.recipe), release, self.settings.mocker_speedup)
        assert self.recipe.deployment is not None
        out = []
        for doc in docs:
            if doc.get("kind") == "ComputeDomain":
                continue  # the mocker claims no GPUs, so no NVLink domain either
            out.append(to_mocker(doc, self.recipe.deployment, model) if doc.get("kind") == DGD_KIND else doc)
        return out

    def deploy(self) -> None:
        self.ensure_namespace()
        docs = self.manifests()
        # every manifest passes the dry run before any is created: no half-applied recipe
        for doc in docs:
            try:
                self.kube.apply(doc, self.namespace, dry_run_only=True)
            except KubeError as exc:
                raise self.fail(f"deploy.yaml: the server-side dry run rejected {exc}") from None
        for doc in docs:
            self._apply(doc)

    def wait_ready(self) -> None:
        start = self.clock()
        last_line, last_progress = "", None
        timeout = self.settings.ready_timeout
        while True:
            try:
                dgd = self.kube.get(self.dgd_api_version, DGD_KIND, self.dgd_name, self.namespace)
            except KubeError as exc:
                raise self.fail(f"cannot read {DGD_KIND} {self.dgd_name}: {exc}") from None
            readiness = dgd_readiness(dgd)
            elapsed = self.clock() - start
            if readiness.ready:
                self.progress(f"ready: {self.dgd_name} {readiness.state or 'Ready'} after {fmt_duration(elapsed)}")
                return
            if readiness.failed:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} failed: {readiness.message or 'the operator gives no reason'}")
            pods = [p for p in self.kube.list("v1", "Pod", self.namespace) if dig(p, "status", "phase") != "Succeeded"]
            blocker = self._blocker(pods)
            if blocker:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} cannot become ready: {self._blocker_message(blocker)}")
            line = f"{readiness.describe()}; {pod_summary(pods)}"
            if elapsed >= timeout:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} not ready after {fmt_duration(timeout)}: {line}")
            if line != last_line or last_progress is None or self.clock() - last_progress >= self.settings.progress_every:
                self.progress(f"waiting for {self.dgd_name} {fmt_duration(elapsed)}/{fmt_duration(timeout)}: {line}")
                last_line, last_progress = line, self.clock()
            self.sleep(self.settings.poll_interval)

    # --- the frontend ------------------------------------------------------------------

    def frontend_url(self) -> str:
        """A URL on the runner that reaches `<dgd>-frontend:8000`, once the served model is listed."""
        if self.base_url:
            return self.base_url
        if self.access is None:
            self.access = default_access(self.kube, self.settings.kubeconfig, self.settings.frontend_url)
        service = f"{self.dgd_name}-frontend"
        try:
            url = self.access.open(self.namespace, service, FRONTEND_PORT)
        except PortForwardError as exc:
            raise self.fail(f"cannot reach svc/{service}:{FRONTEND_PORT}: {exc}") from None
        self.progress(f"frontend svc/{service}:{FRONTEND_PORT} reachable at {url}")
        self._wait_model_listed(url)
        self.base_url = url
        return url

    def _wait_model_listed(self, url: str) -> None:
        # Ready pods are not enough: the model registers with the frontend after the worker starts.
        served = served_model_name(self.recipe)
        start = self.clock()
        listed: list[str] = []
        error = ""
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as resp:
                    body = json.loads(resp.read().decode("utf-8", "replace"))
                listed = [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]
                error = ""
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if served in listed:
                return
            if self.clock() - start >= self.settings.model_timeout:
                seen = f"/v1/models lists {listed}" if not error else f"last error {error}"
                raise self.fail(f"the frontend never listed model {served!r} within {fmt_duration(self.settings.model_timeout)} ({seen})")
            self.sleep(self.settings.poll_interval)

    def worker_pods(self) -> dict[str, str]:
        """Running worker pods of the DGD -> their service name. The operator names them
        `<dgd>-<service lowercased>-...` and labels them with the component name."""
        dep = self.recipe.deployment
        workers = {w.name: w for w in dep.workers} if dep else {}
        out: dict[str, str] = {}
        for pod in self.kube.list("v1", "Pod", self.namespace):
            name = str(dig(pod, "metadata", "name"))
            label = (dig(pod, "metadata", "labels") or {}).get("nvidia.com/dynamo-component")
            service = label if label in workers else next((w for w in workers if name.startswith(f"{self.dgd_name}-{w.lower()}-")), None)
            if service and dig(pod, "status", "phase") == "Running":
                out[name] = service
        return out

    def worker_request_counts(self) -> dict[str, int]:
        """Requests each worker pod's `generate` endpoint has served, from its /metrics (-1: unreadable)."""
        from harness.run.sim.local import prometheus_sum

        counts: dict[str, int] = {}
        for pod in sorted(self.worker_pods()):
            try:
                text = self.kube.pod_proxy_get(self.namespace, pod, SYSTEM_PORT, "metrics")
                counts[pod] = int(prometheus_sum(text, "dynamo_component_requests_total", dynamo_endpoint="generate"))
            except KubeError:
                counts[pod] = -1
        return counts

    # --- benchmark ---------------------------------------------------------------------

    def _perf_job_doc(self) -> dict:
        doc = self.recipe.perf_job()
        if doc is None:
            raise self.fail(f"{self.recipe.path / 'perf.yaml'}: no benchmark Job")
        return to_plain(doc.data)

    def _aiperf(self):
        from harness.run.perf import PerfConfigError, find_invocation

        try:
            return find_invocation(self.recipe)
        except PerfConfigError as exc:
            raise self.fail(str(exc)) from None

    def perf_job(self) -> Path:
        """Run perf.yaml's Job in the cluster, wait for it, copy its AIPerf export to the report folder."""
        job = self._perf_job_doc()
        name = str(dig(job, "metadata", "name"))
        if self.kube.get("batch/v1", "Job", name, self.namespace) is not None:
            self._delete_and_wait("batch/v1", "Job", name)  # a Job's template is immutable; a rerun needs a fresh one
        self._apply(job, what="benchmark Job")  # dry run, then create
        self._wait_job(name, self.settings.perf_timeout, "benchmark")
        data = self._fetch_export(job)
        out = self.settings.report_dir / "perf" / self.slug / EXPORT_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(data)
        self.progress(f"benchmark: {EXPORT_FILE} saved to {out}")
        return out

    def _fetch_export(self, job: dict) -> str:
        """A short-lived pod with the Job's image and PVC mounts prints the newest export file."""
        pod_spec = dig(job, "spec", "template", "spec") or {}
        container = (pod_spec.get("containers") or [{}])[0]
        pvc_volumes = {v["name"]: v for v in pod_spec.get("volumes") or [] if isinstance(v, dict) and v.get("persistentVolumeClaim")}
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") in pvc_volumes]
        if not mounts:
            raise self.fail(f"benchmark Job {dig(job, 'metadata', 'name')} mounts no PVC, so its {EXPORT_FILE} cannot be collected: "
                            "write the AIPerf artifacts to the model-cache PVC")
        artifact_dir = self._aiperf().get("--artifact-dir")
        roots = [str(m["mountPath"]) for m in mounts]
        if artifact_dir and "$" not in artifact_dir and any(artifact_dir.startswith(r) for r in roots):
            roots = [artifact_dir]
        where = " ".join(f"'{r}'" for r in roots)
        script = (f'f=$(find {where} -name {EXPORT_FILE} -type f -exec ls -t {{}} + 2>/dev/null | head -n 1); '
                  f'if [ -z "$f" ]; then echo "no {EXPORT_FILE} under {" ".join(roots)}" >&2; exit 3; fi; cat "$f"')
        pod_name = f"{str(dig(job, 'metadata', 'name'))[:40]}-fetch-{uuid.uuid4().hex[:5]}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod_name, "labels": dict(MANAGED_BY, **{"recipe-harness/role": "fetch-export"})},
               "spec": {"restartPolicy": "Never",
                        "containers": [{"name": "fetch", "image": container.get("image"), "command": ["sh", "-c", script],
                                        "volumeMounts": [dict(m, readOnly=True) for m in mounts]}],
                        "volumes": [pvc_volumes[m["name"]] for m in mounts]}}
        if pod_spec.get("imagePullSecrets"):
            pod["spec"]["imagePullSecrets"] = pod_spec["imagePullSecrets"]
        self._apply(pod, what="export fetch pod")
        start = self.clock()
        while True:
            current = self.kube.get("v1", "Pod", pod_name, self.namespace) or {}
            phase = dig(current, "status", "phase")
            if phase in ("Succeeded", "Failed"):
                break
            blocker = self._blocker([current]) if current else None
            if blocker:
                raise self.fail(f"cannot fetch {EXPORT_FILE}: {blocker.message}")
            if self.clock() - start >= self.settings.fetch_timeout:
                raise self.fail(f"export fetch pod {pod_name} did not finish within {fmt_duration(self.settings.fetch_timeout)}")
            self.sleep(self.settings.poll_interval)
        log = self.kube.pod_log(self.namespace, pod_name, "fetch")
        self.kube.delete("v1", "Pod", pod_name, self.namespace)
        if phase == "Failed":
            raise self.fail(f"cannot fetch {EXPORT_FILE} from the PVC: {log.strip()[-500:]}")
        try:
            json.loads(log)
        except ValueError:
            raise self.fail(f"{EXPORT_FILE} fetched from the PVC is not JSON (first bytes: {log[:120]!r})") from None
        return log

    def perf_local(self, run: Callable[[list[str], Path, float], Any] | None = None) -> Path:
        """AIPerf from the runner through the port-forward, with the Job's own options. Returns the artifact folder."""
        from harness.run.perf import run_aiperf

        inv = self._aiperf()
        url = self.frontend_url()
        artifacts = self.settings.report_dir / "perf" / self.slug / "aiperf"
        artifacts.mkdir(parents=True, exist_ok=True)
        tokenizer = inv.get("--tokenizer")
        # a tokenizer path inside the PVC does not exist on the runner: load it by model id instead
        local_tokenizer = model_id(self.recipe) if tokenizer and tokenizer.startswith("/") and not Path(tokenizer).exists() else None
        args = local_aiperf_args(inv.options, url, artifacts, local_tokenizer)
        log = artifacts.parent / "aiperf.log"
        self.progress(f"benchmark: aiperf {' '.join(args[:1])} locally against {url} (log {log})")
        outcome = (run or run_aiperf)(args, log, self.settings.perf_timeout)
        if getattr(outcome, "timed_out", False):
            raise self.fail(f"local aiperf did not finish within {fmt_duration(self.settings.perf_timeout)} (log {log})")
        if outcome.returncode not in (0, None) and not (artifacts / EXPORT_FILE).exists():
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise self.fail(f"local aiperf exited {outcome.returncode} without writing {EXPORT_FILE}: {tail}")
        return artifacts

    # --- failure and teardown ----------------------------------------------------------

    def collect_diagnostics(self, step: str, reason: str) -> Path | None:
        if not self.namespace_ready:
            return None
        try:
            diag = Diagnostics(self.kube, self.namespace, self.diagnostics_dir, self.redactor,
                               (self.dgd_api_version, self.dgd_name) if self.dgd_name else None, self.settings.log_tail_lines)
            path = diag.collect(step, reason)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never hide the failure they describe
            self.progress(f"diagnostics incomplete: {type(exc).__name__}: {exc}")
            return None
        self.progress(f"diagnostics written to {path}")
        return path

    def teardown(self) -> None:
        """Undo what this run created. Idempotent; never raises."""
        if self.closed:
            return
        self.closed = True
        if self.access is not None:
            try:
                self.access.close()
            except Exception:  # noqa: BLE001
                pass
        if not self.namespace_ready:
            return
        try:
            if self.settings.keep:
                self.progress(f"kept namespace {self.namespace} (--keep); remove it with: kubectl delete namespace {self.namespace}")
            elif self.owns_namespace:
                self.kube.delete("v1", "Namespace", self.namespace)
                self.progress(f"namespace {self.namespace} deleted")
            else:
                # a namespace the user named: remove what the run made, keep the model cache for next time
                cache = {(str(d.get("kind")), str(dig(d, "metadata", "name"))) for d in self._cache_docs()}
                for api_version, kind, name in reversed(self.created):
                    if (kind, name) not in cache:
                        self.kube.delete(api_version, kind, name, self.namespace)
                self.progress(f"removed {len(self.created)} object(s) this run created in namespace {self.namespace}")
        except Exception as exc:  # noqa: BLE001 - teardown reports, it does not raise
            self.progress(f"teardown incomplete: {type(exc).__name__}: {exc}; delete namespace {self.namespace} by hand")
        finally:
            self.kube.close()
