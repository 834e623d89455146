"""schema-valid follows the API server: schemas generated from the release CRD, nulls pruned,
int-or-string and preserve-unknown-fields honoured, unknown kinds judged by their API group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checks import REGISTRY, all_checks, run_check
from harness.recipe.findings import Severity
from harness.recipe.schemas import (
    PROVENANCE_FILE,
    SCHEMAS_DIR,
    crd_to_schemas,
    dynamo_releases,
    errors,
    generated_validator,
    prune_nulls,
)
from harness.run.static import context_for, make_selection

from .conftest import CATALOGUE, copy_model

RECIPE = "llama-3-70b/vllm/agg"
DEPLOY = "llama-3-70b/vllm/agg/deploy.yaml"
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0"

# A v1beta1 DGD in the upstream form: mixed-case component names (the CRD's name pattern is
# ^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$), frontendSidecar naming a container, nulls the API
# server prunes, a quantity given as an integer (int-or-string).
V1BETA1 = f"""apiVersion: nvidia.com/v1beta1
kind: DynamoGraphDeployment
metadata:
  name: llama-agg
spec:
  backendFramework: vllm
  components:
    - name: Frontend
      type: frontend
      replicas: 1
      frontendSidecar: null
      podTemplate:
        metadata: null
        spec:
          containers:
            - name: main
              image: {IMAGE}
              command: null
    - name: Prefill
      type: prefill
      replicas: 1
      sharedMemorySize: 16Gi
      podTemplate:
        spec:
          initContainers: null
          containers:
            - name: main
              image: {IMAGE}
              resources:
                limits:
                  nvidia.com/gpu: 1
                  memory: 64Gi
"""

# The v1alpha1 form upstream generators write: explicit nulls for optional fields.
V1ALPHA1_NULLS = f"""apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: llama-agg
spec:
  backendFramework: vllm
  services:
    Frontend:
      componentType: frontend
      subComponentType: null
      replicas: 1
      extraPodSpec:
        containers: null
        mainContainer:
          image: {IMAGE}
