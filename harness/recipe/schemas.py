"""JSON Schema validators: generated from published CRDs (schemas/dynamo/<release>/, schemas/crds/),
Kubernetes core kinds (offline OpenAPI), our own (recipe metadata), and CRDs given with --crd.

Custom-resource schemas are never hand-written: `recipe-harness schemas import-crd` converts a
published CustomResourceDefinition and writes a `provenance.json` (source, release, commit, sha256)
next to them. Each folder is laid out the way kubeconform reads it:
`{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`.

Validation follows the API server, not JSON Schema alone: a null on a field that is not
`nullable` is pruned before validation (apiextensions-apiserver PruneNonNullableNullsWithoutDefaults;
for built-in kinds Go's JSON decoding turns null into the zero value), int-or-string accepts both,
and `x-kubernetes-preserve-unknown-fields` keeps unknown fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from harness.recipe import compiled
from harness.recipe.kubernetes_openapi import kubernetes_schema_dir
from harness.recipe.yamlsrc import to_plain

SCHEMAS_DIR = Path(os.environ.get("RECIPE_HARNESS_SCHEMAS", Path(__file__).resolve().parents[2] / "schemas"))
KUBECONFORM_TEMPLATE = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
DYNAMO_SCHEMAS = "dynamo"  # schemas/dynamo/<release>/: generated from that release's DynamoGraphDeployment CRD
CRD_SCHEMAS = "crds"  # schemas/crds/: generated from other published CRDs (DRA driver, Gateway API, GAIE)
PROVENANCE_FILE = "provenance.json"
METADATA_SCHEMA = "recipe-metadata.json"


@dataclass(frozen=True)
class SchemaError:
    """One validation error with its JSON path inside the document."""

    path: tuple
    message: str
    source: str  # which schema said so: "ours", "kubernetes 1.33", "crd <file>"
    at_key: bool = False  # the last path element is an offending key: point at the key itself


def schema_file(api_version: str, kind: str, base: Path = SCHEMAS_DIR) -> Path:
    group, _, version = api_version.rpartition("/")
    return base / (group or "core") / f"{kind.lower()}_{version}.json"


def _release_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in name.replace("-", ".").split("."))


def dynamo_releases(base: Path = SCHEMAS_DIR) -> list[str]:
    """Dynamo releases with generated CRD schemas, oldest first."""
    root = base / DYNAMO_SCHEMAS
    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted(names, key=_release_key)


def schema_dirs(release: str | None = None, base: Path = SCHEMAS_DIR) -> list[tuple[Path, str]]:
    """Folders to look a custom kind up in, with the source each stands for: the recipe's Dynamo
    release (the newest one we have when it is unknown or has none), then the other CRDs."""
    releases = dynamo_releases(base)
    chosen = release if release in releases else (releases[-1] if releases else None)
    out = [(base / DYNAMO_SCHEMAS / chosen, f"crd dynamo {chosen}")] if chosen else []
    return out + [(base / CRD_SCHEMAS, "crd")]


def generated_validator(
    api_version: str, kind: str, release: str | None = None, base: Path = SCHEMAS_DIR
) -> tuple[jsonschema.Validator, str] | None:
    """The validator generated from a published CRD for this kind, with its source."""
    for folder, source in schema_dirs(release, base):
        v = our_validator(schema_file(api_version, kind, folder))
        if v is not None:
            return v, source
    return None


def kubeconform_locations(release: str | None = None, base: Path = SCHEMAS_DIR) -> list[str]:
    """`-schema-location` arguments for kubeconform: our generated CRD schemas, after its default."""
    out = []
    for folder, _ in schema_dirs(release, base):
        out += ["-schema-location", str(folder / KUBECONFORM_TEMPLATE)]
    return out


def known_kinds(group: str, release: str | None = None, base: Path = SCHEMAS_DIR) -> set[str]:
    """Kinds we have generated schemas for in a group (DynamoGraphDeployment, ...)."""
    out: set[str] = set()
    for folder, _ in schema_dirs(release, base):
        d = folder / (group or "core")
        for path in sorted(d.glob("*.json")) if d.is_dir() else []:
            v = our_validator(path)
            kind = ((v.schema.get("properties") or {}).get("kind") or {}).get("const") if v is not None else None
            if isinstance(kind, str):
                out.add(kind)
    return out


@cache
def core_group_versions() -> frozenset[str]:
    """apiVersions the Kubernetes OpenAPI knows (v1, apps/v1, batch/v1, ...): a kind under one of
    these is a built-in kind, so an unknown kind there is a typo, not a missing CRD."""
    base = kubernetes_schema_dir()
    if base is None:
        return frozenset()
    out = set()
    for path in base.glob("*.json"):
        if path.name.startswith("_") or "-" not in path.stem:
            continue
        suffix = path.stem.split("-", 1)[1]  # deployment-apps-v1 -> apps-v1, pod-v1 -> v1
        out.add(suffix.replace("-", "/") if "-" in suffix else suffix)
    return frozenset(out)


def is_core_api(api_version: str) -> bool:
    group, _, version = api_version.rpartition("/")
    short = f"{group.split('.')[0]}/{version}" if group else version
    if group and "." in group and not group.endswith(".k8s.io"):
        return False  # a custom group (nvidia.com, ...)
    return short in core_group_versions()


@lru_cache(maxsize=1)
def _k8s_registry() -> Registry | None:
    base = kubernetes_schema_dir()
    if base is None:
        return None
    defs = json.loads((base / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


def _k8s_def_validator(definition: str) -> jsonschema.Validator | None:
    registry = _k8s_registry()
    if registry is None:
        return None
    schema = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def k8s_definition_validator(definition: str) -> jsonschema.Validator | None:
    """Validator for one definition of the Kubernetes OpenAPI (e.g. io.k8s.api.core.v1.Container)."""
    return _k8s_def_validator(definition)


@cache
def core_validator(api_version: str, kind: str) -> jsonschema.Validator | None:
    """Strict validator for a core kind, built once per kind."""
    base = kubernetes_schema_dir()
    registry = _k8s_registry()
    if base is None or registry is None:
        return None
    group_version = api_version.split("/")
    short = group_version[0].split(".")[0] + "-" + group_version[1] if len(group_version) == 2 else group_version[0]
    path = base / f"{kind.lower()}-{short}.json"
    if not path.exists():
        return None
    return jsonschema.Draft202012Validator(json.loads(path.read_text()), registry=registry)


@cache
def our_validator(path: Path) -> jsonschema.Validator | None:
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def metadata_validator() -> jsonschema.Validator:
    v = our_validator(SCHEMAS_DIR / METADATA_SCHEMA)
    assert v is not None, f"missing {SCHEMAS_DIR / METADATA_SCHEMA}"
    return v


def prune_nulls(instance: Any, schema: dict | None, builtin: bool = False) -> Any:
    """The object as the API server stores it: a null on a field whose schema is not nullable is
    dropped before validation (apiextensions-apiserver, structuraldefaulting.PruneNonNullableNulls).
    For a built-in kind (`builtin`), every null map value is dropped, as Go's JSON decoding turns
    null into the zero value. A field the schema does not know keeps its value (an unknown field
    stays an error), and so does everything below it."""
    if isinstance(instance, dict):
        out = {}
        for key, value in instance.items():
            sub = None if builtin else _property_schema(schema, key)
            if value is None and (builtin or (sub is not None and not _accepts_null(sub))):
                continue
            out[key] = prune_nulls(value, sub, builtin) if (builtin or sub is not None) else value
        return out
    if isinstance(instance, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        if not builtin and not isinstance(items, dict):
            return instance
        return [prune_nulls(v, items, builtin) for v in instance]
    return instance


def plain_pruned(value: Any, schema: dict | None, builtin: bool = False) -> Any:
    """`prune_nulls(to_plain(value), schema, builtin)` in one walk over the loaded document (the
    schema check's hot path: one copy of the document instead of two)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = None if builtin else _property_schema(schema, key)
            if item is None and (builtin or (sub is not None and not _accepts_null(sub))):
                continue
            out[key] = plain_pruned(item, sub, builtin) if (builtin or sub is not None) else to_plain(item)
        return out
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema, dict) else None
        if not builtin and not isinstance(items, dict):
            return to_plain(value)
        return [plain_pruned(v, items, builtin) for v in value]
    return value


