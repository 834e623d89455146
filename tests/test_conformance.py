"""The conformance tier: env markers, the command line it parses, result -> finding mapping, and the real parsers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.recipe.model import FileCache, Recipe
from harness.run.conformance import client, envs, trtllm
from harness.run.conformance.client import ParseResult

REPO = Path(__file__).parent.parent
KV = """'{"kv_connector":"NixlConnector","kv_role":"kv_both"}'"""

DEPLOY = """\
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: tiny-disagg
spec:
  backendFramework: vllm
  services:
    Frontend:
      componentType: frontend
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          command: [python3, -m, dynamo.frontend]
          args: [--http-port, "8000", --router-mode, kv]
    Prefill:
      componentType: worker
      subComponentType: prefill
      envs:
        - name: MODEL_PATH
          value: Qwen/Qwen3-0.6B
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          command: [/bin/sh, -c]
          args:
            - >-
              exec python3 -m dynamo.vllm
              --model "$MODEL_PATH"
              --block-size 16
              --disaggregation-mode prefill{prefill_extra}
    Decode:
      componentType: worker
      subComponentType: decode
      envs:
        - name: MODEL_PATH
          value: Qwen/Qwen3-0.6B
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          command: [python3, -m, dynamo.vllm]
          args: [--model, "$(MODEL_PATH)", --disaggregation-mode, decode, --kv-transfer-config, '{kv}']
"""


def make_tree(
    tmp_path: Path, prefill_extra: str = "", deploy: str | None = None, rid: str = "tiny/vllm/disagg"
) -> Recipe:
    root = tmp_path / "recipes"
    d = root / rid
    d.mkdir(parents=True)
    (root / "versions.yaml").write_text(
        'releases:\n  "1.4.0": {vllm: "0.26.0", sglang: "0.5.16", trtllm: "1.3.0rc22"}\n'
    )
    (d / "recipe.yaml").write_text('versions: {dynamo: "1.4.0"}\n')
    text = deploy or DEPLOY.replace("{prefill_extra}", prefill_extra).replace("{kv}", KV.strip("'"))
    (d / "deploy.yaml").write_text(text)
    return Recipe(d, root, FileCache(root))


def line_of(recipe: Recipe, needle: str) -> int:
    lines = (recipe.path / "deploy.yaml").read_text().splitlines()
    return next(i + 1 for i, text in enumerate(lines) if needle in text)


# ---- envs ------------------------------------------------------------------------------------------


def write_marker(root: Path, name: str, **extra) -> Path:
    path = root / "conformance" / name
    path.mkdir(parents=True)
    release, kind = name.rsplit("-", 1)
    (path / envs.MARKER).write_text(json.dumps({"schema": 1, "release": release, "engine": kind, **extra}))
    return path


def test_an_env_is_ready_only_with_its_marker_and_the_cache_root_is_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path))
    assert envs.cache_root() == tmp_path / "conformance"
    (tmp_path / "conformance" / "1.4.0-vllm").mkdir(parents=True)  # half-built: no marker
    assert envs.find_env("1.4.0", "vllm") is None
    assert envs.locate("1.4.0", "vllm") is None
    write_marker(tmp_path, "1.4.0-sglang", requirements=["ai-dynamo==1.4.0", "sglang==0.5.16"])
    assert envs.find_env("1.4.0", "sglang").path == tmp_path / "conformance" / "1.4.0-sglang"
    # TRT-LLM and the frontend need only ai-dynamo: any env of the release serves them
    assert envs.locate("1.4.0", "trtllm").kind == "sglang"
    assert envs.locate("1.1.1", "trtllm") is None
    # a ready env is returned without building anything
    assert envs.ensure_env("1.4.0", "sglang").marker["requirements"][1] == "sglang==0.5.16"
    assert [e.path.name for e in envs.list_envs()] == ["1.4.0-sglang"]


def test_env_names_are_validated_and_the_setup_command_is_named():
    with pytest.raises(ValueError):
        envs.env_name("../x", "vllm")
    with pytest.raises(ValueError):
        envs.env_name("1.4.0", "trtllm")  # not an env kind: TRT-LLM runs in any env
    assert envs.setup_command("1.4.0", "vllm") == "recipe-harness conformance setup --release 1.4.0 --engine vllm"


def test_engine_pin_is_read_from_the_wheel_metadata():
    meta = (
        'Requires-Dist: vllm[flashinfer,runai]==0.26.0; extra == "vllm"\n'
        'Requires-Dist: tensorrt-llm==1.3.0rc22; extra == "trtllm"\nRequires-Dist: sglang==0.5.16; extra == "sglang"\n'
    )
    assert envs.engine_pin(meta, "vllm") == "0.26.0"
    assert envs.engine_pin(meta, "sglang") == "0.5.16"
    assert envs.engine_pin("Requires-Dist: vllm>=0.1\n", "vllm") is None


# ---- the command line ------------------------------------------------------------------------------


def test_jobs_parse_what_the_container_executes(tmp_path):
    recipe = make_tree(tmp_path)
    jobs = {j.service: j for j in client.jobs_for(recipe)}
    assert set(jobs) == {"Frontend", "Prefill", "Decode"}
    assert jobs["Frontend"].parser == "frontend"
    # folded `sh -c` script: split like the shell, $MODEL_PATH expanded, `exec python3 -m` dropped
    assert [t.value for t in jobs["Prefill"].argv] == [
        "--model",
        "Qwen/Qwen3-0.6B",
        "--block-size",
        "16",
        "--disaggregation-mode",
        "prefill",
    ]
    # exec form: the kubelet's $(VAR) expansion
    assert jobs["Decode"].argv[1].value == "Qwen/Qwen3-0.6B"
    assert jobs["Prefill"].release == "1.4.0" and jobs["Prefill"].framework == "vllm"


TRT_DEPLOY = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: engine
data:
  engine.yaml: |
    max_batch_size: 8
    kv_cache_config:
      free_gpu_memory_fraction: 0.8
      no_such_sub_key: 1
    no_such_key: true
---
apiVersion: nvidia.com/v1alpha1
kind: DynamoGraphDeployment
metadata:
  name: t
spec:
  backendFramework: trtllm
  services:
    Worker:
      componentType: worker
      extraPodSpec:
        volumes:
          - name: cfg
            configMap:
              name: engine
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.4.0
          volumeMounts:
            - name: cfg
              mountPath: /config
          command: [python3, -m, dynamo.trtllm]
          args: [--model-path, Qwen/Qwen3-0.6B, --extra-engine-args, /config/engine.yaml, --connector, kvbm, nixl]
"""

