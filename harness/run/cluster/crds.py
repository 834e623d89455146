"""Install the CustomResourceDefinitions the recipes use into the control plane: the very CRD texts `schemas/` was
generated from (schemas/sources/, each with its sha256 in schemas/sources/provenance.json), and wait until served.

The DynamoGraphDeployment CRD converts between v1alpha1 and v1beta1 through the operator's webhook; no operator
serves it here, so conversion is set to `None`. Objects written at the storage version (v1beta1, what the catalogue
uses) are never converted, so this changes nothing for them; a v1alpha1 object would be stored relabelled instead
of converted (its validation against the v1alpha1 schema still happens first).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import yaml

try:  # the C loader parses the 1.6 MB DynamoGraphDeployment CRD in ~2 s, the pure-Python one in ~30 s
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from harness.recipe.schemas import SCHEMAS_DIR
from harness.run.cluster.api import Client

SOURCES_DIR = SCHEMAS_DIR / "sources"
PROVENANCE = SOURCES_DIR / "provenance.json"


class CrdError(RuntimeError):
    """A CRD could not be read, installed or established."""


def sources(directory: Path = SOURCES_DIR) -> dict[str, dict]:
    """file name -> its provenance record (schemas/sources/provenance.json)."""
    try:
        return json.loads((directory / "provenance.json").read_text())
    except (OSError, ValueError) as exc:
        raise CrdError(f"cannot read {directory / 'provenance.json'}: {exc}") from exc


def load_crd(path: Path, sha256: str | None = None) -> dict:
    raw = path.read_bytes()
    if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
        raise CrdError(f"{path}: sha256 differs from provenance.json (the file changed without its record)")
    doc = next((d for d in yaml.load_all(raw, Loader=_Loader) if isinstance(d, dict)), None)
    if not doc or doc.get("kind") != "CustomResourceDefinition":
        raise CrdError(f"{path}: not a CustomResourceDefinition")
    return doc


def _prepare(crd: dict) -> dict:
    spec = crd.setdefault("spec", {})
    conversion = spec.get("conversion") or {}
    if conversion.get("strategy") == "Webhook":
        spec["conversion"] = {"strategy": "None"}  # no operator webhook runs here
    crd.get("metadata", {}).pop("creationTimestamp", None)
    crd.pop("status", None)
    return crd


def install(client: Client, directory: Path = SOURCES_DIR, timeout: float = 60.0) -> list[str]:
    """Create every CRD of `directory` (server-side apply over one that exists) and wait until the API server serves
    each of its versions. Establishment is read from discovery: the CRD objects themselves are up to 1.6 MB, so
    polling them costs seconds per request."""
    crd_res = client.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    if crd_res is None:
        raise CrdError("the API server does not serve apiextensions.k8s.io/v1")
    names = []
    pending: list[tuple[str, str, str]] = []  # (crd name, group/version, kind)
    for file, record in sorted(sources(directory).items()):
        crd = _prepare(load_crd(directory / file, record.get("sha256")))
        resp = client.create(crd_res, crd)
        if resp.status == 409:  # already installed (a running cluster): bring it to this text
            resp = client.apply(crd_res, crd, None, dry_run=False)
        if not resp.ok:
            raise CrdError(f"installing {file}: HTTP {resp.status}: {resp.message()}")
        spec = crd["spec"]
        names.append(crd["metadata"]["name"])
        for version in spec.get("versions") or []:
            if version.get("served"):
                pending.append((crd["metadata"]["name"], f"{spec['group']}/{version['name']}", spec["names"]["kind"]))
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if client.resource(p[1], p[2], refresh=True) is None]
        if pending:
            time.sleep(0.3)
    if pending:
        raise CrdError(f"CRDs not served after {timeout:.0f} s: {', '.join(sorted({p[0] for p in pending}))}")
    return names
