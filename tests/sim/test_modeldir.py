"""The model dir is deterministic, cached by content, and loadable by the libraries that read it."""

from __future__ import annotations

import json

from harness.run.sim.modeldir import KNOWN_SHAPES, ensure_model_dir, shape_for


def test_model_dir_is_built_once_and_reused(sim_cache):
    first = ensure_model_dir("Qwen/Qwen3-32B", sim_cache)
    mtime = (first / "tokenizer.json").stat().st_mtime_ns
    again = ensure_model_dir("Qwen/Qwen3-32B", sim_cache)
    assert again == first
    assert (again / "tokenizer.json").stat().st_mtime_ns == mtime


def test_tokenizer_is_deterministic_across_cache_dirs(sim_cache, tmp_path):
    a = ensure_model_dir("tiny", sim_cache)
    b = ensure_model_dir("tiny", tmp_path)
    assert a.name == b.name
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_config_carries_the_real_kv_geometry(sim_cache):
    cfg = json.loads((ensure_model_dir("deepseek-ai/DeepSeek-R1", sim_cache) / "config.json").read_text())
    kv_bytes = cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * cfg["head_dim"] * 2
    assert kv_bytes == 70_272  # DeepSeek-R1 MLA, 16-bit, per token
    assert shape_for("Qwen/Qwen3-32B-FP8") == KNOWN_SHAPES["qwen3-32b"]


def test_tokenizer_and_chat_template_load_with_transformers(sim_cache):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ensure_model_dir("tiny", sim_cache)))
    text = tok.apply_chat_template(
        [{"role": "user", "content": "to be or not to be"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    assert 4 <= len(tok.encode("to be or not to be")) <= 8