LLM_ARGS_SOURCE = """
class StrictBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

class KvCacheConfig(StrictBaseModel):
    free_gpu_memory_fraction: Optional[float] = Field(default=0.9)

class LooseConfig(BaseModel):
    anything: int = 1

class BuildConfig(StrictBaseModel):
    max_batch_size: int = Field(default=2048)
    max_num_tokens: int = 8192
    max_seq_len: Optional[int] = None
    max_beam_width: int = Field(default=1, description="beams")

class BaseLlmArgs(StrictBaseModel):
    max_batch_size: Optional[int] = Field(default=None, alias="max_batch")
    kv_cache_config: KvCacheConfig = Field(default_factory=KvCacheConfig)
    loose: Optional[LooseConfig] = None
    _private: int = 0

class TorchLlmArgs(BaseLlmArgs):
    backend: ClassVar[str] = "pytorch"
    cuda_graph_config: Optional[dict] = None
"""


def test_extra_engine_args_come_from_the_configmap_and_unknown_keys_are_found_at_their_line(tmp_path, monkeypatch):
    recipe = make_tree(tmp_path, deploy=TRT_DEPLOY, rid="tiny/trtllm/agg")
    job = client.jobs_for(recipe)[0]
    assert job.files and job.files[0].path == "/config/engine.yaml" and "no_such_key" in job.files[0].content
    data = trtllm.record_surface(
        LLM_ARGS_SOURCE,
        version="1.3.0rc22",
        repo="NVIDIA/TensorRT-LLM",
        path="tensorrt_llm/llmapi/llm_args.py",
        commit="0" * 40,
    )
    assert data["build_config_defaults"] == {
        "max_batch_size": 2048,
        "max_num_tokens": 8192,
        "max_seq_len": None,
        "max_beam_width": 1,
    }
    assert len(data["provenance"]["sha256"]) == 64
    surface = trtllm.Surface(data)
    assert {"max_batch_size", "max_batch", "kv_cache_config", "cuda_graph_config"} <= set(
        surface.accepts("TorchLlmArgs")
    )
    assert "_private" not in surface.accepts("TorchLlmArgs") and "backend" not in surface.accepts("TorchLlmArgs")
    assert [
        k for k, _, _ in surface.unknown_keys({"loose": {"x": 1}, "max_batch": 2})
    ] == []  # not stricter than pydantic
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / trtllm.data_file_name("1.3.0rc22")).write_text(json.dumps(data))
    real_load = trtllm.load_surface
    monkeypatch.setattr(trtllm, "load_surface", lambda version: real_load(version, tmp_path / "data"))
    found, notes = client.engine_args_findings(job)
    # not read from the release's tag: every item says so
    assert len(notes) == 1 and "LlmArgs recorded from tensorrt_llm/llmapi/llm_args.py @ 000000000000" in notes[0]
    got = {(f.line, f.message.split(":")[1].strip()) for f in found}
    assert got == {
        (line_of(recipe, "no_such_sub_key"), "kv_cache_config.no_such_sub_key"),
        (line_of(recipe, "no_such_key: true"), "no_such_key"),
    }


