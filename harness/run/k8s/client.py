"""A narrow wrapper over the official Kubernetes client: where the config comes from, one reachability probe, and
typed-or-custom CRUD on plain manifests (dry run first, strict field validation)."""

from __future__ import annotations

import base64
import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from harness.run.k8s.config import NO_CLUSTER, ConfigSource, find_config

DRY_RUN_ALL = "All"
STRICT = "Strict"
FIELD_MANAGER = "recipe-harness"
APPLY_PATCH = "application/apply-patch+yaml"
# The API server sheds load with 429 (priority and fairness) and answers 5xx while an apiserver restarts
# or etcd elects a leader; both clear on their own. Any other status is the server's verdict.
RETRY_STATUSES = {429, 500, 502, 503, 504}
# Server-side apply answers a body its schema cannot type (an unknown field under strict validation, a wrong type)
# with HTTP 500 and this message (k8s.io/apiserver fieldmanager, seen from kube-apiserver v1.37.2 in tests/k8s),
# not with a 422: it is permanent, so it is reported at once instead of retried as a server fault.
TYPED_PATCH_REJECTED = "failed to create typed patch object"

__all__ = ["NO_CLUSTER", "ApiException", "ConfigSource", "Kube", "KubeError", "Resource", "api_message", "find_config"]


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
        kconfig.load_kube_config(
            config_file=source.path, context=source.context, client_configuration=cfg, persist_config=False
        )
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


