"""GPU memory sizing of a worker: weights per GPU plus a minimum KV cache against the memory
the engine is allowed to use. Pure arithmetic over the catalogues and a Topology.

The model (documented in the sizing guide, recipes/SIZING.md):

- Weights per GPU. Routed experts shard over max(TP, EP) x PP ranks; attention weights shard
  over the attention TP group (all of TP, TP/DP with SGLang DP attention, 1 with TRT-LLM
  attention DP, which replicates attention on every rank); everything else over TP x PP.
  A dense model without attention DP is simply weights / (TP x PP).
- Minimum KV cache per GPU: one sequence of the engine's maximum length. That is the
  configured one (`--max-model-len`, `--context-length`, `max_seq_len`) when set; vLLM
  otherwise sizes for the model's full context and refuses to start when that sequence does
  not fit; SGLang and TRT-LLM otherwise need at least one request of the recipe's own benchmark
  (ISL + OSL). KV bytes per token halve with an fp8 KV cache, split over min(attention TP, KV
  heads) and PP; an MLA latent cache (DeepSeek) is not split by TP.
- Budget. vLLM `--gpu-memory-utilization` and SGLang `--mem-fraction-static` are shares of
  the whole GPU: headroom = memory x fraction - weights - KV. TRT-LLM's
  `free_gpu_memory_fraction` is a share of what is left after the weights:
  headroom = (memory - weights) x fraction - KV.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.analysis.topology import Topology, workers
from harness.recipe import catalogue
from harness.recipe.catalogue import GpuFacts, ModelFacts
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig, sequence

# What the engines use when the recipe does not set a fraction.
DEFAULT_FRACTION = {"vllm": 0.9, "sglang": 0.85, "trtllm": 0.9}
FRACTION_NAME = {
    "vllm": "--gpu-memory-utilization",
    "sglang": "--mem-fraction-static",
    "trtllm": "free_gpu_memory_fraction",
}
FP8_KV = {"fp8", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3fn"}


@dataclass(frozen=True)
class WorkerSizing:
    service: str
    gpu: str
    memory_gb: float
    fraction: float
    fraction_source: str
    weights_gb: float  # per GPU
    kv_tokens: int
    kv_tokens_source: str
    kv_gb: float  # per GPU, for kv_tokens
    budget_gb: float  # what weights + KV (vLLM, SGLang) or KV alone (TRT-LLM) may use
    headroom_gb: float
    share_of_free: bool  # TRT-LLM: the fraction applies to memory after the weights

    @property
    def fits(self) -> bool:
        return self.headroom_gb >= 0 and self.weights_gb < self.memory_gb

    def explain(self) -> str:
        if self.share_of_free:
            return (
                f"({self.memory_gb:g} GB - {self.weights_gb:.1f} GB weights) x {self.fraction:g} = "
                f"{self.budget_gb:.1f} GB for KV; one {self.kv_tokens}-token sequence needs {self.kv_gb:.1f} GB: "
                f"headroom {self.headroom_gb:+.1f} GB"
            )
        return (
            f"{self.memory_gb:g} GB x {self.fraction:g} = {self.budget_gb:.1f} GB; weights {self.weights_gb:.1f} GB + "
            f"one {self.kv_tokens}-token sequence of KV {self.kv_gb:.1f} GB: headroom {self.headroom_gb:+.1f} GB"
        )


def weights_per_gpu(model: ModelFacts, topo: Topology) -> float:
    """GB of weights on each GPU of the replica (see the module docstring)."""
    pp = max(1, topo.pp)
    experts = model.expert_gb
    attention = model.attention_gb
    rest = max(0.0, model.weights_gb - experts - attention)
    expert_shards = pp * max(topo.tp, topo.ep, 1)
    return attention / (pp * max(1, topo.attention_tp)) + experts / expert_shards + rest / (pp * max(1, topo.tp))


def kv_bytes_per_token_per_gpu(model: ModelFacts, topo: Topology, kv_dtype: str | None = None) -> float:
    per_token = float(model.kv_bytes_per_token)
    if (topo.kv_cache_dtype or kv_dtype or "").lower() in FP8_KV:
        per_token /= 2
    shards = 1 if model.mla else max(1, min(topo.attention_tp, model.kv_heads or topo.attention_tp))
    return per_token / shards / max(1, topo.pp)


def min_kv_tokens(model: ModelFacts, topo: Topology, benchmark_tokens: int | None) -> tuple[int, str]:
    configured = topo.get("max_seq_len")
    if configured is not None and isinstance(configured.value, int):
        return configured.value, f"{configured.source.split(' (')[0]} {configured.value}"
    if topo.backend == "vllm":
        return model.max_context, f"model context {model.max_context} (no --max-model-len)"
    tokens = benchmark_tokens or 8192
    return tokens, f"benchmark ISL+OSL {tokens}" if benchmark_tokens else "8192 tokens (no benchmark lengths)"


def size_worker(
    model: ModelFacts, gpu: GpuFacts, topo: Topology, benchmark_tokens: int | None = None, kv_dtype: str | None = None
) -> WorkerSizing:
    setting = topo.get("memory_fraction")
    if setting is not None and isinstance(setting.value, float):
        fraction, source = setting.value, f"{setting.source.split(' (')[0]} {setting.value:g}"
    else:
        fraction = DEFAULT_FRACTION.get(topo.backend, 0.9)
        source = f"default {FRACTION_NAME.get(topo.backend, 'memory fraction')} {fraction:g}"
    weights = weights_per_gpu(model, topo)
    tokens, tokens_source = min_kv_tokens(model, topo, benchmark_tokens)
    kv = tokens * kv_bytes_per_token_per_gpu(model, topo, kv_dtype) / 1e9
    share_of_free = topo.backend == "trtllm"
    budget = (gpu.memory_gb - weights) * fraction if share_of_free else gpu.memory_gb * fraction
    headroom = budget - kv if share_of_free else budget - weights - kv
    return WorkerSizing(
        topo.service,
        gpu.name,
        gpu.memory_gb,
        fraction,
        source,
        weights,
        tokens,
        tokens_source,
        kv,
        budget,
        headroom,
        share_of_free,
    )


def benchmark_tokens(recipe: Recipe) -> int | None:
    """The metadata's benchmark ISL + OSL: the context one request fills."""
    isl, osl = dig(recipe.metadata, "benchmark", "isl"), dig(recipe.metadata, "benchmark", "osl")
    return isl + osl if isinstance(isl, int) and isinstance(osl, int) else None


def worker_sizings(recipe: Recipe, gpu_name: str) -> list[tuple[str, WorkerSizing]]:
    """(worker name, sizing) for every worker on one GPU type; empty when the model is unknown."""
    model = catalogue.model(str(dig(recipe.metadata, "model", "id") or ""))
    gpu = catalogue.gpu(gpu_name)
    if model is None or gpu is None:
        return []
    kv_dtype = dig(recipe.metadata, "model", "kvCacheDtype")
    return [
        (
            svc.name,
            size_worker(model, gpu, topo, benchmark_tokens(recipe), kv_dtype if isinstance(kv_dtype, str) else None),
        )
        for svc, topo in workers(recipe)
    ]


def recipe_gpus(recipe: Recipe) -> list[tuple[str, object]]:
    """(GPU name, where it is declared): hardware.gpu, then each of hardware.alternatives."""
    hw = recipe.metadata.get("hardware")
    out = []
    if isinstance(dig(hw, "gpu"), str):
        out.append((hw["gpu"], hw.loc_of("gpu")))
    alts = sequence(dig(hw, "alternatives")) or []
    out += [(str(a), alts.loc_of(i)) for i, a in enumerate(alts)]
    return out
