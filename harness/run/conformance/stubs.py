"""What the conformance driver substitutes for what a parse-only run lacks: a stub HF cache, a stub tensorrt_llm.

Imported by driver.py and introspect.py from their own directory (they run as scripts with a
conformance env's python): the standard library only. The HF cache holds, per model, the real
config.json the harness recorded (harness/recipe/data/model-configs/, sent in the request); a model
with none recorded gets a named preset of its family, and every result says which it got.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from typing import ClassVar

_LLAMA70 = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    hidden_act="silu",
    tie_word_embeddings=False,
    rope_scaling=dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192, rope_type="llama3"
    ),
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    torch_dtype="bfloat16",
)
_LLAMA8 = dict(_LLAMA70, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32)
_LLAMA405 = dict(_LLAMA70, hidden_size=16384, intermediate_size=53248, num_hidden_layers=126, num_attention_heads=128)
_DSV3 = dict(
    architectures=["DeepseekV3ForCausalLM"],
    model_type="deepseek_v3",
    hidden_size=7168,
    intermediate_size=18432,
    moe_intermediate_size=2048,
    num_hidden_layers=61,
    num_attention_heads=128,
    num_key_value_heads=128,
    vocab_size=129280,
    max_position_embeddings=163840,
    kv_lora_rank=512,
    q_lora_rank=1536,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    n_routed_experts=256,
    n_shared_experts=1,
    num_experts_per_tok=8,
    first_k_dense_replace=3,
    n_group=8,
    topk_group=4,
    routed_scaling_factor=2.5,
    norm_topk_prob=True,
    scoring_func="sigmoid",
    topk_method="noaux_tc",
    num_nextn_predict_layers=1,
    rms_norm_eps=1e-6,
    rope_theta=10000,
    hidden_act="silu",
    tie_word_embeddings=False,
    rope_scaling=dict(
        type="yarn",
        factor=40,
        original_max_position_embeddings=4096,
        beta_fast=32,
        beta_slow=1,
        mscale=1.0,
        mscale_all_dim=1.0,
    ),
    bos_token_id=0,
    eos_token_id=1,
    torch_dtype="bfloat16",
)
_QWEN3 = dict(
    architectures=["Qwen3ForCausalLM"],
    model_type="qwen3",
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    rope_theta=1000000,
    hidden_act="silu",
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151645,
    torch_dtype="bfloat16",
)
_QWEN3_SIZES = {
    "0.6b": {},
    "1.7b": dict(hidden_size=2048, intermediate_size=6144),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
    "8b": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        tie_word_embeddings=False,
    ),
    "14b": dict(
        hidden_size=5120,
        intermediate_size=17408,
        num_hidden_layers=40,
        num_attention_heads=40,
        tie_word_embeddings=False,
    ),
    "32b": dict(
        hidden_size=5120,
        intermediate_size=25600,
        num_hidden_layers=64,
        num_attention_heads=64,
        tie_word_embeddings=False,
    ),
}
_QWEN3_MOE = dict(
    _QWEN3,
    architectures=["Qwen3MoeForCausalLM"],
    model_type="qwen3_moe",
    hidden_size=4096,
    intermediate_size=12288,
    moe_intermediate_size=1536,
    num_hidden_layers=94,
    num_attention_heads=64,
    num_key_value_heads=4,
    num_experts=128,
    num_experts_per_tok=8,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    tie_word_embeddings=False,
)
_QWEN3_30B = dict(
    _QWEN3_MOE,
    hidden_size=2048,
    intermediate_size=6144,
    moe_intermediate_size=768,
    num_hidden_layers=48,
    num_attention_heads=32,
)


def guess_config(model: str) -> tuple[dict, str]:
    """A plausible config.json for an HF model id: (config, how it was chosen)."""
    n = model.lower()
    if "deepseek-r1" in n or "deepseek-v3" in n:
        return dict(_DSV3), "DeepSeek-V3 preset"
    if "llama" in n:
        if "405b" in n:
            return dict(_LLAMA405), "Llama-405B preset"
        if "70b" in n:
            return dict(_LLAMA70), "Llama-70B preset"
        return dict(_LLAMA8), "Llama-8B preset"
    if "qwen3" in n:
        if "235b" in n:
            return dict(_QWEN3_MOE), "Qwen3-235B-A22B preset"
        if "30b-a3b" in n:
            return dict(_QWEN3_30B), "Qwen3-30B-A3B preset"
        for size, over in _QWEN3_SIZES.items():
            if f"-{size}" in n:
                return dict(_QWEN3, **over), f"Qwen3-{size.upper()} preset"
        return dict(_QWEN3), "Qwen3-0.6B preset"
    return dict(_LLAMA8), "fallback Llama-8B-shaped preset (unknown model family)"


MODEL_FLAGS = (
    "--model",
    "--model-path",
    "--tokenizer",
    "--tokenizer-path",
    "--speculative-draft-model-path",
    "--speculative-model",
)
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def models_in(argv: list[str]) -> list[str]:
    out = []
    for i, tok in enumerate(argv):
        flag, eq, val = tok.partition("=")
        if flag in MODEL_FLAGS:
            v = val if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if v and HF_ID.match(v) and not os.path.exists(v):
                out.append(v)
    return out


def build_stub_cache(hf_home: str, jobs: list[dict], configs: dict | None = None) -> dict[str, str]:
    """HF_HOME/hub/models--org--name/{refs/main, snapshots/<rev>/config.json} per model.

    `configs` maps a model id to {"config": <config.json>, "source": "<provenance>"} (the recorded
    real ones); a model without one gets its family's preset, and the note says so."""
    rev = "0" * 40
    notes: dict[str, str] = {}
    configs = configs or {}
    for job in jobs:
        for model in models_in(job.get("argv", [])):
            if model in notes:
                continue
            if model in configs:
                cfg, how = configs[model]["config"], f"real config.json: {configs[model].get('source', '?')}"
            elif job.get("model_config"):
                cfg, how = job["model_config"], "from the request"
            else:
                cfg, how = guess_config(model)
                how = f"preset, not the model's own config.json: {how}"
            if "auto_map" in cfg:  # the repository's remote code is not in the stub cache
                cfg = {k: v for k, v in cfg.items() if k != "auto_map"}
                how += f"; auto_map dropped (no remote code in the stub cache: {cfg.get('model_type')!r} as built in)"
            repo = os.path.join(hf_home, "hub", "models--" + model.replace("/", "--"))
            snap = os.path.join(repo, "snapshots", rev)
            os.makedirs(snap, exist_ok=True)
            os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
            with open(os.path.join(repo, "refs", "main"), "w") as f:
                f.write(rev)
            with open(os.path.join(snap, "config.json"), "w") as f:
                json.dump(cfg, f, indent=1)
            gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id") if k in cfg}
            with open(os.path.join(snap, "generation_config.json"), "w") as f:
                json.dump(gen, f)
            notes[model] = how
    return notes