def _property_schema(schema: dict | None, key: str) -> dict | None:
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _accepts_null(schema: dict) -> bool:
    t = schema.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    return any(isinstance(b, dict) and _accepts_null(b) for b in schema.get("anyOf") or [])


def errors(validator: jsonschema.Validator, instance: Any, source: str, prefix: tuple = ()) -> Iterator[SchemaError]:
    """Every error, leaves first (best_match-style: the most specific message per place). A document
    the compiled twin accepts has none (harness.recipe.compiled); any other is walked here."""
    if compiled.known_valid(validator, instance):
        return
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        leaf = _deepest(err)
        path = prefix + tuple(leaf.absolute_path)
        extra = _unexpected_keys(leaf)
        if extra:
            for key in extra:
                yield SchemaError(path + (key,), _message(leaf, key), source, at_key=True)
        else:
            yield SchemaError(path, _message(leaf), source)


def _unexpected_keys(err: jsonschema.ValidationError) -> list[str]:
    """For an additionalProperties error, the keys the schema does not allow (sorted)."""
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict):
        return []
    allowed = set((err.schema or {}).get("properties", {}))
    patterns = list((err.schema or {}).get("patternProperties", {}))
    import re

    return sorted(k for k in err.instance if k not in allowed and not any(re.search(p, str(k)) for p in patterns))


