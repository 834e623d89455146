"""The rendered GPU count (mpirun -n, vLLM's multinode split) reads the GPUs where each API version writes them, and the
render header names the release the recipe pins.

Source: ai-dynamo/dynamo deploy/operator/internal/dynamo/backend_trtllm.go `getGPUsPerNode` reads
`component.Resources.Requests.GPU`, else `.Limits.GPU`, of the v1alpha1 form the operator reconciles; a v1beta1
component is decomposed into that form by api/v1alpha1/shared_spec_conversion.go (`decomposePodTemplateFromHub`,
`resourcesFromNative`), which takes the main container's `nvidia.com/gpu`. So one recipe renders the same
`mpirun -n` in both forms. Expected numbers are the recipes' own topology (nodes x GPUs per node), not computed.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from harness.analysis.render import operator_release, render_recipe, render_service
from harness.recipe.convert import convert_text
from harness.recipe.model import Deployment
from harness.recipe.yamlsrc import load_yaml_file
from harness.run.static import make_selection

ROOT = Path(__file__).resolve().parents[1]


def _mpirun_n(text: str) -> int:
    m = re.search(r"mpirun .*? -n (\d+) ", text)
    assert m, text[:300]
    return int(m.group(1))


def test_catalogue_wide_ep_decode_runs_32_ranks_and_the_header_names_its_release():
    selection = make_selection(str(ROOT / "recipes"), ["deepseek-r1/trtllm/disagg-wide-ep"])
    (recipe,) = selection.chosen
    assert recipe.deployment.api_version == "nvidia.com/v1beta1"
    leader = next(p for p in render_recipe(recipe) if p.service == "Decode" and p.role == "leader")
    # recipe.yaml: decode over 8 nodes x 4 GB200 GPUs (TP32 EP32)
    assert _mpirun_n(leader.args[-1]) == 32
    assert operator_release(recipe).startswith("Dynamo 1.6.1 operator")
    assert "1.4.0" not in operator_release(recipe)


ALPHA = """\
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata: {name: demo}
spec:
  backendFramework: trtllm
  services:
    Decode:
      componentType: worker
      subComponentType: decode
      replicas: 1
      multinode: {nodeCount: 3}
      resources: {SECTIONS}
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.6.1
          command: [python3, -m, dynamo.trtllm]
          args: [--model-path, org/model, --disaggregation-mode, decode]
"""


def _render_both(tmp_path: Path, sections: str) -> tuple[int, int]:
    """mpirun -n of the v1alpha1 text and of its v1beta1 conversion (the operator's own mapping)."""
    alpha = ALPHA.replace("{SECTIONS}", sections)
    beta = convert_text(alpha, tmp_path / "beta.yaml").text
    assert "nvidia.com/v1beta1" in beta
    assert ("gpu:" not in sections) or "nvidia.com/gpu" in beta
    out = []
    for name, text in (("alpha.yaml", alpha), ("beta.yaml", beta)):
        path = tmp_path / name
        path.write_text(text)
        loaded = load_yaml_file(path)
        assert not loaded.problems, loaded.problems
        dep = Deployment(next(d for d in loaded.documents if d.kind == "DynamoGraphDeployment"))
        (svc,) = dep.services
        leader = next(p for p in render_service(svc, dep.name, "trtllm", dep.spec) if p.role == "leader")
        out.append(_mpirun_n(leader.args[-1]))
    return out[0], out[1]


def test_both_api_versions_give_the_same_rank_count(tmp_path):
    # 3 nodes x 4 GPUs
    assert _render_both(tmp_path, '{requests: {gpu: "4"}, limits: {gpu: "4"}}') == (12, 12)


def test_requests_win_over_limits_in_both_forms(tmp_path):
    # getGPUsPerNode reads Requests.GPU first (an odd manifest, but the operator's order decides)
    assert _render_both(tmp_path, '{requests: {gpu: "2"}, limits: {gpu: "4"}}') == (6, 6)


def test_limits_alone_count_in_both_forms(tmp_path):
    assert _render_both(tmp_path, '{limits: {gpu: "8"}}') == (24, 24)


def test_no_gpus_gives_zero_ranks_in_both_forms(tmp_path):
    # the operator's own default (getGPUsPerNode returns 0): a check reports it, render shows what the operator does
    assert _render_both(tmp_path, '{requests: {cpu: "1"}}') == (0, 0)


def test_v1beta1_reads_the_main_container_not_a_sidecar(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: nvidia.com/v1beta1
            kind: DynamoGraphDeployment
            metadata: {name: demo}
            spec:
              backendFramework: trtllm
              components:
                - name: Decode
                  type: decode
                  multinode: {nodeCount: 2}
                  podTemplate:
                    spec:
                      containers:
                        - name: sidecar
                          image: busybox
                          resources: {limits: {nvidia.com/gpu: "1"}}
                        - name: main
                          image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.6.1
                          command: [python3, -m, dynamo.trtllm]
                          args: [--model-path, org/model]
                          resources: {limits: {nvidia.com/gpu: "4"}}
            """
        )
    )
    loaded = load_yaml_file(path)
    dep = Deployment(next(d for d in loaded.documents if d.kind == "DynamoGraphDeployment"))
    (svc,) = dep.services
    leader = next(p for p in render_service(svc, dep.name, "trtllm", dep.spec) if p.role == "leader")
    assert _mpirun_n(leader.args[-1]) == 8
