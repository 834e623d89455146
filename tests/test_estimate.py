"""AIConfigurator estimates (harness/run/estimate): the request a recipe makes, the real estimate where the
env is built (`recipe-harness estimate --setup`), the `kind: estimate` targets entry and its schema."""

from __future__ import annotations

import pytest

from harness.analysis.docs import catalogue_md
from harness.checks import REGISTRY, all_checks, run_check
from harness.recipe.discovery import RecipeTree, discover
from harness.recipe.model import FileCache
from harness.run.estimate.env import find_env
from harness.run.estimate.predict import (
    Estimate,
    NoCoverage,
    _kwargs,
    estimate,
    estimate_many,
    planned_request,
    recipe_request,
    write_targets,
)
from harness.run.static import context_for, make_selection
from tests.conftest import CATALOGUE, check_on_copy, copy_catalogue, needs_catalogue, recipe

needs_env = pytest.mark.skipif(
    find_env() is None, reason="no AIConfigurator env: run `recipe-harness estimate --setup` (~0.7 GB)"
)

ESTIMATE_TARGETS = """targets:
  kind: estimate
  outputTokenThroughputPerGpu: 334.2
  ttftMs: 491.0
  tpotMs: 23.5
  source: "AIConfigurator 0.12.0 cli_estimate, system h100_sxm"
  estimator: {tool: aiconfigurator, version: 0.12.0, system: h100_sxm, backend: vllm, database: 0.24.0, mode: agg}
storage:"""


def _targets_edit(new: str) -> tuple[str, str, str]:
    old_start = "targets:\n  kind: target\n"
    text = (CATALOGUE / "llama-3-70b/vllm/agg/recipe.yaml").read_text()
    block = text[text.index(old_start) : text.index("storage:") + len("storage:")]
    return ("llama-3-70b/vllm/agg/recipe.yaml", block, new)


@needs_catalogue
def test_schema_accepts_an_estimate_with_its_estimator(tmp_path):
    assert check_on_copy(tmp_path, "metadata-schema", [_targets_edit(ESTIMATE_TARGETS)]) == []


@needs_catalogue
def test_schema_rejects_an_estimate_without_its_estimator(tmp_path):
    bare = "\n".join(line for line in ESTIMATE_TARGETS.splitlines() if "estimator" not in line)
    findings = check_on_copy(tmp_path, "metadata-schema", [_targets_edit(bare)])
    assert any("estimator" in f.message for f in findings), findings


@needs_catalogue
def test_schema_rejects_modeled_means_on_a_target(tmp_path):
    edit = ("llama-3-70b/vllm/agg/recipe.yaml", "  itlP99Ms: 50\n", "  itlP99Ms: 50\n  ttftMs: 400\n")
    assert check_on_copy(tmp_path, "metadata-schema", [edit])


@needs_catalogue
def test_requests_follow_the_engines_parallelism():
    recipes = {r.id: r for r in discover(CATALOGUE)}
    ds = recipe_request(recipes["deepseek-r1/sglang/disagg-8gpu"])
    assert ds.mode == "disagg" and ds.decode.shape("sglang") == (1, 8) and ds.gpus() == 16
    kw = _kwargs(ds, moe=True)
    # 256 streams over one decode worker's 8 attention-DP ranks; experts over all 8 GPUs
    assert (kw["decode_batch_size"], kw["decode_moe_ep_size"], kw["decode_moe_tp_size"]) == (32, 8, 1)
    rr = recipe_request(recipes["qwen3-32b/vllm/agg-round-robin"])
    assert rr.mode == "agg" and rr.worker.workers == 8 and rr.gpus() == 16
    assert _kwargs(rr, moe=False) == {"isl": 4096, "osl": 1024, "kvcache_quant_mode": "bfloat16",
                                      "tp_size": 2, "attention_dp_size": 1, "batch_size": 16}  # fmt: skip
    wide = recipe_request(recipes["deepseek-r1/trtllm/disagg-wide-ep"])
    assert wide.decode.shape("trtllm") == (1, 32)  # enable_attention_dp: every rank runs whole attention


