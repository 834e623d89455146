"""A narrow wrapper over the official Kubernetes client: where the config comes from, one reachability probe, and typed-or-custom CRUD on plain manifests (dry run first, strict field validation)."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

from kubernetes import client as k8s
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from harness.run.k8s.config import NO_CLUSTER, ConfigSource, find_config

DRY_RUN_ALL = "All"
STRICT = "Strict"

__all__ = ["ApiException", "ConfigSource", "Kube", "KubeError", "Resource", "api_message", "find_config", "NO_CLUSTER"]


class KubeError(Exception):
    """A request the cluster refused; the message is the API server's, never a credential."""

    def __init__(self, message: str, status: int = 0, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


def api_client(source: ConfigSource, *, retries: int | None = None) -> k8s.ApiClient:
    """An ApiClient of its own (the library's global default config stays untouched)."""
    cfg = type.__call__(k8s.Configuration)
    if source.kind == "in-cluster":
        kconfig.load_incluster_config(client_configuration=cfg)
    else:
        kconfig.load_kube_config(config_file=source.path, context=source.context, client_configuration=cfg, persist_config=False)
    if retries is not None:
        cfg.retries = retries  # urllib3 retries 3 times by default: a dead API would take 4x the timeout
    return k8s.ApiClient(configuration=cfg)


def transport_error(exc: BaseException) -> str:
    """`ReadTimeoutError: ...` rather than urllib3's MaxRetryError wrapper; never headers or tokens."""
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, BaseException) else exc
    text = str(inner).split(": ", 1)[-1] if ":" in str(inner) else str(inner)
    return f"{type(inner).__name__}: {text[:160]}"


