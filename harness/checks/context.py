"""Context windows: every worker accepts the recipe's own benchmark requests (ISL + OSL), and a
TRT-LLM prefill can schedule the benchmark's prompts (max_num_tokens without chunked prefill)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.analysis.topology import Topology, workers
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.workloads import env_value, flag
from harness.recipe.yamlsrc import SrcMap, as_int, dig

# The benchmark's lengths as the perf Job states them (env, aiperf flags), else recipe.yaml benchmark.
ISL_SOURCES = (("ISL",), ("--synthetic-input-tokens-mean", "--isl", "--prompt-input-tokens-mean"))
OSL_SOURCES = (("OSL",), ("--output-tokens-mean", "--osl", "--prompt-output-tokens-mean"))
CONTEXT_NAME = {"vllm": "--max-model-len", "sglang": "--context-length", "trtllm": "max_seq_len"}
# TensorRT-LLM defaults (tensorrt_llm/llmapi/llm_args.py BaseLlmArgs: max_num_tokens 8192,
# enable_chunked_prefill False; max_seq_len None = the model's max_position_embeddings), which
# ai-dynamo 1.4.0 dynamo/trtllm/backend_args.py takes as its --max-num-tokens / --max-seq-len defaults.
TRTLLM_DEFAULT_MAX_NUM_TOKENS = 8192
TRTLLM_DEFAULT_CHUNKED_PREFILL = False


@dataclass(frozen=True)
class Lengths:
    isl: int
    osl: int
    where: Loc
    source: str

    @property
    def total(self) -> int:
        return self.isl + self.osl


def _perf_value(recipe: Recipe, env_names: tuple[str, ...], flag_names: tuple[str, ...]) -> tuple[int, Loc] | None:
    w = recipe.workloads
    found = w.aiperf()
    if found:
        f = flag(found[2], *flag_names)
        if f is not None and as_int(f.value.value) is not None:
            return as_int(f.value.value), f.value.loc
    container = w.perf_container
    for name in env_names:
        env = env_value(container, name) if container is not None else None
        if env is not None and as_int(env[0]) is not None:
            return as_int(env[0]), env[1]
    return None


def benchmark_lengths(recipe: Recipe) -> Lengths | None:
    """ISL and OSL of the recipe's benchmark: the perf Job's aiperf call, else recipe.yaml benchmark."""
    isl = _perf_value(recipe, *ISL_SOURCES)
    osl = _perf_value(recipe, *OSL_SOURCES)
    bench = recipe.metadata.get("benchmark")
    meta_isl, meta_osl = as_int(dig(bench, "isl")), as_int(dig(bench, "osl"))
    if isl is not None and osl is not None:
        return Lengths(isl[0], osl[0], isl[1], "the perf Job")
    if meta_isl is not None and meta_osl is not None:
        return Lengths(meta_isl, meta_osl, bench.loc_of("isl"), "recipe.yaml benchmark")
    return None


@check("context-fits-benchmark")
def context_fits_benchmark(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every worker's context window holds one benchmark request, ISL + OSL tokens: vLLM
    `--max-model-len`, SGLang `--context-length`, TRT-LLM `max_seq_len` (engine config or
    `--max-seq-len`). A shorter window makes the engine reject or cut every benchmark request
    (vLLM answers 400 "maximum context length"), so the perf Job fails or measures truncated
    outputs. Unset, each engine takes the model's `max_position_embeddings` (models.yaml
    maxContext), which is compared instead. A prefill worker (engine role or subComponentType)
    only computes the prompt and one token: Dynamo sends it the request with `max_tokens` 1, so
    ISL + 1 is what it must hold.

    Fails: `--max-model-len 4096` with a benchmark of ISL 4096 + OSL 1024.
    Fix: `--max-model-len 16384` (at least 5120).

    Source: vLLM 0.26.0 `--max-model-len` (EngineArgs; default from the model config), SGLang
    0.5.16 `--context-length` (ServerArgs; default from the model config), TensorRT-LLM
    BaseLlmArgs.max_seq_len (default None = the model's), read by ai-dynamo 1.4.0
    dynamo/trtllm/backend_args.py `--max-seq-len`; the lengths from the perf Job's aiperf call. Prefill
    requests: ai-dynamo 1.0.0 lib/llm/src/kv_router/prefill_router.rs (`prefill_req.stop_conditions.max_tokens
    = Some(1)`) and components/src/dynamo/trtllm/request_handlers/handler_base.py (PREFILL mode sets max_tokens 1).
    """
    lengths = benchmark_lengths(recipe)
    if lengths is None:
        return
    model_id = dig(recipe.metadata, "model", "id")
    model = catalogue.model(model_id) if isinstance(model_id, str) else None
    for svc, topo in workers(recipe):
        engine = svc.engine
        setting = topo.get("max_seq_len")
        if setting is not None and isinstance(setting.value, int):
            window, where, what = setting.value, setting.loc, setting.source
        elif model is not None:
            window, where, what = (
                model.max_context,
                svc.module.loc if svc.module else svc.loc,
                f"the model's context ({model_id})",
            )
        else:
            continue
        prefill = (topo.role or svc.sub_component_type or svc.role) == "prefill"
        need, request = (
            (lengths.isl + 1, f"ISL {lengths.isl} + the 1 token a prefill worker generates")
            if prefill
            else (lengths.total, f"ISL {lengths.isl} + OSL {lengths.osl}")
        )
        if window < need:
            yield problem(
                where,
                f"worker {svc.name}: context window {window} ({what}) is shorter than one benchmark request, "
                f"{request} = {need} ({lengths.source}, line {lengths.where.line}): "
                "the engine rejects every request",
                f"set {CONTEXT_NAME.get(engine, 'the context length')} to at least {need}",
            )


