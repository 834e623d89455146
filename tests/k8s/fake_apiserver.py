"""An HTTP-level fake of the Kubernetes API the gpu deployer uses: the object store with the API server's own rules
(strict validation from the real schemas, server-side apply, finalizers, namespaces that terminate, 400 for a
waiting container's log), controllers that reconcile on a shared clock, and injected faults."""

from __future__ import annotations

import base64
import copy
import json
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from harness.recipe.schemas import (
    core_validator,
    crd_to_schemas,
    errors,
    generated_validator,
    k8s_definition_validator,
)

# (group, plural) -> (kind, namespaced). Custom resources come from the CRDs the scenario installs.
BUILTIN = {
    ("", "namespaces"): ("Namespace", False),
    ("", "nodes"): ("Node", False),
    ("", "pods"): ("Pod", True),
    ("", "events"): ("Event", True),
    ("", "persistentvolumeclaims"): ("PersistentVolumeClaim", True),
    ("", "configmaps"): ("ConfigMap", True),
    ("", "services"): ("Service", True),
    ("", "secrets"): ("Secret", True),
    ("", "serviceaccounts"): ("ServiceAccount", True),
    ("batch", "jobs"): ("Job", True),
    ("apps", "deployments"): ("Deployment", True),
    ("storage.k8s.io", "storageclasses"): ("StorageClass", False),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("CustomResourceDefinition", False),
    ("rbac.authorization.k8s.io", "roles"): ("Role", True),
    ("rbac.authorization.k8s.io", "rolebindings"): ("RoleBinding", True),
}
# metadata fields the server owns: a client may send them back, the schema check ignores them
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
# Secret types with required keys (k8s.io/kubernetes pkg/apis/core/validation ValidateSecret)
SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/basic-auth": (),
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code: int, reason: str, message: str, **details: Any) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any):
        super().__init__(message)
        self.status = status_obj(code, reason, message, **details)


class Clock:
    """Time for the fake and for the code under test. Virtual (sleep advances it at once) unless `real`."""

    def __init__(self, real: bool = False):
        self.real = real
        self.t = 0.0
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0 if self.real else self.t

    def sleep(self, seconds: float) -> None:
        if self.real:
            time.sleep(max(0.0, seconds))
        else:
            self.t += max(0.0, seconds)


@dataclass
class Request:
    """One API call as the controllers see it."""

    method: str
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    sub: str | None
    query: dict[str, str]
    dry_run: bool = False
    subpath: str = ""  # what follows the subresource: `metrics` of pods/<name>:<port>/proxy/metrics
    content_type: str = ""

    @property
    def kind(self) -> str:
        return BUILTIN.get((self.group, self.plural), (self.plural, True))[0]


class Controller:
    """A stand-in for a cluster component (scheduler, kubelet, operator): `reconcile` runs before every request,
    `on_request` after every successful write, both under the cluster lock."""

    def reconcile(self, cluster: FakeCluster) -> None:
        pass

    def on_request(self, cluster: FakeCluster, req: Request, obj: dict | None) -> None:
        pass


@dataclass
class Faults:
    """Transient failures a real API server and network produce, drawn from a seeded generator:
    429 (priority and fairness), 500/503 (apiserver restart, etcd leader change), a connection reset
    before or after the request was processed, and a response cut off mid-body (a dropped stream)."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = ("429", "500", "503", "reset-before", "reset-after", "truncate")
    rng: random.Random = field(init=False)
    injected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self) -> str | None:
        if self.rate and self.rng.random() < self.rate:
            kind = self.rng.choice(self.kinds)
            self.injected.append(kind)
            return kind
        return None


def unknown_fields(obj: Any, schema: Any, path: str) -> list[str]:
    """Fields an OpenAPI v3 structural schema does not declare (what Strict rejects)."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out: list[str] = []
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else key
            if props is not None and key in props:
                out += unknown_fields(value, props[key], sub)
            elif isinstance(extra, dict):
                out += unknown_fields(value, extra, sub)
            elif extra is True:
                continue
            elif props is not None or schema.get("type") == "object":
                out.append(sub)
        return out
    if isinstance(obj, list):
        return [u for i, item in enumerate(obj) for u in unknown_fields(item, schema.get("items"), f"{path}[{i}]")]
    return []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge behaves the same for the maps the deployer patches)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def leaf_paths(obj: Any, prefix: tuple = ()) -> set[tuple]:
    """Field paths of an applied configuration; lists count as one atomic field (as `listType: atomic`)."""
    if isinstance(obj, dict) and obj:
        return {p for k, v in obj.items() for p in leaf_paths(v, prefix + (k,))}
    return {prefix}