def api_message(exc: BaseException) -> str:
    """The API server's own message from a Status body, else the HTTP reason."""
    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            body = {}
        msg = body.get("message") if isinstance(body, dict) else None
        return str(msg or f"{exc.status} {exc.reason}")
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Resource:
    """How to reach one kind through the client: a typed API (`snake`) or CustomObjectsApi."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    api: str = "custom"  # core | batch | apps | rbac | storage | ext | custom
    snake: str = ""  # typed method suffix, e.g. "config_map"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


_BUILTINS = [
    Resource("v1", "Namespace", "namespaces", False, "core", "namespace"),
    Resource("v1", "Node", "nodes", False, "core", "node"),
    Resource("v1", "ConfigMap", "configmaps", True, "core", "config_map"),
    Resource("v1", "Secret", "secrets", True, "core", "secret"),
    Resource("v1", "Service", "services", True, "core", "service"),
    Resource("v1", "ServiceAccount", "serviceaccounts", True, "core", "service_account"),
    Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, "core", "persistent_volume_claim"),
    Resource("v1", "Pod", "pods", True, "core", "pod"),
    Resource("v1", "Event", "events", True, "core", "event"),
    Resource("batch/v1", "Job", "jobs", True, "batch", "job"),
    Resource("apps/v1", "Deployment", "deployments", True, "apps", "deployment"),
    Resource("apps/v1", "StatefulSet", "statefulsets", True, "apps", "stateful_set"),
    Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True, "rbac", "role"),
    Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True, "rbac", "role_binding"),
    Resource("storage.k8s.io/v1", "StorageClass", "storageclasses", False, "storage", "storage_class"),
    Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False, "ext", "custom_resource_definition"),
]
BUILTIN_KINDS = {(r.group, r.kind): r for r in _BUILTINS}
# Custom kinds recipes ship; anything else is looked up in the cluster's CRDs.
KNOWN_PLURALS = {
    ("nvidia.com", "DynamoGraphDeployment"): "dynamographdeployments",
    ("nvidia.com", "DynamoComponentDeployment"): "dynamocomponentdeployments",
    ("resource.nvidia.com", "ComputeDomain"): "computedomains",
}


class Kube:
    """The few cluster operations the deployer needs, on plain (camelCase) dicts."""

    def __init__(self, api: k8s.ApiClient, timeout: float = 30.0):
        self.api = api
        self.timeout = timeout
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.rbac = k8s.RbacAuthorizationV1Api(api)
        self.storage = k8s.StorageV1Api(api)
        self.ext = k8s.ApiextensionsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self._version = k8s.VersionApi(api)
        self._plurals: dict[tuple[str, str], tuple[str, bool]] = {}

    @classmethod
    def connect(cls, source: ConfigSource, timeout: float = 30.0) -> "Kube":
        return cls(api_client(source), timeout)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing a pool must never mask the real outcome
            pass

    # --- generic plumbing ----------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        t = float(timeout or self.timeout)
        # a (connect, read) tuple: the client silently drops a float timeout (only int and 2-tuples count)
        return fn(*args, _request_timeout=(t, t), **kw)

    def plain(self, obj: Any) -> Any:
        return obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)

    def server_version(self, timeout: float) -> str:
        return str(self._call(self._version.get_code, timeout=timeout).git_version)

    def resource(self, api_version: str, kind: str) -> Resource:
        group = api_version.rpartition("/")[0]
        if (group, kind) in BUILTIN_KINDS:
            return BUILTIN_KINDS[(group, kind)]
        plural, namespaced = self._custom_plural(group, kind)
        return Resource(api_version, kind, plural, namespaced)

    def _custom_plural(self, group: str, kind: str) -> tuple[str, bool]:
        key = (group, kind)
        if key in KNOWN_PLURALS:
            return KNOWN_PLURALS[key], True
        if key not in self._plurals:
            for crd in self.list_crds():
                spec = crd.get("spec") or {}
                names = spec.get("names") or {}
                if spec.get("group") == group and names.get("kind") == kind:
                    self._plurals[key] = (names.get("plural", ""), spec.get("scope") != "Cluster")
                    break
            else:
                raise KubeError(f"the cluster has no CustomResourceDefinition for {kind} ({group}): install the operator that provides it")
        return self._plurals[key]

    def _typed(self, res: Resource, verb: str) -> Callable[..., Any]:
        api = getattr(self, res.api)
        scope = "namespaced_" if res.namespaced else ""
        return getattr(api, f"{verb}_{scope}{res.snake}")

    # --- reads ------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        res = self.resource(api_version, kind)
        try:
            if res.api == "custom":
                if res.namespaced:
                    return self._call(self.custom.get_namespaced_custom_object, res.group, res.version, namespace, res.plural, name)
                return self._call(self.custom.get_cluster_custom_object, res.group, res.version, res.plural, name)
            args = (name, namespace) if res.namespaced else (name,)
            return self.plain(self._call(self._typed(res, "read"), *args))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"cannot read {kind} {name}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        res = self.resource(api_version, kind)
        kw = {"label_selector": label_selector} if label_selector else {}
        try:
            if res.api == "custom":
                if res.namespaced:
                    out = self._call(self.custom.list_namespaced_custom_object, res.group, res.version, namespace, res.plural, **kw)
                else:
                    out = self._call(self.custom.list_cluster_custom_object, res.group, res.version, res.plural, **kw)
                return list(out.get("items") or [])
            args = (namespace,) if res.namespaced else ()
            return list(self.plain(self._call(self._typed(res, "list"), *args, **kw)).get("items") or [])
        except ApiException as exc:
            raise KubeError(f"cannot list {res.plural}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def list_crds(self) -> list[dict]:
        return self.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")

    def crd(self, name: str) -> dict | None:
        return self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool = False, tail_lines: int | None = None) -> str:
        kw: dict[str, Any] = {"container": container, "previous": previous}
        if tail_lines:
            kw["tail_lines"] = tail_lines
        try:
            # raw bytes: with preloading, the client json-decodes a log that happens to be JSON and
            # hands back a Python repr of it (single quotes), which breaks the export fetch
            resp = self._call(self.core.read_namespaced_pod_log, pod, namespace, _preload_content=False, **kw)
            return resp.data.decode("utf-8", "replace")
        except ApiException as exc:
            raise KubeError(f"no log for {pod}/{container}: {api_message(exc)}", exc.status) from None

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, timeout: float = 5.0) -> str:
        """GET a pod's HTTP endpoint through the API server's proxy (no port-forward needed)."""
        try:
            resp = self._call(self.core.connect_get_namespaced_pod_proxy_with_path, f"{pod}:{port}", namespace, path.lstrip("/"),
                              timeout=timeout, _preload_content=False)
            return resp.data.decode("utf-8", "replace")
        except ApiException as exc:
            raise KubeError(f"GET {pod}:{port}/{path}: {api_message(exc)}", exc.status) from None

    def secret_values(self, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded values of a Secret, or None when absent. Callers use them to redact, never to print."""
        secret = self.get("v1", "Secret", name, namespace)
        if secret is None:
            return None
        out: dict[str, str] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                out[key] = base64.b64decode(value).decode("utf-8", "replace")
            except (ValueError, TypeError):
                out[key] = ""
        return out

    # --- writes -----------------------------------------------------------------------

    def _create(self, res: Resource, body: dict, namespace: str | None, dry_run: bool) -> dict:
        kw: dict[str, Any] = {"field_validation": STRICT}
        if dry_run:
            kw["dry_run"] = DRY_RUN_ALL
        if res.api == "custom":
            if res.namespaced:
                return self._call(self.custom.create_namespaced_custom_object, res.group, res.version, namespace, res.plural, body, **kw)
            return self._call(self.custom.create_cluster_custom_object, res.group, res.version, res.plural, body, **kw)
        args = (namespace, body) if res.namespaced else (body,)
        return self.plain(self._call(self._typed(res, "create"), *args, **kw))

    def _replace(self, res: Resource, body: dict, namespace: str | None, dry_run: bool) -> dict:
        kw: dict[str, Any] = {"field_validation": STRICT}
        if dry_run:
            kw["dry_run"] = DRY_RUN_ALL
        name = body["metadata"]["name"]
        if res.api == "custom":
            if res.namespaced:
                return self._call(self.custom.replace_namespaced_custom_object, res.group, res.version, namespace, res.plural, name, body, **kw)
            return self._call(self.custom.replace_cluster_custom_object, res.group, res.version, res.plural, name, body, **kw)
        args = (name, namespace, body) if res.namespaced else (name, body)
        return self.plain(self._call(self._typed(res, "replace"), *args, **kw))

    def apply(self, manifest: dict, namespace: str | None, *, keep_existing: bool = False, dry_run_only: bool = False) -> str:
        """Server-side dry run, then create (or replace when it exists). Returns
        created | configured | unchanged | valid (dry run only). Raises KubeError with the server's reason."""
        kind = str(manifest.get("kind", ""))
        name = str((manifest.get("metadata") or {}).get("name", ""))
        res = self.resource(str(manifest.get("apiVersion", "")), kind)
        body = copy.deepcopy(manifest)
        if res.namespaced:
            body.setdefault("metadata", {})["namespace"] = namespace
        try:
            try:
                self._create(res, body, namespace, dry_run=True)
                exists = False
            except ApiException as exc:
                if exc.status != 409:
                    raise
                exists = True
            if exists:
                if keep_existing:
                    return "unchanged"
                current = self.get(res.api_version, kind, name, namespace) or {}
                body["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
                self._replace(res, body, namespace, dry_run=True)
                if dry_run_only:
                    return "valid"
                self._replace(res, body, namespace, dry_run=False)
                return "configured"
            if dry_run_only:
                return "valid"
            self._create(res, body, namespace, dry_run=False)
            return "created"
        except ApiException as exc:
            raise KubeError(f"{kind} {name}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def create(self, manifest: dict, namespace: str | None) -> dict:
        """Plain create (no dry run) for objects the harness itself writes (namespace, helper pods)."""
        res = self.resource(str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        try:
            return self._create(res, manifest, namespace, dry_run=False)
        except ApiException as exc:
            raise KubeError(f"{res.kind} {(manifest.get('metadata') or {}).get('name', '')}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def annotate(self, api_version: str, kind: str, name: str, namespace: str | None, annotations: dict[str, str]) -> None:
        res = self.resource(api_version, kind)
        body = {"metadata": {"annotations": annotations}}
        try:
            args = (name, namespace, body) if res.namespaced else (name, body)
            self._call(self._typed(res, "patch"), *args)
        except ApiException as exc:
            raise KubeError(f"cannot annotate {kind} {name}: {api_message(exc)}", exc.status) from None

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation: a Job takes its pods along). False when already gone."""
        res = self.resource(api_version, kind)
        try:
            if res.api == "custom":
                if res.namespaced:
                    self._call(self.custom.delete_namespaced_custom_object, res.group, res.version, namespace, res.plural, name,
                               propagation_policy="Background")
                else:
                    self._call(self.custom.delete_cluster_custom_object, res.group, res.version, res.plural, name)
            else:
                args = (name, namespace) if res.namespaced else (name,)
                self._call(self._typed(res, "delete"), *args, propagation_policy="Background")
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError(f"cannot delete {kind} {name}: {api_message(exc)}", exc.status) from None
