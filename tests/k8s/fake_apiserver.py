"""An HTTP-level fake of the Kubernetes API paths the gpu deployer uses, with a scripted controller per scenario."""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
BUILTIN_VERSION = {"": "v1", "batch": "v1", "apps": "v1", "storage.k8s.io": "v1", "apiextensions.k8s.io": "v1", "rbac.authorization.k8s.io": "v1"}
# What strict field validation knows of built-in kinds: the top level and metadata (enough to catch typos there).
TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status", "data", "stringData", "binaryData", "type", "immutable",
             "rules", "roleRef", "subjects", "provisioner", "parameters", "reclaimPolicy", "volumeBindingMode",
             "allowVolumeExpansion", "mountOptions", "allowedTopologies", "secrets", "imagePullSecrets", "automountServiceAccountToken"}
METADATA = {"name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences", "managedFields", "selfLink"}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code: int, reason: str, message: str, **details: Any) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "details": details, "code": code}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any):
        super().__init__(message)
        self.status = status_obj(code, reason, message, **details)


@dataclass
class Request:
    """One API call as the controller hook sees it."""

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

    @property
    def kind(self) -> str:
        return BUILTIN.get((self.group, self.plural), (self.plural, True))[0]


class Controller:
    """A scenario's stand-in for the operators and kubelets: reacts to requests, under the cluster lock."""

    def on_request(self, cluster: "FakeCluster", req: Request, obj: dict | None) -> None:
        pass


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
            elif schema.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"):
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
    """The object store and the request semantics: 404/409 Status objects, dry runs that do not
    persist, strict field validation, status subresources, namespace deletion, pod logs."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.proxied: dict[tuple[str, str, int, str], str] = {}  # (namespace, pod, port, path) -> body
        self.requests: list[Request] = []
        self.controller: Controller = Controller()
        self._rv = 100

    # --- scenario helpers ----------------------------------------------------------------

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
        """Store an object as if a controller created it (no validation)."""
        with self.lock:
            obj = copy.deepcopy(obj)
            group, _ = self.split_api_version(obj["apiVersion"])
            plural = self.plural_of(obj["apiVersion"], obj["kind"])
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_iso())
            meta["resourceVersion"] = self.next_rv()
            self.objects[(group, plural, meta.get("namespace") or "", meta["name"])] = obj
            return obj

    def get(self, group: str, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.objects.get((group, plural, namespace or "", name))

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[dict]:
        return [o for (g, p, ns, _), o in sorted(self.objects.items()) if g == group and p == plural and (namespace is None or ns == namespace)]

    def remove(self, group: str, plural: str, namespace: str | None, name: str) -> None:
        self.objects.pop((group, plural, namespace or "", name), None)

    def set_log(self, namespace: str, pod: str, container: str, text: str, previous: bool = False) -> None:
        self.logs[(namespace, pod, container, previous)] = text

    def add_node(self, name: str, product: str | None, gpus: int, ready: bool = True) -> None:
        labels = {"kubernetes.io/hostname": name}
        if product:
            labels["nvidia.com/gpu.product"] = product
        self.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
                  "status": {"allocatable": {"cpu": "64", "memory": "1Ti", "nvidia.com/gpu": str(gpus)},
                             "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})

    def add_storage_class(self, name: str, default: bool = False) -> None:
        ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        self.put({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name, "annotations": ann},
                  "provisioner": "fake.example/local"})

    def add_crd(self, crd: dict) -> None:
        self.put(crd)

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.put({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
                  "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    def add_namespace(self, name: str) -> None:
        self.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})

    def add_event(self, namespace: str, obj_kind: str, obj_name: str, reason: str, message: str, type_: str = "Warning") -> None:
        self.put({"apiVersion": "v1", "kind": "Event",
                  "metadata": {"name": f"{obj_name}.{uuid.uuid4().hex[:8]}", "namespace": namespace},
                  "involvedObject": {"kind": obj_kind, "name": obj_name, "namespace": namespace},
                  "reason": reason, "message": message, "type": type_, "count": 1, "lastTimestamp": now_iso()})

    def namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.list("", "namespaces")]

    # --- request handling ----------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts == ["version"]:
                return self._json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0" * 40,
                                        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                                        "compiler": "gc", "platform": "linux/amd64"})
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
            req = Request(method, group, version, plural, namespace, name, sub, query, query.get("dryRun") == "All", "/".join(tail[2:]))
            payload = json.loads(body) if body else None
            with self.lock:
                self.requests.append(req)
                code, result = self._dispatch(req, payload, content_type)
                if not req.dry_run and code < 400:
                    self.controller.on_request(self, req, result if isinstance(result, dict) else None)
            if isinstance(result, str):
                return code, "text/plain", result.encode()
            return self._json(code, result)
        except ApiError as exc:
            return self._json(exc.status["code"], exc.status)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake shows up as a 500, not a dropped connection
            return self._json(500, status_obj(500, "InternalError", f"fake apiserver: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _json(code: int, obj: Any) -> tuple[int, str, bytes]:
        return code, "application/json", json.dumps(obj).encode()

    def _dispatch(self, req: Request, payload: Any, content_type: str) -> tuple[int, Any]:
        kind, namespaced, crd = self.resolve(req.group, req.plural, req.version)
        if namespaced and req.namespace and not (req.plural == "namespaces"):
            if req.method in ("POST", "PUT", "PATCH") and self.get("", "namespaces", None, req.namespace) is None:
                raise ApiError(404, "NotFound", f'namespaces "{req.namespace}" not found', name=req.namespace, kind="namespaces")
        if req.sub == "log" and req.plural == "pods":
            return 200, self._log(req)
        if req.sub == "proxy" and req.plural == "pods":
            pod, _, port = (req.name or "").rpartition(":")
            text = self.proxied.get((req.namespace or "", pod, int(port or 80), req.subpath))
            if text is None:
                raise ApiError(503, "ServiceUnavailable", f'error trying to reach service: dial tcp {pod}:{port}: connect: connection refused')
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
            if "json-patch" in content_type:
                raise ApiError(415, "UnsupportedMediaType", "the fake supports merge patches only")
            current = self._existing(req)
            merged = merge_patch(current, payload)
            merged["metadata"]["resourceVersion"] = self.next_rv()
            if not req.dry_run:
                self.objects[(req.group, req.plural, req.namespace or "", req.name)] = merged
            return 200, merged
        if req.method == "DELETE":
            return 200, self._delete(req)
        raise ApiError(405, "MethodNotAllowed", f"{req.method} not supported")

    def _ref(self, req: Request) -> str:
        return f"{req.plural}.{req.group}" if req.group else req.plural

    def _existing(self, req: Request) -> dict:
        obj = self.get(req.group, req.plural, req.namespace, req.name or "")
        if obj is None:
            raise ApiError(404, "NotFound", f'{self._ref(req)} "{req.name}" not found', name=req.name, group=req.group, kind=req.plural)
        if req.sub == "status":
            return obj
        return obj

    def _list(self, req: Request, kind: str) -> dict:
        items = self.list(req.group, req.plural, req.namespace)
        selector = req.query.get("labelSelector")
        if selector:
            items = [o for o in items if selector_matches((o.get("metadata") or {}).get("labels") or {}, selector)]
        api_version = f"{req.group}/{req.version}" if req.group else req.version
        return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _validate(self, req: Request, kind: str, crd: dict | None, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        api_version = f"{req.group}/{req.version}" if req.group else req.version
        if obj.get("kind") != kind or obj.get("apiVersion") != api_version:
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({api_version})")
        if req.query.get("fieldValidation") != "Strict":
            return
        unknown = [f"metadata.{k}" for k in (obj.get("metadata") or {}) if k not in METADATA]
        if crd is None:
            unknown += [k for k in obj if k not in TOP_LEVEL]
        else:
            version = next(v for v in crd["spec"]["versions"] if v["name"] == req.version)
            schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            unknown += unknown_fields(body, schema, "")
        if unknown:
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise ApiError(400, "BadRequest", f'{kind} in version "{req.version}" cannot be handled as a {kind}: strict decoding error: {fields}')

    def _create(self, req: Request, kind: str, namespaced: bool, crd: dict | None, payload: Any) -> dict:
        self._validate(req, kind, crd, payload)
        obj = copy.deepcopy(payload)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
        if namespaced:
            meta["namespace"] = req.namespace
            ns = self.get("", "namespaces", None, req.namespace)
            if ns and (ns.get("status") or {}).get("phase") == "Terminating":
                raise ApiError(403, "Forbidden", f'{kind} "{meta["name"]}" is forbidden: unable to create new content in namespace {req.namespace} because it is being terminated')
        if self.get(req.group, req.plural, req.namespace, meta["name"]) is not None:
            raise ApiError(409, "AlreadyExists", f'{self._ref(req)} "{meta["name"]}" already exists', name=meta["name"], group=req.group, kind=req.plural)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), generation=1, resourceVersion=self.next_rv())
        if crd is not None and any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"]):
            obj.pop("status", None)  # status belongs to the controller
        if kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        defaults = {"Namespace": {"phase": "Active"}, "Pod": {"phase": "Pending"}, "Job": {}, "PersistentVolumeClaim": {"phase": "Bound"}}
        if kind in defaults:
            obj.setdefault("status", copy.deepcopy(defaults[kind]))
        if not req.dry_run:
            self.objects[(req.group, req.plural, req.namespace or "", meta["name"])] = obj
        return obj

    def _replace(self, req: Request, kind: str, crd: dict | None, payload: Any) -> dict:
        current = self._existing(req)
        if req.sub != "status":
            self._validate(req, kind, crd, payload)
        rv = ((payload or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {self._ref(req)} "{req.name}": the object has been modified')
        obj = copy.deepcopy(current)
        if req.sub == "status":
            obj["status"] = copy.deepcopy(payload.get("status"))
        else:
            new = copy.deepcopy(payload)
            meta = new.setdefault("metadata", {})
            for key in ("uid", "creationTimestamp", "namespace", "generation"):
                meta[key] = current["metadata"].get(key)
            if crd is not None:
                new["status"] = current.get("status")
                if new.get("spec") != current.get("spec"):
                    meta["generation"] = int(current["metadata"].get("generation") or 1) + 1
            obj = new
        obj["metadata"]["resourceVersion"] = self.next_rv()
        if not req.dry_run:
            self.objects[(req.group, req.plural, req.namespace or "", req.name or "")] = obj
        return obj

    def _delete(self, req: Request) -> dict:
        obj = self._existing(req)
        if req.dry_run:
            return status_obj(200, "", "", name=req.name, kind=req.plural)
        if req.plural == "namespaces":
            # The real namespace controller empties it asynchronously; the fake does it at once.
            for key in [k for k in self.objects if k[2] == req.name]:
                del self.objects[key]
        if req.plural == "jobs" and req.query.get("propagationPolicy") in ("Background", "Foreground"):
            for pod in self.list("", "pods", req.namespace):
                if ((pod["metadata"].get("labels") or {}).get("job-name")) == req.name:
                    self.remove("", "pods", req.namespace, pod["metadata"]["name"])
        self.remove(req.group, req.plural, req.namespace, req.name or "")
        out = status_obj(200, "", "", name=req.name, kind=req.plural, uid=obj["metadata"].get("uid"))
        out["status"] = "Success"
        return out

    def _log(self, req: Request) -> str:
        pod = self._existing(Request("GET", "", "v1", "pods", req.namespace, req.name, None, {}))
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.query.get("container")
        if not container:
            if len(names) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod {req.name}, choose one of: {names}")
            container = names[0]
        previous = str(req.query.get("previous")).lower() in ("true", "1")
        key = (req.namespace or "", req.name or "", container, previous)
        if key not in self.logs:
            if previous:
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{req.name}" not found')
            return ""
        text = self.logs[key]
        tail = req.query.get("tailLines")
        if tail:
            text = "\n".join(text.splitlines()[-int(tail):]) + ("\n" if text.endswith("\n") else "")
        return text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        code, ctype, data = self.server.cluster.handle(self.command, self.path, body, self.headers.get("Content-Type") or "")  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
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

    def start(self) -> "FakeApiServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

