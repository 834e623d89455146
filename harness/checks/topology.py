"""Topology and GPU matrix checks: engine parallelism vs GPU requests, totals and nodes vs
metadata, hardware limits, disaggregation roles, router mode and DP-attention arithmetic."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.topology import (
    claim_template_documents,
    dra_gpus,
    gpus_per_node,
    nodes_needed,
    predates_vllm_role_flag,
    workers,
)
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.service import ROUTER_MODE_ENV, ROUTER_MODE_FLAG, Service
from harness.recipe.yamlsrc import as_int, dig, mapping, sequence


def _untrusted(services: list[Service]) -> list[str]:
    """`Worker replicas at line 46` for each count the services state but not as a number: a total or a
    fix computed from the defaulted value would send the user to the wrong line (schema-valid names it)."""
    return [f"{s.name} {what} at line {loc.line}" for s in services for what, loc in s.invalid_counts]


def _breakdown(services: list[Service]) -> str:
    return " + ".join(f"{s.name} {s.replicas} x {s.gpus_per_replica}" for s in services) or "no workers"


@check("gpu-count-matches-topology")
def gpu_count_matches_topology(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Each worker replica gets `limits.gpu` x `multinode.nodeCount` GPUs, and the engine starts
    exactly as many ranks as its parallelism says (vLLM TP x PP x DP, SGLang TP, TRT-LLM TP x PP).
    When they differ the engine waits for ranks that never come, or GPUs sit idle.

    The parallelism is read as the release's parsers read it (SGLang `--tp 8` is `--tp-size 8`);
    a worker with a flag its parser does not know, or a value it rejects, is left to
    `engine-flags-known`: a misspelt `--tensor-paralel-size` must not turn into "needs 1 GPU".

    GPUs requested through DRA (a resource claim whose template asks for `gpu.nvidia.com`
    devices, in the manifest or a manifest beside it) count the same as `limits.gpu`. The flags
    are read by the engine the worker starts (`python -m dynamo.sglang`), whatever its directory
    is called (`sglang-wideep/`); a TRT-LLM worker whose `--extra-engine-args` file is not in the
    recipe (a path on the model PVC) may set its parallelism there, so its world size is unknown
    and not judged.

    Fails: `limits.gpu: "4"` on a vLLM worker started with `--tensor-parallel-size 8`.

    Source: Operator: a replica of a service runs `multinode.nodeCount` pods, each with the service's
    `limits.gpu` GPUs (deploy/operator/internal/dynamo/graph.go `expandRolesForService`);
    engine world sizes: vLLM 0.26.0 vllm/config/parallel.py
    ParallelConfig `world_size` (TP x PP, DP ranks on top), SGLang 0.5.16 sglang/srt/server_args.py
    `tp_size`, TRT-LLM tensorrt_llm/mapping.py `Mapping.world_size` (TP x PP).
    """
    for svc, topo in workers(recipe):
        for s in topo.unreadable:
            if topo.read is not None and "$" not in s.raw:
                continue  # the release's parser rejects it: engine-flags-known reports it with the parser's message
            yield problem(
                s.loc,
                f"worker {svc.name}: {s.source} {s.raw!r} is not a valid value (an unresolved variable?)",
                "write the value literally, or define the variable in the container's env",
            )
        if _untrusted([svc]):
            continue  # a GPU count that is not a number: schema-valid reports it; a fix from a default would mislead
        if topo.read is not None and not topo.read.trusted:
            continue  # a flag the parser does not know or a value it rejects: the parallelism read is not trusted
        if not topo.parallelism_known:
            continue  # an engine config outside the recipe (a file on the PVC) may set the parallelism
        need = topo.gpus_per_replica
        claimed = dra_gpus(svc, claim_template_documents(recipe)) if svc.gpu_limit == 0 else 0
        if claimed:
            if claimed * svc.node_count != need:
                yield problem(
                    svc.gpu_limit_loc,
                    f"worker {svc.name}: its DRA resource claims give {claimed} GPU(s) x nodeCount "
                    f"{svc.node_count} per replica, but the engine needs {topo.describe_parallelism()}",
                    "make the ResourceClaimTemplate's device count match the parallelism",
                )
            continue
        if svc.gpu_limit == 0:
            yield problem(
                svc.gpu_limit_loc,
                f"worker {svc.name} requests no GPUs, but its engine needs {topo.describe_parallelism()}",
                f'set resources.limits.gpu: "{need}"',
            )
            continue
        have = svc.gpus_per_replica
        if have != need:
            nodes = svc.node_count
            fix = (
                f'set limits.gpu: "{need // nodes}"'
                if need % nodes == 0
                else f"make {need} divisible by nodeCount {nodes}"
            )
            yield problem(
                svc.gpu_limit_loc,
                f"worker {svc.name}: limits.gpu {svc.gpu_limit} x nodeCount {nodes} = {have} GPU(s) per replica, "
                f"but the engine needs {topo.describe_parallelism()}",
                f"{fix}, or change the parallelism flags to use {have} GPU(s)",
            )