def _deepest(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For anyOf/oneOf failures pick the branch that got furthest, like jsonschema.best_match."""
    if err.context:
        best = jsonschema.exceptions.best_match(err.context)
        if best is not None and len(best.absolute_path) >= len(err.absolute_path):
            return _deepest(best)
    return err


def _message(err: jsonschema.ValidationError, key: str | None = None) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(document)"
    if key is not None:
        return (
            f"{where}: unknown field {key!r} "
            f"({key!r} was unexpected; the API rejects unknown fields under strict validation)"
        )
    msg = err.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return f"{where}: {msg}"


# --- CRD import -------------------------------------------------------------------------


# What the API server checks of a custom resource's metadata (apimachinery ValidateObjectMeta with
# NameIsDNSSubdomain; namespaces are DNS-1123 labels); the CRD itself only says `type: object`.
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def crd_to_schemas(crd: dict) -> dict[tuple[str, str], dict]:
    """Convert a CustomResourceDefinition into strict JSON Schemas, one per served version.

    Returns {(apiVersion, kind): schema}. Objects that declare properties reject unknown
    fields unless marked x-kubernetes-preserve-unknown-fields; int-or-string and nullable
    become JSON Schema types.
    """
    spec = crd.get("spec") or {}
    group = spec.get("group", "")
    kind = (spec.get("names") or {}).get("kind", "")
    out: dict[tuple[str, str], dict] = {}
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        raw = ((version.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object"}
        schema = _strict(copy.deepcopy(raw))
        props = schema.setdefault("properties", {})
        api_version = f"{group}/{version['name']}"
        props["apiVersion"] = {"const": api_version}
        props["kind"] = {"const": kind}
        props["metadata"] = _OBJECT_META
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["title"] = f"{kind} {api_version} (converted from CRD {crd.get('metadata', {}).get('name', '')})"
        out[(api_version, kind)] = schema
    return out


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "anyOf" in node:  # nullable int-or-string
            node["anyOf"] = [*node["anyOf"], {"type": "null"}]
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        node.pop(key)
    node.pop("format", None)  # int32/int64/byte formats are not JSON Schema formats
    is_object = node.get("type") in ("object", ["object", "null"])
    if is_object and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


@dataclass(frozen=True)
class CrdSource:
    """Where a converted CRD came from: recorded next to the generated schemas."""

    repo: str = ""  # e.g. ai-dynamo/dynamo
    path: str = ""  # the CRD file inside that repository
    commit: str = ""  # the commit it was read at ("" when not known)
    release: str = ""  # the release it stands for, e.g. Dynamo 1.4.0
    note: str = ""  # how sure we are that this text is that release's (say so when it is not pinned)


def write_crd_schemas(
    crd: dict, out_dir: Path, text: bytes | None = None, source: CrdSource | None = None
) -> list[Path]:
    """Write one JSON Schema per served version; with `text` (the CRD file's bytes) also record
    the import in out_dir/provenance.json, keyed by the CRD's name."""
    written = []
    schemas = crd_to_schemas(crd)
    for (api_version, kind), schema in schemas.items():
        path = schema_file(api_version, kind, out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=1) + "\n")
        written.append(path)
    if text is not None:
        prov_path = out_dir / PROVENANCE_FILE
        prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
        src = source or CrdSource()
        prov[crd.get("metadata", {}).get("name", "")] = {
            "source": {"repo": src.repo, "path": src.path, "commit": src.commit, "release": src.release},
            "note": src.note,
            "sha256": hashlib.sha256(text).hexdigest(),
            "generated_by": "recipe-harness schemas import-crd",
            "schemas": sorted(str(p.relative_to(out_dir)) for p in written),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        prov_path.write_text(json.dumps(dict(sorted(prov.items())), indent=1) + "\n")
        written.append(prov_path)
    return written


class CrdSchemas:
    """Schemas imported from CRD files given with --crd, validated in addition to ours."""

    def __init__(self, paths: list[Path] | None = None):
        self.validators: dict[tuple[str, str], tuple[jsonschema.Validator, str]] = {}
        self.problems: list[str] = []
        for path in paths or []:
            self.add(Path(path))

    def add(self, path: Path) -> None:
        from harness.recipe.yamlsrc import load_yaml_file, to_plain

        loaded = load_yaml_file(path, None, max_bytes=64 << 20)
        if loaded.problems:
            self.problems.extend(f"{path}: {p.message}" for p in loaded.problems)
        for doc in loaded.documents:
            data = to_plain(doc.data)
            if not isinstance(data, dict) or data.get("kind") != "CustomResourceDefinition":
                continue
            for key, schema in crd_to_schemas(data).items():
                self.validators[key] = (jsonschema.Draft7Validator(schema), f"crd {path.name}")

    def get(self, api_version: str, kind: str) -> tuple[jsonschema.Validator, str] | None:
        return self.validators.get((api_version, kind))
