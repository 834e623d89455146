"""The deployment plan keeps what the mocker can express and records every flag it drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.recipe.discovery import discover
from harness.run.sim.modeldir import ensure_model_dir
from harness.run.sim.plan import PlanError, build_plan

CATALOGUE = Path(__file__).parent.parent.parent / "recipes"


def notes_by_flag(plan, service):
    return {n.flag: n for n in plan.notes if n.service == service}


def test_round_robin_recipe_gets_one_mocker_per_replica(fixture_recipe):
    plan = build_plan(fixture_recipe("qwen3-32b/vllm/agg-round-robin"))
    assert plan.served_model_name == "Qwen/Qwen3-32B"
    assert plan.router_mode == "round-robin"
    assert len(plan.workers) == 8
    assert len({w.name for w in plan.workers}) == 8
    assert plan.expected_instances == {"backend": 8}
    assert plan.frontend.args == ("--router-mode", "round-robin")
    args = plan.workers[0].args
    assert args[:2] == ("--model-name", "Qwen/Qwen3-32B")
    assert args[args.index("--block-size") : args.index("--block-size") + 2] == ("--block-size", "64")
    assert "--max-model-len" in args and "--tensor-parallel-size" not in args


def test_dropped_flags_say_why_and_where(fixture_recipe):
    plan = build_plan(fixture_recipe("qwen3-32b/vllm/agg-round-robin"))
    worker = notes_by_flag(plan, "VllmWorker")
    assert worker["--tensor-parallel-size"].action == "dropped"
    assert "parallelism" in worker["--tensor-parallel-size"].reason
    assert worker["--gpu-memory-utilization"].action == "dropped"
    assert worker["--tensor-parallel-size"].where.startswith("qwen3-32b/vllm/agg-round-robin/deploy.yaml:")
    frontend = notes_by_flag(plan, "Frontend")
    assert frontend["--http-port"].reason == "the sim picks a free port"


def test_disaggregated_kv_recipe_keeps_roles_and_router(fixture_recipe):
    plan = build_plan(fixture_recipe("qwen3-32b/vllm/disagg-kv-router"))
    assert plan.router_mode == "kv"
    assert plan.expected_instances == {"prefill": 6, "backend": 2}
    assert plan.is_disaggregated
    assert [w.role for w in plan.serving_workers()] == ["decode", "decode"]
    assert "--kv-cache-block-size" in plan.frontend.args
    prefill = plan.workers[0].args
    assert prefill[prefill.index("--disaggregation-mode") + 1] == "prefill"
    assert notes_by_flag(plan, "VllmPrefillWorker")["--kv-transfer-config"].action == "dropped"


def test_sglang_dp_attention_becomes_mocker_dp_ranks(fixture_recipe):
    plan = build_plan(fixture_recipe("deepseek-r1/sglang/disagg-8gpu"))
    decode = next(w for w in plan.workers if w.role == "decode")
    assert decode.data_parallel_size == 8
    assert "--engine-type" in decode.args and "sglang" in decode.args
    notes = notes_by_flag(plan, "decode")
    assert notes["--dp"].replacement == "--data-parallel-size"
    assert notes["--page-size"].replacement == "--block-size"
    assert notes["--max-running-requests"].replacement == "--max-num-seqs"
    assert notes["--enable-dp-attention"].action == "dropped"


def test_trtllm_engine_config_is_read_from_the_configmap(fixture_recipe):
    plan = build_plan(fixture_recipe("deepseek-r1/trtllm/disagg-wide-ep"))
    prefill, decode = plan.workers
    assert (prefill.data_parallel_size, decode.data_parallel_size) == (4, 32)
    assert decode.args[decode.args.index("--max-num-seqs") + 1] == "256"
    assert decode.args[decode.args.index("--block-size") + 1] == "32"
    notes = notes_by_flag(plan, "TRTLLMDecodeWorker")
    assert notes["multinode.nodeCount"].action == "translated"
    assert notes["engine config moe_expert_parallel_size"].action == "dropped"


def test_data_parallel_above_the_profile_cap_is_capped_and_recorded(fixture_recipe):
    plan = build_plan(fixture_recipe("deepseek-r1/trtllm/disagg-wide-ep"), max_data_parallel=8)
    decode = plan.workers[1]
    assert decode.data_parallel_size == 8
    capped = [n for n in plan.notes if n.action == "capped"]
    assert [(n.service, n.value, n.replacement) for n in capped] == [("TRTLLMDecodeWorker", "32", "8")]


def test_speedup_ratio_reaches_every_mocker(fixture_recipe):
    plan = build_plan(fixture_recipe("tiny/vllm/agg-two-workers"), speedup_ratio=0.5)
    for w in plan.workers:
        assert w.args[w.args.index("--speedup-ratio") + 1] == "0.5"


def test_unknown_frontend_flag_is_dropped_not_fatal(broken_recipe):
    plan = build_plan(broken_recipe("tiny/vllm/frontend-unknown-flag"))
    assert plan.frontend.args == ("--router-mode", "round-robin")
    note = notes_by_flag(plan, "Frontend")["--made-up-flag"]
    assert (note.value, note.reason) == ("x", "not accepted by the installed dynamo.frontend")


def test_workers_serving_different_names_cannot_be_planned(broken_recipe):
    with pytest.raises(PlanError, match="different model names.*tiny-model.*other-name"):
        build_plan(broken_recipe("tiny/vllm/served-name-conflict"))


@pytest.mark.parametrize(
    "recipe_id",
    [
        "qwen3-32b/vllm/agg-round-robin",
        "qwen3-32b/vllm/disagg-kv-router",
        "deepseek-r1/sglang/disagg-8gpu",
        "deepseek-r1/trtllm/disagg-wide-ep",
    ],
)
def test_every_planned_mocker_is_accepted_by_the_real_mocker(recipe_id, sim_cache, fixture_recipe):
    assert_mockers_accept(build_plan(fixture_recipe(recipe_id)), sim_cache)


def test_every_catalogue_recipe_plans_into_mockers_the_real_mocker_accepts(sim_cache):
    if not CATALOGUE.is_dir() or not discover(CATALOGUE):
        pytest.skip("no recipes/ catalogue in this checkout")
    for recipe in discover(CATALOGUE):
        assert_mockers_accept(build_plan(recipe), sim_cache)


def assert_mockers_accept(plan, model_cache):
    """The mocker's own parser and engine-args validation (what makes it exit at start) accept every worker."""
    from dynamo.mocker.args import parse_args
    from dynamo.mocker.config import load_mocker_engine_args

    model_dir = ensure_model_dir(plan.model_id, model_cache)
    for w in plan.workers:
        args = parse_args(["--model-path", str(model_dir), *w.args])
        load_mocker_engine_args(args)
        assert args.dp_size == w.data_parallel_size, (plan.recipe_id, w.name)
        assert args.model_name == plan.served_model_name


def test_plan_serialises_with_expected_instances(fixture_recipe):
    data = build_plan(fixture_recipe("qwen3-32b/vllm/disagg-kv-router")).to_dict()
    assert data["expected_instances"] == {"prefill": 6, "backend": 2}
    assert data["notes"][0]["reason"]