def _engine_value(topo: Topology, svc: Service, key: str, cli: str) -> tuple[object, Loc | None]:
    """A TRT-LLM engine setting: the engine config wins over the CLI (Dynamo merges it last)."""
    cfg = topo.engine_config.data if topo.engine_config is not None else None
    if isinstance(cfg, SrcMap) and key in cfg:
        return cfg[key], cfg.loc_of(key)
    found = svc.flags.get(cli)
    if found is not None:
        return found.value.value, found.value.loc
    return None, None


@check("trtllm-prompt-fits-max-num-tokens")
def trtllm_prompt_fits_max_num_tokens(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A TensorRT-LLM worker that prefills prompts (aggregated or prefill) with chunked prefill
    off schedules a prompt only when it fits `max_num_tokens` in one step: TRT-LLM rejects a
    longer prompt (`RequestError`, LLM._check_arguments) unless block reuse relaxes the
    check, and even then a cold prompt cannot be scheduled. An error when the benchmark's own
    ISL exceeds max_num_tokens (the perf Job fails); a warning when only prompts between
    max_num_tokens and max_seq_len are affected (real traffic, not the benchmark). Decode
    workers receive the prompt's KV and are not checked.

    Fails: `max_num_tokens: 8192`, `max_seq_len: 16384` and no `enable_chunked_prefill`.
    Fix: `enable_chunked_prefill: true` (or max_num_tokens >= max_seq_len).

    Source: TensorRT-LLM tensorrt_llm/llmapi/llm_args.py BaseLlmArgs (max_num_tokens default
    8192, enable_chunked_prefill default False), tensorrt_llm/llmapi/llm.py `_check_arguments`;
    ai-dynamo 1.4.0 dynamo/trtllm/backend_args.py (`--max-num-tokens`, `--max-seq-len` take
    those defaults).
    """
    lengths = benchmark_lengths(recipe)
    model_id = dig(recipe.metadata, "model", "id")
    model = catalogue.model(model_id) if isinstance(model_id, str) else None
    for svc, topo in workers(recipe):
        if svc.engine != "trtllm" or topo.role == "decode":
            continue
        chunked, _ = _engine_value(topo, svc, "enable_chunked_prefill", "--enable-chunked-prefill")
        if chunked is None:
            chunked = TRTLLM_DEFAULT_CHUNKED_PREFILL
        if chunked is True or str(chunked).lower() == "true":
            continue
        raw_tokens, tokens_loc = _engine_value(topo, svc, "max_num_tokens", "--max-num-tokens")
        max_num_tokens = TRTLLM_DEFAULT_MAX_NUM_TOKENS if raw_tokens is None else as_int(raw_tokens)
        seq = topo.get("max_seq_len")
        max_seq_len = (
            seq.value if seq is not None and isinstance(seq.value, int) else (model.max_context if model else None)
        )
        if max_num_tokens is None or max_seq_len is None or max_num_tokens >= max_seq_len:
            continue
        at = tokens_loc or (seq.loc if seq is not None else (svc.module.loc if svc.module else svc.loc))
        written = f"max_num_tokens {max_num_tokens}" + ("" if raw_tokens is not None else " (TRT-LLM default)")
        if lengths is not None and lengths.isl > max_num_tokens:
            yield problem(
                at,
                f"worker {svc.name}: {written} < benchmark ISL {lengths.isl} with chunked prefill off: "
                "TRT-LLM cannot schedule the benchmark's prompts",
                "set enable_chunked_prefill: true in the engine config, or max_num_tokens >= the ISL",
            )
        else:
            yield problem(
                at,
                f"worker {svc.name}: {written} < max_seq_len {max_seq_len} with chunked prefill off: prompts of "
                f"{max_num_tokens + 1}-{max_seq_len} tokens are rejected (the benchmark's ISL is not affected)",
                "set enable_chunked_prefill: true in the engine config, or lower max_seq_len to max_num_tokens",
                Severity.WARNING,
            )
