"""Schema checks: metadata against our schema; every manifest against the schema generated from its
published CRD (the recipe's Dynamo release for DynamoGraphDeployment), or the Kubernetes OpenAPI."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.checks import CheckContext, check
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.kubernetes_openapi import KUBERNETES_VERSION
from harness.recipe.model import METADATA_FILE, Recipe
from harness.recipe.schemas import (
    CrdSchemas,
    SchemaError,
    core_validator,
    errors,
    generated_validator,
    is_core_api,
    known_kinds,
    kubeconform_locations,
    metadata_validator,
    plain_pruned,
)
from harness.recipe.templates import applied_text
from harness.recipe.yamlsrc import Document, dig, loc_at_path, to_plain


@dataclass(frozen=True)
class SchemaOptions:
    """Options of `schema-valid`."""

    crd: tuple[Path, ...] = ()  # CRD files (--crd) every manifest of their kinds is also validated against


@cache
def crd_schemas(crd: tuple[Path, ...]) -> CrdSchemas:
    """The imported CRDs, read once per run (per distinct list)."""
    return CrdSchemas(list(crd))


@check("metadata-schema", convention=True)
def metadata_schema(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """`recipe.yaml` follows schemas/recipe-metadata.json: model id and revision, framework,
    mode, hardware, GPU and node totals, versions, status and perf targets, all typed.

    Fails: `gpus: "16"` (a string) or a missing `hardware.gpu`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    schema is schemas/recipe-metadata.json (ours); Dynamo never reads recipe.yaml.
    """
    f = recipe.metadata_file
    if f is None or not f.documents:
        return  # missing file: layout-required-files; broken file: yaml-well-formed
    if len(f.documents) > 1:
        yield problem(f.documents[1].loc, f"{METADATA_FILE} must hold one document, found {len(f.documents)}")
    doc = f.documents[0]
    for err in errors(metadata_validator(), to_plain(doc.data), "ours"):
        yield problem(_loc(doc.data, err, doc.loc), err.message, "see schemas/recipe-metadata.json")


@check("metadata-matches-path", convention=True)
def metadata_matches_path(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The metadata's framework and mode are the recipe's directory names, so the id, the
    catalogue table and the test ids all agree.

    Fails: `mode: agg` in `recipes/qwen3-32b/vllm/agg-round-robin/recipe.yaml`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    `framework` and `mode` in recipe.yaml (schemas/recipe-metadata.json) must equal the directory names
    that form the recipe id.
    """
    meta = recipe.metadata
    for key, expected in (("framework", recipe.framework), ("mode", recipe.mode)):
        value = meta.get(key)
        if isinstance(value, str) and value != expected:
            yield problem(
                meta.loc_of(key),
                f"{key} is {value!r} but the recipe directory says {expected!r}",
                f"set {key}: {expected}",
            )


def _schema_for(
    doc: Document, ctx: CheckContext, release: str | None
) -> tuple[tuple[tuple[Any, str, bool], ...], str | None, bool]:
    """(validators with their source and whether the kind is built-in, why none applies, whether
    that is an error). A custom kind whose CRD we do not know is skipped with a note: a cluster
    with that CRD installed is its judge, not us."""
    return _schema_lookup(doc.api_version, doc.kind, release, ctx.options_for(SchemaOptions).crd)


@cache
def _schema_lookup(
    api: str, kind: str, release: str | None, crd_files: tuple[Path, ...]
) -> tuple[tuple[tuple[Any, str, bool], ...], str | None, bool]:
    """`_schema_for`, answered once per (apiVersion, kind, release, --crd files) in a process: the
    schema folders do not change during a run, and at catalogue scale the lookups cost as much as
    the validation."""
    found: list[tuple[Any, str, bool]] = []
    generated = generated_validator(api, kind, release)
    if generated is not None:
        found.append((generated[0], generated[1], False))
    elif is_core_api(api):
        core = core_validator(api, kind)
        if core is None:
            return (), f"unknown kind {kind!r} in the Kubernetes API {api!r} (Kubernetes {KUBERNETES_VERSION})", True
        found.append((core, f"kubernetes {KUBERNETES_VERSION}", True))
    crd = crd_schemas(crd_files).get(api, kind)
    if crd is not None:
        found.append((crd[0], crd[1], False))
    if found:
        return tuple(found), None, False
    if core_validator("v1", "Pod") is None and not is_custom_group(api):
        return (), "the Kubernetes schemas are not installed (pip install kubernetes-validate)", True
    near = difflib.get_close_matches(kind, sorted(known_kinds(api.rpartition("/")[0], release)), n=1, cutoff=0.85)
    if near:  # a misspelling of a kind we know (DynamoGraphDeploymnet), not a CRD we lack
        return (), f"unknown kind {kind!r} with apiVersion {api!r}: did you mean {near[0]!r}?", True
    return (
        (),
        (
            f"{kind} {api} not validated: its CustomResourceDefinition is not known to the harness "
            "(a cluster with that CRD installed is the judge)"
        ),
        False,
    )


