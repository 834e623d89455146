"""`recipe-harness convert --to v1beta1`: the operator's v1alpha1 -> v1beta1 mapping, comments and order
kept, and a converted copy of every recipe of the frozen v1alpha1 corpus (the catalogue as it was on 1.4.0,
tests/fixtures/catalogues/1.4.0-v1alpha1) checks exactly as the hand-written v1alpha1 recipe."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness.cli import main as cli
from harness.recipe.convert import ConvertError, convert_text
from harness.recipe.discovery import discover
from harness.recipe.model import FileCache
from harness.run.conformance.client import jobs_for
from harness.run.static import context_for, make_selection, run_static

# The shipped catalogue is v1beta1 since 1.6.1: the round trip runs on the hand-written v1alpha1 recipes.
CATALOGUE = Path(__file__).parent / "fixtures" / "catalogues" / "1.4.0-v1alpha1"
RECIPE_IDS = sorted(r.id for r in discover(CATALOGUE, FileCache(CATALOGUE)))

ALPHA = """\
# header comment stays on top
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  engine.yaml: |
    max_batch_size: 8
---
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: tiny
spec:
  backendFramework: vllm
  envs:
    - name: GLOBAL
      value: "1"
  pvcs:
    - name: model-cache
      create: false
  services:
    Prefill:
      componentType: worker
      subComponentType: prefill
      replicas: 2
      envFromSecret: hf-token-secret
      envs:
        - name: A
          value: "1"
        # why B is set
        - name: B
          value: "2"
      volumeMounts:
        - name: model-cache
          mountPoint: /model-cache
      sharedMemory:
        size: 40Gi
      resources:
        requests:
          cpu: "8"
          gpu: "2"
        limits:
          gpu: "2"
      extraPodSpec:
        nodeSelector:
          pool: gpu
        volumes:
          - name: cfg
            configMap:
              name: cfg
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          env:
            - name: B
              value: "3"
          resources:
            claims:
              - name: channel
          volumeMounts:
            - name: cfg
              mountPath: /config
          command: [python3, -m, dynamo.vllm]
          args:
            - --model
            - Qwen/Qwen3-0.6B  # end-of-line comment
