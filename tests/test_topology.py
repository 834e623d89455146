"""Topology parsing: each backend's flag spelling, shell and exec forms, env references, and the
TRT-LLM engine config in a ConfigMap, with the line every value came from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.analysis.topology import topology_of
from harness.checks.topology import nodes_needed
from harness.recipe.service import Deployment
from harness.recipe.yamlsrc import load_yaml_file


def load(tmp_path: Path, text: str):
    path = tmp_path / "deploy.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    loaded = load_yaml_file(path)
    assert not loaded.problems, loaded.problems
    dgd = next(d for d in loaded.documents if d.kind == "DynamoGraphDeployment")
    return Deployment(dgd), loaded.documents, path


def lines(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


VLLM_EXEC = """
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata: {name: demo}
spec:
  backendFramework: vllm
  services:
    VllmWorker:
      componentType: worker
      replicas: 2
      resources: {limits: {gpu: "8"}}
      extraPodSpec:
        mainContainer:
          command: [python3, -m, dynamo.vllm]
          args:
            - --model
            - RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic
            - --enable-expert-parallel
            - -tp
            - "4"
            - --data-parallel-size=2
            - --gpu-memory-utilization
            - "0.85"
            - --disaggregation-mode
            - decode
"""


def test_vllm_exec_form_short_and_equals_flags(tmp_path):
    dep, docs, path = load(tmp_path, VLLM_EXEC)
    topo = topology_of(dep.workers[0], "vllm", docs)
    assert (topo.tp, topo.dp, topo.pp, topo.ep) == (4, 2, 1, 8)
    assert topo.gpus_per_replica == 8
    assert topo.role == "decode"
    assert topo.memory_fraction == 0.85
    assert topo.model == "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
    assert topo.get("tp").loc.line == lines(path, '"4"')
    assert topo.get("tp").source == "-tp"


SGLANG_SHELL = """
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata: {name: demo}
spec:
  backendFramework: sglang
  services:
    decode:
      componentType: worker
      subComponentType: decode
      multinode: {nodeCount: 2}
      resources: {limits: {gpu: "8"}}
      extraPodSpec:
        mainContainer:
          env:
            - {name: TP, value: "16"}
          command: [/bin/sh, -c]
          args:
            - |
              exec python3 -m dynamo.sglang \\
                --model-path deepseek-ai/DeepSeek-R1 \\
                --tp $TP --dp-size 16 --ep-size ${TP} \\
                --enable-dp-attention \\
                --mem-fraction-static 0.82 \\
                --page-size 64 \\
                --disaggregation-mode decode
"""


def test_sglang_shell_form_with_env_references(tmp_path):
    dep, docs, path = load(tmp_path, SGLANG_SHELL)
    topo = topology_of(dep.workers[0], "sglang", docs)
    assert (topo.tp, topo.dp, topo.ep) == (16, 16, 16)
    assert topo.dp_attention and topo.attention_tp == 1
    assert topo.gpus_per_replica == 16  # DP attention and EP live inside TP
    assert topo.block_size == 64 and topo.memory_fraction == 0.82
    assert topo.get("tp").loc.line == lines(path, "--tp $TP")
    assert not topo.unreadable


def test_unresolved_env_reference_is_unreadable(tmp_path):
    dep, docs, _ = load(tmp_path, SGLANG_SHELL.replace('- {name: TP, value: "16"}', '- {name: OTHER, value: "1"}'))
    topo = topology_of(dep.workers[0], "sglang", docs)
    assert [s.source for s in topo.unreadable] == ["--tp", "--ep-size"]
    assert topo.tp == 1


TRTLLM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: engine}
data:
  decode.yaml: |
    tensor_parallel_size: 4
    moe_expert_parallel_size: 4
    enable_attention_dp: true
    kv_cache_config:
      free_gpu_memory_fraction: 0.8
      dtype: fp8
---
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata: {name: demo}
spec:
  backendFramework: trtllm
  services:
    TrtllmWorker:
      componentType: worker
      resources: {limits: {gpu: "4"}}
      extraPodSpec:
        volumes:
          - name: cfg
            configMap: {name: engine}
        mainContainer:
          volumeMounts:
            - {name: cfg, mountPath: /engine}
          command: [python3, -m, dynamo.trtllm]
          args: [--model-path, openai/gpt-oss-120b, --tensor-parallel-size, "4", --extra-engine-args, /engine/decode.yaml]
"""


def test_trtllm_engine_config_from_configmap_with_lines(tmp_path):
    dep, docs, path = load(tmp_path, TRTLLM)
    topo = topology_of(dep.workers[0], "trtllm", docs)
    assert topo.engine_config is not None and not topo.engine_config.error
    assert (topo.tp, topo.ep, topo.dp_attention, topo.memory_fraction) == (4, 4, True, 0.8)
    assert topo.kv_cache_dtype == "fp8"
    assert topo.get("tp").loc.line == lines(path, "tensor_parallel_size: 4")
    assert topo.get("memory_fraction").loc.line == lines(path, "free_gpu_memory_fraction")
    assert topo.get("tp").loc.column == len("    tensor_parallel_size: ") + 1
    assert not topo.conflicts


def test_trtllm_cli_disagreeing_with_configmap_is_a_conflict(tmp_path):
    dep, docs, path = load(tmp_path, TRTLLM.replace("tensor_parallel_size: 4", "tensor_parallel_size: 2"))
    topo = topology_of(dep.workers[0], "trtllm", docs)
    [conflict] = topo.conflicts
    assert conflict.cli.value == 4 and conflict.config.value == 2
    assert topo.tp == 2  # the engine config wins in Dynamo's TRT-LLM worker
    assert conflict.config.loc.line == lines(path, "tensor_parallel_size: 2")


