"""KV-aware routing and KV transfer: the router gets cache events from the workers it indexes, and
the workers that exchange or report KV blocks agree on the block size where the engine requires it."""

from __future__ import annotations

import json
from collections.abc import Iterator

from harness.analysis.topology import (
    TRTLLM_BLOCK_ENV,
    TRTLLM_BLOCK_FLAG,
    TRTLLM_DEFAULT_BLOCK,
    TRTLLM_DEFAULT_TOKENS_PER_BLOCK,
    Topology,
    flag_line,
    workers,
)
from harness.analysis.variant import KV_EVENTS_VALUE
from harness.checks import CheckContext, check
from harness.recipe.commandline import Flags
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import SrcMap, as_int, dig

_TRUE = ("true", "1", "yes", "on")  # env_or_default's reading of a boolean (dynamo/common/configuration/utils.py)

# The frontend's KV router listens for events unless told not to: `--router-kv-events` (obsolete
# `--kv-events`), env DYN_ROUTER_USE_KV_EVENTS, default True (ai-dynamo 1.4.0
# dynamo/common/configuration/groups/kv_router_args.py).
ROUTER_EVENTS_FLAGS = ("--router-kv-events", "--no-router-kv-events", "--kv-events", "--no-kv-events")
ROUTER_EVENTS_ENV = "DYN_ROUTER_USE_KV_EVENTS"
# TRT-LLM: `--publish-kv-events` (obsolete `--publish-events-and-metrics`), env
# DYN_TRTLLM_PUBLISH_KV_EVENTS, default False (dynamo/trtllm/backend_args.py, ai-dynamo 1.4.0).
TRTLLM_PUBLISH_FLAGS = (
    "--publish-kv-events",
    "--no-publish-kv-events",
    "--publish-events-and-metrics",
    "--no-publish-events-and-metrics",
)
TRTLLM_PUBLISH_ENV = "DYN_TRTLLM_PUBLISH_KV_EVENTS"


def _bool_flag(flags: Flags, names: tuple[str, ...]) -> tuple[bool, Loc] | None:
    """The last of a negatable boolean flag family: (value, where), or None when absent."""
    found = flags.get(*names)
    if found is None:
        return None
    return (not found.name.startswith("--no-")), found.flag.loc


def router_uses_events(frontend: Service) -> bool:
    found = _bool_flag(frontend.flags, ROUTER_EVENTS_FLAGS)
    if found is not None:
        return found[0]
    env = frontend.main.env.get(ROUTER_EVENTS_ENV) if frontend.main else None
    return True if env is None else env.strip().lower() in _TRUE


def publishes_events(svc: Service) -> bool | None:
    """Whether a worker publishes KV events to the router (None: cannot tell statically)."""
    engine, flags = svc.engine, svc.flags
    if engine in ("vllm", "sglang"):
        if "--config" in flags:
            return None  # the setting may come from the YAML file; the conformance parse reads it
        cfg = flags.get("--kv-events-config")
        if cfg is None:
            return False  # dynamo/vllm/args.py create_kv_events_config: None unless the user passes one
        try:
            data = json.loads(cfg.value.value)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if engine == "vllm":
            # vLLM publishes only with prefix caching on and enable_kv_cache_events true
            return bool(data.get("enable_kv_cache_events")) and "--no-enable-prefix-caching" not in flags
        # dynamo/sglang/args.py: use_kv_events = kv_cfg.get("publisher", "null") != "null"
        return data.get("publisher", "null") != "null"
    if engine == "trtllm":
        found = _bool_flag(flags, TRTLLM_PUBLISH_FLAGS)
        if found is not None:
            return found[0]
        env = svc.main.env.get(TRTLLM_PUBLISH_ENV) if svc.main else None
        return env is not None and env.strip().lower() in _TRUE
    return None


_PUBLISH_HINT = {
    "vllm": f"add --kv-events-config '{KV_EVENTS_VALUE['vllm']}'",
    "sglang": f"add --kv-events-config '{KV_EVENTS_VALUE['sglang']}'",
    "trtllm": "add --publish-kv-events (and --kv-block-size equal to kv_cache_config.tokens_per_block)",
}