def test_without_build_config_the_defaults_come_from_base_llm_args_and_dropped_keys_are_accepted():
    # TensorRT-LLM 1.3 dropped BuildConfig: dynamo/trtllm/backend_args.py then imports
    # `BaseLlmArgs as BuildConfig`. Keys removed from TorchLlmArgs but still taken off the input
    # (`_TORCH_LLMARGS_REMOVED_ARG_CHECKS`) or renamed by the YAML merge (`hf_revision`) are accepted.
    source = (
        LLM_ARGS_SOURCE.replace("class BuildConfig(", "class OldBuildConfig(")
        + "\n_TORCH_LLMARGS_REMOVED_ARG_CHECKS: Dict[str, Callable] = {'sampler_type': check}\n"
        + "def update_llm_args_with_extra_dict(llm_args, llm_args_dict):\n"
        + "    llm_args_dict.setdefault('revision', llm_args_dict.pop('hf_revision'))\n"
    )
    data = trtllm.record_surface(
        source, version="9.9", repo="NVIDIA/TensorRT-LLM", path="tensorrt_llm/llmapi/llm_args.py", commit="0" * 40
    )
    assert data["build_config_defaults"] == {
        "max_batch_size": None,
        "max_num_tokens": "<not defined here>",
        "max_seq_len": "<not defined here>",
        "max_beam_width": "<not defined here>",
    }
    assert data["provenance"]["build_config_source"]["class"] == "BaseLlmArgs"
    assert data["root_dropped_keys"] == ["hf_revision", "sampler_type"]
    surface = trtllm.Surface(data)
    assert [k for k, _, _ in surface.unknown_keys({"sampler_type": "auto", "hf_revision": "main", "nope": 1})] == [
        "nope"
    ]
    assert [k for k, _, _ in surface.unknown_keys({"kv_cache_config": {"sampler_type": 1}})] == [
        "kv_cache_config.sampler_type"
    ]


