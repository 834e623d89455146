"""A minimal Kubernetes REST client (stdlib only): bearer token, the cluster's CA, discovery, and server-side apply.

The official client cannot send `application/apply-patch+yaml` with `dryRun=All` for arbitrary kinds without its
dynamic layer; this client sends exactly the request `kubectl apply --server-side --dry-run=server` sends.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELD_MANAGER = "recipe-harness"


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # parsed JSON, or the raw text when the body is not JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body)
        return str(self.body)[:500]


@dataclass(frozen=True)
class Resource:
    """One API resource as discovery lists it."""

    group_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        base += f"/{self.plural}"
        return base + (f"/{urllib.parse.quote(name)}" if name else "")


class ApiError(RuntimeError):
    """The API server could not be reached."""


class Client:
    """One HTTPS connection per thread to the API server at `server` (https://127.0.0.1:PORT)."""

    def __init__(self, server: str, token: str, ca_cert: Path, timeout: float = 30.0):
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_cert))
        self._local = threading.local()
        self._discovery: dict[str, dict[str, Resource]] = {}

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self._ssl, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Response:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):  # one retry on a connection the server closed while idle
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise ApiError(f"{method} {path}: {exc}") from exc
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Response(resp.status, parsed)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- discovery ---------------------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str, refresh: bool = False) -> Resource | None:
        """The resource serving `kind` in `api_version` (None when the server does not serve it)."""
        if refresh or api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            resp = self.get(path)
            found: dict[str, Resource] = {}
            if resp.ok and isinstance(resp.body, dict):
                for r in resp.body.get("resources") or []:
                    if "/" in r.get("name", ""):
                        continue  # subresources
                    found[r["kind"]] = Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
            self._discovery[api_version] = found
        return self._discovery[api_version].get(kind)

    # --- writes --------------------------------------------------------------------------------------------------

    def apply(self, resource: Resource, obj: dict, namespace: str | None, dry_run: bool = True) -> Response:
        """Server-side apply (`application/apply-patch+yaml`, force) of `obj`; dry run unless told otherwise."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        # Strict field validation: an unknown or duplicate field is an error, as with `kubectl apply` since 1.27.
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        path = resource.path(namespace, name) + "?" + urllib.parse.urlencode(query)
        # JSON is YAML: the server parses the body with its YAML decoder either way.
        return self.request("PATCH", path, obj, content_type="application/apply-patch+yaml")

    def create(self, resource: Resource, obj: dict, namespace: str | None = None) -> Response:
        return self.request("POST", resource.path(namespace), obj)