@check("kv-router-has-event-publishers")
def kv_router_has_event_publishers(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When the frontend routes by KV cache (`--router-mode kv`, or `--load-aware`) and its
    router listens for KV events (the default, `--router-kv-events`), the workers it scores by
    cached prefixes publish those events: the prefill workers of a disaggregated graph, or
    the aggregated workers. A worker that publishes nothing looks empty to the router, so
    every request is routed as if no prefix were cached: the KV-router recipe silently
    benchmarks load balancing. Decode workers are not required to publish: the upstream vLLM
    KV-router recipe publishes from prefill only. A router started with `--no-router-kv-events`
    predicts the cache state itself and needs no events.

    With a single routing target (one replica of one indexed worker, data parallel size 1, no
    planner or autoscaling to add more) the router has nothing to choose between, so nothing is
    misrouted today: a warning, since the graph misroutes as soon as it is scaled.

    Fails: frontend `--router-mode kv` and a vLLM prefill worker without `--kv-events-config`.
    Fix: `--kv-events-config '{"publisher":"zmq","topic":"kv-events","endpoint":"tcp://*:20080","enable_kv_cache_events":true}'`
    (vLLM, SGLang), `--publish-kv-events` (TRT-LLM).

    Source (ai-dynamo 1.4.0): dynamo/common/configuration/groups/kv_router_args.py
    (`--router-kv-events`, default True); dynamo/vllm/args.py `create_kv_events_config` (no
    events unless `--kv-events-config` with enable_kv_cache_events and prefix caching on);
    dynamo/sglang/args.py `parse_args` (use_kv_events = publisher != "null");
    dynamo/trtllm/backend_args.py `--publish-kv-events` (default False); the workers hand
    `kv_event_publishing_enabled` to the runtime (vllm/main.py, sglang/register.py,
    trtllm/workers/llm_worker.py); dynamo/router/README.md: "add the backend-specific KV event
    publishing flags to the workers that the router indexes".
    """
    dep = recipe.deployment
    if dep is None:
        return
    routers = [f for f in dep.frontends if f.router_mode.value == "kv" and router_uses_events(f)]
    if not routers:
        return
    router = routers[0]
    prefill = [s for s in dep.workers if s.role == "prefill"]
    indexed = prefill or [s for s in dep.workers if s.role == "worker"]
    where = router.router_mode.loc or router.loc
    severity = None if _routing_targets(recipe, indexed) > 1 else Severity.WARNING
    for svc in indexed:
        if publishes_events(svc) is not False:
            continue
        engine = svc.engine
        at = flag_line(svc.module.at, svc.module.value) if svc.module is not None else svc.loc
        yield problem(
            at,
            f"{svc.role} worker {svc.name} publishes no KV events, but frontend {router.name} routes by KV cache "
            f"({router.router_mode.source} at line {where.line}) and waits for events: it sees no cached "
            "prefixes and routes as if the cache were empty",
            _PUBLISH_HINT.get(engine, "enable the engine's KV event publishing")
            + ", or start the frontend with --no-router-kv-events for approximate routing"
            + ("" if severity is None else " (a warning: one routing target today, nothing to choose between)"),
            severity,
        )


def _routing_targets(recipe: Recipe, indexed: list[Service]) -> int:
    """How many (worker instance, data-parallel rank) targets the KV router scores: replicas x DP
    of the indexed workers; a planner or an autoscaled service counts as more than one."""
    dep = recipe.deployment
    if dep is None:
        return 0
    if any(s.role == "planner" for s in dep.services) or any(
        dig(s.data, "autoscaling", "enabled") is True for s in indexed
    ):
        return 2
    topos = dict((svc.name, topo) for svc, topo in workers(recipe))
    return sum(s.replicas * max(1, topos[s.name].dp if s.name in topos else 1) for s in indexed)


# --- block sizes -----------------------------------------------------------------------------


def _tokens_per_block(topo: Topology) -> tuple[int, Loc | None]:
    """The TRT-LLM engine's tokens_per_block (engine config, else TRT-LLM's default 32)."""
    cfg = topo.engine_config.data if topo.engine_config is not None else None
    kv = dig(cfg, "kv_cache_config") if isinstance(cfg, SrcMap) else None
    if isinstance(kv, SrcMap) and "tokens_per_block" in kv:
        value = as_int(kv["tokens_per_block"])
        if value is not None:
            return value, kv.loc_of("tokens_per_block")
    return TRTLLM_DEFAULT_TOKENS_PER_BLOCK, None


def _dynamo_block(svc: Service) -> tuple[int | None, Loc | None, str]:
    """Dynamo's TRT-LLM --kv-block-size: flag, env, default (value, where, what set it)."""
    found = svc.flags.get(TRTLLM_BLOCK_FLAG)
    if found is not None:
        return as_int(found.value.value), flag_line(found.flag.at, TRTLLM_BLOCK_FLAG), TRTLLM_BLOCK_FLAG
    if svc.main is not None and TRTLLM_BLOCK_ENV in svc.main.env:
        return as_int(svc.main.env[TRTLLM_BLOCK_ENV]), svc.main.env_locs.get(TRTLLM_BLOCK_ENV), TRTLLM_BLOCK_ENV
    return TRTLLM_DEFAULT_BLOCK, None, "Dynamo's default"


