"""Where the Kubernetes OpenAPI schemas (strict, offline, from kubernetes-validate) live, for one version."""

from __future__ import annotations

from functools import cache
from pathlib import Path

KUBERNETES_VERSION = "1.33.0"


@cache
def kubernetes_schema_dir() -> Path | None:
    """The folder of the strict JSON Schemas of KUBERNETES_VERSION; None without kubernetes-validate."""
    try:
        import kubernetes_validate
    except ImportError:
        return None
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"
    return base if base.is_dir() else None