def is_custom_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


@check("schema-valid", options=SchemaOptions)
def schema_valid(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every manifest validates the way the API server would validate it: DynamoGraphDeployment
    against the schema generated from the recipe's Dynamo release CRD; ComputeDomain,
    InferencePool and HTTPRoute against the schemas generated from their published CRDs; built-in
    kinds (Pod, Job, ...) against the Kubernetes OpenAPI schema. Unknown fields are rejected, as
    `kubectl apply --validate=strict` does. As the API server does, a null on a field that is not
    nullable is pruned first, not reported. An unknown kind in a Kubernetes API group is an error;
    a custom kind whose CRD the harness does not know is skipped with one warning.

    Fails: `resources: {limits: {gpu: 4}}` (the CRD wants the string "4"), or `kind: Deploymnet`.

    Source: the DynamoGraphDeployment CRD of the recipe's release, converted by
    `recipe-harness schemas import-crd` (schemas/dynamo/<release>/provenance.json).
    """
    release = recipe.release or None
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
            validators, reason, is_error = _schema_for(doc, ctx, release)
            if reason:
                if is_error:
                    yield problem(
                        doc.data.loc_of("kind"),
                        reason,
                        "fix the kind/apiVersion, or pass --crd FILE with the CRD that defines it",
                    )
                else:
                    yield problem(doc.data.loc_of("kind"), reason, "pass --crd FILE to validate it", Severity.WARNING)
                continue
            seen: set[tuple] = set()
            for validator, source, builtin in validators:
                instance = plain_pruned(doc.data, None if builtin else validator.schema, builtin=builtin)
                for err in errors(validator, instance, source):
                    key = (err.path, err.message)
                    if key not in seen:
                        seen.add(key)
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


# --- kubeconform (when installed) -------------------------------------------------------


def kubeconform_binary() -> str | None:
    return shutil.which("kubeconform")


@check("kubeconform")
def kubeconform(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When a `kubeconform` binary is on PATH, it validates every manifest too (with our
    schemas for the custom kinds) and its findings are merged; when it is not, the run says so
    once in its header and this check passes.

    Fails: whatever kubeconform rejects, e.g. a Job with `spec.template.spec.containers: {}`.

    Source: yannh/kubeconform run with `-strict` against the Kubernetes OpenAPI schemas of
    KUBERNETES_VERSION (harness/recipe/schemas.py) plus our schemas for custom kinds
    (schemas/dynamo/1.4.0 from the DGD CRD, schemas/crds); `-strict` matches
    `kubectl apply --validate=strict`, kubectl's default since 1.27.
    """
    binary = kubeconform_binary()
    if binary is None:
        return
    paths = [f.path for f in recipe.files() if f.path.name != METADATA_FILE and f.documents]
    for path in paths:
        applied = applied_text(recipe, path)  # a kustomize build or a rendered template: what is applied
        for res in _kubeconform(binary, str(path) if applied is None else _written(applied, path.name)):
            if res.get("status") in ("statusInvalid", "statusError"):
                msg = res.get("msg", "invalid")
                name, kind = res.get("name", ""), res.get("kind", "")
                yield problem(_where(recipe, path, kind, name), f"kubeconform: {kind} {name}: {msg}")


@cache
def _written(text: str, name: str) -> str:
    """The applied text in a file of its own for kubeconform (kept for the session: the results are cached)."""
    directory = tempfile.mkdtemp(prefix="rh-kubeconform-")
    path = os.path.join(directory, name if name.endswith((".yaml", ".yml")) else "rendered.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


@cache
def _kubeconform(binary: str, path: str) -> list[dict]:
    cmd = [
        binary,
        "-strict",
        "-output",
        "json",
        "-kubernetes-version",
        KUBERNETES_VERSION,
        "-schema-location",
        "default",
        *kubeconform_locations(),
        path,
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return list(json.loads(out.stdout or "{}").get("resources") or [])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return [{"status": "statusError", "msg": "kubeconform did not run cleanly"}]


def _where(recipe: Recipe, path: Path, kind: str, name: str) -> Loc:
    """The object's place (a kustomization's rendered object: in the file it came from)."""
    loaded = recipe.load(path)
    for doc in loaded.documents if loaded else []:
        if doc.kind == kind and doc.name == name:
            return doc.loc
    return Loc(path)