def test_the_shipped_surface_for_dynamo_1_4_0_is_recorded_with_provenance_and_feeds_the_stub_defaults(tmp_path):
    surface = trtllm.load_surface("1.3.0rc22")
    assert surface is not None, "harness/run/conformance/data/trtllm-llmargs-1.3.0rc22.json is missing"
    p = surface.provenance
    assert p["repository"] == "NVIDIA/TensorRT-LLM" and p["path"] == "tensorrt_llm/llmapi/llm_args.py"
    assert len(p["commit"]) == 40 and len(p["sha256"]) == 64 and p["note"]
    assert {"kv_cache_config", "cache_transceiver_config", "moe_config", "cuda_graph_config"} <= set(
        surface.accepts("TorchLlmArgs")
    )
    assert [k for k, _, _ in surface.unknown_keys({"kv_cache_config": {"free_gpu_memory_fractio": 0.8}})] == [
        "kv_cache_config.free_gpu_memory_fractio"
    ]
    job = client.jobs_for(make_tree(tmp_path, deploy=TRT_DEPLOY, rid="tiny/trtllm/agg"))[0]
    extras = client._request_extras(job)
    assert extras["trtllm_defaults"] == surface.data["build_config_defaults"] and extras["deep"] is True
    # the stub HF cache gets the recorded real config.json of the model the command line names
    assert extras["model_configs"]["Qwen/Qwen3-0.6B"]["config"]["num_attention_heads"] == 16


def test_the_engine_args_check_says_when_no_surface_is_recorded(tmp_path, monkeypatch):
    recipe = make_tree(tmp_path, deploy=TRT_DEPLOY, rid="tiny/trtllm/agg")
    monkeypatch.setattr(trtllm, "load_surface", lambda version: None)
    found, notes = client.engine_args_findings(client.jobs_for(recipe)[0])
    assert found == [] and "not recorded" in notes[0]


# ---- results -> findings -----------------------------------------------------------------------------


def test_a_validation_error_points_at_the_flag_it_names_in_a_folded_script(tmp_path):
    recipe = make_tree(tmp_path)
    job = next(j for j in client.jobs_for(recipe) if j.service == "Prefill")
    message = "ValueError: When using --disaggregation-mode prefill, you must explicitly provide --kv-transfer-config."
    [f] = client.findings_for(job, ParseResult(ok=False, kind="validation", error=message, env="1.4.0-vllm"))
    assert (f.file.endswith("deploy.yaml"), f.line) == (True, line_of(recipe, "--disaggregation-mode prefill"))
    assert f.check_id == "conformance" and f.message == f"--disaggregation-mode: {message}"


def test_unrecognized_flags_point_at_each_flag_and_config_file_keys_at_the_configmap(tmp_path):
    recipe = make_tree(tmp_path, prefill_extra="\n              --is-prefill-worker")
    job = next(j for j in client.jobs_for(recipe) if j.service == "Prefill")
    err = "dynamo.vllm: error: unrecognized arguments: --is-prefill-worker"
    [f] = client.findings_for(
        job, ParseResult(ok=False, kind="argparse", error=err, unrecognized=["--is-prefill-worker"])
    )
    assert f.line == line_of(recipe, "--is-prefill-worker") and f.message == f"--is-prefill-worker: {err}"
    trt = make_tree(tmp_path / "t", deploy=TRT_DEPLOY, rid="tiny/trtllm/agg")
    tjob = client.jobs_for(trt)[0]
    [g] = client.findings_for(
        tjob,
        ParseResult(
            ok=False, kind="exit", error="Unrecognized argument: --no-such-key", unrecognized=["--no-such-key"]
        ),
    )
    assert g.line == line_of(trt, "no_such_key: true")  # a --config key is found in its ConfigMap


def test_an_error_naming_no_flag_points_at_the_module_and_ok_or_skipped_gives_nothing(tmp_path):
    recipe = make_tree(tmp_path)
    job = next(j for j in client.jobs_for(recipe) if j.service == "Decode")
    [f] = client.findings_for(job, ParseResult(ok=False, kind="validation", error="RuntimeError: boom"))
    assert f.line == line_of(recipe, "dynamo.vllm]") and f.message == "dynamo.vllm: RuntimeError: boom"
    assert client.findings_for(job, ParseResult(ok=True)) == []
    assert client.findings_for(job, ParseResult(ok=False, unavailable="not set up")) == []


