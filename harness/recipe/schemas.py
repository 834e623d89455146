"""JSON Schema validators: ours (schemas/), Kubernetes core kinds (offline OpenAPI), imported CRDs.

Schemas are laid out the way kubeconform reads them:
`schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
from referencing import Registry, Resource

SCHEMAS_DIR = Path(os.environ.get("RECIPE_HARNESS_SCHEMAS", Path(__file__).resolve().parents[2] / "schemas"))
KUBERNETES_VERSION = "1.33.0"
KUBECONFORM_TEMPLATE = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"

# Core kinds a recipe may contain; anything else must have a schema of ours or an imported CRD.
CORE_KINDS = {
    ("v1", "PersistentVolumeClaim"), ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("v1", "Secret"), ("batch/v1", "Job"), ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
}
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


@lru_cache(maxsize=None)
def _k8s_dir() -> Path | None:
    try:
        import kubernetes_validate
    except ImportError:
        return None
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"
    return base if base.is_dir() else None


@lru_cache(maxsize=1)
def _k8s_registry() -> Registry | None:
    base = _k8s_dir()
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


@lru_cache(maxsize=None)
def k8s_definition_validator(definition: str) -> jsonschema.Validator | None:
    """Validator for one definition of the Kubernetes OpenAPI (e.g. io.k8s.api.core.v1.Container)."""
    return _k8s_def_validator(definition)


@lru_cache(maxsize=None)
def core_validator(api_version: str, kind: str) -> jsonschema.Validator | None:
    """Strict validator for a core kind, built once per kind."""
    base = _k8s_dir()
    registry = _k8s_registry()
    if base is None or registry is None:
        return None
    group_version = api_version.split("/")
    short = group_version[0].split(".")[0] + "-" + group_version[1] if len(group_version) == 2 else group_version[0]
    path = base / f"{kind.lower()}-{short}.json"
    if not path.exists():
        return None
    return jsonschema.Draft202012Validator(json.loads(path.read_text()), registry=registry)


@lru_cache(maxsize=None)
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


def errors(validator: jsonschema.Validator, instance: Any, source: str, prefix: tuple = ()) -> Iterator[SchemaError]:
    """Every error, leaves first (best_match-style: the most specific message per place)."""
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
        return f"{where}: unknown field {key!r} ({key!r} was unexpected; the API rejects unknown fields under strict validation)"
    msg = err.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return f"{where}: {msg}"


# --- CRD import -------------------------------------------------------------------------


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
        props["metadata"] = {"type": "object"}
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
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        node.pop(key)
    node.pop("format", None)  # int32/int64/byte formats are not JSON Schema formats
    is_object = node.get("type") in ("object", ["object", "null"])
    if is_object and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


def write_crd_schemas(crd: dict, out_dir: Path) -> list[Path]:
    written = []
    for (api_version, kind), schema in crd_to_schemas(crd).items():
        path = schema_file(api_version, kind, out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=1))
        written.append(path)
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
