"""`recipe-harness derive`: keys and values, the plan's dependent values and refusals, the edits (layout
kept, idempotent), the proof before writing, and a derived recipe that discovery and the sim's plan take
like any other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.analysis.docs import write as write_docs
from harness.analysis.variant import plan_variant
from harness.commands.derive import _model_dirs, build_variant
from harness.recipe.derive import KEYS, UsageError, parse_sets, variant_mode
from harness.run.static import make_selection
from tests.conftest import CATALOGUE, QWEN_AGG, copy_catalogue, recipe

REPO = Path(__file__).resolve().parent.parent


def plan_for(root: Path, rid: str, items: list[str], mode: str | None = None):
    sel = make_selection(root)
    src = next(r for r in sel.all if r.id == rid)
    sets = parse_sets(items)
    return src, plan_variant(src, sets, mode or variant_mode(src.mode, sets), _model_dirs(sel.all))


def derive_into(root: Path, rid: str, items: list[str], mode: str | None = None):
    """The variant written into the tree at root (no proof): what `derive` writes after the tiers pass."""
    src, plan = plan_for(root, rid, items, mode)
    changes = build_variant(root, src.path, plan, plan.spec.variant_id)
    write_docs(make_selection(root).tree)
    return plan, changes


def cli(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "derive", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env},
    )


# --- keys and values ---------------------------------------------------------------------------


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(UsageError) as exc:
        parse_sets(["tensor-parallel=4"])
    assert "unknown key 'tensor-parallel'" in str(exc.value)
    assert all(k in str(exc.value) for k in KEYS)


@pytest.mark.parametrize(
    "item, expected",
    [
        ("tp=0", "from 1 to 64"),
        ("gpu-memory=1.5", "0 < F <= 1"),
        ("router=random", "kv, round-robin"),
        ("gpu=V100", "A100, H100, H200, B200, GB200"),
        ("replicas=four", "an integer"),
        ("namespace=Bad_NS", "DNS label"),
    ],
)
def test_bad_values_name_the_valid_range_or_choices(item, expected):
    with pytest.raises(UsageError) as exc:
        parse_sets([item])
    assert expected in str(exc.value)


def test_values_are_typed():
    assert parse_sets(["tp=4", "gpu-memory=0.85", "gpu=B200", "router=kv"]) == {
        "tp": 4,
        "gpu-memory": 0.85,
        "gpu": "B200",
        "router": "kv",
    }


def test_default_mode_names_the_router_it_promises():
    assert variant_mode("agg-round-robin", {"tp": 4, "replicas": 4, "gpu": "B200"}) == "agg-round-robin-tp4-r4-b200"
    assert variant_mode("agg-round-robin", {"router": "kv"}) == "agg-kv-router"
    assert variant_mode("disagg-kv-router", {"router": "round-robin"}) == "disagg-round-robin"
    assert variant_mode("agg", {"router": "kv"}) == "agg-kv-router"


def test_cli_usage_errors_exit_2_with_choices(tmp_path):
    unknown = cli(QWEN_AGG, "--set", "speed=11")
    assert unknown.returncode == 2 and "unknown key 'speed'" in unknown.stderr and "block-size" in unknown.stderr
    missing = cli("qwen3-32b/vllm/nope", "--set", "tp=4")
    assert missing.returncode == 2 and "no recipe 'qwen3-32b/vllm/nope'" in missing.stderr
    assert QWEN_AGG in missing.stderr  # the valid choices
    cluster = cli(QWEN_AGG, "--set", "storage-class=efs-sc")
    assert cluster.returncode == 2 and "--out DIR" in cluster.stderr


# --- the plan: dependents and refusals ---------------------------------------------------------------


def test_done_when_plan_tp4_replicas4_b200():
    _, plan = plan_for(CATALOGUE, QWEN_AGG, ["tp=4", "replicas=4", "gpu=B200"])
    assert not plan.refusals
    worker = plan.spec.workers["Worker"]
    assert (worker.replicas, worker.gpus_per_pod, worker.node_count) == (4, 4, 1)
    assert worker.flags["--tensor-parallel-size"][0] == "4"
    meta = {".".join(k): v for k, (v, _) in plan.spec.metadata.items()}
    assert (meta["gpus"], meta["nodes"], meta["hardware.gpu"]) == (16, 2, "B200")
    assert meta["hardware.labels"] == ["b200-8gpu", "nodes-2"]
    assert meta["benchmark.concurrency"] == 128 and meta["benchmark.concurrencyPerGpu"] == 8


def test_more_gpus_raise_nodes_concurrency_and_requests():
    _, plan = plan_for(CATALOGUE, QWEN_AGG, ["tp=8", "replicas=4"])
    meta = {".".join(k): v for k, (v, _) in plan.spec.metadata.items()}
    assert (meta["gpus"], meta["nodes"]) == (32, 4)
    assert plan.spec.perf_env["CONCURRENCY"][0] == "256"  # 8 per GPU x 32
    assert plan.spec.perf_env["REQUEST_COUNT"][0] == "2560"  # 10 x concurrency, as the source
    assert plan.spec.perf_env["DEPLOYMENT_GPU_COUNT"][0] == "32"


def test_tp_not_dividing_heads_is_refused_with_vllms_reason():
    _, plan = plan_for(CATALOGUE, "llama-3-70b/vllm/agg", ["tp=3"])
    [refusal] = [r for r in plan.refusals if "attention heads" in r.reason]
    assert "Total number of attention heads (64) must be divisible by tensor parallel size (3)" in refusal.reason
    assert "verify_with_parallel_config" in refusal.source


def test_tp_above_a_node_without_multinode_is_refused():
    _, plan = plan_for(CATALOGUE, QWEN_AGG, ["tp=16"])
    assert any("a pod cannot span nodes" in r.reason for r in plan.refusals)


def test_weights_that_do_not_fit_are_refused_with_the_sizing():
    _, plan = plan_for(CATALOGUE, QWEN_AGG, ["tp=1", "gpu-memory=0.5", "gpu=H100"])
    [refusal] = [r for r in plan.refusals if "does not fit H100" in r.reason]
    assert "weights 65.6 GB" in refusal.reason


def test_a_precision_the_gpu_lacks_is_refused():
    _, plan = plan_for(CATALOGUE, "qwen3-32b-fp8/trtllm/agg", ["gpu=A100"])
    assert any("A100 (compute capability 8.0) cannot run fp8 in trtllm" in r.reason for r in plan.refusals)


def test_concurrency_must_be_a_multiple_of_the_gpus():
    with pytest.raises(UsageError, match="multiple of 16"):
        plan_for(CATALOGUE, QWEN_AGG, ["concurrency=100"])


def test_long_benchmark_raises_the_context_it_needs():
    _, plan = plan_for(CATALOGUE, QWEN_AGG, ["isl=16384"])
    assert plan.spec.workers["Worker"].flags["--max-model-len"][0] == "17408"  # 16384 + 1024, rounded to 1024


# --- the edits ---------------------------------------------------------------------------------------


def test_written_variant_follows_and_keeps_layout(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, changes = derive_into(root, QWEN_AGG, ["tp=4", "replicas=4", "gpu=B200"])
    vid = plan.spec.variant_id
    deploy = (root / vid / "deploy.yaml").read_text()
    source = (root / QWEN_AGG / "deploy.yaml").read_text()
    # comments kept, only the planned lines differ
    assert deploy.count("#") == source.count("#")
    dgd = yaml.safe_load(deploy)
    worker = dgd["spec"]["components"][1]
    assert worker["replicas"] == 4
    res = worker["podTemplate"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "4" and res["limits"]["nvidia.com/gpu"] == "4"
    assert dgd["metadata"]["name"] == "qwen3-32b-vllm-agg-round-robin-tp4-r4-b200"
    assert deploy.startswith(f"# {vid}: Qwen3-32B (BF16), vLLM aggregated: 4 x TP4, frontend round-robin on B200.\n")
    assert "# Topology: 4 x TP4, frontend round-robin; 16 GPUs on 2 B200 nodes.\n" in deploy
    perf = (root / vid / "perf.yaml").read_text()
    assert perf.startswith(f"# {vid}: AIPerf benchmark against the qwen3-32b-vllm-agg-round-robin-tp4-r4-b200 frontend")
    assert "http://qwen3-32b-vllm-agg-round-robin-tp4-r4-b200-frontend:8000" in perf
    meta = yaml.safe_load((root / vid / "recipe.yaml").read_text())
    assert meta["hardware"]["gpu"] == "B200" and meta["mode"] == "agg-round-robin-tp4-r4-b200"
    assert "# Worker 4 x 4 = 16 GPUs" in (root / vid / "recipe.yaml").read_text()
    readme = (root / "qwen3-32b" / "README.md").read_text()
    assert "- `vllm/agg-round-robin-tp4-r4-b200`: 16 x B200 (180 GB) on 2 nodes of 8 GPUs" in readme
    assert f"[{vid}]" in (root / "README.md").read_text()
    assert all(c.reason for c in changes)


def test_router_kv_makes_vllm_workers_publish_kv_events(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, QWEN_AGG, ["router=kv"])
    dgd = yaml.safe_load((root / plan.spec.variant_id / "deploy.yaml").read_text())
    front, worker = dgd["spec"]["components"]
    assert front["podTemplate"]["spec"]["containers"][0]["args"][-2:] == ["--router-mode", "kv"]
    args = worker["podTemplate"]["spec"]["containers"][0]["args"]
    config = args[args.index("--kv-events-config") + 1]
    assert '"enable_kv_cache_events":true' in config


def test_deriving_twice_gives_identical_files(tmp_path):
    first = copy_catalogue(tmp_path / "a")
    derive_into(first, QWEN_AGG, ["tp=4", "replicas=4", "gpu=B200"])
    derive_into(first, QWEN_AGG, ["router=kv"])  # another variant's README lines in between
    snapshot = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    derive_into(first, QWEN_AGG, ["tp=4", "replicas=4", "gpu=B200"])
    again = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert again == snapshot


def test_derived_recipe_is_discovered_and_planned_by_the_sim(tmp_path):
    pytest.importorskip(
        "dynamo.frontend", reason="the sim's plan reads the installed frontend: pip install -e '.[sim]'"
    )
    from harness.run.sim.plan import build_plan

    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, QWEN_AGG, ["tp=4", "replicas=4", "router=kv"])
    sel = make_selection(root, [plan.spec.variant_id])
    [variant] = sel.chosen
    sim = build_plan(variant)
    assert len(sim.workers) == 4
    assert sim.router_mode == "kv"
    assert recipe(root, plan.spec.variant_id).deployment.name == plan.spec.variant_dgd


# --- the proof (the real tiers; slow: a static run over the tree) -----------------------------------------


def test_cli_proves_then_writes_and_a_failing_variant_only_with_force(tmp_path):
    root = copy_catalogue(tmp_path)
    ok = cli(QWEN_AGG, "--set", "router=kv", "--recipes-dir", str(root))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "static: passed" in ok.stdout
    assert (root / "qwen3-32b/vllm/agg-kv-router/deploy.yaml").is_file()
    # a name that promises round-robin for a kv router: the static tier's router-mode-matches fails it
    bad = [QWEN_AGG, "--set", "router=kv", "--name", "agg-round-robin-kv", "--recipes-dir", str(root)]
    refused = cli(*bad)
    assert refused.returncode == 1 and "not written" in refused.stdout and "[router-mode-matches]" in refused.stdout
    assert not (root / "qwen3-32b/vllm/agg-round-robin-kv").exists()
    forced = cli(*bad, "--force")
    assert forced.returncode == 1 and "carries its findings" in forced.stdout
    limits = yaml.safe_load((root / "qwen3-32b/vllm/agg-round-robin-kv/recipe.yaml").read_text())["knownLimits"]
    assert any("router-mode-matches" in line for line in limits)


def test_a_changed_model_goes_to_its_model_directory(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, QWEN_AGG, ["model=Qwen/Qwen3-32B-FP8", "tp=1"])
    assert plan.spec.variant_id == "qwen3-32b-fp8/vllm/agg-round-robin-tp1"
    deploy = (root / plan.spec.variant_id / "deploy.yaml").read_text()
    assert '- "$(MODEL_PATH)"' in deploy  # the flag follows its env var, which changes
    assert "value: Qwen/Qwen3-32B-FP8" in deploy and "value: Qwen/Qwen3-32B\n" not in deploy
    meta = yaml.safe_load((root / plan.spec.variant_id / "recipe.yaml").read_text())
    download = yaml.safe_load((root / "qwen3-32b-fp8/model-cache/model-download.yaml").read_text())
    revision = {e["name"]: e.get("value") for e in download["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert meta["model"]["revision"] == revision["MODEL_REVISION"] and meta["model"]["precision"] == "fp8"
    assert "`vllm/agg-round-robin-tp1`" in (root / "qwen3-32b-fp8/README.md").read_text()


def test_block_size_follows_on_the_endpoint_picker(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, changes = derive_into(root, "llama-3-70b/vllm/agg", ["block-size=32"])
    epp = yaml.safe_load_all((root / plan.spec.variant_id / "gaie/epp.yaml").read_text())
    env = {
        e["name"]: e.get("value")
        for d in epp
        if d and d.get("kind") == "Deployment"
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    assert env["DYN_KV_BLOCK_SIZE"] == "32" and env["DYN_KV_CACHE_BLOCK_SIZE"] == "32"
    assert "the workers' --block-size (32)" in (root / plan.spec.variant_id / "gaie/epp.yaml").read_text()
    assert any(c.what == "Worker --block-size" and c.new == "32" for c in changes)


def test_router_kv_on_trtllm_adds_the_publish_switch(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, "qwen3-32b-fp8/trtllm/agg", ["router=kv"])
    dgd = yaml.safe_load_all((root / plan.spec.variant_id / "deploy.yaml").read_text())
    [graph] = [d for d in dgd if d and d.get("kind") == "DynamoGraphDeployment"]
    worker = next(c for c in graph["spec"]["components"] if c["type"] == "worker")
    args = worker["podTemplate"]["spec"]["containers"][0]["args"]
    assert args.count("--publish-kv-events") == 1 and args[-1] == "--publish-kv-events"


def test_storage_class_sets_the_model_cache_of_an_out_tree(tmp_path):
    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, "llama-3-70b/vllm/agg", ["storage-class=efs-sc", "namespace=team-a"], "agg-efs")
    pvc = yaml.safe_load((root / "llama-3-70b/model-cache/model-cache.yaml").read_text())
    assert pvc["spec"]["storageClassName"] == "efs-sc"
    assert "export NAMESPACE=team-a" in (root / "llama-3-70b/README.md").read_text()
    assert not any("namespace:" in (root / plan.spec.variant_id / f).read_text() for f in ("deploy.yaml", "perf.yaml"))


def test_an_estimator_fills_the_targets():
    src = next(r for r in make_selection(CATALOGUE).all if r.id == QWEN_AGG)
    seen = []

    def estimate(plan, recipe):
        seen.append((plan.spec.variant_id, recipe.id))
        return {"kind": "estimate", "outputTokenThroughputPerGpu": 400, "source": "a model of the hardware"}

    plan = plan_variant(src, {"gpu": "B200"}, "agg-round-robin-b200", _model_dirs([src]), estimate=estimate)
    assert seen == [("qwen3-32b/vllm/agg-round-robin-b200", QWEN_AGG)]
    assert plan.spec.metadata[("targets",)][0]["kind"] == "estimate"
    none = plan_variant(src, {"gpu": "B200"}, "agg-round-robin-b200", _model_dirs([src]))
    assert set(none.spec.metadata[("targets",)][0]) == {"kind", "source"}  # no numbers carried over


def test_strict_refuses_a_variant_a_tier_could_not_prove(tmp_path):
    """An empty cache: no conformance env and no control-plane binaries, as on a fresh machine."""
    root = copy_catalogue(tmp_path)
    empty = tmp_path / "cache"
    empty.mkdir()
    run = cli(QWEN_AGG, "--set", "replicas=4", "--recipes-dir", str(root), "--strict", RECIPE_HARNESS_CACHE=str(empty))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "static: passed" in run.stdout
    assert "conformance: could not run" in run.stdout and "apiserver: could not run" in run.stdout
    assert "recipe-harness cluster setup" in run.stdout  # the command that makes it runnable
    assert "not written" in run.stdout and not (root / "qwen3-32b/vllm/agg-round-robin-r4").exists()


def test_a_tree_error_elsewhere_is_the_trees_not_the_variants(tmp_path):
    from harness.run.prove import prove

    root = copy_catalogue(tmp_path)
    readme = root / "llama-3-70b/README.md"
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `vllm/agg` |"))
    readme.write_text(text.replace(row, row.replace("| 4 | 1 |", "| 5 | 1 |", 1)))  # a wrong GPU count
    plan, _ = derive_into(root, QWEN_AGG, ["router=kv"])
    vid = plan.spec.variant_id
    touched = {f"{vid}/deploy.yaml", f"{vid}/perf.yaml", f"{vid}/recipe.yaml", "qwen3-32b/README.md"}
    [static] = prove(root, vid, touched, tiers=("static",))
    assert static.passed, static.failures
    assert any("llama-3-70b/README.md" in n and "model-readme-format" in n for n in static.notes)
    # the same error in a file the variant wrote is the variant's
    [strict] = prove(root, vid, touched | {"llama-3-70b/README.md"}, tiers=("static",))
    assert any("model-readme-format" in f for f in strict.failures)


def test_the_api_server_admits_a_derived_recipe(tmp_path):
    from harness.run.cluster.build import find_binaries, missing_reason
    from harness.run.prove import prove

    if find_binaries() is None:
        pytest.skip(f"the API-server tier cannot run: {missing_reason()}")
    root = copy_catalogue(tmp_path)
    plan, _ = derive_into(root, QWEN_AGG, ["tp=4", "replicas=4", "gpu=B200"])
    [api] = prove(root, plan.spec.variant_id, tiers=("apiserver",))
    assert api.ran and api.passed, api.failures
    assert any("applied with dryRun=All" in n for n in api.notes)