"""


def converted(text: str = ALPHA) -> tuple[dict, str, list[str]]:
    conv = convert_text(text, Path("deploy.yaml"))
    docs = list(yaml.safe_load_all(conv.text))
    return docs[-1], conv.text, conv.notes


def test_services_become_components_with_the_operators_field_mapping():
    dgd, _text, _notes = converted()
    assert dgd["apiVersion"] == "nvidia.com/v1beta1"
    spec = dgd["spec"]
    assert "pvcs" not in spec and "services" not in spec
    assert spec["env"] == [{"name": "GLOBAL", "value": "1"}]  # spec.envs -> spec.env
    (comp,) = spec["components"]
    # prefill under worker is promoted to a first-class type; subComponentType has no v1beta1 field
    assert comp["name"] == "Prefill" and comp["type"] == "prefill" and "subComponentType" not in comp
    assert comp["replicas"] == 2 and comp["sharedMemorySize"] == "40Gi"
    pod = comp["podTemplate"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    (main,) = pod["containers"]
    assert main["name"] == "main" and main["image"].endswith("vllm-runtime:1.4.0")
    assert main["envFrom"] == [{"secretRef": {"name": "hf-token-secret"}}]
    # env is additive, the container's entry wins for a name set twice (mergeEnvs)
    assert main["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    # resources: gpu -> nvidia.com/gpu, the container's claims merged field by field (mergo)
    assert main["resources"] == {
        "requests": {"cpu": "8", "nvidia.com/gpu": "2"},
        "limits": {"nvidia.com/gpu": "2"},
        "claims": [{"name": "channel"}],
    }
    # the PVC mount keeps its place next to the container's own mounts, and the claim becomes a volume
    assert main["volumeMounts"] == [
        {"name": "model-cache", "mountPath": "/model-cache"},
        {"name": "cfg", "mountPath": "/config"},
    ]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]


def test_comments_order_and_other_documents_survive():
    _dgd, text, _notes = converted()
    assert text.startswith(ALPHA.split("---\n")[0])  # the ConfigMap document is byte for byte the same
    assert "# why B is set" in text
    assert re.search(r"- Qwen/Qwen3-0\.6B +# end-of-line comment\n", text)  # stays on its line (ruamel may re-space it)
    # the moved comment is indented like the entry it precedes
    lines = text.splitlines()
    i = lines.index(next(line for line in lines if "# why B is set" in line))
    assert len(lines[i]) - len(lines[i].lstrip()) == len(lines[i + 1]) - len(lines[i + 1].lstrip())
    start = lines.index("  components:")
    keys = [ln.strip().split(":")[0] for ln in lines[start:] if re.match(r"^ {4}- |^ {6}[a-zA-Z]", ln)]
    assert keys == ["- name", "type", "replicas", "podTemplate", "sharedMemorySize"]  # the service's own order


def test_conversion_is_idempotent_and_refuses_what_it_cannot_express():
    _dgd, text, _notes = converted()
    again = convert_text(text, Path("deploy.yaml"))
    assert not again.changed and again.text == text
    with pytest.raises(ConvertError, match="create: true"):
        convert_text(ALPHA.replace("create: false", "create: true"), Path("deploy.yaml"))
    _dgd, _text, notes = converted(
        ALPHA.replace("      replicas: 2\n", "      replicas: 2\n      dynamoNamespace: ns\n")
    )
    assert any("dynamoNamespace" in n and "dropped" in n for n in notes)


def _normalised(findings, root: Path) -> list[tuple[str, str, str, str]]:
    """Findings without positions: a conversion moves lines, it must not change what is found."""
    return sorted(
        (f.check_id, str(Path(f.file).relative_to(root)), f.severity.value, re.sub(r"\d+", "N", f.message))
        for f in findings
    )


@pytest.fixture(scope="module")
def two_catalogues(tmp_path_factory):
    """A copy of the v1alpha1 corpus, and a second copy converted with `recipe-harness convert`."""
    base = tmp_path_factory.mktemp("convert")
    alpha, beta = base / "alpha" / "recipes", base / "beta" / "recipes"
    shutil.copytree(CATALOGUE, alpha)
    shutil.copytree(CATALOGUE, beta)
    assert cli(["convert", "--to", "v1beta1", "--recipes-dir", str(beta)]) == 0
    return alpha, beta


def test_every_shipped_recipe_converts_and_checks_the_same(two_catalogues):
    alpha, beta = two_catalogues
    found = {}
    for root in (alpha, beta):
        selection = make_selection(root)
        found[root] = _normalised(run_static(selection, context_for(selection)).findings, root)
    assert found[alpha] == found[beta]
    for rid in RECIPE_IDS:
        text = (beta / rid / "deploy.yaml").read_text()
        assert "nvidia.com/v1alpha1" not in text and "nvidia.com/v1beta1" in text


@pytest.mark.parametrize("rid", RECIPE_IDS)
def test_a_converted_recipe_gives_the_conformance_tier_the_same_command_lines(two_catalogues, rid):
    alpha, beta = two_catalogues
    jobs = {}
    for root in (alpha, beta):
        recipe = next(r for r in discover(root, FileCache(root)) if r.id == rid)
        jobs[root] = [(j.service, j.parser, j.request()["argv"], j.request()["files"]) for j in jobs_for(recipe)]
    assert jobs[alpha] and jobs[alpha] == jobs[beta]


def test_convert_dry_run_prints_the_diff_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "recipes"
    shutil.copytree(CATALOGUE, root)
    rid = RECIPE_IDS[0]
    before = (root / rid / "deploy.yaml").read_text()
    assert cli(["convert", "--to", "v1beta1", "--recipes-dir", str(root), "--recipe", rid, "--dry-run"]) == 0
    captured = capsys.readouterr()
    out = captured.out  # the patch alone; the summary goes to stderr
    assert "-apiVersion: nvidia.com/v1alpha1" in out and "+apiVersion: nvidia.com/v1beta1" in out
    assert "would convert 1 of 1" in captured.err and "would convert" not in out
    assert (root / rid / "deploy.yaml").read_text() == before
