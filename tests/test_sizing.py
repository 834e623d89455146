"""GPU memory and storage sizing: the arithmetic, the catalogue's internal consistency, and the
storage rule on every shipped model cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.analysis.sizing import kv_bytes_per_token_per_gpu, size_worker, weights_per_gpu
from harness.analysis.storage import model_cache_needs, parse_quantity, recommended_gi
from harness.analysis.topology import Setting, Topology
from harness.checks import REGISTRY, CheckContext, all_checks, run_check
from harness.checks.storage import StorageOptions
from harness.recipe import catalogue
from harness.recipe.findings import Loc
from harness.run.static import make_selection

from .conftest import CATALOGUE

HERE = Loc(Path("deploy.yaml"), 1)


def topo(backend: str = "vllm", **values) -> Topology:
    t = Topology("worker", backend)
    for name, value in values.items():
        t.settings[name] = Setting(value, str(value), HERE, f"--{name}")
    return t


def test_dense_weights_split_over_tp_and_pp():
    llama = catalogue.model("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic")
    assert weights_per_gpu(llama, topo(tp=4)) == pytest.approx(17.65)
    assert weights_per_gpu(llama, topo(tp=2, pp=2)) == pytest.approx(17.65)


def test_deepseek_fp8_tp8_fits_h200_at_075_not_h100():
    """The catalogue's worked example: ~84 GB of weights per GPU at TP8."""
    r1 = catalogue.model("deepseek-ai/DeepSeek-R1")
    t = topo("sglang", tp=8, ep=8, memory_fraction=0.75)
    assert weights_per_gpu(r1, t) == pytest.approx(83.9, abs=0.1)
    assert size_worker(r1, catalogue.gpu("H200"), t, 8192).fits
    h100 = size_worker(r1, catalogue.gpu("H100"), t, 8192)
    assert not h100.fits and "headroom -" in h100.explain()


def test_attention_dp_replicates_attention_weights():
    r1 = catalogue.model("deepseek-ai/DeepSeek-R1")
    plain = weights_per_gpu(r1, topo("sglang", tp=8, ep=8))
    dp_attention = weights_per_gpu(r1, topo("sglang", tp=8, dp=8, ep=8, dp_attention=True))
    assert dp_attention - plain == pytest.approx(r1.attention_gb * (1 - 1 / 8))


def test_experts_shard_over_ep():
    qwen = catalogue.model("Qwen/Qwen3-235B-A22B-FP8")
    assert weights_per_gpu(qwen, topo("trtllm", tp=4, ep=4)) == pytest.approx(58.75)
    assert weights_per_gpu(qwen, topo("trtllm", tp=2)) == pytest.approx(117.5)


def test_kv_per_gpu_fp8_halves_gqa_caps_at_kv_heads_mla_not_split():
    qwen = catalogue.model("Qwen/Qwen3-235B-A22B-FP8")  # 4 KV heads
    assert kv_bytes_per_token_per_gpu(qwen, topo(tp=8)) == qwen.kv_bytes_per_token / 4
    assert kv_bytes_per_token_per_gpu(qwen, topo(tp=2, kv_cache_dtype="fp8")) == qwen.kv_bytes_per_token / 4
    r1 = catalogue.model("deepseek-ai/DeepSeek-R1")
    assert kv_bytes_per_token_per_gpu(r1, topo("sglang", tp=8)) == r1.kv_bytes_per_token


def test_vllm_without_max_model_len_sizes_for_full_context():
    llama = catalogue.model("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic")
    s = size_worker(llama, catalogue.gpu("H100"), topo(tp=2), 5120)
    assert s.kv_tokens == 131072 and "no --max-model-len" in s.kv_tokens_source
    capped = size_worker(llama, catalogue.gpu("H100"), topo(tp=2, max_seq_len=16384), 5120)
    assert capped.kv_tokens == 16384 and capped.headroom_gb > s.headroom_gb


def test_trtllm_fraction_is_a_share_of_free_memory():
    qwen = catalogue.model("Qwen/Qwen3-32B-FP8")
    s = size_worker(qwen, catalogue.gpu("H100"), topo("trtllm", tp=1, memory_fraction=0.5), 5120)
    assert s.share_of_free and s.budget_gb == pytest.approx((80 - 32.8) * 0.5)


@pytest.mark.parametrize("model", sorted(catalogue.models()), ids=str)
def test_catalogue_facts_are_consistent(model):
    m = catalogue.model(model)
    if m.mla:
        assert m.kv_bytes_per_token == m.layers * 576 * 2
    else:
        assert m.kv_bytes_per_token == 2 * m.layers * m.kv_heads * m.head_dim * 2
    assert 0.85 < m.checkpoint_gb / m.weights_gb < 1.15, "checkpoint size and params x bytes/param disagree"
    assert m.expert_gb <= m.weights_gb and m.attention_params_b < m.params_b
    assert m.checkpoint_source


@pytest.mark.parametrize(
    "text,expected",
    [
        ("100Gi", 100 * 2**30),
        ("1.5Ti", 1.5 * 2**40),
        ("800G", 800e9),
        ("5e11", 5e11),
        (1000, 1000.0),
        ("lots", None),
        ("", None),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


def test_recommended_pvc_rounds_up():
    rules = catalogue.storage_rules()
    assert recommended_gi(72.1 * 1.2e9, rules) == 100
    assert recommended_gi(1e9, rules) == rules.round_to_gi


MODELS = (
    sorted(p.parent.parent.name for p in CATALOGUE.glob("*/model-cache/model-cache.yaml")) if CATALOGUE.is_dir() else []
)


@pytest.mark.parametrize("model", MODELS)
def test_shrinking_any_model_cache_below_its_checkpoint_fails_at_its_line(model, tmp_path):
    root = tmp_path / "recipes"
    shutil.copytree(CATALOGUE, root)
    pvc = root / model / "model-cache" / "model-cache.yaml"
    text = pvc.read_text()
    m = re.search(r"^(\s*storage:\s*)(\S+)", text, re.M)
    line = text[: m.start()].count("\n") + 1
    sel = make_selection(root, [model])
    needs = model_cache_needs(sel.chosen[0])
    smallest = min(mm.checkpoint_gb for n in needs for mm in n.models)
    pvc.write_text(text[: m.start(2)] + f"{int(smallest * 0.9e9 / 2**30)}Gi" + text[m.end(2) :])
    sel = make_selection(root, [model])
    all_checks()
    chk = REGISTRY["model-cache-pvc-fits-checkpoint"]
    findings = [f for r in sel.chosen for f in run_check(chk, r, CheckContext(root))]
    assert findings and all(f.file == str(pvc) and f.line == line for f in findings), findings


def test_storage_margin_option(tmp_path):
    if not CATALOGUE.is_dir():
        pytest.skip("no shipped catalogue")
    sel = make_selection(CATALOGUE, ["llama-3-70b/vllm/agg"])
    all_checks()
    chk = REGISTRY["model-cache-pvc-fits-checkpoint"]
    assert not run_check(chk, sel.chosen[0], CheckContext(CATALOGUE))
    [finding] = run_check(chk, sel.chosen[0], CheckContext(CATALOGUE, [StorageOptions(margin=2.0)]))
    assert "x 2 margin" in finding.message and "set storage: 150Gi" in finding.hint
