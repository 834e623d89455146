"""What the API-server tier applies for a recipe: every object of its manifests, and the pods the Dynamo operator
would create from its DynamoGraphDeployment, each with the source node its API paths map back to.

The operator's pods come from the hand model (harness/analysis/render.py: the named fallback while the real
operator cannot run here): for every rendered pod form of a v1beta1 component, the component's own
`podTemplate.spec` with the main container's command, args, environment, ports and the operator's shared-memory
volume as the model renders them. A rendered pod's API paths map back into the component's `podTemplate`, so an
error the API server finds in it points at the manifest line the pod was made from.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from harness.analysis.render import EnvVar, RenderedPod, render_recipe
from harness.recipe.findings import Loc
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import Document, SrcMap, dig, mapping, to_plain

RENDER_SOURCE = "render (hand model of the operator, harness/analysis/render.py; the real operator does not run here)"


@dataclass(frozen=True)
class Target:
    """One object to apply."""

    label: str  # the item name: `deploy.yaml` objects are `<file>/<Kind>/<name>`
    obj: dict  # plain JSON-able object
    source: SrcMap  # the node whose paths the object's paths follow (the manifest object, or a podTemplate)
    loc: Loc  # where a finding without a field goes
    origin: str = "manifest"  # manifest | render


def manifest_targets(recipe: Recipe) -> list[Target]:
    """Every Kubernetes object in the recipe's files (deploy.yaml, perf.yaml, model-cache, gaie)."""
    out = []
    for doc in recipe.documents():
        if not doc.kind or not isinstance(doc.data, SrcMap):
            continue
        name = doc.name or f"#{doc.index}"
        out.append(Target(f"{doc.file.name}/{doc.kind}/{name}", to_plain(doc.data), doc.data, doc.loc))
    return out


def _dns_label(text: str) -> str:
    text = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")
    return text[:63].rstrip("-") or "x"


def _env_item(e: EnvVar, written: dict[str, Any]) -> dict:
    if e.value is not None:
        return {"name": e.name, "value": e.value}
    if e.name in written:  # the manifest's own valueFrom, unchanged
        return copy.deepcopy(written[e.name])
    kind, _, ref = e.value_from.partition(" ")
    if kind == "fieldRef":
        return {"name": e.name, "valueFrom": {"fieldRef": {"fieldPath": ref}}}
    if kind == "secretKeyRef":
        secret, _, key = ref.partition("/")
        return {"name": e.name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    return {"name": e.name, "value": ""}


def _operator_volume(name: str, desc: str) -> dict | None:
    """The volume behind an operator-added mount as render describes it: the shared-memory emptyDir
    ("emptyDir medium=Memory sizeLimit=8Gi") or the MPI SSH key secret ("secret mpirun-ssh-key (...)")."""
    kind, _, rest = desc.partition(" ")
    if kind == "emptyDir":
        size = rest.rpartition("sizeLimit=")[2] if "sizeLimit=" in rest else None
        return {"name": name, "emptyDir": {"medium": "Memory", **({"sizeLimit": size} if size else {})}}
    if kind == "secret":
        return {"name": name, "secret": {"secretName": rest.split(" ", 1)[0], "defaultMode": 0o644}}
    return None


def _pod_for(svc: Service, pod: RenderedPod, dgd_name: str) -> dict | None:
    template = mapping(dig(svc.data, "podTemplate"))
    spec = to_plain(template.get("spec")) if template is not None else None
    if not isinstance(spec, dict):
        return None
    containers = spec.get("containers") or []
    main = next((c for c in containers if isinstance(c, dict) and c.get("name") == "main"), None)
    if main is None and containers and isinstance(containers[0], dict):
        main = containers[0]
    if main is None:
        return None
    written = {e["name"]: e for e in main.get("env") or [] if isinstance(e, dict) and "name" in e}
    main["command"] = list(pod.command)
    main["args"] = list(pod.args)
    main["env"] = [_env_item(e, written) for e in pod.env]
    ports = {p.get("name"): p for p in main.get("ports") or [] if isinstance(p, dict)}
    for p in pod.ports:
        ports.setdefault(p.name, {"name": p.name, "containerPort": p.port, "protocol": p.protocol})
    main["ports"] = list(ports.values())
    volumes = spec.setdefault("volumes", [])
    mounts = main.setdefault("volumeMounts", [])
    for m in pod.mounts:
        if m.source != "operator":
            continue
        volume = _operator_volume(m.name, m.volume)
        if volume is None:
            continue
        volumes.append(volume)
        mounts.append({"name": m.name, "mountPath": m.mount_path, **({"readOnly": True} if m.read_only else {})})
    meta = to_plain(template.get("metadata")) if template is not None else None
    labels = dict((meta or {}).get("labels") or {})
    labels.update({"nvidia.com/dynamo-graph-deployment-name": _dns_label(dgd_name)})
    name = _dns_label(f"{dgd_name}-{svc.name}-{pod.role}")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": dict((meta or {}).get("annotations") or {})},
        "spec": spec,
    }


def rendered_targets(recipe: Recipe) -> tuple[list[Target], list[str]]:
    """The operator's pods for the recipe's DGD (from the render model), and notes on what was left out."""
    dep = recipe.deployment
    doc: Document | None = recipe.dgd_doc
    if dep is None or doc is None:
        return [], []
    notes: list[str] = []
    if dep.api_version != "nvidia.com/v1beta1":
        return [], [f"{dep.api_version}: only v1beta1 components carry a full podTemplate to build the pods from"]
    try:
        pods = render_recipe(recipe)
    except Exception as exc:  # the render model's own failure is reported by the render check, not here
        return [], [f"render failed: {type(exc).__name__}: {exc}"]
    services = {s.name: s for s in dep.services}
    out = []
    for pod in pods:
        svc = services.get(pod.service)
        if svc is None:
            continue
        obj = _pod_for(svc, pod, dep.name)
        template = mapping(dig(svc.data, "podTemplate"))
        if obj is None or template is None:
            notes.append(f"{pod.service}: no podTemplate.spec with containers; its pod was not built")
            continue
        out.append(
            Target(
                f"{doc.file.name}/{dep.name}/{pod.service}/Pod({pod.role})",
                obj,
                template,
                svc.loc,
                origin="render",
            )
        )
    return out, notes