def test_trtllm_engine_config_not_mounted(tmp_path):
    dep, docs, _ = load(tmp_path, TRTLLM.replace("/engine/decode.yaml", "/other/decode.yaml"))
    topo = topology_of(dep.workers[0], "trtllm", docs)
    assert "not under any volumeMount" in topo.engine_config.error


def test_trtllm_subpath_and_items(tmp_path):
    text = TRTLLM.replace(
        "configMap: {name: engine}", "configMap: {name: engine, items: [{key: decode.yaml, path: d.yaml}]}"
    )
    text = text.replace(
        "{name: cfg, mountPath: /engine}", "{name: cfg, mountPath: /engine/config.yaml, subPath: d.yaml}"
    )
    text = text.replace("/engine/decode.yaml", "/engine/config.yaml")
    dep, docs, _ = load(tmp_path, text)
    topo = topology_of(dep.workers[0], "trtllm", docs)
    assert topo.engine_config.key == "decode.yaml" and topo.tp == 4


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--enable-expert-parallel", "-tp", "2"], {"--enable-expert-parallel": "true", "-tp": "2"}),
        (["--tp=8", "--is-prefill-worker", "--dp", "8"], {"--tp": "8", "--is-prefill-worker": "true", "--dp": "8"}),
    ],
)
def test_engine_flags(args, expected):
    from harness.recipe.commandline import Token, parse_flags
    from harness.recipe.findings import Loc
    from harness.recipe.service import ENGINE_BOOLEAN_FLAGS

    got = parse_flags([Token(a, Loc(Path("x"))) for a in args], ENGINE_BOOLEAN_FLAGS)
    assert {k: v.value for k, v in got.last().items()} == expected


def test_nodes_needed_packs_pods_first_fit():
    class S:
        def __init__(self, gpu, replicas=1, nodes=1):
            self.gpu_limit, self.replicas, self.node_count = gpu, replicas, nodes

    assert nodes_needed([S(2, 2), S(4)], 8) == 1
    assert nodes_needed([S(2, 8)], 8) == 2
    assert nodes_needed([S(4), S(4, 1, 8)], 4) == 9
    assert nodes_needed([S(8, 1, 2), S(8, 1, 2)], 8) == 4


def _run(check_id: str, root: Path, recipe_id: str):
    from harness.checks import REGISTRY, CheckContext, all_checks, run_check
    from harness.run.static import make_selection

    all_checks()
    [recipe] = make_selection(root, [recipe_id]).chosen
    return run_check(REGISTRY[check_id], recipe, CheckContext(root))


@pytest.fixture
def catalogue_copy(tmp_path):
    import shutil

    from .conftest import CATALOGUE

    if not CATALOGUE.is_dir():
        pytest.skip("no shipped catalogue under recipes/")
    shutil.copytree(CATALOGUE, tmp_path / "recipes")
    return tmp_path / "recipes"


def test_legacy_vllm_prefill_flag_is_accepted(catalogue_copy):
    deploy = catalogue_copy / "llama-3-70b/vllm/disagg-single-node/deploy.yaml"
    text = deploy.read_text().replace("--disaggregation-mode prefill", "--is-prefill-worker")
    deploy.write_text(text.replace("--disaggregation-mode decode", ""))
    assert not _run("disagg-roles-match-mode", catalogue_copy, "llama-3-70b/vllm/disagg-single-node")


def test_router_mode_default_and_env(catalogue_copy):
    deploy = catalogue_copy / "qwen3-32b/vllm/disagg-kv-router/deploy.yaml"
    text = deploy.read_text().replace("--router-mode, kv]", "]", 1)
    deploy.write_text(text)
    [finding] = _run("router-mode-matches", catalogue_copy, "qwen3-32b/vllm/disagg-kv-router")
    assert "runs the default round-robin router" in finding.message
    env = "              env:\n                - name: HF_HOME\n"  # the frontend's container (v1beta1 podTemplate)
    assert env in text
    deploy.write_text(
        text.replace(
            env,
            env.replace("HF_HOME\n", "DYN_ROUTER_MODE\n                  value: kv\n                - name: HF_HOME\n"),
            1,
        )
    )
    assert not _run("router-mode-matches", catalogue_copy, "qwen3-32b/vllm/disagg-kv-router")


def test_every_shipped_worker_parses(catalogue_copy):
    from harness.analysis.topology import recipe_topologies
    from harness.run.static import make_selection

    for recipe in make_selection(catalogue_copy).all:
        for name, topo in recipe_topologies(recipe).items():
            assert not topo.unreadable and not topo.conflicts, (recipe.id, name)
            assert topo.model and topo.served_name, (recipe.id, name)
            assert topo.engine_config is None or not topo.engine_config.error, (
                recipe.id,
                name,
                topo.engine_config.error,
            )


@pytest.mark.parametrize(("release", "reported"), [("0.8.0", False), ("0.9.1", False), ("1.0.0", True)])
def test_vllm_decode_role_follows_the_image_release(catalogue_copy, release, reported):
    # dynamo.vllm had no --disaggregation-mode before Dynamo 1.0.0: a worker without a role flag was the
    # decode worker, so a decode-typed worker without the flag is right on such an image (issue 25 pattern 8)
    deploy = catalogue_copy / "llama-3-70b/vllm/disagg-single-node/deploy.yaml"
    text = deploy.read_text().replace("--disaggregation-mode decode", "")
    deploy.write_text(text.replace("vllm-runtime:1.6.1", f"vllm-runtime:{release}"))
    found = _run("disagg-roles-match-mode", catalogue_copy, "llama-3-70b/vllm/disagg-single-node")
    assert bool(found) is reported, [f.message for f in found]
