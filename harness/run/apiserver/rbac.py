"""SubjectAccessReview of the RBAC a recipe ships: is the ServiceAccount a component runs as allowed what the component
needs? The recipe's ServiceAccounts, Roles and RoleBindings are applied for real in the recipe's namespace, then the
API server's authorizer (RBAC) answers one SubjectAccessReview per verb and resource.

What a component needs comes from upstream source, not from the recipe:
- the Dynamo EPP (a container running `/epp`, the binary of the dynamo-frontend image): the Role the Dynamo
  operator itself gives its EPP, ai-dynamo/dynamo deploy/helm/charts/platform/components/operator/templates/epp.yaml
  (code index version @8f9507dd, not pinned to a release tag): inferencepools and inferencepools/status
  (inference.networking.k8s.io), pods, endpointslices (discovery.k8s.io) and dynamoworkermetadatas (nvidia.com,
  "for KV-aware routing"), each get/list/watch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.recipe.findings import Finding, Loc, Severity, display_path
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import Document, dig, mapping, sequence, to_plain
from harness.run.cluster.api import Client

CHECK_ID = "apiserver-rbac"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")


@dataclass(frozen=True)
class Need:
    group: str
    resource: str
    verbs: tuple[str, ...] = ("get", "list", "watch")
    subresource: str = ""

    def describe(self, verb: str) -> str:
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        return f"{verb} {res}" + (f".{self.group}" if self.group else "")


@dataclass(frozen=True)
class Component:
    """A component the recipes deploy by hand, how to recognise its container, and what it must be allowed."""

    name: str
    command: str  # the container's command[0]
    needs: tuple[Need, ...]
    source: str


EPP = Component(
    "the Dynamo EPP",
    "/epp",
    (
        Need("inference.networking.k8s.io", "inferencepools"),
        Need("inference.networking.k8s.io", "inferencepools", subresource="status"),
        Need("", "pods"),
        Need("discovery.k8s.io", "endpointslices"),
        Need("nvidia.com", "dynamoworkermetadatas"),
    ),
    "the Dynamo operator's own EPP Role (deploy/helm/charts/platform/components/operator/templates/epp.yaml)",
)
COMPONENTS = (EPP,)


@dataclass(frozen=True)
class Subject:
    """A workload of the recipe that runs a known component, and the ServiceAccount it runs as."""

    component: Component
    doc: Document
    service_account: str
    loc: Loc  # serviceAccountName's line, else the pod spec's


def subjects(recipe: Recipe) -> list[Subject]:
    out = []
    for doc in recipe.documents():
        spec = dig(doc.data, "spec", "template", "spec") if doc.kind != "Pod" else dig(doc.data, "spec")
        spec = mapping(spec)
        if spec is None:
            continue
        for c in sequence(spec.get("containers")) or []:
            command = sequence(dig(c, "command")) or []
            for comp in COMPONENTS:
                if command and command[0] == comp.command:
                    sa = str(spec.get("serviceAccountName") or "default")
                    out.append(Subject(comp, doc, sa, spec.loc_of("serviceAccountName")))
    return out


def allowed(client: Client, namespace: str, service_account: str, need: Need, verb: str) -> bool:
    """The API server's answer to: may system:serviceaccount:<namespace>:<sa> <verb> <resource> in the namespace?"""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{service_account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": need.group,
                "resource": need.resource,
                **({"subresource": need.subresource} if need.subresource else {}),
            },
        },
    }
    resp = client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(resp.ok and isinstance(resp.body, dict) and (resp.body.get("status") or {}).get("allowed"))


# The RBAC authorizer answers from an informer cache: a Role applied a moment ago can still be unseen, so a denial
# right after the apply is asked again until this long has passed (the cache only ever moves towards "allowed").
AUTHORIZER_CATCH_UP_S = 5.0


def _missing(client: Client, namespace: str, s: Subject) -> list[str]:
    deadline = time.monotonic() + AUTHORIZER_CATCH_UP_S
    while True:
        missing = [
            n.describe(v)
            for n in s.component.needs
            for v in n.verbs
            if not allowed(client, namespace, s.service_account, n, v)
        ]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)


def review_recipe(client: Client, recipe: Recipe, namespace: str) -> list[Finding]:
    """Apply the recipe's RBAC objects in `namespace` and review every subject's needs; one finding per subject that
    lacks anything, at its serviceAccountName."""
    found = subjects(recipe)
    if not found:
        return []
    for doc in recipe.documents():
        if doc.kind in RBAC_KINDS:
            res = client.resource(doc.api_version, doc.kind)
            if res is not None:
                obj = to_plain(doc.data)
                obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": namespace}
                client.apply(res, obj, namespace, dry_run=False)
    out = []
    for s in found:
        missing = _missing(client, namespace, s)
        if missing:
            out.append(
                Finding(
                    CHECK_ID,
                    Severity.ERROR,
                    display_path(s.loc.file),
                    s.loc.line,
                    s.loc.column,
                    f"SubjectAccessReview: ServiceAccount {s.service_account!r} of {s.doc.kind} {s.doc.name!r} "
                    f"({s.component.name}) may not {', '.join(missing)}",
                    f"grant them in the Role bound to it; needed per {s.component.source}",
                    recipe.id,
                )
            )
    return out
