"""Our schemas against the real API: the upstream CRDs, converted, must accept every shipped
manifest our schemas accept (and reject what the API rejects)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from harness.recipe.discovery import discover
from harness.recipe.schemas import crd_to_schemas
from harness.recipe.yamlsrc import load_yaml_file, to_plain

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO.parent / "shared" / "reference" / "crds"
pytestmark = pytest.mark.skipif(not CRDS.is_dir(), reason=f"upstream CRDs not found at {CRDS} (only CI and developers have them)")


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
    assert {("nvidia.com/v1alpha1", "DynamoGraphDeployment"), ("nvidia.com/v1beta1", "DynamoGraphDeployment")} <= set(dgd_newest)


def test_shipped_manifests_valid_under_upstream_crds(crds):
    checked = 0
    problems = []
    for name, doc in shipped_documents():
        key = (doc.api_version, doc.kind)
        for crd_file, validators in crds.items():
            if key in validators:
                checked += 1
                for err in validators[key].iter_errors(to_plain(doc.data)):
                    problems.append(f"{name} vs {crd_file}: {'/'.join(map(str, err.absolute_path))}: {err.message[:200]}")
    if not checked:
        pytest.skip("no shipped manifest of a CRD-defined kind (catalogue not present)")
    assert not problems, "\n".join(problems[:30])


def test_upstream_crd_rejects_what_our_schema_rejects(crds):
    """The strictness we claim is the API's: an unknown service field and a numeric GPU count
    are rejected by the converted upstream CRD too."""
    v = crds["nvidia.com_dynamographdeployments.2026-08.v1alpha1-v1beta1.yaml"][("nvidia.com/v1alpha1", "DynamoGraphDeployment")]
    base = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment", "metadata": {"name": "x"},
            "spec": {"services": {"Frontend": {"componentType": "frontend", "replicas": 1}}}}
    assert not list(v.iter_errors(base))
    typo = {**base, "spec": {"services": {"Frontend": {"componentType": "frontend", "replica": 1}}}}
    assert any("replica" in e.message for e in v.iter_errors(typo))
    int_gpu = {**base, "spec": {"services": {"W": {"resources": {"limits": {"gpu": 4}}}}}}
    assert list(v.iter_errors(int_gpu))
