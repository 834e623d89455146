"""Server-side dry run of a recipe's objects against a real API server, and its answers as findings at the manifest's
lines: `path:line:col: [apiserver] <field>: <the API server's own message>`.

Each object is sent as `kubectl apply --server-side --dry-run=server --field-validation=Strict` sends it (PATCH,
`application/apply-patch+yaml`, `dryRun=All`, `fieldValidation=Strict`, force) into a namespace of its own per
recipe, so admission, defaulting, the built-in validation (requests vs limits, Job rules, name formats, volume
references), CRD structural schemas and CEL rules all run; nothing is persisted. A Status's `details.causes[].field`
(e.g. `spec.template.spec.containers[0].resources.requests`) is walked through the source mapping to the line that
wrote the field; an error without a field points at the object.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from harness.recipe.findings import Finding, Loc, Severity, display_path
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import SrcList, SrcMap
from harness.run.apiserver.objects import Target, manifest_targets, rendered_targets
from harness.run.cluster.api import Client, Response

CHECK_ID = "apiserver"
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[([^\]]*)\]")


def field_path(text: str) -> list:
    """`spec.containers[0].resources.limits[nvidia.com/gpu]` -> ['spec', 'containers', 0, 'resources', 'limits',
    'nvidia.com/gpu']."""
    out: list = []
    for name, index, key in _PATH_PART.findall(text or ""):
        if name:
            out.append(name)
        elif index:
            out.append(int(index))
        elif key:
            out.append(key)
    return out


def locate(source: SrcMap, path: list, fallback: Loc) -> Loc:
    """The source position of the deepest node of `path` present in `source` (key position for the last step)."""
    node, loc = source, fallback
    for part in path:
        if isinstance(node, SrcMap) and part in node:
            loc = node.key_loc(part)
            node = node[part]
        elif isinstance(node, SrcList) and isinstance(part, int) and 0 <= part < len(node):
            loc = node.loc_of(part)
            node = node[part]
        else:
            break
    return loc


def namespace_for(recipe_id: str, run: str = "") -> str:
    """A DNS label per recipe and run: a readable prefix, a hash of the id (ids that differ only past 36 characters
    differ) and the run's token (a deleted namespace lingers while terminating; a new run never meets it)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", recipe_id.lower()).strip("-")[:36].strip("-")
    digest = hashlib.sha256(recipe_id.encode()).hexdigest()[:6]
    return f"rh-{slug}-{digest}" + (f"-{run}" if run else "")


@dataclass
class Outcome:
    """The API server's verdict on one target."""

    target: Target
    findings: list[Finding] = field(default_factory=list)
    skipped: str = ""  # why the object was not sent (e.g. the server does not serve its kind)


def _finding(recipe: Recipe, loc: Loc, message: str, hint: str = "") -> Finding:
    return Finding(
        CHECK_ID, Severity.ERROR, display_path(loc.file), max(loc.line, 1), max(loc.column, 1), message, hint, recipe.id
    )


def findings_of(recipe: Recipe, target: Target, resp: Response) -> list[Finding]:
    """One finding per cause of a failed request (its field's line), or one at the object."""
    body = resp.body if isinstance(resp.body, dict) else {}
    causes = (body.get("details") or {}).get("causes") or []
    origin = " (in the pod the operator would create, as modelled by render)" if target.origin == "render" else ""
    out = []
    for cause in causes:
        path = str(cause.get("field") or "")
        loc = locate(target.source, field_path(path), target.loc) if path else target.loc
        message = str(cause.get("message") or cause.get("reason") or "")
        out.append(_finding(recipe, loc, f"{path}: {message}{origin}" if path else message + origin))
    if not out:
        out.append(_finding(recipe, target.loc, f"HTTP {resp.status}: {resp.message()}{origin}"))
    return out


class RecipeDryRun:
    """Applies every target of one recipe in its namespace (created for real, deleted by cleanup())."""

    def __init__(self, client: Client, recipe: Recipe):
        self.client = client
        self.recipe = recipe
        self.namespace = namespace_for(recipe.id, secrets.token_hex(3))
        self.notes: list[str] = []
        manifest = manifest_targets(recipe)
        rendered, notes = rendered_targets(recipe)
        self.notes.extend(notes)
        self.targets: list[Target] = []
        seen: dict[str, int] = {}
        for t in manifest + rendered:  # labels name the items: two objects of one kind and name get #2, #3
            seen[t.label] = seen.get(t.label, 0) + 1
            self.targets.append(t if seen[t.label] == 1 else replace(t, label=f"{t.label}#{seen[t.label]}"))

    def _ensure_namespace(self) -> None:
        ns_res = self.client.resource("v1", "Namespace")
        assert ns_res is not None
        resp = self.client.create(
            ns_res, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        )
        if not resp.ok and resp.status != 409:
            raise RuntimeError(f"creating namespace {self.namespace}: HTTP {resp.status}: {resp.message()}")

    def _prerequisites(self) -> None:
        """What admission looks up for Pods: the ServiceAccount they run as. It is created for real (server-side
        apply, so racing the controller-manager's own `default` is harmless); a ServiceAccount the recipe ships is
        applied as written (its own dry run is one of the targets), so pods are judged as after `kubectl apply -f`."""
        pods = [t for t in self.targets if t.obj.get("kind") == "Pod"]
        if not pods:
            return
        sa_res = self.client.resource("v1", "ServiceAccount")
        assert sa_res is not None
        shipped = {
            t.obj["metadata"]["name"]: t.obj
            for t in self.targets
            if t.obj.get("kind") == "ServiceAccount" and (t.obj.get("metadata") or {}).get("name")
        }
        for t in pods:
            name = str((t.obj.get("spec") or {}).get("serviceAccountName") or "default")
            if name in shipped:
                sa = {k: v for k, v in shipped[name].items() if k != "status"}
            elif name == "default":
                sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
            else:
                continue  # not ours to create: admission reports it, as it would on a real cluster
            sa = {**sa, "metadata": {**sa["metadata"], "namespace": self.namespace}}
            self.client.apply(sa_res, sa, self.namespace, dry_run=False)

    def run(self) -> Iterator[Outcome]:
        self._ensure_namespace()
        self._prerequisites()
        for target in self.targets:
            yield self.apply(target)

    def apply(self, target: Target) -> Outcome:
        obj = dict(target.obj)
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        resource = self.client.resource(api_version, kind)
        if resource is None:
            return Outcome(
                target, skipped=f"the API server does not serve {kind} in {api_version or '(no apiVersion)'}"
            )
        meta = dict(obj.get("metadata") or {})
        if resource.namespaced:
            meta["namespace"] = self.namespace  # the recipe is applied with `kubectl apply -n <namespace>`
        obj["metadata"] = meta
        resp = self.client.apply(resource, obj, self.namespace if resource.namespaced else None, dry_run=True)
        if resp.ok:
            return Outcome(target)
        return Outcome(target, findings_of(self.recipe, target, resp))

    def cleanup(self) -> None:
        ns_res = self.client.resource("v1", "Namespace")
        if ns_res is not None:
            self.client.request("DELETE", ns_res.path(None, self.namespace))
