"""Schema checks: metadata against our schema, every manifest against ours, Kubernetes' or an imported CRD's."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import DGD_KIND, METADATA_FILE, Recipe, dig
from harness.recipe.schemas import (
    CORE_KINDS, KUBECONFORM_TEMPLATE, KUBERNETES_VERSION, SCHEMAS_DIR, CrdSchemas, SchemaError, core_validator, errors,
    k8s_definition_validator, metadata_validator, our_validator, schema_file,
)
from harness.recipe.yamlsrc import Document, loc_at_path, to_plain
from harness.checks import CheckContext, check


@dataclass(frozen=True)
class SchemaOptions:
    """Options of `schema-valid`."""

    crd: tuple[Path, ...] = ()  # CRD files (--crd) every manifest of their kinds is also validated against


@lru_cache(maxsize=None)
def crd_schemas(crd: tuple[Path, ...]) -> CrdSchemas:
    """The imported CRDs, read once per run (per distinct list)."""
    return CrdSchemas(list(crd))


@check("metadata-schema")
def metadata_schema(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """`recipe.yaml` follows schemas/recipe-metadata.json: model id and revision, framework,
    mode, hardware, GPU and node totals, versions, status and perf targets, all typed.

    Fails: `gpus: "16"` (a string) or a missing `hardware.gpu`.
    """
    f = recipe.metadata_file
    if f is None or not f.documents:
        return  # missing file: layout-required-files; broken file: yaml-well-formed
    if len(f.documents) > 1:
        yield problem(f.documents[1].loc, f"{METADATA_FILE} must hold one document, found {len(f.documents)}")
    doc = f.documents[0]
    for err in errors(metadata_validator(), to_plain(doc.data), "ours"):
        yield problem(_loc(doc.data, err, doc.loc), err.message, "see schemas/recipe-metadata.json")


@check("metadata-matches-path")
def metadata_matches_path(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The metadata's framework and mode are the recipe's directory names, so the id, the
    catalogue table and the test ids all agree.

    Fails: `mode: agg` in `recipes/qwen3-32b/vllm/agg-round-robin/recipe.yaml`.
    """
    meta = recipe.metadata
    for key, expected in (("framework", recipe.framework), ("mode", recipe.mode)):
        value = meta.get(key)
        if isinstance(value, str) and value != expected:
            yield problem(meta.loc_of(key), f"{key} is {value!r} but the recipe directory says {expected!r}",
                          f"set {key}: {expected}")


def _schema_for(doc: Document, ctx: CheckContext) -> tuple[list[tuple[Any, str]], str | None]:
    """(validators with their source, reason when none applies)."""
    api, kind = doc.api_version, doc.kind
    found: list[tuple[Any, str]] = []
    ours = our_validator(schema_file(api, kind, SCHEMAS_DIR)) if api and kind else None
    if ours is not None:
        found.append((ours, "ours"))
    elif (api, kind) in CORE_KINDS:
        core = core_validator(api, kind)
        if core is None:
            return [], "the Kubernetes schemas are not installed (pip install kubernetes-validate)"
        found.append((core, f"kubernetes {KUBERNETES_VERSION}"))
    crd = crd_schemas(ctx.options_for(SchemaOptions).crd).get(api, kind)
    if crd is not None:
        found.append(crd)
    if not found:
        return [], f"unknown kind {kind or '(none)'!r} with apiVersion {api or '(none)'!r}: no schema to validate it"
    return found, None


