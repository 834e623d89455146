"""Sizing checks: each worker's weights and a minimum KV cache fit the memory its engine may use."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.sizing import FRACTION_NAME, recipe_gpus, worker_sizings
from harness.analysis.topology import workers
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig


@check("weights-fit-gpu", convention=True)
def weights_fit_gpu(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Each worker's weights per GPU plus the KV cache of one maximum-length sequence must fit
    the memory its engine may use (`--gpu-memory-utilization`, `--mem-fraction-static`, or
    `free_gpu_memory_fraction` of what the weights leave) on the recipe's GPU and on every
    GPU it lists as an alternative. Otherwise the engine dies at load time with CUDA OOM or
    "not enough KV cache", after the cluster spent an hour pulling images and weights. The
    arithmetic is in harness/sizing.py and the sizing guide (recipes/SIZING.md).

    Fails: DeepSeek-R1 FP8 at TP8 on H100 (84+ GB of weights per 80 GB GPU), or Qwen3-32B BF16
    at TP1 with `--gpu-memory-utilization 0.5` on H100.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    Arithmetic in harness/analysis/sizing.py with harness/recipe/data/{models,gpus}.yaml; memory budgets
    from vLLM 0.26.0 `--gpu-memory-utilization` (default 0.9; vllm/v1/core/kv_cache_utils.py
    `check_enough_kv_cache_memory` refuses to start when KV cannot hold one max-model-len sequence),
    SGLang 0.5.16 `--mem-fraction-static`, TRT-LLM KvCacheConfig `free_gpu_memory_fraction` (default
    0.9).
    """
    model_id = dig(recipe.metadata, "model", "id")
    if not isinstance(model_id, str):
        return
    if catalogue.model(model_id) is None:
        yield problem(
            recipe.metadata.get("model").loc_of("id"),
            f"model {model_id} is not in the model catalogue: its sizing is unchecked",
            "add it to harness/recipe/data/models.yaml (params, bytes/param, KV bytes/token, checkpoint size)",
            Severity.WARNING,
        )
        return
    by_name = {svc.name: (svc, topo) for svc, topo in workers(recipe)}
    for index, (gpu_name, declared_at) in enumerate(recipe_gpus(recipe)):
        if catalogue.gpu(gpu_name) is None:
            yield problem(
                declared_at,
                f"GPU {gpu_name} is not in the GPU catalogue",
                "add it to harness/recipe/data/gpus.yaml",
                Severity.WARNING,
            )
            continue
        for name, s in worker_sizings(recipe, gpu_name):
            if s.fits:
                continue
            svc, topo = by_name[name]
            fraction = topo.get("memory_fraction")
            if index == 0:  # the recipe's own GPU: edit the engine settings
                loc = fraction.loc if fraction is not None else (topo.get("tp") or svc).loc
                hint = (
                    f"raise tensor/expert parallelism, lower the maximum sequence length, or raise "
                    f"{FRACTION_NAME.get(topo.backend, 'the memory fraction')} if the engine leaves room"
                )
            else:  # an alternative: drop the claim
                loc = declared_at
                hint = f"remove {gpu_name} from hardware.alternatives, or give it its own recipe with more parallelism"
            yield problem(
                loc,
                f"worker {name} does not fit {gpu_name}: {s.explain()} "
                f"({s.fraction_source}, KV for {s.kv_tokens_source})",
                hint,
            )
