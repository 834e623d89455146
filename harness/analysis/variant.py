"""Plans a variant of a recipe for `recipe-harness derive`: from the source recipe and the settings asked
for, every dependent value (GPUs per pod, multinode node counts, the recipe's GPUs and nodes, the perf Job's
concurrency and request counts, the KV block size on every worker and the endpoint picker, KV events when
the router becomes `kv`, the context the benchmark needs, the metadata and the model README's lines), each
with its reason; and the refusals of a variant that cannot run, each with the engine's or the sizing's own
reason. The edits themselves are harness/recipe/derive.py's; the proof (the tiers) is the command's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.analysis.precision import unsupported, weight_format
from harness.analysis.sizing import FRACTION_NAME, size_worker
from harness.analysis.topology import FLAGS, Setting, Topology, nodes_needed, workers
from harness.recipe import catalogue
from harness.recipe.derive import UsageError, VariantSpec, WorkerSpec
from harness.recipe.findings import Loc
from harness.recipe.model import Recipe
from harness.recipe.model_configs import model_config
from harness.recipe.yamlsrc import dig

# The worker flags that make an engine publish KV events to Dynamo's KV router (`--router-mode kv`).
# vLLM: ai-dynamo 1.6.1 dynamo/vllm/args.py `create_kv_events_config` returns None (nothing is published)
# unless prefix caching is on and the user passes `--kv-events-config`; vLLM's KVEventsConfig defaults
# enable_kv_cache_events to False, so it is set true (the endpoint is the zmq socket the worker binds).
# SGLang: dynamo/sglang/args.py use_kv_events = publisher != "null". TRT-LLM: dynamo/trtllm/backend_args.py
# `--publish-kv-events` (default False). The check kv-router-has-event-publishers hints the same values.
KV_EVENTS_FLAG = {"vllm": "--kv-events-config", "sglang": "--kv-events-config", "trtllm": "--publish-kv-events"}
KV_EVENTS_VALUE = {
    "vllm": '{"publisher":"zmq","topic":"kv-events","endpoint":"tcp://*:20080","enable_kv_cache_events":true}',
    "sglang": '{"publisher":"zmq","topic":"kv-events","endpoint":"tcp://*:20080"}',
    "trtllm": "",  # a switch
}
ROUTER_FLAG = "--router-mode"
# vLLM's own check, run by EngineArgs.create_engine_config (the conformance tier runs it): vLLM 0.31.0
# vllm/config/model.py ModelConfig.verify_with_parallel_config, "Total number of attention heads ({n}) must be
# divisible by tensor parallel size ({tp})."
HEADS_SOURCE = "vLLM 0.31.0 vllm/config/model.py ModelConfig.verify_with_parallel_config"
MAX_DGD_NAME = 63 - len("-frontend")  # the frontend Service `<dgd>-frontend` is a DNS-1035 label
CONTEXT_STEP = 1024  # a raised --max-model-len is rounded up to this


@dataclass(frozen=True)
class Refusal:
    """Why the variant cannot run, and whose rule says so."""

    reason: str
    source: str

    def format(self) -> str:
        return f"{self.reason} (source: {self.source})"


@dataclass
class Plan:
    spec: VariantSpec
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_dir: str = ""  # the variant's model directory below the tree
    readme: dict[str, list[str]] = field(default_factory=dict)  # section -> the variant's lines
    readme_source_key: str = ""
    readme_key: str = ""
    namespace: str = ""  # --set namespace: the README's NAMESPACE (no manifest names one)


@dataclass(frozen=True)
class _Pods:
    """The pod shape nodes_needed packs (gpu_limit GPUs per pod, replicas x node_count pods)."""

    gpu_limit: int
    replicas: int
    node_count: int


Estimator = Callable[[Plan, Recipe], dict[str, Any] | None]


def _setting(topo: Topology, name: str, value: Any, where: Loc) -> Topology:
    old = topo.get(name)
    new = Setting(value, str(value), old.loc if old else where, old.source if old else FLAGS[topo.backend][name][0])
    return replace(topo, settings={**topo.settings, name: new})


def _flag_for(topo: Topology, backend: str, name: str, service: str) -> str:
    """The flag a setting is written with on the worker's command line (the canonical one when absent)."""
    s = topo.get(name)
    if s is None:
        return FLAGS[backend][name][0]
    if not s.source.startswith("-") or " " in s.source:
        raise UsageError(
            f"{service}: {name.replace('_', ' ')} is set in {s.source}, not on the command line: derive edits "
            "command-line flags only; change it by hand"
        )
    return s.source