def test_a_missing_env_skips_naming_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "empty"))
    outcomes = client.check_recipes([make_tree(tmp_path)])
    assert {o.skipped for o in outcomes} == {
        "conformance env for Dynamo 1.4.0 (vllm) not set up: "
        "run `recipe-harness conformance setup --release 1.4.0 --engine vllm`"
    }
    assert all(o.findings == [] for o in outcomes)


# ---- the real parsers (need `recipe-harness conformance setup`) ----------------------------------------

needs_vllm_env = pytest.mark.skipif(
    envs.find_env("1.4.0", "vllm") is None,
    reason="no 1.4.0 vLLM conformance env: run `recipe-harness conformance setup --release 1.4.0 --engine vllm`",
)


@needs_vllm_env
def test_the_real_vllm_parser_rejects_a_prefill_worker_without_kv_transfer_config(tmp_path):
    bad = make_tree(tmp_path / "bad")
    good = make_tree(tmp_path / "good", prefill_extra=f"\n              --kv-transfer-config {KV}")
    outcomes = {(o.job.recipe.root, o.job.service): o for o in client.check_recipes([bad, good])}
    failing = outcomes[(bad.root, "Prefill")]
    [f] = failing.findings
    assert f.line == line_of(bad, "--disaggregation-mode prefill")
    assert "you must explicitly provide --kv-transfer-config" in f.message
    assert failing.result.where.startswith("dynamo/vllm/args.py")
    assert [o.job.service for o in outcomes.values() if o.findings] == [
        "Prefill"
    ]  # frontend, decode, fixed prefill pass


@needs_vllm_env
def test_pytest_m_conformance_fails_the_item_naming_deploy_yaml_line_and_the_flag(tmp_path):
    bad = make_tree(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "conformance",
            "--recipes-dir",
            str(bad.root),
            "--recipe",
            "tiny/vllm/disagg",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    line = line_of(bad, "--disaggregation-mode prefill")
    assert f"deploy.yaml:{line}:15: [conformance] --disaggregation-mode: ValueError:" in proc.stdout
    assert "--kv-transfer-config" in proc.stdout
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED ")]
    assert len(failed) == 1 and "conformance::tiny/vllm/disagg::Prefill" in failed[0], failed
    assert "1 failed, 2 passed" in proc.stdout


@needs_vllm_env
def test_the_sim_rehearsal_fails_at_its_conformance_step(tmp_path):
    from harness.run.sim.stage import STEPS, SimRun
    from harness.run.stage import StageOptions, StepFailed

    assert STEPS[0] == "conformance"
    run = SimRun(
        make_tree(tmp_path),
        StageOptions(
            report_dir=tmp_path / "report", baselines_root=tmp_path / "baselines", history_root=tmp_path / "history"
        ),
    )
    try:
        with pytest.raises(StepFailed, match=r"deploy.yaml:\d+:15: \[conformance\] --disaggregation-mode"):
            run.run_step("conformance")
    finally:
        run.close()


PLANNER = """\
    Planner:
      componentType: planner
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          command: [python3, -m, dynamo.planner]
          args: [--environment, kubernetes]
    Custom:
      componentType: worker
      extraPodSpec:
        mainContainer:
          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0
          command: [/bin/sh, -c, "./start-worker.sh --tp 2"]
"""


def test_every_service_is_accounted_for_a_service_the_tier_cannot_parse_is_a_stated_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "empty"))
    recipe = make_tree(tmp_path, deploy=DEPLOY.replace("{prefill_extra}", "").replace("{kv}", KV.strip("'")) + PLANNER)
    jobs = {j.service: j for j in client.jobs_for(recipe)}
    assert set(jobs) == {"Frontend", "Prefill", "Decode", "Planner", "Custom"}
    assert "dynamo.planner is not an entry point the tier parses" in jobs["Planner"].skip_reason
    assert "starts no `python -m dynamo.<x>` (/bin/sh -c ./start-worker.sh --tp 2)" in jobs["Custom"].skip_reason
    outcomes = {o.job.service: o for o in client.check_recipes([recipe])}
    assert outcomes["Planner"].skipped.startswith("Planner: dynamo.planner") and outcomes["Planner"].findings == []
    assert outcomes["Custom"].skipped and outcomes["Prefill"].skipped.startswith("conformance env for Dynamo 1.4.0")


