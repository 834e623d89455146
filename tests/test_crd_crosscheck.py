"""Our schemas against the real API: the upstream CRDs, converted, must accept every shipped
manifest our schemas accept (and reject what the API rejects)."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest

from harness.recipe.discovery import discover
from harness.recipe.schemas import crd_to_schemas
from harness.recipe.yamlsrc import load_yaml_file, to_plain

REPO = Path(__file__).resolve().parent.parent
# CI and developers keep the upstream CRDs next to the repository; a worktree elsewhere names them.
CRDS = Path(os.environ.get("RECIPE_HARNESS_REFERENCE_CRDS", REPO.parent / "shared" / "reference" / "crds"))
pytestmark = pytest.mark.skipif(
    not CRDS.is_dir(), reason=f"upstream CRDs not found at {CRDS} (only CI and developers have them)"
)


def converted() -> dict[str, dict[tuple[str, str], jsonschema.Validator]]:
    out: dict[str, dict] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in load_yaml_file(path, None, max_bytes=64 << 20).documents:
            data = to_plain(doc.data)
            if isinstance(data, dict) and data.get("kind") == "CustomResourceDefinition":
                out[path.name] = {k: jsonschema.Draft7Validator(s) for k, s in crd_to_schemas(data).items()}
    return out


def shipped_documents():
    recipes = discover(REPO / "recipes")
    seen = set()
    for recipe in recipes:
        for f in recipe.files():
            for doc in f.documents:
                if isinstance(doc.data, dict) and (f.path, doc.index) not in seen:
                    seen.add((f.path, doc.index))
                    yield f"{f.path.relative_to(REPO)}#{doc.index}", doc


@pytest.fixture(scope="module")
def crds():
    return converted()


def test_every_crd_converts(crds):
    assert crds, "no CRD converted"
    dgd_newest = crds["nvidia.com_dynamographdeployments.2026-08.v1alpha1-v1beta1.yaml"]
    assert {("nvidia.com/v1alpha1", "DynamoGraphDeployment"), ("nvidia.com/v1beta1", "DynamoGraphDeployment")} <= set(
        dgd_newest
    )


def test_shipped_manifests_valid_under_upstream_crds(crds):
    checked = 0
    problems = []
    for name, doc in shipped_documents():
        key = (doc.api_version, doc.kind)
        for crd_file, validators in crds.items():
            if key in validators:
                checked += 1
                for err in validators[key].iter_errors(to_plain(doc.data)):
                    problems.append(
                        f"{name} vs {crd_file}: {'/'.join(map(str, err.absolute_path))}: {err.message[:200]}"
                    )
    if not checked:
        pytest.skip("no shipped manifest of a CRD-defined kind (catalogue not present)")
    assert not problems, "\n".join(problems[:30])


def test_upstream_crd_rejects_what_our_schema_rejects(crds):
    """The strictness we claim is the API's: an unknown service field and a numeric GPU count
    are rejected by the converted upstream CRD too."""
    v = crds["nvidia.com_dynamographdeployments.2026-08.v1alpha1-v1beta1.yaml"][
        ("nvidia.com/v1alpha1", "DynamoGraphDeployment")
    ]
    base = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "x"},
        "spec": {"services": {"Frontend": {"componentType": "frontend", "replicas": 1}}},
    }
    assert not list(v.iter_errors(base))
    typo = {**base, "spec": {"services": {"Frontend": {"componentType": "frontend", "replica": 1}}}}
    assert any("replica" in e.message for e in v.iter_errors(typo))
    int_gpu = {**base, "spec": {"services": {"W": {"resources": {"limits": {"gpu": 4}}}}}}
    assert list(v.iter_errors(int_gpu))


def test_shipped_schemas_are_exactly_what_import_crd_writes(tmp_path):
    """schemas/dynamo/<release>/ and schemas/crds/ are generated, never edited: converting the CRD
    whose sha256 provenance.json records gives the same files, byte for byte."""
    import hashlib
    import json

    from harness.recipe.schemas import CRD_SCHEMAS, DYNAMO_SCHEMAS, PROVENANCE_FILE, SCHEMAS_DIR, write_crd_schemas

    by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in CRDS.glob("*.yaml")}
    folders = [*sorted((SCHEMAS_DIR / DYNAMO_SCHEMAS).glob("*")), SCHEMAS_DIR / CRD_SCHEMAS]
    compared = 0
    for folder in folders:
        prov_path = folder / PROVENANCE_FILE
        if not prov_path.is_file():
            continue
        for _name, entry in json.loads(prov_path.read_text()).items():
            path = by_sha.get(entry["sha256"])
            if path is None:
                continue  # its CRD text is not among the reference files (e.g. ComputeDomain)
            crd = next(
                to_plain(d.data)
                for d in load_yaml_file(path, None, max_bytes=64 << 20).documents
                if isinstance(d.data, dict) and d.kind == "CustomResourceDefinition"
            )
            out = tmp_path / folder.name
            write_crd_schemas(crd, out)
            for rel in entry["schemas"]:
                assert (out / rel).read_bytes() == (folder / rel).read_bytes(), (
                    f"{folder / rel} differs from import-crd {path.name}"
                )
                compared += 1
    assert compared, "no shipped schema could be traced to a reference CRD by its sha256"