@check("schema-valid", options=SchemaOptions)
def schema_valid(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every manifest validates strictly: DynamoGraphDeployment, InferencePool, HTTPRoute and
    ComputeDomain against our schemas, core kinds against the Kubernetes OpenAPI schema
    (unknown fields rejected, as `kubectl apply --validate=strict` does), and every embedded
    container, pod spec and env var too. An unknown kind is an error, never a silent pass.

    Fails: `resources: {limits: {gpu: 4}}` (the CRD wants the string "4"), or `kind: Deploymnet`.
    """
    for f in recipe.files():
        if f.path.name == METADATA_FILE:
            continue
        for doc in f.documents:
            if doc.data is None:
                continue
            if not isinstance(doc.data, dict):
                yield problem(doc.loc, "a manifest must be a mapping with apiVersion and kind")
                continue
            if not doc.api_version or not doc.kind:
                yield problem(doc.loc, "manifest has no apiVersion/kind", "every document needs apiVersion and kind")
                continue
            validators, reason = _schema_for(doc, ctx)
            if reason:
                yield problem(doc.data.loc_of("kind"), reason,
                              "fix the kind/apiVersion, or pass --crd FILE with the CRD that defines it")
                continue
            plain = to_plain(doc.data)
            seen: set[tuple] = set()
            for validator, source in validators:
                for err in errors(validator, plain, source):
                    key = (err.path, err.message)
                    if key not in seen:
                        seen.add(key)
                        yield _at(doc, err)
            if doc.kind == DGD_KIND:
                for err in _embedded_errors(doc, plain):
                    yield _at(doc, err)


def _at(doc: Document, err: SchemaError) -> Problem:
    src = "" if err.source == "ours" else f" [{err.source}]"
    return problem(_loc(doc.data, err, doc.loc), err.message + src)


def _loc(root: Any, err: SchemaError, fallback: Loc) -> Loc:
    if err.at_key and err.path:
        parent = dig(root, *err.path[:-1]) if len(err.path) > 1 else root
        if isinstance(parent, dict) and hasattr(parent, "key_loc"):
            return parent.key_loc(err.path[-1])
    return loc_at_path(root, err.path, fallback)


# DGD fields that embed core Kubernetes objects, validated with the real OpenAPI definitions.
_EMBEDDED_V1ALPHA1 = (
    (("extraPodSpec", "mainContainer"), "io.k8s.api.core.v1.Container"),
    (("livenessProbe",), "io.k8s.api.core.v1.Probe"),
    (("readinessProbe",), "io.k8s.api.core.v1.Probe"),
)


def _embedded_errors(doc: Document, plain: dict) -> Iterator[SchemaError]:
    spec = plain.get("spec") if isinstance(plain.get("spec"), dict) else {}
    source = f"kubernetes {KUBERNETES_VERSION}"
    for i, env in enumerate(spec.get("envs") or spec.get("env") or []):
        yield from _def_errors("io.k8s.api.core.v1.EnvVar", env, ("spec", "envs" if "envs" in spec else "env", i), source)
    services = spec.get("services")
    if isinstance(services, dict):
        for name, svc in services.items():
            if not isinstance(svc, dict):
                continue
            base = ("spec", "services", name)
            for path, definition in _EMBEDDED_V1ALPHA1:
                value = dig(svc, *path)
                if isinstance(value, dict):
                    if definition.endswith("Container"):
                        value = {"name": "main", **value}  # the operator names it
                    yield from _def_errors(definition, value, base + path, source)
            pod = svc.get("extraPodSpec")
            if isinstance(pod, dict):
                rest = {k: v for k, v in pod.items() if k != "mainContainer"}
                yield from _def_errors("io.k8s.api.core.v1.PodSpec", {"containers": [], **rest}, base + ("extraPodSpec",), source)
            for i, env in enumerate(svc.get("envs") or []):
                yield from _def_errors("io.k8s.api.core.v1.EnvVar", env, base + ("envs", i), source)
    components = spec.get("components")
    if isinstance(components, list):
        for i, comp in enumerate(components):
            pod = dig(comp, "podTemplate", "spec")
            if isinstance(pod, dict):
                yield from _def_errors("io.k8s.api.core.v1.PodSpec", pod, ("spec", "components", i, "podTemplate", "spec"), source)


def _def_errors(definition: str, value: Any, prefix: tuple, source: str) -> Iterator[SchemaError]:
    validator = k8s_definition_validator(definition)
    if validator is not None:
        yield from errors(validator, value, source, prefix)


# --- kubeconform (when installed) -------------------------------------------------------


def kubeconform_binary() -> str | None:
    return shutil.which("kubeconform")


@check("kubeconform")
def kubeconform(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When a `kubeconform` binary is on PATH, it validates every manifest too (with our
    schemas for the custom kinds) and its findings are merged; when it is not, the run says so
    once in its header and this check passes.

    Fails: whatever kubeconform rejects, e.g. a Job with `spec.template.spec.containers: {}`.
    """
    binary = kubeconform_binary()
    if binary is None:
        return
    paths = [f.path for f in recipe.files() if f.path.name != METADATA_FILE and f.documents]
    for path in paths:
        for res in _kubeconform(binary, str(path)):
            if res.get("status") in ("statusInvalid", "statusError"):
                msg = res.get("msg", "invalid")
                name, kind = res.get("name", ""), res.get("kind", "")
                line = _line_of(recipe, path, kind, name)
                yield problem(Loc(path, line), f"kubeconform: {kind} {name}: {msg}")


@lru_cache(maxsize=None)
def _kubeconform(binary: str, path: str) -> list[dict]:
    cmd = [binary, "-strict", "-output", "json", "-kubernetes-version", KUBERNETES_VERSION,
           "-schema-location", "default", "-schema-location", str(SCHEMAS_DIR / KUBECONFORM_TEMPLATE), path]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return list(json.loads(out.stdout or "{}").get("resources") or [])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return [{"status": "statusError", "msg": "kubeconform did not run cleanly"}]


def _line_of(recipe: Recipe, path: Path, kind: str, name: str) -> int:
    loaded = recipe.load(path)
    for doc in loaded.documents if loaded else []:
        if doc.kind == kind and doc.name == name:
            return doc.loc.line
    return 1