# Defaults that dynamo.trtllm.backend_args reads from BuildConfig.model_fields[...].default; the
# harness sends the values recorded from TensorRT-LLM's source ("trtllm_defaults"). These are the
# fallback when nothing was recorded; they only change defaults shown in the summary.
TRTLLM_STUB_DEFAULTS = {"max_batch_size": 2048, "max_num_tokens": 8192, "max_seq_len": None, "max_beam_width": 1}


def install_tensorrt_llm_stub(defaults: dict) -> bool:
    """Put a minimal tensorrt_llm in sys.modules unless the real one imports."""
    try:
        import tensorrt_llm.llmapi  # noqa: F401

        return False
    except Exception:
        pass
    for k in [k for k in sys.modules if k == "tensorrt_llm" or k.startswith("tensorrt_llm.")]:
        del sys.modules[k]

    class _Field:
        def __init__(self, default):
            self.default = default

    class BuildConfig:  # stands in for tensorrt_llm.llmapi.BuildConfig (a pydantic model)
        model_fields: ClassVar[dict[str, _Field]] = {k: _Field(v) for k, v in defaults.items()}

    root = types.ModuleType("tensorrt_llm")
    root.__path__ = []  # a package
    root.__version__ = "0+stub"
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.__path__ = []
    llmapi.BuildConfig = BuildConfig
    llm_args = types.ModuleType("tensorrt_llm.llmapi.llm_args")
    llm_args.BaseLlmArgs = BuildConfig
    root.llmapi = llmapi
    llmapi.llm_args = llm_args
    sys.modules.update({"tensorrt_llm": root, "tensorrt_llm.llmapi": llmapi, "tensorrt_llm.llmapi.llm_args": llm_args})
    return True
