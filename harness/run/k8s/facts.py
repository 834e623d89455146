"""Facts the gpu run reads off a recipe:
names, served model, release, referenced secrets, router mode, manifests in apply order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.recipe.model import DGD_KIND, Recipe
from harness.recipe.service import DEFAULT_ROUTER_MODE
from harness.recipe.yamlsrc import Document, dig, to_plain

# ConfigMaps first (workers mount them at start), then the ComputeDomain the DGD claims, then the DGD.
APPLY_ORDER = {
    "ConfigMap": 0,
    "Secret": 0,
    "ServiceAccount": 1,
    "Role": 1,
    "RoleBinding": 2,
    "PersistentVolumeClaim": 2,
    "ComputeDomain": 3,
    DGD_KIND: 5,
}


def recipe_slug(recipe: Recipe) -> str:
    return recipe.id.replace("/", "_")


def model_namespace(recipe: Recipe, engine: str = "real") -> str:
    """The namespace of every run of one model: its model cache PVC lives there across runs, so a nightly
    downloads a model once, not every night. Mocker runs get their own (their PVC is fitted to small clusters)."""
    model = re.sub(r"[^a-z0-9-]+", "-", recipe.model.lower()).strip("-")[:40].strip("-") or "model"
    return f"rh-{model}" + ("-mocker" if engine == "mocker" else "")


def component_resource_name(dgd: str, component: str) -> str:
    """What the operator names a component's Service: `<dgd>-<lowercased component>`, dots turned into hyphens
    (deploy/operator/internal/dynamo/graph.go GetDCDResourceName; GenerateComponentService: "Service names must
    be DNS-1035 labels (no dots)")."""
    return f"{dgd}-{component.lower()}".replace(".", "-")


def frontend_service(recipe: Recipe) -> str:
    """The frontend's Service as the operator creates it from the recipe's DGD."""
    dep = recipe.deployment
    if dep is None:
        return ""
    frontend = dep.frontends[0].name if dep.frontends else "Frontend"
    return component_resource_name(dep.name, frontend)


def model_revision(recipe: Recipe) -> str:
    """`<model id>@<revision>` the cache must hold (recipe.yaml model.id / model.revision)."""
    rev = dig(recipe.metadata, "model", "revision")
    return f"{model_id(recipe)}@{rev}" if rev else ""


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
                names += [
                    str(v.get("name"))
                    for v in value
                    if isinstance(v, dict) and v.get("name") and str(v.get("name")) not in names
                ]
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


def local_aiperf_args(
    options: tuple[tuple[str, str | None], ...], base_url: str, artifact_dir: Path, tokenizer: str | None
) -> list[str]:
    """`aiperf profile` with the Job's own options, pointed at the port-forward and a local artifact folder."""
    args = ["profile"]
    for flag, value in options:
        if flag in ("--url", "--artifact-dir", "--ui-type", "--ui") or (flag == "--tokenizer" and tokenizer):
            continue
        args += [flag] if value is None else [flag, value]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    return args + ["--url", base_url, "--artifact-dir", str(artifact_dir), "--ui-type", "none"]