def _fmt_fraction(value: float) -> str:
    return f"{value:.2f}"


def plan_variant(
    recipe: Recipe,
    sets: dict[str, Any],
    mode: str,
    model_dirs: dict[str, tuple[str, str]],
    estimate: Estimator | None = None,
) -> Plan:
    """The variant of `recipe` with `sets` (harness/recipe/derive.py KEYS) under `mode`. `model_dirs` maps a
    model id to its directory in the catalogue and the revision its model cache downloads (a changed model
    goes there). Raises UsageError for a
    setting that does not apply to this recipe."""
    meta = recipe.metadata
    dep = recipe.deployment
    if dep is None:
        raise UsageError(f"{recipe.id}: deploy.yaml has no DynamoGraphDeployment")
    backend = dep.backend_framework or recipe.framework
    if backend not in FLAGS:
        raise UsageError(f"{recipe.id}: backend {backend!r} is not one derive can edit ({', '.join(FLAGS)})")
    src_model = str(dig(meta, "model", "id") or "")
    model_id = str(sets.get("model", src_model))
    model_dir = recipe.model if model_id == src_model else model_dirs.get(model_id, ("", ""))[0]
    if not model_dir:
        raise UsageError(
            f"--set model={model_id}: no model directory of the catalogue serves it (model-cache, README); "
            f"models with one: {', '.join(sorted(model_dirs))}"
        )
    variant_id = f"{model_dir}/{recipe.framework}/{mode}"
    variant_dgd = f"{model_dir}-{recipe.framework}-{mode}"
    if len(variant_dgd) > MAX_DGD_NAME:
        raise UsageError(
            f"the variant's DynamoGraphDeployment name {variant_dgd!r} has {len(variant_dgd)} characters; "
            f"at most {MAX_DGD_NAME} fit `<name>-frontend` (a DNS label): choose a shorter --name"
        )
    source_dgd = dep.name or f"{recipe.model}-{recipe.framework}-{recipe.mode}"
    gpu_name = str(sets.get("gpu", dig(meta, "hardware", "gpu") or ""))
    gpu = catalogue.gpu(gpu_name)
    declared_gpn = dig(meta, "hardware", "gpusPerNode")
    if "gpus-per-node" in sets:
        gpn = int(sets["gpus-per-node"])
    elif "gpu" in sets and gpu is not None:
        gpn = gpu.gpus_per_node
    else:
        gpn = int(declared_gpn) if isinstance(declared_gpn, int) else (gpu.gpus_per_node if gpu else 8)
    model = catalogue.model(model_id)
    isl = int(sets.get("isl", dig(meta, "benchmark", "isl") or 0))
    osl = int(sets.get("osl", dig(meta, "benchmark", "osl") or 0))
    router = sets.get("router", str(dig(meta, "router") or ""))
    plan = Plan(VariantSpec(recipe.id, variant_id, source_dgd, variant_dgd, {}), model_dir=model_dir)
    spec = plan.spec
    why = lambda key: f"--set {key}={sets[key]}"  # noqa: E731

    pods: list[_Pods] = []
    sums: list[str] = []
    topo_text: list[str] = []
    weights_text: list[str] = []
    disagg = any(t.role in ("prefill", "decode") for _, t in workers(recipe))
    for svc, topo in workers(recipe):
        ws = WorkerSpec(replicas=int(sets.get("replicas", svc.replicas)), gpus_per_pod=0, node_count=1)
        ws.reasons["replicas"] = why("replicas") if "replicas" in sets else "unchanged"
        new = topo
        for key, name in (("tp", "tp"), ("dp", "dp"), ("block-size", "block_size")):
            if key in sets:
                if key == "dp" and backend != "vllm":
                    raise UsageError(f"--set dp: only vLLM workers are edited for data parallelism (this is {backend})")
                flag = _flag_for(topo, backend, name, svc.name)
                ws.flags[flag] = (str(sets[key]), why(key))
                new = _setting(new, name, int(sets[key]), svc.loc)
        if "gpu-memory" in sets:
            flag = _flag_for(topo, backend, "memory_fraction", svc.name)
            ws.flags[flag] = (_fmt_fraction(sets["gpu-memory"]), why("gpu-memory"))
            new = _setting(new, "memory_fraction", float(sets["gpu-memory"]), svc.loc)
        max_len = new.max_seq_len
        if max_len is not None and isl and osl and isl + osl > max_len:
            raised = math.ceil((isl + osl) / CONTEXT_STEP) * CONTEXT_STEP
            flag = _flag_for(topo, backend, "max_seq_len", svc.name)
            ws.flags[flag] = (str(raised), f"one benchmark request needs ISL + OSL = {isl + osl} tokens of context")
            new = _setting(new, "max_seq_len", raised, svc.loc)
            if model is not None and raised > model.max_context:
                plan.refusals.append(
                    Refusal(
                        f"worker {svc.name}: ISL + OSL = {isl + osl} tokens exceed {model_id}'s context of "
                        f"{model.max_context} tokens",
                        "config.json max_position_embeddings (harness/recipe/data/models.yaml maxContext)",
                    )
                )
        if model_id != src_model and svc.main is not None:
            for env in ("MODEL_PATH", "SERVED_MODEL_NAME"):
                if env in svc.main.env:
                    ws.env[env] = (model_id, why("model"))
            for name in ("model", "served_name"):
                s = topo.get(name)
                if s is not None and s.raw == src_model:
                    ws.literal_flags[_flag_for(topo, backend, name, svc.name)] = (src_model, model_id, why("model"))
        indexed = new.role == "prefill" or (not disagg and new.role is None)
        if router == "kv" and indexed and KV_EVENTS_FLAG[backend] not in svc.flags:
            ws.flags[KV_EVENTS_FLAG[backend]] = (
                KV_EVENTS_VALUE[backend],
                "the KV router (--router-mode kv) scores workers by the KV events they publish; "
                f"dynamo.{backend} publishes none without it",
            )
            ws.add_comments[KV_EVENTS_FLAG[backend]] = (
                "KV events let the frontend's KV router see this worker's cached prefixes."
            )
        gpr = new.gpus_per_replica
        node_count = 1
        if gpr > gpn:
            if svc.node_count <= 1:
                plan.refusals.append(
                    Refusal(
                        f"worker {svc.name} needs {gpr} GPUs per replica "
                        f"({re.sub(r' [(]line [0-9]+[)]', '', new.describe_parallelism())}) but a "
                        f"{gpu_name} node has {gpn}, and the service is not multinode: a pod cannot span nodes",
                        "Kubernetes schedules a pod on one node (nvidia.com/gpu is a node resource); "
                        "check gpus-per-node-within-hardware",
                    )
                )
            node_count = math.ceil(gpr / gpn)
        elif svc.node_count > 1:
            node_count = max(1, math.ceil(gpr / gpn))
        if gpr % node_count:
            plan.refusals.append(
                Refusal(
                    f"worker {svc.name}: {gpr} GPUs per replica do not split evenly over {node_count} nodes",
                    "the operator gives every node of a multinode replica the same limits.gpu",
                )
            )
        ws.node_count = node_count if svc.node_count > 1 or node_count > 1 else 1
        ws.gpus_per_pod = gpr // node_count
        changed_by = [why(k) for k in ("tp", "dp") if k in sets] + ([why("gpu")] if "gpu" in sets else [])
        ws.reasons["gpus"] = (
            # the source's line numbers mean nothing in the variant: the settings as written, without them
            f"GPUs per pod = {re.sub(r' [(]line [0-9]+[)]', '', new.describe_parallelism())}"
            + (f" over {node_count} nodes" if node_count > 1 else "")
            + (f" ({', '.join(changed_by)})" if changed_by else "")
        )
        ws.reasons["nodes"] = f"{gpr} GPUs per replica on nodes of {gpn} GPUs"
        spec.workers[svc.name] = ws
        pods.append(_Pods(ws.gpus_per_pod, ws.replicas, ws.node_count))
        sums.append(f"{svc.name} {ws.replicas} x {ws.gpus_per_pod * ws.node_count}")
        label = f"{svc.role} " if disagg and svc.role in ("prefill", "decode") else ""
        topo_text.append(
            f"{label}{ws.replicas} x TP{new.tp}"
            + (f" DP{new.dp}" if new.dp > 1 else "")
            + (f" PP{new.pp}" if new.pp > 1 else "")
        )
        # the engine's own refusals, before anything is written
        config = model_config(model_id)
        heads = (config.config.get("num_attention_heads") if config else None) if backend == "vllm" else None
        if isinstance(heads, int) and heads % new.tp:
            plan.refusals.append(
                Refusal(
                    f"worker {svc.name}: Total number of attention heads ({heads}) must be divisible by tensor "
                    f"parallel size ({new.tp}) ({model_id} config.json: num_attention_heads {heads})",
                    f"{HEADS_SOURCE}; config.json from {config.label}",
                )
            )
        if model is not None and gpu is not None:
            kv_dtype = dig(meta, "model", "kvCacheDtype")
            sizing = size_worker(model, gpu, new, isl + osl or None, kv_dtype if isinstance(kv_dtype, str) else None)
            if not sizing.fits:
                plan.refusals.append(
                    Refusal(
                        f"worker {svc.name} does not fit {gpu_name}: {sizing.explain()} ({sizing.fraction_source}, "
                        f"KV for {sizing.kv_tokens_source})",
                        "harness/analysis/sizing.py (the sizing guide, recipes/SIZING.md): weights per GPU plus one "
                        "maximum-length sequence of KV within the engine's memory share; vLLM refuses to start "
                        "otherwise (vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory)",
                    )
                )
            weights_text.append(
                f"{svc.name.lower()} ({topo_text[-1].removeprefix(label)}) ~{sizing.weights_gb:.1f} GB at "
                f"{sizing.fraction:.2f}"
            )
        elif model is None:
            plan.notes.append(f"model {model_id} is not in harness/recipe/data/models.yaml: sizing unchecked")
    if gpu is None:
        raise UsageError(f"GPU {gpu_name!r} is not in harness/recipe/data/gpus.yaml ({', '.join(catalogue.gpus())})")

    # the frontend
    if "router" in sets:
        for f in dep.frontends:
            if f.router_mode.value != router:
                spec.frontend_flags[ROUTER_FLAG] = (router, why("router"))

    # precision on the GPU
    precision = model.precision if model is not None and model_id != src_model else dig(meta, "model", "precision")
    formats = {weight_format(precision)} | ({weight_format(model.precision)} if model and model.precision else set())
    for fmt in sorted(f for f in formats if f):
        reason = unsupported(backend, fmt, gpu)
        if reason:
            plan.refusals.append(
                Refusal(
                    reason,
                    "harness/analysis/precision.py MIN_CAPABILITY (NVIDIA CUDA GPUs table; TensorRT-LLM support "
                    "matrix; vLLM docs features/quantization/fp8.md)",
                )
            )

    # totals, benchmark
    gpus = sum(p.gpu_limit * p.replicas * p.node_count for p in pods)
    nodes = nodes_needed(pods, gpn)  # type: ignore[arg-type]  # the pod shape is all it reads
    per_gpu = dig(meta, "benchmark", "concurrencyPerGpu")
    src_concurrency = dig(meta, "benchmark", "concurrency")
    if "concurrency" in sets:
        concurrency = int(sets["concurrency"])
        if gpus and concurrency % gpus:
            raise UsageError(
                f"--set concurrency={concurrency}: the catalogue's benchmark runs concurrency = concurrencyPerGpu x "
                f"gpus (perf-concurrency-matches-metadata) and this variant has {gpus} GPUs: use a multiple of {gpus}"
            )
        per_gpu = concurrency // gpus if gpus else per_gpu
    elif isinstance(per_gpu, int):
        concurrency = per_gpu * gpus
    else:
        concurrency = int(src_concurrency or 1)
    requests = dig(meta, "benchmark", "requestCount")
    ratio = requests / src_concurrency if isinstance(requests, int) and isinstance(src_concurrency, int) else 10
    request_count = max(1, round(ratio * concurrency))
    c_why = why("concurrency") if "concurrency" in sets else f"{per_gpu} per GPU x {gpus} GPUs"
    spec.perf_env = {
        "CONCURRENCY": (str(concurrency), c_why),
        "CONCURRENCY_PER_GPU": (str(per_gpu), c_why),
        "DEPLOYMENT_GPU_COUNT": (str(gpus), "the variant's GPUs"),
        "REQUEST_COUNT": (str(request_count), f"{ratio:g} x concurrency, as the source"),
        "WARMUP_REQUEST_COUNT": (str(concurrency), "one round of concurrency, as the source"),
        "ISL": (str(isl), why("isl") if "isl" in sets else "unchanged"),
        "OSL": (str(osl), why("osl") if "osl" in sets else "unchanged"),
    }
    if model_id != src_model:
        spec.perf_env["TARGET_MODEL"] = (model_id, why("model"))
    if "block-size" in sets:
        for env in ("DYN_KV_BLOCK_SIZE", "DYN_KV_CACHE_BLOCK_SIZE"):
            spec.epp_env[env] = (str(sets["block-size"]), "the endpoint picker scores KV blocks of the workers' size")

    # metadata
    framework_name = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}.get(backend, backend)
    topology = ", ".join(topo_text) + (f", frontend {router}" if router else "")
    settings_text = ", ".join(f"{k}={v}" for k, v in sets.items())
    model_name = model.name if model else model_id
    title = f"{model_name}, {framework_name} {'disaggregated' if disagg else 'aggregated'}: {topology} on {gpu_name}"
    labels = [f"{gpu_name.lower()}-{gpn}gpu", f"nodes-{nodes}"]
    m: dict[tuple[str, ...], tuple[Any, str]] = {
        ("title",): (title, "the variant's topology"),
        ("description",): (
            f"Derived from {recipe.id} with {settings_text} by `recipe-harness derive`.",
            "where the variant comes from",
        ),
        ("mode",): (mode, "the variant's directory"),
        ("status",): ("experimental", "a derived variant has no benchmark of its own yet"),
        ("router",): (router, why("router") if "router" in sets else "unchanged"),
        ("hardware", "gpu"): (gpu_name, why("gpu") if "gpu" in sets else "unchanged"),
        ("hardware", "gpusPerNode"): (gpn, why("gpus-per-node") if "gpus-per-node" in sets else f"a {gpu_name} node"),
        ("hardware", "labels"): (labels, "the nightly matrix's runner labels: GPU type and node count"),
        ("gpus",): (gpus, "sum of replicas x GPUs per replica"),
        ("nodes",): (nodes, f"pods packed onto nodes of {gpn} GPUs"),
        ("benchmark", "isl"): (isl, spec.perf_env["ISL"][1]),
        ("benchmark", "osl"): (osl, spec.perf_env["OSL"][1]),
        ("benchmark", "concurrency"): (concurrency, c_why),
        ("benchmark", "concurrencyPerGpu"): (per_gpu, c_why),
        ("benchmark", "requestCount"): (request_count, spec.perf_env["REQUEST_COUNT"][1]),
    }
    if dig(meta, "hardware", "alternatives") and "gpu" in sets:
        m[("hardware", "alternatives")] = ([], "sized for the chosen GPU only")
    if model_id != src_model and model is not None:
        revision = model_dirs[model_id][1]
        m[("model", "id")] = (model_id, why("model"))
        m[("model", "servedName")] = (model_id, why("model"))
        m[("model", "precision")] = (model.precision, f"the checkpoint {model_id} (models.yaml)")
        if revision:
            m[("model", "revision")] = (revision, f"the revision {model_dir}/model-cache downloads")
        plan.notes.append(
            f"model cache: {model_dir}/model-cache (its PVC is sized for {model_id}, ~{model.checkpoint_gb:g} GB; "
            f"its download Job pins {revision[:12] or 'no revision'})"
        )
    spec.metadata = m  # the estimator reads the planned model, GPU and load from it
    targets = estimate(plan, recipe) if estimate is not None else None
    m[("targets",)] = (
        targets
        or {
            "kind": "target",
            "source": f"none yet for this variant (derived from {recipe.id}, whose targets do not carry over): "
            "record the first baseline, or an estimate",
        },
        "targets of the source recipe do not apply to another topology",
    )
    spec.metadata = m
    spec.known_limits = [f"Derived from {recipe.id} ({settings_text}): not benchmarked on hardware yet."]
    fraction_name = FRACTION_NAME.get(backend, "memory fraction")
    nodes_text = f"{nodes} {gpu_name} node{'s' if nodes != 1 else ''}"
    spec.header_lines = {
        "deploy.yaml": {
            f"# {variant_id}:": f"# {variant_id}: {title}.",
            "# Topology:": f"# Topology: {topology}; {gpus} GPUs on {nodes_text}.",
        },
        "perf.yaml": {
            "# Concurrency": f"# Concurrency {concurrency} = {per_gpu} per GPU x {gpus} GPUs; {request_count} requests "
            f"({ratio:g} x concurrency).",
        },
    }
    spec.storage_class = sets.get("storage-class")
    spec.gpu_sum_comment = f"# {' + '.join(sums)} = {gpus} GPUs"
    plan.namespace = str(sets.get("namespace", ""))

    # the model README's lines
    key = f"`{recipe.framework}/{mode}`"
    plan.readme_key, plan.readme_source_key = key, f"`{recipe.framework}/{recipe.mode}`"
    status = "experimental"
    interconnect = str(dig(meta, "hardware", "interconnect") or "")
    plan.readme = {
        "Overview": [f"| {key} | `{variant_dgd}` | {topology} | {gpus} | {nodes} | {gpu_name} | {router} | {status} |"],
        "Hardware": [
            f"- {key}: {gpus} x {gpu_name} ({gpu.memory_gb:g} GB) on {nodes} node{'s' if nodes != 1 else ''} of "
            f"{gpn} GPUs; weights per GPU: {'; '.join(weights_text)} (`{fraction_name}`)."
            + (f" {interconnect}." if interconnect else "")
        ],
        "Benchmark": [f"| {key} | {isl} | {osl} | {concurrency} ({per_gpu} x {gpus}) | {request_count} |"],
        "Known limits": [
            f"- {key}: {line}" for line in [*map(str, dig(meta, "knownLimits") or []), *spec.known_limits]
        ],
    }
    return plan