@check("tp-cli-matches-engine-config")
def tp_cli_matches_engine_config(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """TRT-LLM workers often state parallelism twice: a CLI flag and the engine config YAML
    (`--extra-engine-args`, a ConfigMap key). Dynamo lets the engine config win, so a CLI value
    that disagrees is a lie the GPU count was sized for. The config must also be mounted and exist; a file on one of
    the DGD's PVC mounts exists only at run time, and a path the recipe leaves to a variable it does
    not resolve is unknown: neither is judged.

    Fails: `--tensor-parallel-size 4` with `tensor_parallel_size: 2` in the engine ConfigMap.

    Source: ai-dynamo 1.4.0 dynamo/trtllm/workers/llm_worker.py: the CLI values form `arg_map`, then
    `update_llm_args_with_extra_options(arg_map, config.extra_engine_args)`
    (tensorrt_llm/llmapi/llm_utils.py) lets the engine YAML win, then `--override-engine-args` JSON is
    deep-merged over both.
    """
    for svc, topo in workers(recipe):
        cfg = topo.engine_config
        if cfg is not None and cfg.error and not (cfg.on_pvc or cfg.unresolved):
            yield problem(
                cfg.arg.at,
                f"worker {svc.name}: --extra-engine-args {cfg.arg.value}: {cfg.error}",
                "mount the engine ConfigMap (extraPodSpec.volumes + mainContainer.volumeMounts) at that path",
            )
        for c in topo.conflicts:
            yield problem(
                c.cli.loc,
                f"worker {svc.name}: {c.cli.source} {c.cli.raw} but {c.config.source} is "
                f"{c.config.raw} (line {c.config.loc.line}); TRT-LLM uses the engine config",
                "make the two agree, or drop the CLI flag and keep the engine config",
            )


@check("gpu-total-matches-metadata", convention=True)
def gpu_total_matches_metadata(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The metadata's `gpus` is what the catalogue, the nightly matrix and the per-GPU throughput
    figures use; it must be the deployment's real total: the sum over workers of replicas x
    `limits.gpu` x nodeCount.

    Fails: `gpus: 8` for prefill 6 x TP2 + decode 2 x TP2 (16 GPUs).

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    deployment side rests on the operator: a replica of a service gets `limits.gpu` GPUs in each of its
    `multinode.nodeCount` pods (deploy/operator/internal/dynamo/graph.go `expandRolesForService`);
    the declared side is recipe.yaml `gpus`.
    """
    dep = recipe.deployment
    declared = recipe.metadata.get("gpus")
    if dep is None or not isinstance(declared, int) or isinstance(declared, bool) or _untrusted(dep.workers):
        return
    total = dep.total_gpus
    if total != declared:
        yield problem(
            recipe.metadata.loc_of("gpus"),
            f"metadata says gpus: {declared} but the workers request {_breakdown(dep.workers)} = {total}",
            f"set gpus: {total} (and regenerate the docs with `recipe-harness docs`)",
        )


@check("nodes-match-metadata", convention=True)
def nodes_match_metadata(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The metadata's `nodes` is what a user reserves and the nightly runner asks for: it must be
    the node count the worker pods pack onto with `hardware.gpusPerNode` GPUs per node.

    Fails: `nodes: 1` for 16 GPUs on 8-GPU H200 nodes.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    packing is harness/analysis/topology.py `nodes_needed` (first-fit decreasing of worker pods, each
    pod = `limits.gpu` GPUs, nodeCount pods per replica per graph.go `expandRolesForService`) onto
    `hardware.gpusPerNode` (or harness/recipe/data/gpus.yaml).
    """
    dep = recipe.deployment
    declared = recipe.metadata.get("nodes")
    gpn = gpus_per_node(recipe)
    if dep is None or not isinstance(declared, int) or isinstance(declared, bool) or not gpn:
        return
    if _untrusted(dep.workers):
        return
    need = nodes_needed(dep.workers, gpn)
    if need != declared:
        yield problem(
            recipe.metadata.loc_of("nodes"),
            f"metadata says nodes: {declared} but the worker pods ({_breakdown(dep.workers)} GPUs) need "
            f"{need} node(s) of {gpn} GPUs",
            f"set nodes: {need}",
        )


@check("gpus-per-node-within-hardware", convention=True)
def gpus_per_node_within_hardware(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A pod cannot span nodes: `limits.gpu` must not exceed the GPUs of one node of the
    recipe's hardware (8 on HGX, 4 on a GB200 compute tray), and the metadata's `gpusPerNode`
    must not claim more than the hardware has. Such a pod stays Pending forever.

    Fails: `limits.gpu: "8"` on a GB200 recipe (4 GPUs per tray).

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. A
    pod's GPUs come from one node (Kubernetes scheduler: extended resource `nvidia.com/gpu` is
    node-local); GPUs per node come from harness/recipe/data/gpus.yaml (HGX 8, GB200 NVL72 compute tray
    4) and recipe.yaml `hardware.gpusPerNode`.
    """
    meta = recipe.metadata
    gpu_name = dig(meta, "hardware", "gpu")
    facts = catalogue.gpu(gpu_name) if isinstance(gpu_name, str) else None
    declared = as_int(dig(meta, "hardware", "gpusPerNode"))
    hw = mapping(meta.get("hardware"))
    if facts and declared and declared > facts.gpus_per_node:
        yield problem(
            hw.loc_of("gpusPerNode"),
            f"hardware.gpusPerNode is {declared} but a {gpu_name} node has {facts.gpus_per_node}",
            f"set gpusPerNode: {facts.gpus_per_node}",
        )
    gpn = min(x for x in (declared, facts.gpus_per_node if facts else None) if x) if (declared or facts) else None
    if gpn is None or recipe.deployment is None:
        return
    for svc in recipe.deployment.workers:
        if svc.gpu_limit > gpn:
            yield problem(
                svc.gpu_limit_loc,
                f"worker {svc.name} asks for {svc.gpu_limit} GPUs in one pod but a {gpu_name} node has {gpn}",
                f"use multinode.nodeCount {-(-svc.gpu_limit // gpn)} with limits.gpu {gpn}, or smaller parallelism",
            )
    alternatives = sequence(dig(meta, "hardware", "alternatives")) or []
    biggest = max((s.gpu_limit for s in recipe.deployment.workers), default=0)
    for i, alt in enumerate(alternatives):
        alt_facts = catalogue.gpu(str(alt))
        if alt_facts and biggest > alt_facts.gpus_per_node:
            yield problem(
                alternatives.loc_of(i),
                f"alternative {alt} has {alt_facts.gpus_per_node} GPUs per node but a worker pod asks for {biggest}",
                f"remove {alt} from hardware.alternatives or give it its own recipe",
            )


@check("disagg-roles-match-mode")
def disagg_roles_match_mode(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A disaggregated recipe needs prefill and decode workers. The engine decides a worker's
    role from its own flags (`--disaggregation-mode`, in argv or the `--config` YAML; dynamo.vllm
    before Dynamo 1.0.0 `--is-prefill-worker`, with decode the default: on such an image, or with the
    old flags, a vLLM worker typed decode needs no flag); `subComponentType` is the
    operator's label for the planner and GAIE. Where both are given they must agree: a worker
    the router thinks is decode but the engine runs as prefill never answers. A disaggregated
    worker with no subComponentType but an engine role is a warning (the planner cannot scale
    it by role). An aggregated recipe runs no prefill worker; a sole worker typed or flagged
    decode is valid there (vLLM's decode worker prefills locally when no prefill worker is
    registered).

    Whether a recipe is disaggregated: its metadata (`disaggregated:`), else its mode's name
    (`disagg-*`, the catalogue convention); on a foreign tree, whose names follow no convention,
    a path segment named `disagg*` or a worker marked prefill (subComponentType or engine flag).

    Fails: a disaggregated recipe whose decode service was deleted, or `subComponentType: decode`
    with `--disaggregation-mode prefill`.

    Source: ai-dynamo/dynamo components/src/dynamo/{vllm,sglang,trtllm}/args.py
    (`--disaggregation-mode`; dynamo.vllm: v1.0.0 backend_args.py adds it, v0.9.1 args.py has only
    `--is-prefill-worker`/`--is-decode-worker` and main.py runs every other worker as decode),
    components/src/dynamo/vllm/handlers.py (decode without prefill workers runs the prefill locally);
    the DGD CRD `subComponentType` (deploy/operator api/v1alpha1 dynamocomponentdeployment_types.go).
    """
    dep = recipe.deployment
    if dep is None:
        return
    meta = recipe.metadata
    declared = meta.get("disaggregated")
    by_name = recipe.mode.startswith("disagg") if ctx.catalogue else _foreign_disagg(recipe)
    if isinstance(declared, bool) and declared != by_name:
        yield problem(
            meta.loc_of("disaggregated"),
            f"disaggregated: {str(declared).lower()} but the mode is named {recipe.mode!r}",
            f"set disaggregated: {str(by_name).lower()}, or rename the mode",
        )
    disagg = declared if isinstance(declared, bool) else by_name
    worker_topos = workers(recipe)
    legacy = any(t.legacy_prefill_flag for _, t in worker_topos)

    def legacy_decode(svc: Service, topo) -> bool:
        """A vLLM worker without a role flag is the decode worker: the recipe uses the pre-1.0 flags, or
        its image's dynamo.vllm has no --disaggregation-mode at all (before Dynamo 1.0.0)."""
        return topo.backend == "vllm" and (legacy or predates_vllm_role_flag(svc))

    services_loc = dep.spec.key_loc("services" if "services" in dep.spec else "components")

    def marked_of(svc: Service) -> str | None:
        return svc.sub_component_type if svc.sub_component_type in ("prefill", "decode") else None

    def effective(svc: Service, topo) -> str | None:
        role = marked_of(svc) or topo.role
        if role is None and legacy_decode(svc, topo):
            role = "decode"  # the pre-0.11 vLLM worker without --is-prefill-worker is decode
        return role

    if disagg:
        roles = {effective(svc, topo) for svc, topo in worker_topos}
        for missing in ("prefill", "decode"):
            if missing not in roles:
                yield problem(
                    services_loc,
                    f"disaggregated recipe has no {missing} worker (workers: "
                    f"{', '.join(f'{s.name} ({effective(s, t) or s.role})' for s, t in worker_topos) or 'none'})",
                    f"add a worker with subComponentType: {missing} and --disaggregation-mode {missing}",
                )
    any_prefill = any(effective(svc, topo) == "prefill" for svc, topo in worker_topos)
    for svc, topo in worker_topos:
        flag = topo.get("role")
        marked = marked_of(svc)
        marked_loc = svc.data.key_loc("subComponentType") if "subComponentType" in svc.data else svc.loc
        args_loc = _args_loc(svc)
        if not disagg:
            if marked == "prefill" or (marked == "decode" and any_prefill):
                yield problem(
                    marked_loc,
                    f"worker {svc.name} has subComponentType: {marked} in an aggregated recipe",
                    "remove subComponentType, or make the recipe disaggregated",
                )
            if (
                flag is not None
                and topo.role
                and not (topo.role == "decode" and topo.backend == "vllm" and not any_prefill)
            ):
                yield problem(
                    flag.loc,
                    f"worker {svc.name} runs {flag.source} {topo.role} in an aggregated recipe",
                    f"remove {flag.source}",
                )
            continue
        if marked is None:
            if topo.role is not None:
                yield problem(
                    marked_loc,
                    f"worker {svc.name} runs as {topo.role} ({flag.source}) but has no subComponentType: "
                    "the planner and GAIE cannot tell its role",
                    f"set subComponentType: {topo.role}",
                    Severity.WARNING,
                )
            elif effective(svc, topo) is None:
                yield problem(
                    marked_loc,
                    f"worker {svc.name} has no subComponentType and no --disaggregation-mode: "
                    "it runs aggregated in a disaggregated recipe",
                    "set subComponentType: prefill or decode and pass --disaggregation-mode with the same role",
                )
        if topo.role is None:
            if marked and not (marked == "decode" and legacy_decode(svc, topo)):
                yield problem(
                    flag.loc if flag else args_loc,
                    f"worker {svc.name} ({marked}) does not pass --disaggregation-mode prefill|decode",
                    f"add --disaggregation-mode {marked} to its args",
                )
        elif marked and topo.role != marked:
            yield problem(
                flag.loc,
                f"worker {svc.name}: subComponentType {marked} but {flag.source} {topo.role}",
                "make subComponentType and --disaggregation-mode agree",
            )


def _foreign_disagg(recipe: Recipe) -> bool:
    """A recipe of a foreign tree is disaggregated when its path says so or a worker is a prefill worker."""
    if any(part.startswith("disagg") for part in recipe.id.split("/")[1:]):
        return True
    return any(svc.role == "prefill" or topo.role == "prefill" for svc, topo in workers(recipe))


def _args_loc(svc: Service):
    if svc.main is None:
        return svc.loc
    inv = svc.main.dynamo_invocation()
    if inv and inv[1]:
        return inv[1][0].at
    return svc.main.loc


@check("router-mode-matches")
def router_mode_matches(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The frontend's router mode (`Service.router_mode`: `--load-aware` means kv, else
    `--router-mode`, else DYN_ROUTER_MODE, else round-robin) is what the metadata's `router` and
    the mode's name promise: a `kv-router` recipe benchmarked with round-robin measures the wrong
    thing, and its KV-aware numbers are never reproduced.

    Fails: mode `disagg-kv-router` whose frontend runs `--router-mode round-robin`.

    Source: ai-dynamo/dynamo components/src/dynamo/common/configuration/groups/router_args.py
    (`--router-mode`, DYN_ROUTER_MODE, default round-robin) and
    components/src/dynamo/frontend/frontend_args.py (`--load-aware` implies kv), release 1.4.2.
    """
    meta = recipe.metadata
    declared = meta.get("router") if isinstance(meta.get("router"), str) else None
    for word, mode in (("kv-router", "kv"), ("round-robin", "round-robin")):
        if word in recipe.mode and declared and declared != mode:
            yield problem(
                meta.loc_of("router"),
                f"mode {recipe.mode!r} promises router {mode} but metadata says router: {declared}",
                f"set router: {mode}",
            )
            declared = mode
    dep = recipe.deployment
    if dep is None or declared is None:
        return
    for fe in dep.frontends:
        mode = fe.router_mode
        if mode.value != declared:
            if mode.is_default:
                where = f"runs the default {mode.value} router"
            elif mode.source in (ROUTER_MODE_FLAG, ROUTER_MODE_ENV):
                where = f"runs --router-mode {mode.value}"
            else:
                where = f"runs {mode.source} (router {mode.value})"
            yield problem(
                mode.loc or _args_loc(fe),
                f"frontend {fe.name} {where} but the recipe's router is {declared}",
                f"pass --router-mode {declared} to the frontend",
            )


@check("dp-attention-consistent")
def dp_attention_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Data-parallel attention and expert parallelism live inside the TP group: SGLang needs
    dp <= tp and tp divisible by dp with `--enable-dp-attention`, and EP may not exceed TP (nor
    fail to divide it) in SGLang and TRT-LLM. Otherwise the engine aborts at start-up.

    Fails: SGLang `--tp 8 --dp 16 --enable-dp-attention`, or TRT-LLM TP4 with `moe_expert_parallel_size: 8`.

    Source: SGLang 0.5.16 sglang/srt/server_args.py `_handle_data_parallelism`
    (`assert self.tp_size % self.dp_size == 0` with enable_dp_attention) and
    sglang/srt/arg_groups/overrides.py `_data_parallelism_defaults` (dp_size 1 turns DP attention off:
    the warning); EP inside TP: SGLang moe_tp_size = tp_size // ep_size
    (srt/distributed/parallel_state.py, server_args.py `ep_size * moe_dp_size <= tp_size`), TRT-LLM
    tensorrt_llm/mapping.py `Mapping` (tp_size = moe_tp_size x moe_ep_size).
    """
    for svc, topo in workers(recipe):
        tp, dp, ep = topo.tp, topo.dp, topo.ep
        if topo.backend == "sglang" and topo.dp_attention and dp > 1 and (dp > tp or tp % dp):
            where = topo.get("dp") or topo.get("dp_attention")
            yield problem(
                where.loc,
                f"worker {svc.name}: DP attention with dp {dp} and tp {tp}: dp must divide tp",
                f"set --dp to a divisor of --tp {tp} (usually --dp {tp})",
            )
        if topo.backend == "sglang" and topo.dp_attention and dp == 1:
            flag = topo.get("dp_attention")
            yield problem(
                flag.loc,
                f"worker {svc.name}: --enable-dp-attention with dp 1 does nothing",
                f"add --dp {tp}, or drop --enable-dp-attention",
                Severity.WARNING,
            )
        if topo.backend in ("sglang", "trtllm") and ep > 1 and (ep > tp or tp % ep):
            where = topo.get("ep")
            yield problem(
                where.loc,
                f"worker {svc.name}: expert parallelism {ep} with tensor parallelism {tp}: EP must divide TP",
                f"set {where.source.split(' (')[0]} to a divisor of {tp}",
            )