def drop_path(obj: dict, path: tuple) -> None:
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)


def apply_merge(live: Any, config: Any) -> Any:
    """Server-side apply's merge for maps: the config's fields win, the live object's other fields stay;
    `metadata.finalizers` is a set (listType=set), so other managers' entries stay."""
    if isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for key, value in config.items():
            if key == "finalizers" and isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = out[key] + [f for f in value if f not in out[key]]
            else:
                out[key] = apply_merge(out.get(key), value)
        return out
    return copy.deepcopy(config)


def selector_matches(labels: dict, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeCluster:
    """The object store and the request semantics: 404/409 Status objects, dry runs that do not persist,
    validation against the real schemas, server-side apply with field managers, status subresources,
    finalizers, namespace termination, pod logs; controllers reconcile on `clock`."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.proxied: dict[tuple[str, str, int, str], str] = {}  # (namespace, pod, port, path) -> body
        self.requests: list[Request] = []
        self.controllers: list[Controller] = []
        self.faults = Faults()
        self.owned: dict[tuple, set[tuple]] = {}  # (object key, field manager) -> paths it applied
        self.created: list[str] = []  # Kind/name of every object created through the API, in order
        self._rv = 100

    # --- the scenario's controller (kept as one attribute for the tests that set it) ----------

    @property
    def controller(self) -> Controller:
        return self.controllers[-1] if self.controllers else Controller()

    @controller.setter
    def controller(self, value: Controller) -> None:
        self.controllers = [c for c in self.controllers if getattr(c, "builtin", False)] + [value]

    # --- scenario helpers ----------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def split_api_version(api_version: str) -> tuple[str, str]:
        group, _, version = api_version.rpartition("/")
        return group, version

    def resolve(self, group: str, plural: str, version: str | None = None) -> tuple[str, bool, dict | None]:
        """(kind, namespaced, crd) for a path, or ApiError 404 like a server without that resource."""
        if (group, plural) in BUILTIN:
            kind, namespaced = BUILTIN[(group, plural)]
            return kind, namespaced, None
        for crd in self.list("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = crd["spec"]
            if spec["group"] == group and spec["names"]["plural"] == plural:
                served = [v["name"] for v in spec["versions"] if v.get("served")]
                if version is not None and version not in served:
                    break
                return spec["names"]["kind"], spec.get("scope", "Namespaced") == "Namespaced", crd
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def plural_of(self, api_version: str, kind: str) -> str:
        group, _ = self.split_api_version(api_version)
        for (g, plural), (k, _) in BUILTIN.items():
            if g == group and k == kind:
                return plural
        for crd in self.list("apiextensions.k8s.io", "customresourcedefinitions"):
            if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
                return crd["spec"]["names"]["plural"]
        raise KeyError(kind)

    def put(self, obj: dict) -> dict:
        """Store an object as a controller (or the cluster's installer) writes it: no validation."""
        with self.lock:
            obj = copy.deepcopy(obj)
            group, _ = self.split_api_version(obj["apiVersion"])
            plural = self.plural_of(obj["apiVersion"], obj["kind"])
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_iso())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self.next_rv()
            self.objects[(group, plural, meta.get("namespace") or "", meta["name"])] = obj
            return obj

    def get(self, group: str, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.objects.get((group, plural, namespace or "", name))

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[dict]:
        return [
            o
            for (g, p, ns, _), o in sorted(self.objects.items())
            if g == group and p == plural and (namespace is None or ns == namespace)
        ]

    def remove(self, group: str, plural: str, namespace: str | None, name: str) -> None:
        key = (group, plural, namespace or "", name)
        self.objects.pop(key, None)
        for owned in [k for k in self.owned if k[0] == key]:
            del self.owned[owned]

    def request_delete(self, group: str, plural: str, namespace: str | None, name: str) -> None:
        """Delete as the API server does: objects with finalizers get a deletionTimestamp and stay until they are gone."""
        obj = self.get(group, plural, namespace, name)
        if obj is None:
            return
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", now_iso())
            obj["metadata"]["resourceVersion"] = self.next_rv()
        else:
            self.remove(group, plural, namespace, name)

    def set_log(self, namespace: str, pod: str, container: str, text: str, previous: bool = False) -> None:
        self.logs[(namespace, pod, container, previous)] = text

    def add_node(
        self,
        name: str,
        product: str | None,
        gpus: int,
        cpu: str = "64",
        memory: str = "1Ti",
        ready: bool = True,
        labels: dict | None = None,
    ) -> None:
        lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})}
        if product:
            lab["nvidia.com/gpu.product"] = product
        resources = {"cpu": cpu, "memory": memory, "pods": "110"}
        if gpus:
            resources["nvidia.com/gpu"] = str(gpus)
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": lab},
                "status": {
                    "allocatable": dict(resources),
                    "capacity": dict(resources),
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        )

    def add_storage_class(
        self, name: str, default: bool = False, provisioner: str = "nfs.csi.k8s.io", binding: str = "Immediate"
    ) -> None:
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        self.put(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name, "annotations": ann},
                "provisioner": provisioner,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": binding,
            }
        )

    def add_crd(self, crd: dict) -> None:
        self.put(crd)

    def add_secret(self, namespace: str, name: str, data: dict[str, str | bytes], type_: str = "Opaque") -> None:
        enc = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": type_,
                "metadata": {"name": name, "namespace": namespace},
                "data": enc,
            }
        )

    def add_namespace(self, name: str) -> None:
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )

    def add_event(
        self,
        namespace: str,
        obj_kind: str,
        obj_name: str,
        reason: str,
        message: str,
        type_: str = "Warning",
        source: str = "",
    ) -> None:
        for ev in self.list("", "events", namespace):  # the recorder aggregates repeats into one Event with a count
            inv = ev["involvedObject"]
            if (
                inv["name"] == obj_name
                and inv["kind"] == obj_kind
                and ev["reason"] == reason
                and ev["message"] == message
            ):
                ev["count"] += 1
                ev["lastTimestamp"] = now_iso()
                ev["recordedAt"] = self.now()
                return
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{obj_name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
                "involvedObject": {"kind": obj_kind, "name": obj_name, "namespace": namespace, "apiVersion": "v1"},
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": now_iso(),
                "lastTimestamp": now_iso(),
                "source": {"component": source},
                "recordedAt": self.now(),
            }
        )

    def namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.list("", "namespaces")]

    def reconcile(self) -> None:
        with self.lock:
            for c in list(self.controllers):
                c.reconcile(self)

    # --- request handling ----------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts == ["version"]:
                return self._json(
                    200,
                    {
                        "major": "1",
                        "minor": "33",
                        "gitVersion": "v1.33.1-fake",
                        "gitCommit": "0" * 40,
                        "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z",
                        "goVersion": "go1.24",
                        "compiler": "gc",
                        "platform": "linux/amd64",
                    },
                )
            if len(parts) >= 2 and parts[0] == "api":
                group, version, rest = "", parts[1], parts[2:]
            elif len(parts) >= 3 and parts[0] == "apis":
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if len(rest) >= 3 and rest[0] == "namespaces":
                namespace, plural, tail = rest[1], rest[2], rest[3:]
            elif rest:
                namespace, plural, tail = None, rest[0], rest[1:]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            name = tail[0] if tail else None
            sub = tail[1] if len(tail) > 1 else None
            req = Request(
                method,
                group,
                version,
                plural,
                namespace,
                name,
                sub,
                query,
                query.get("dryRun") == "All",
                "/".join(tail[2:]),
                content_type,
            )
            payload = self._decode(body)
            with self.lock:
                self.reconcile()
                self.requests.append(req)
                code, result = self._dispatch(req, payload, content_type)
                if not req.dry_run and code < 400 and method != "GET":
                    for c in list(self.controllers):
                        c.on_request(self, req, result if isinstance(result, dict) else None)
                if method == "GET" and req.name and req.sub is None:
                    for c in list(self.controllers):
                        c.on_request(self, req, result if isinstance(result, dict) else None)
            if isinstance(result, str):
                return code, "text/plain", result.encode()
            return self._json(code, result)
        except ApiError as exc:
            return self._json(exc.status["code"], exc.status)
        except Exception as exc:
            return self._json(500, status_obj(500, "InternalError", f"fake apiserver: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _decode(body: bytes) -> Any:
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(
                400,
                "BadRequest",
                "the body of the request was not valid JSON (the fake reads YAML only in its JSON form)",
            ) from None

    @staticmethod
    def _json(code: int, obj: Any) -> tuple[int, str, bytes]:
        return code, "application/json", json.dumps(obj).encode()

    def _dispatch(self, req: Request, payload: Any, content_type: str) -> tuple[int, Any]:
        kind, namespaced, crd = self.resolve(req.group, req.plural, req.version)
        if (
            namespaced
            and req.namespace
            and req.method in ("POST", "PUT", "PATCH")
            and self.get("", "namespaces", None, req.namespace) is None
        ):
            raise ApiError(
                404, "NotFound", f'namespaces "{req.namespace}" not found', name=req.namespace, kind="namespaces"
            )
        if req.sub == "log" and req.plural == "pods":
            return 200, self._log(req)
        if req.sub == "proxy" and req.plural == "pods":
            pod, _, port = (req.name or "").rpartition(":")
            text = self.proxied.get((req.namespace or "", pod, int(port or 80), req.subpath))
            if text is None:
                raise ApiError(
                    503,
                    "ServiceUnavailable",
                    f"error trying to reach service: dial tcp {pod}:{port}: connect: connection refused",
                )
            return 200, text
        if req.name is None:
            if req.method == "GET":
                return 200, self._list(req, kind)
            if req.method == "POST":
                return 201, self._create(req, kind, namespaced, crd, payload)
            raise ApiError(405, "MethodNotAllowed", f"{req.method} is not supported on a collection")
        if req.method == "GET":
            return 200, self._existing(req)
        if req.method == "PUT":
            return 200, self._replace(req, kind, crd, payload)
        if req.method == "PATCH":
            if content_type.startswith("application/apply-patch"):
                return self._server_side_apply(req, kind, namespaced, crd, payload)
            if "json-patch" in content_type:
                raise ApiError(415, "UnsupportedMediaType", "the fake supports merge and apply patches only")
            current = self._existing(req)
            merged = merge_patch(current, payload)
            merged["metadata"]["resourceVersion"] = self.next_rv()
            if not req.dry_run:
                self.objects[self._key(req)] = merged
            return 200, merged
        if req.method == "DELETE":
            return 200, self._delete(req)
        raise ApiError(405, "MethodNotAllowed", f"{req.method} not supported")

    @staticmethod
    def _key(req: Request, name: str | None = None) -> tuple[str, str, str, str]:
        return (req.group, req.plural, req.namespace or "", name or req.name or "")

    def _ref(self, req: Request) -> str:
        return f"{req.plural}.{req.group}" if req.group else req.plural

    def _existing(self, req: Request) -> dict:
        obj = self.get(req.group, req.plural, req.namespace, req.name or "")
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{self._ref(req)} "{req.name}" not found',
                name=req.name,
                group=req.group,
                kind=req.plural,
            )
        return obj

    def _list(self, req: Request, kind: str) -> dict:
        items = self.list(req.group, req.plural, req.namespace)
        selector = req.query.get("labelSelector")
        if selector:
            items = [o for o in items if selector_matches((o.get("metadata") or {}).get("labels") or {}, selector)]
        api_version = f"{req.group}/{req.version}" if req.group else req.version
        return {
            "kind": f"{kind}List",
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    # --- validation: the schemas the static checks use ------------------------------------

    def _validate(self, req: Request, kind: str, crd: dict | None, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        api_version = f"{req.group}/{req.version}" if req.group else req.version
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({api_version})",
            )
        strict = req.query.get("fieldValidation") == "Strict"
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
        body = dict(obj, metadata=meta)
        unknown: list[str] = []
        invalid: list[str] = []
        meta_validator = k8s_definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        for err in errors(meta_validator, meta, "k8s", ("metadata",)) if meta_validator else []:
            (unknown if err.at_key else invalid).append(".".join(map(str, err.path)) if err.at_key else err.message)
        if crd is None:
            validator = core_validator(api_version, kind)
        else:
            # the DGD as the schema generated from the release's CRD (schemas/dynamo/<release>/) says;
            # other custom kinds by their own CRD
            generated = generated_validator(api_version, kind)
            validator = generated[0] if generated else None
            if validator is None:
                import jsonschema

                converted = crd_to_schemas(crd).get((api_version, kind))
                validator = jsonschema.Draft7Validator(converted) if converted else None
            body = {k: v for k, v in body.items() if k != "status"}
            body["metadata"] = {
                k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations", "generateName")
            }
        if validator is not None:
            for err in errors(validator, body, "schema"):
                if err.path[:1] == ("metadata",) and crd is not None:
                    continue  # ObjectMeta was checked above
                if err.at_key:
                    unknown.append(".".join(map(str, err.path)))
                else:
                    invalid.append(err.message)
        if unknown and strict:
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise ApiError(
                400,
                "BadRequest",
                f'{kind} in version "{req.version}" cannot be handled as a {kind}: strict decoding error: {fields}',
            )
        if kind == "Secret":
            data = obj.get("data") or {}
            for key in SECRET_REQUIRED_KEYS.get(str(obj.get("type") or "Opaque"), ()):
                if key not in data and key not in (obj.get("stringData") or {}):
                    invalid.append(f"data[{key}]: Required value")
        if invalid:
            name = meta.get("name", "")
            raise ApiError(
                422,
                "Invalid",
                f'{kind}{"." + req.group if req.group else ""} "{name}" is invalid: ' + "; ".join(invalid[:5]),
            )

    # --- writes ------------------------------------------------------------------------------

    def _admit(self, req: Request, kind: str, namespaced: bool, crd: dict | None, obj: dict) -> dict:
        """What the server does to a new object: name, namespace, server fields, default storage class, status."""
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if namespaced:
            meta["namespace"] = req.namespace
            ns = self.get("", "namespaces", None, req.namespace)
            if ns and (ns.get("metadata") or {}).get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind} "{meta["name"]}" is forbidden: unable to create new content in namespace '
                    f"{req.namespace} because it is being terminated",
                )
        if self.get(req.group, req.plural, req.namespace, meta["name"]) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{self._ref(req)} "{meta["name"]}" already exists',
                name=meta["name"],
                group=req.group,
                kind=req.plural,
            )
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), generation=1, resourceVersion=self.next_rv())
        if crd is not None and any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"]):
            obj.pop("status", None)  # status belongs to the controller
        if kind == "Secret":
            obj.setdefault("type", "Opaque")
            if "stringData" in obj:
                data = obj.setdefault("data", {})
                for k, v in obj.pop("stringData").items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
        if kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        if kind == "PersistentVolumeClaim" and not (obj.get("spec") or {}).get("storageClassName"):
            # the DefaultStorageClass admission plugin writes the default class into the claim
            default = [
                c
                for c in self.list("storage.k8s.io", "storageclasses")
                if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
            ]
            if default:
                obj.setdefault("spec", {})["storageClassName"] = default[0]["metadata"]["name"]
        defaults = {
            "Namespace": {"phase": "Active"},
            "Pod": {"phase": "Pending"},
            "Job": {},
            "PersistentVolumeClaim": {"phase": "Pending"},
        }
        if kind in defaults:
            obj["status"] = copy.deepcopy(defaults[kind])
        return obj

    def _create(self, req: Request, kind: str, namespaced: bool, crd: dict | None, payload: Any) -> dict:
        self._validate(req, kind, crd, payload)
        obj = self._admit(req, kind, namespaced, crd, copy.deepcopy(payload))
        if not req.dry_run:
            self.objects[self._key(req, obj["metadata"]["name"])] = obj
            self.created.append(f"{kind}/{obj['metadata']['name']}")
        return obj

    def _bump_generation(self, current: dict, new: dict) -> None:
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1

    def _replace(self, req: Request, kind: str, crd: dict | None, payload: Any) -> dict:
        current = self._existing(req)
        if req.sub != "status":
            self._validate(req, kind, crd, payload)
        rv = ((payload or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {self._ref(req)} "{req.name}": the object has been modified',
            )
        if req.sub == "status":
            obj = copy.deepcopy(current)
            obj["status"] = copy.deepcopy(payload.get("status"))
        else:
            # a PUT replaces the object: finalizers and annotations not in the body are gone
            obj = copy.deepcopy(payload)
            meta = obj.setdefault("metadata", {})
            for key in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp"):
                if current["metadata"].get(key) is not None:
                    meta[key] = current["metadata"][key]
            if crd is not None or "status" in current:
                obj["status"] = current.get("status")
            if kind == "Secret" and str(obj.get("type") or "Opaque") != str(current.get("type") or "Opaque"):
                raise ApiError(
                    422,
                    "Invalid",
                    f'Secret "{req.name}" is invalid: type: Invalid value: "{obj.get("type")}": field is immutable',
                )
            self._bump_generation(current, obj)
        obj["metadata"]["resourceVersion"] = self.next_rv()
        if not req.dry_run:
            self.objects[self._key(req)] = obj
        return obj

    def _server_side_apply(
        self, req: Request, kind: str, namespaced: bool, crd: dict | None, payload: Any
    ) -> tuple[int, dict]:
        manager = req.query.get("fieldManager")
        if not manager:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        self._validate(req, kind, crd, payload)
        if (payload.get("metadata") or {}).get("name") != req.name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        current = self.get(req.group, req.plural, req.namespace, req.name or "")
        key = self._key(req)
        applied = {k: v for k, v in payload.items() if k not in ("status",)} if crd is not None else payload
        paths = leaf_paths({k: v for k, v in applied.items() if k not in ("apiVersion", "kind")})
        if current is None:
            obj = self._admit(req, kind, namespaced, crd, copy.deepcopy(applied))
            code = 201
        else:
            obj = copy.deepcopy(current)
            for path in self.owned.get((key, manager), set()) - paths:
                drop_path(obj, path)  # fields this manager applied before and no longer does
            obj = apply_merge(obj, applied)
            for k in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp"):
                if current["metadata"].get(k) is not None:
                    obj["metadata"][k] = current["metadata"][k]
            if kind == "Secret" and "stringData" in obj:
                data = obj.setdefault("data", {})
                for k, v in obj.pop("stringData").items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            if crd is not None:
                obj["status"] = current.get("status")
            self._bump_generation(current, obj)
            obj["metadata"]["resourceVersion"] = self.next_rv()
            code = 200
        if not req.dry_run:
            self.objects[key] = obj
            self.owned[(key, manager)] = paths
            if code == 201:
                self.created.append(f"{kind}/{req.name}")
        return code, obj

    def _delete(self, req: Request) -> dict:
        obj = self._existing(req)
        if req.dry_run:
            return status_obj(200, "", "", name=req.name, kind=req.plural)
        if req.plural == "namespaces":
            # the namespace controller empties it asynchronously; it stays Terminating until it is empty
            obj["metadata"].setdefault("deletionTimestamp", now_iso())
            obj["status"] = {"phase": "Terminating"}
            obj["metadata"]["resourceVersion"] = self.next_rv()
        else:
            if req.plural == "jobs" and req.query.get("propagationPolicy") in ("Background", "Foreground"):
                for pod in self.list("", "pods", req.namespace):
                    if ((pod["metadata"].get("labels") or {}).get("job-name")) == req.name:
                        self.request_delete("", "pods", req.namespace, pod["metadata"]["name"])
            self.request_delete(req.group, req.plural, req.namespace, req.name or "")
        out = status_obj(200, "", "", name=req.name, kind=req.plural, uid=obj["metadata"].get("uid"))
        out["status"] = "Success"
        return out

    def _log(self, req: Request) -> str:
        pod = self._existing(Request("GET", "", "v1", "pods", req.namespace, req.name, None, {}))
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.query.get("container")
        if not container:
            if len(names) != 1:
                raise ApiError(
                    400, "BadRequest", f"a container name must be specified for pod {req.name}, choose one of: {names}"
                )
            container = names[0]
        if container not in names + [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {req.name}")
        previous = str(req.query.get("previous")).lower() in ("true", "1")
        status = next(
            (cs for cs in (pod.get("status") or {}).get("containerStatuses") or [] if cs.get("name") == container), None
        )
        if previous:
            if not status or not (status.get("lastState") or {}).get("terminated"):
                raise ApiError(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{req.name}" not found'
                )
        else:
            waiting = ((status or {}).get("state") or {}).get("waiting")
            if status is None or waiting:
                reason = (waiting or {}).get("reason") or "ContainerCreating"
                raise ApiError(
                    400, "BadRequest", f'container "{container}" in pod "{req.name}" is waiting to start: {reason}'
                )
        text = self.logs.get((req.namespace or "", req.name or "", container, previous), "")
        tail = req.query.get("tailLines")
        if tail:
            text = "\n".join(text.splitlines()[-int(tail) :]) + ("\n" if text.endswith("\n") else "")
        return text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, which the client reads as "connection reset by peer"
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _serve(self) -> None:
        cluster: FakeCluster = self.server.cluster  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with cluster.lock:
            fault = cluster.faults.draw() if not self.path.startswith("/version") else None
        if fault in ("429", "500", "503"):
            code = int(fault)
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}[code]
            data = json.dumps(
                status_obj(
                    code,
                    reason,
                    {
                        429: "Too many requests, please try again later.",
                        500: "Internal error occurred: etcdserver: leader changed",
                        503: "the server is currently unable to handle the request",
                    }[code],
                )
            ).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if code == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if fault == "reset-before":
            self._reset()
            return
        code, ctype, data = cluster.handle(self.command, self.path, body, self.headers.get("Content-Type") or "")
        if fault == "reset-after":
            self._reset()  # processed, but the answer never arrives
            return
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate" and len(data) > 2:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeApiServer:
    """A real HTTP server on 127.0.0.1 (free port) in front of a FakeCluster."""

    def __init__(self, cluster: FakeCluster | None = None):
        self.cluster = cluster or FakeCluster()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.cluster = self.cluster  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