def _describe(value: int, loc: Loc | None, what: str) -> str:
    return f"{value} ({what} line {loc.line})" if loc is not None else f"{value} ({what})"


@check("kv-block-size-consistent")
def kv_block_size_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """KV block sizes agree where the engine or Dynamo requires it (defaults from the parsers):

    - TRT-LLM disaggregated: prefill and decode `kv_cache_config.tokens_per_block` (default 32)
      are equal. TensorRT-LLM's cache transceiver refuses to move KV between engines with
      different tokens per block ("only support same tokens per block and size per head"), so
      every request fails at the hand-off.
    - TRT-LLM worker that publishes KV events: Dynamo's `--kv-block-size` (default 32) equals
      the engine's tokens_per_block. Dynamo's publisher drops every block longer than its block
      size and treats shorter ones as partial, so the router never learns a cached prefix.
    - vLLM disaggregated with the prefill TP larger than the decode TP: prefill and decode
      `--block-size` are equal. vLLM's NIXL connector asserts "Different local/remote block
      sizes are not supported when P TP > D TP"; with other TP layouts it converts between
      block sizes, so no finding there. (Unset vLLM block sizes are chosen at runtime by the
      attention backend: not compared.) The endpoint picker's block size is checked by
      `epp-block-size-matches`.

    Fails: TRT-LLM prefill `tokens_per_block: 64` with decode `tokens_per_block: 32`.
    Fix: one block size on both roles (and `--kv-block-size` equal to it).

    Source: TensorRT-LLM cpp/tensorrt_llm/batch_manager/cacheFormatter.cpp and
    mlaCacheFormatter.cpp `inquireSupport`; tensorrt_llm/llmapi/llm_args.py KvCacheConfig
    (tokens_per_block default 32); ai-dynamo 1.4.0 dynamo/trtllm/backend_args.py
    (`--kv-block-size`, DYN_TRTLLM_KV_BLOCK_SIZE, default 32) and dynamo/trtllm/publisher.py
    (blocks longer than kv_block_size are dropped, shorter ones are partial); vLLM 0.26.0
    vllm/distributed/kv_transfer/kv_connector/v1/nixl/base_worker.py.
    """
    pairs = workers(recipe)
    trt = [(s, t) for s, t in pairs if s.engine == "trtllm"]
    for svc, topo in trt:
        if publishes_events(svc) is not True:
            continue
        dyn, dyn_loc, what = _dynamo_block(svc)
        tpb, tpb_loc = _tokens_per_block(topo)
        if dyn is not None and dyn != tpb:
            at = dyn_loc or tpb_loc or (svc.module.loc if svc.module else svc.loc)
            yield problem(
                at,
                f"worker {svc.name} publishes KV events in blocks of {_describe(dyn, dyn_loc, what)} but its engine "
                f"stores {_describe(tpb, tpb_loc, 'tokens_per_block')} tokens per block: Dynamo's publisher drops "
                "the events and the KV router sees no cached prefix",
                f"set --kv-block-size {tpb} (or tokens_per_block: {dyn})",
            )
    by_role = {role: [(s, t) for s, t in trt if t.role == role] for role in ("prefill", "decode")}
    if by_role["prefill"] and by_role["decode"]:
        sizes = {(s.name, *_tokens_per_block(t)) for role in by_role.values() for s, t in role}
        if len({v for _, v, _ in sizes}) > 1:
            listed = ", ".join(
                _describe(v, loc, f"{name} tokens_per_block") for name, v, loc in sorted(sizes, key=lambda x: x[0])
            )
            _, _, loc = next(x for x in sizes if x[0] == by_role["prefill"][0][0].name)
            at = loc or by_role["prefill"][0][0].loc
            yield problem(
                at,
                "TensorRT-LLM moves KV from prefill to decode only between equal block sizes, "
                f"but the workers use {listed}",
                "use one kv_cache_config.tokens_per_block on prefill and decode",
            )
    vllm = [(s, t) for s, t in pairs if s.engine == "vllm"]
    for p_svc, p_topo in [(s, t) for s, t in vllm if t.role == "prefill"]:
        for d_svc, d_topo in [(s, t) for s, t in vllm if t.role == "decode"]:
            p_block, d_block = p_topo.get("block_size"), d_topo.get("block_size")
            if p_block is None or d_block is None or p_block.value == d_block.value or p_topo.tp <= d_topo.tp:
                continue
            yield problem(
                p_block.loc,
                f"prefill {p_svc.name} (TP {p_topo.tp}, --block-size {p_block.value}) and decode {d_svc.name} "
                f"(TP {d_topo.tp}, --block-size {d_block.value} at line {d_block.loc.line}): vLLM's NIXL "
                "connector supports different block sizes only when prefill TP <= decode TP",
                f"use --block-size {d_block.value} on both",
            )