def test_a_gpu_without_a_system_is_not_covered():
    res = estimate("Qwen/Qwen3-32B", "L40", "vllm", 1, 1, 1024, 1024, 8)
    assert isinstance(res, NoCoverage) and "no AIConfigurator system for GPU 'L40'" in res.reason
    assert "H200 (h200_sxm)" in res.reason


@needs_env
def test_real_estimate_of_an_aggregated_vllm_variant():
    res = estimate("Qwen/Qwen3-32B", "H200", "vllm", 2, 1, 4096, 1024, 16, pinned_backend="0.31.0")
    assert isinstance(res, Estimate), res
    assert res.system == "h200_sxm" and res.database and res.tokens_per_s_per_gpu > 0
    assert 0 < res.ttft_ms < 60_000 and 0 < res.tpot_ms < 1_000
    targets = res.targets()
    assert targets["kind"] == "estimate" and targets["estimator"]["database"] == res.database
    assert "the recipe pins 0.31.0" in targets["source"] and "not a measurement" in targets["source"]
    # a bigger batch on the same GPUs: more tokens per GPU, each token slower (the model, not a constant)
    busier = estimate("Qwen/Qwen3-32B", "H200", "vllm", 2, 1, 4096, 1024, 64)
    assert busier.tokens_per_s_per_gpu > res.tokens_per_s_per_gpu and busier.tpot_ms > res.tpot_ms


@needs_env
@needs_catalogue
def test_shipped_recipe_estimates_and_the_uncovered_one(tmp_path):
    root = copy_catalogue(tmp_path)
    covered = recipe(root, "llama-3-70b/vllm/disagg-multi-node")
    uncovered = recipe(root, "deepseek-r1/sglang/disagg-16gpu")
    est, none = estimate_many([recipe_request(covered), recipe_request(uncovered)])
    assert isinstance(est, Estimate), est
    assert "Meta-Llama-3.1-70B's architecture" in est.source()  # the recorded substitution, stated
    assert isinstance(none, NoCoverage) and "WideEP" in none.reason and "/root/" not in none.reason
    # written into recipe.yaml, the estimate passes the static tier's metadata schema
    path = covered.path / "recipe.yaml"
    assert write_targets(path, est.targets())
    assert not write_targets(path, est.targets())  # idempotent
    text = path.read_text()
    assert "kind: estimate" in text and "# Prefill 1 x 8 + Decode 1 x 8 = 16 GPUs" in text
    all_checks()
    selection = make_selection(root, [covered.id])
    assert run_check(REGISTRY["metadata-schema"], selection.chosen[0], context_for(selection, ())) == []
    cache = FileCache(root)
    row = f"| {covered.id} | 4096 | 1024 | 128 | 1280 | {est.targets()['outputTokenThroughputPerGpu']} | ~"
    assert row in catalogue_md(RecipeTree(root, discover(root, cache), cache))


@needs_env
@needs_catalogue
def test_derive_plans_carry_the_variants_estimate():
    """`recipe-harness derive` fills a variant's targets through this hook: the variant's GPU, TP and replicas,
    not the source recipe's."""
    from harness.analysis.variant import plan_variant
    from harness.run.estimate.predict import estimate_for_plan

    recipes = {r.id: r for r in discover(CATALOGUE)}
    source = recipes["qwen3-32b/vllm/agg-round-robin"]
    plan = plan_variant(source, {"tp": 4, "replicas": 4, "gpu": "B200"}, "agg-round-robin-variant", {})
    req = planned_request(plan, source, recipe_request(source))
    assert (req.gpu, req.worker.tp, req.worker.workers, req.concurrency) == ("B200", 4, 4, 128)
    targets = estimate_for_plan(plan, source)
    assert targets["kind"] == "estimate" and targets["estimator"]["system"] == "b200_sxm"
    assert "agg TP4 x 4" in targets["source"]
