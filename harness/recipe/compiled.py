"""Compiled twins of the pure-Python schema validators: a fast "is this document valid?" in front of
the detailed error walk, so a valid document never pays for pure-Python `jsonschema`.

The pure-Python validator stays the judge of every finding: only when the twin says "valid" is the
document passed without asking it, and whenever the twin cannot answer (no jsonschema-rs, a schema
it cannot compile, a value it cannot convert such as a YAML timestamp) the Python path runs as
before. So paths, lines and messages are byte-identical, and the only way to lose a finding would be
a document the twin accepts and Python rejects; tests/test_static_speed.py checks the two agree on
every document of the catalogue and the defect fixtures, and on edge values of the regex and number
semantics. `RECIPE_HARNESS_SCHEMA_ENGINE=python` switches the twins off (the equality tests use it).

Measured on the catalogue's documents (benchmarks/static_scale.py): jsonschema-rs answers in a few
microseconds per document; fastjsonschema took 4.6 s to compile the DynamoGraphDeployment schema and
validated ~500 documents/s, so it is not used. Compiling every twin once costs ~0.1 s per process
(Kubernetes definitions 55 ms, the CRD schema 34 ms); jsonschema-rs validators cannot be pickled, and
reading a cache would cost about as much as compiling, so nothing is cached across runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.recipe.kubernetes_openapi import kubernetes_schema_dir

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - the dependency is declared; without it the Python path runs alone
    jsonschema_rs = None  # type: ignore[assignment]

ENGINE_ENV = "RECIPE_HARNESS_SCHEMA_ENGINE"  # "compiled" (default) or "python"
K8S_HOST = "https://kubernetes.io/"

# id(python validator) -> (the validator, kept alive so its id stays unique; its twin's is_valid or None)
_TWINS: dict[int, tuple[Any, Callable[[Any], bool] | None]] = {}


def enabled() -> bool:
    return jsonschema_rs is not None and os.environ.get(ENGINE_ENV, "compiled") != "python"


def known_valid(validator: Any, instance: Any) -> bool:
    """True when the compiled twin of `validator` accepts `instance`; False when it rejects it or
    cannot answer (then the caller asks the Python validator, which has the final word)."""
    if not enabled():
        return False
    key = id(validator)
    entry = _TWINS.get(key)
    if entry is None or entry[0] is not validator:
        entry = (validator, _compile(validator))
        _TWINS[key] = entry
    twin = entry[1]
    if twin is None:
        return False
    try:
        return bool(twin(instance))
    except Exception:
        return False


def _compile(validator: Any) -> Callable[[Any], bool] | None:
    """The twin's is_valid: the same draft, the same format checking, the Kubernetes definitions
    registered when the schema refers to them."""
    schema = getattr(validator, "schema", None)
    cls = getattr(jsonschema_rs, type(validator).__name__, None)
    if not isinstance(schema, dict) or cls is None:
        return None
    refs_k8s = any(str(schema.get(k, "")).startswith(K8S_HOST) for k in ("$id", "$ref"))
    registry = _k8s_registry() if refs_k8s else None
    if refs_k8s and registry is None:
        return None
    try:
        twin = cls(schema, registry=registry, validate_formats=getattr(validator, "format_checker", None) is not None)
    except Exception:
        return None
    return twin.is_valid


@lru_cache(maxsize=1)
def _k8s_registry() -> Any:
    base = kubernetes_schema_dir()  # the folder the Python validators read too
    if base is None:
        return None
    defs = json.loads((Path(base) / "_definitions.json").read_text())
    return jsonschema_rs.Registry([(defs["$id"], defs)])