"""

pytestmark = [
    pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/"),
    pytest.mark.skipif(not dynamo_releases(), reason=f"no generated Dynamo CRD schemas under {SCHEMAS_DIR}/dynamo"),
]


def schema_findings(tmp_path: Path, files: dict[str, str]):
    """schema-valid on a catalogue copy of RECIPE with whole files replaced."""
    root = tmp_path / f"recipes{len(list(tmp_path.iterdir()))}"
    copy_model("llama-3-70b", root)
    for rel, text in files.items():
        (root / rel).write_text(text)
    all_checks()
    selection = make_selection(root, [RECIPE])
    return run_check(REGISTRY["schema-valid"], selection.chosen[0], context_for(selection))


def test_v1beta1_upper_case_component_and_nulls_validate_clean(tmp_path):
    assert schema_findings(tmp_path, {DEPLOY: V1BETA1}) == []


def test_v1alpha1_containers_null_and_subcomponenttype_null_are_pruned(tmp_path):
    assert schema_findings(tmp_path, {DEPLOY: V1ALPHA1_NULLS}) == []


def test_null_on_required_field_is_pruned_then_missing(tmp_path):
    """v1beta1 podTemplate.spec requires `containers` (it is a PodSpec): the API server prunes the
    null and then rejects the missing field, so the harness says the same."""
    text = V1BETA1.replace(
        "          initContainers: null\n          containers:\n            - name: main\n"
        f"              image: {IMAGE}\n",
        "          containers: null\n",
        1,
    )
    text = text.split("              resources:")[0]
    found = schema_findings(tmp_path, {DEPLOY: text})
    assert [f.message for f in found] == [
        "spec/components/1/podTemplate/spec: 'containers' is a required property [crd dynamo 1.6.1]"
    ]


def test_unknown_field_is_an_error_at_its_key(tmp_path):
    text = V1BETA1.replace("      sharedMemorySize: 16Gi\n", "      sharedMemorySize: 16Gi\n      replica: 2\n")
    found = schema_findings(tmp_path, {DEPLOY: text})
    assert len(found) == 1 and "unknown field 'replica'" in found[0].message
    line = text.splitlines().index("      replica: 2") + 1
    assert (found[0].line, found[0].column) == (line, 7)


def test_lower_case_only_rules_are_gone_but_the_crd_pattern_holds(tmp_path):
    text = V1BETA1.replace("name: Prefill", "name: prefill.worker")
    found = schema_findings(tmp_path, {DEPLOY: text})
    assert len(found) == 1 and "spec/components/1/name" in found[0].message


def test_core_kind_is_validated_not_unknown(tmp_path):
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: 'nvcr.io/x:1', args: null}]\n"
    assert schema_findings(tmp_path, {DEPLOY: V1BETA1 + "---\n" + pod}) == []
    found = schema_findings(tmp_path, {DEPLOY: V1BETA1 + "---\n" + pod.replace("image:", "imag:")})
    assert len(found) == 1 and "unknown field 'imag'" in found[0].message and found[0].severity is Severity.ERROR


def test_unknown_custom_kind_is_one_warning_and_a_typo_is_an_error(tmp_path):
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {anything: 1}\n"
    found = schema_findings(tmp_path, {DEPLOY: V1BETA1 + "---\n" + widget})
    assert (
        len(found) == 1
        and found[0].severity is Severity.WARNING
        and "Widget example.com/v1 not validated" in found[0].message
    )
    found = schema_findings(
        tmp_path, {DEPLOY: V1BETA1.replace("kind: DynamoGraphDeployment", "kind: DynamoGraphDeploymnet")}
    )
    assert (
        len(found) == 1
        and found[0].severity is Severity.ERROR
        and "did you mean 'DynamoGraphDeployment'" in found[0].message
    )
    found = schema_findings(
        tmp_path, {DEPLOY: V1BETA1 + "---\napiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: d}\n"}
    )
    assert len(found) == 1 and found[0].severity is Severity.ERROR and "unknown kind 'Deploymnet'" in found[0].message


# --- conversion and pruning on a small CRD ------------------------------------------------------

SMALL_CRD = {
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Thing"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {
                                        "x-kubernetes-int-or-string": True,
                                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                                    },
                                    "maybe": {"x-kubernetes-int-or-string": True, "nullable": True},
                                    "note": {"type": "string", "nullable": True},
                                    "count": {"type": "integer"},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def small():
    import jsonschema

    schema = crd_to_schemas(SMALL_CRD)[("example.com/v1", "Thing")]
    return schema, jsonschema.Draft7Validator(schema)


def check_small(spec: dict) -> list[str]:
    schema, v = small()
    doc = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}, "spec": spec}
    return [e.message for e in errors(v, prune_nulls(doc, schema), "crd")]


def test_int_or_string_preserve_unknown_and_nullable():
    assert check_small({"size": 4, "maybe": None, "note": None, "free": {"x": [1, None]}}) == []
    assert check_small({"size": "10Gi"}) == []
    assert check_small({"size": 1.5}) and check_small({"size": 1, "typo": 1})


def test_null_on_non_nullable_field_is_pruned_not_reported():
    assert check_small({"size": 1, "count": None}) == []
    assert prune_nulls({"spec": {"count": None, "note": None}}, small()[0]) == {"spec": {"note": None}}
    assert check_small({"size": None}) == ["spec: 'size' is a required property"]


def test_null_under_an_unknown_field_stays_an_error():
    assert any("unknown field 'typo'" in m for m in check_small({"size": 1, "typo": None}))


def test_generated_schemas_carry_provenance():
    for release in dynamo_releases():
        folder = SCHEMAS_DIR / "dynamo" / release
        prov = json.loads((folder / PROVENANCE_FILE).read_text())
        entry = prov["dynamographdeployments.nvidia.com"]
        assert entry["source"]["release"] == release and len(entry["sha256"]) == 64
        assert entry["source"]["repo"] == "ai-dynamo/dynamo" and entry["source"]["path"]
        for rel in entry["schemas"]:
            assert (folder / rel).is_file(), rel
        assert generated_validator("nvidia.com/v1alpha1", "DynamoGraphDeployment", release) is not None


def test_metadata_name_follows_the_api_server(tmp_path):
    """The CRD says only `metadata: object`; the API server still wants a DNS-1123 subdomain."""
    found = schema_findings(tmp_path, {DEPLOY: V1BETA1.replace("name: llama-agg", "name: Llama_Agg")})
    assert len(found) == 1 and "metadata/name" in found[0].message
    assert schema_findings(tmp_path, {DEPLOY: V1BETA1.replace("name: llama-agg", "name: llama.agg")}) == []