# ---- the deeper checks without an env: the cross-check, the located engine message, the typed engine YAML ----

VLLM_161 = """\
apiVersion: nvidia.com/v1beta1
kind: DynamoGraphDeployment
metadata:
  name: t
spec:
  backendFramework: vllm
  components:
    - componentName: Worker
      componentType: worker
      podTemplate:
        spec:
          containers:
            - name: main
              image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1
              command: [python3, -m, dynamo.vllm]
              args:
                - --model
                - RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic
                - --tensor-parallel-size
                - "3"
                - --max-model-len
                - 16K
"""


def vllm_161_job(tmp_path):
    recipe = make_tree(tmp_path, deploy=VLLM_161, rid="t/vllm/agg")
    (recipe.path / "recipe.yaml").write_text('versions: {dynamo: "1.6.1"}\n')
    (recipe.root / "versions.yaml").write_text('releases:\n  "1.6.1": {vllm: "0.31.0"}\n')
    recipe = Recipe(recipe.path, recipe.root, FileCache(recipe.root))
    [job] = client.jobs_for(recipe)
    return recipe, job


def test_the_cross_check_passes_equal_values_and_fails_a_value_the_parser_reads_otherwise(tmp_path):
    from harness.run.conformance import crosscheck

    recipe, job = vllm_161_job(tmp_path)
    assert [2, "max_model_len"] in job.request()["dests"]
    stages = [{"class": "argparse.ArgumentParser"}] * 2 + [
        {"class": "vllm.utils.argparse_utils.FlexibleArgumentParser"}
    ]
    agree = {"stages": stages, "values": {"2:max_model_len": 16384, "2:tensor_parallel_size": 3}}
    assert crosscheck.findings(job, ParseResult(ok=True, parsed=agree)) == ([], [])
    differ = dict(agree, values={"2:max_model_len": 16000, "2:tensor_parallel_size": 3})
    [f], _ = crosscheck.findings(job, ParseResult(ok=True, parsed=differ))
    assert f.line == line_of(recipe, "--max-model-len") and "static reader reads 16384" in f.message
    # the parser rejects a word the static reader accepted: the reader is less strict than the release
    rejected = ParseResult(ok=False, kind="argparse", unrecognized=["--max-model-len"], parsed=agree)
    [g], _ = crosscheck.findings(job, rejected)
    assert "parser rejects it, the static reader does not" in g.message


def test_an_engine_message_naming_a_setting_is_reported_at_that_flags_line(tmp_path):
    recipe, job = vllm_161_job(tmp_path)
    error = "ValidationError: Total number of attention heads (64) must be divisible by tensor parallel size (3)."
    [f] = client.findings_for(job, ParseResult(ok=False, kind="engine_config", error=error))
    assert f.line == line_of(recipe, "--tensor-parallel-size") and f.message.startswith("--tensor-parallel-size: ")
    # the CPU platform standing in for the GPU refusing is not the recipe's fault: a note, no finding
    assert (
        client.findings_for(job, ParseResult(ok=False, kind="platform", error="x", where="vllm/platforms/cpu.py")) == []
    )


def test_the_recorded_rc29_llmargs_types_reject_wideep_and_accept_cutedsl():
    surface = trtllm.load_surface("1.3.0rc29")
    typed = trtllm.TypedModels(surface)
    [(path, message)] = typed.errors({"moe_config": {"backend": "WIDEEP"}, "max_batch_size": 64})
    assert path == ("moe_config", "backend") and "Input should be 'AUTO', 'CUTLASS', 'CUTEDSL'" in message
    assert typed.errors({"moe_config": {"backend": "CUTEDSL"}, "kv_cache_config": {"dtype": "fp8"}}) == []
    assert typed.errors({"kv_cache_config": {"free_gpu_memory_fraction": "most"}})[0][0] == (
        "kv_cache_config",
        "free_gpu_memory_fraction",
    )