@dataclass
class RetryPolicy:
    """Back-off for calls that may be repeated: `attempts` tries in all, delays doubling from `base`
    up to `cap` seconds with jitter, or the server's Retry-After when it sends one."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.cap)
        return min(self.cap, self.base * 2**attempt) * (0.5 + self.rng.random() / 2)


def transient(exc: BaseException, idempotent: bool) -> bool:
    """Worth another try: a status that clears on its own, or a transport failure. A call that is not
    idempotent is repeated only when the server cannot have acted on it (429: rejected before processing)."""
    if isinstance(exc, ApiException):
        if exc.status == 429:
            return True
        if exc.status == 500 and TYPED_PATCH_REJECTED in str(exc.body or ""):
            return False  # the request itself is wrong: the same body gets the same 500
        if exc.status in RETRY_STATUSES:
            return idempotent
        return exc.status == 0 and idempotent  # the client's own "no response" wrapper
    return idempotent and isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


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
    Resource(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        "ext",
        "custom_resource_definition",
    ),
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

    def __init__(self, api: k8s.ApiClient, timeout: float = 30.0, retry: RetryPolicy | None = None):
        self.api = api
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.retried = 0  # calls repeated after a transient failure (reported by tests and progress lines)
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
    def connect(cls, source: ConfigSource, timeout: float = 30.0) -> Kube:
        return cls(api_client(source), timeout)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:
            pass

    # --- generic plumbing ----------------------------------------------------------

    def _call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float | None = None,
        idempotent: bool = True,
        retries: bool = True,
        **kw: Any,
    ) -> Any:
        t = float(timeout or self.timeout)
        attempt = 0
        while True:
            try:
                # a (connect, read) tuple: the client silently drops a float timeout (only int and 2-tuples count)
                return fn(*args, _request_timeout=(t, t), **kw)
            except Exception as exc:  # sorted by transient() below; the rest is re-raised as is
                attempt += 1
                if not retries or attempt >= self.retry.attempts or not transient(exc, idempotent):
                    raise
                headers = getattr(exc, "headers", None) or {}
                self.retried += 1
                self.retry.sleep(
                    self.retry.delay(attempt - 1, headers.get("Retry-After") if hasattr(headers, "get") else None)
                )

    def plain(self, obj: Any) -> Any:
        return obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)

    def server_version(self, timeout: float, retries: bool = True) -> str:
        return str(self._call(self._version.get_code, timeout=timeout, retries=retries).git_version)

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
                raise KubeError(
                    f"the cluster has no CustomResourceDefinition for {kind} ({group}): "
                    "install the operator that provides it"
                )
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
                    return self._call(
                        self.custom.get_namespaced_custom_object, res.group, res.version, namespace, res.plural, name
                    )
                return self._call(self.custom.get_cluster_custom_object, res.group, res.version, res.plural, name)
            args = (name, namespace) if res.namespaced else (name,)
            return self.plain(self._call(self._typed(res, "read"), *args))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"cannot read {kind} {name}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict]:
        res = self.resource(api_version, kind)
        kw = {"label_selector": label_selector} if label_selector else {}
        try:
            if res.api == "custom":
                if res.namespaced:
                    out = self._call(
                        self.custom.list_namespaced_custom_object, res.group, res.version, namespace, res.plural, **kw
                    )
                else:
                    out = self._call(self.custom.list_cluster_custom_object, res.group, res.version, res.plural, **kw)
                return list(out.get("items") or [])
            args = (namespace,) if res.namespaced else ()
            return list(self.plain(self._call(self._typed(res, "list"), *args, **kw)).get("items") or [])
        except ApiException as exc:
            raise KubeError(f"cannot list {res.plural}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def served_kinds(self, api_version: str) -> dict[str, str] | None:
        """Kind -> plural the API server's discovery lists for one group/version (None: not served). Discovery is
        open to every authenticated user (the system:discovery ClusterRole), unlike reading CRDs."""
        group, _, version = api_version.rpartition("/")
        try:
            if group:
                out = self._call(self.custom.get_api_resources, group, version)
            else:
                out = self._call(self.core.get_api_resources)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"cannot discover {api_version}: {api_message(exc)}", exc.status) from None
        resources = self.plain(out).get("resources") or []
        return {str(r.get("kind")): str(r.get("name")) for r in resources if "/" not in str(r.get("name"))}

    def can_i(self, verb: str, resource: str, group: str = "", namespace: str | None = None) -> tuple[bool, str]:
        """The API server's SelfSubjectAccessReview of one request: (allowed, its reason)."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                    **({"namespace": namespace} if namespace else {}),
                }
            },
        }
        try:
            out = self.plain(self._call(k8s.AuthorizationV1Api(self.api).create_self_subject_access_review, body))
        except ApiException as exc:
            return False, api_message(exc)
        status = out.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or status.get("evaluationError") or "")

    def list_crds(self) -> list[dict]:
        return self.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")

    def crd(self, name: str) -> dict | None:
        return self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)

    def pod_log(
        self, namespace: str, pod: str, container: str, previous: bool = False, tail_lines: int | None = None
    ) -> str:
        kw: dict[str, Any] = {"container": container, "previous": previous}
        if tail_lines:
            kw["tail_lines"] = tail_lines
        try:
            # raw bytes: with preloading, the client json-decodes a log that happens to be JSON and
            # hands back a Python repr of it (single quotes), which breaks the export fetch
            def read(**call_kw: Any) -> bytes:  # the body is read inside the retried call: a cut one is retried
                return self.core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **kw, **call_kw).data

            return self._call(read).decode("utf-8", "replace")
        except ApiException as exc:
            raise KubeError(f"no log for {pod}/{container}: {api_message(exc)}", exc.status) from None

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, timeout: float = 5.0) -> str:
        """GET a pod's HTTP endpoint through the API server's proxy (no port-forward needed)."""
        try:
            resp = self._call(
                self.core.connect_get_namespaced_pod_proxy_with_path,
                f"{pod}:{port}",
                namespace,
                path.lstrip("/"),
                timeout=timeout,
                retries=False,
                _preload_content=False,
            )
            return resp.data.decode("utf-8", "replace")
        except ApiException as exc:
            raise KubeError(f"GET {pod}:{port}/{path}: {api_message(exc)}", exc.status) from None

    def secret(self, namespace: str, name: str) -> tuple[str, dict[str, str]] | None:
        """A Secret's type and its `data` exactly as stored (base64 of the raw bytes), or None when absent.
        Copying these keeps binary values and typed secrets (dockerconfigjson, tls) intact."""
        secret = self.get("v1", "Secret", name, namespace)
        if secret is None:
            return None
        return str(secret.get("type") or "Opaque"), dict(secret.get("data") or {})

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

    def _create(self, res: Resource, body: dict, namespace: str | None, dry_run: bool, idempotent: bool = True) -> dict:
        kw: dict[str, Any] = {"field_validation": STRICT, "idempotent": idempotent or dry_run}
        if dry_run:
            kw["dry_run"] = DRY_RUN_ALL
        if res.api == "custom":
            if res.namespaced:
                return self._call(
                    self.custom.create_namespaced_custom_object,
                    res.group,
                    res.version,
                    namespace,
                    res.plural,
                    body,
                    **kw,
                )
            return self._call(self.custom.create_cluster_custom_object, res.group, res.version, res.plural, body, **kw)
        args = (namespace, body) if res.namespaced else (body,)
        return self.plain(self._call(self._typed(res, "create"), *args, **kw))

    def _path(self, res: Resource, namespace: str | None, name: str) -> str:
        base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
        scope = f"/namespaces/{namespace}" if res.namespaced else ""
        return f"{base}{scope}/{res.plural}/{name}"

    def _server_side_apply(
        self, res: Resource, body: dict, namespace: str | None, dry_run: bool, manager: str = FIELD_MANAGER
    ) -> dict:
        """PATCH application/apply-patch+yaml as `recipe-harness`: the server merges our fields into the
        live object, so the operator's finalizer, annotations and status stay (a PUT would drop them)."""
        query: list[tuple[str, Any]] = [("fieldManager", manager), ("force", True), ("fieldValidation", STRICT)]
        if dry_run:
            query.append(("dryRun", DRY_RUN_ALL))
        path = self._path(res, namespace, body["metadata"]["name"])

        def call(_request_timeout: Any = None) -> Any:
            return self.api.call_api(
                path,
                "PATCH",
                {},
                query,
                {"Content-Type": APPLY_PATCH, "Accept": "application/json"},
                body=body,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=_request_timeout,
            )

        return self.plain(self._call(call))

    def apply(
        self, manifest: dict, namespace: str | None, *, keep_existing: bool = False, dry_run_only: bool = False
    ) -> str:
        """Server-side apply (dry run first, strict field validation). Returns created | configured |
        unchanged (exists, `keep_existing`) | valid (dry run only). Raises KubeError with the server's reason.
        Every call is idempotent, so a dropped connection or a 5xx is simply tried again."""
        kind = str(manifest.get("kind", ""))
        name = str((manifest.get("metadata") or {}).get("name", ""))
        res = self.resource(str(manifest.get("apiVersion", "")), kind)
        body = copy.deepcopy(manifest)
        if res.namespaced:
            body.setdefault("metadata", {})["namespace"] = namespace
        exists = self.get(res.api_version, kind, name, namespace) is not None
        if exists and keep_existing:
            return "unchanged"
        try:
            self._server_side_apply(res, body, namespace, dry_run=True)
            if dry_run_only:
                return "valid"
            self._server_side_apply(res, body, namespace, dry_run=False)
        except ApiException as exc:
            raise KubeError(f"{kind} {name}: {api_message(exc)}", exc.status, exc.reason or "") from None
        return "configured" if exists else "created"

    def apply_as(self, manifest: dict, namespace: str | None, manager: str) -> None:
        """Server-side apply of a partial object (only the fields it names) under field manager `manager`: fields
        that manager applied before and `manifest` leaves out are removed, nobody else's are touched."""
        res = self.resource(str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        body = copy.deepcopy(manifest)
        if res.namespaced:
            body.setdefault("metadata", {})["namespace"] = namespace
        try:
            self._server_side_apply(res, body, namespace, dry_run=False, manager=manager)
        except ApiException as exc:
            name = (manifest.get("metadata") or {}).get("name", "")
            raise KubeError(f"{res.kind} {name}: {api_message(exc)}", exc.status, exc.reason or "") from None

    def create(self, manifest: dict, namespace: str | None) -> dict:
        """Plain create (no dry run) for objects the harness itself writes (namespace, helper pods)."""
        res = self.resource(str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        try:
            return self._create(res, manifest, namespace, dry_run=False, idempotent=False)
        except ApiException as exc:
            raise KubeError(
                f"{res.kind} {(manifest.get('metadata') or {}).get('name', '')}: {api_message(exc)}",
                exc.status,
                exc.reason or "",
            ) from None

    def annotate(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        annotations: dict[str, str],
        resource_version: str | None = None,
    ) -> None:
        """Merge `annotations` into the object's; with `resource_version`, only if the object is still at it
        (else KubeError with status 409)."""
        res = self.resource(api_version, kind)
        body: dict[str, Any] = {"metadata": {"annotations": annotations}}
        if resource_version:
            body["metadata"]["resourceVersion"] = resource_version
        try:
            args = (name, namespace, body) if res.namespaced else (name, body)
            if res.api == "custom":
                custom = (res.group, res.version, namespace, res.plural, name, body)
                self._call(self.custom.patch_namespaced_custom_object, *custom)
            else:
                self._call(self._typed(res, "patch"), *args)  # a repeat after the server acted is a 409: re-read
        except ApiException as exc:
            raise KubeError(f"cannot annotate {kind} {name}: {api_message(exc)}", exc.status) from None

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation: a Job takes its pods along). False when already gone."""
        res = self.resource(api_version, kind)
        try:
            if res.api == "custom":
                if res.namespaced:
                    self._call(
                        self.custom.delete_namespaced_custom_object,
                        res.group,
                        res.version,
                        namespace,
                        res.plural,
                        name,
                        propagation_policy="Background",
                    )
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
