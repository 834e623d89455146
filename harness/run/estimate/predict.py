"""AIConfigurator estimates for a recipe or a variant, and the `targets` entry they become.

A request names the model (Hugging Face id), the GPU (a `gpus.yaml` type), the backend, the parallelism
of each worker kind and the load (ISL, OSL, concurrency). The answer is an `Estimate` (TTFT and TPOT as
AIConfigurator models them: means under in-flight batching, not P99s; output tokens/s per GPU over all
the deployment's GPUs) or a `NoCoverage` with the reason in AIConfigurator's or the harness's words.

Mapping to `cli_estimate` (aiconfigurator 0.12.0, aiconfigurator/cli/api.py):
- GPU -> system: AIConfigurator's system specs `aiconfigurator_core/systems/<system>.yaml` (the SXM parts:
  HGX A100/H100/H200/B200 as in gpus.yaml; GB200 is `gb200`).
- attention: `tp_size` = the ranks one sequence's attention spans (SGLang `--tp / --dp` with DP attention,
  1 for TRT-LLM `enable_attention_dp`), `attention_dp_size` the attention DP ranks (vLLM `--data-parallel-size`);
  experts: `moe_ep_size` = EP, `moe_tp_size` = GPUs per replica / EP (MoE models only).
- `batch_size` is per attention-DP rank (its result's `global_bs` = bs x DP): the benchmark's concurrency
  spread over the decode (or aggregated) replicas and their DP ranks, rounded up.
- disaggregated: one prefill sequence at a time per prefill rank (`prefill_batch_size` 1), the recipe's
  worker counts as `prefill_num_workers` / `decode_num_workers`.
- the database: the newest the package holds for the system and backend; its version is stated next to
  the version the recipe pins (AIConfigurator 0.12.0 holds vLLM 0.24.0, SGLang 0.5.14, TRT-LLM 1.3.0rc20/23).
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.analysis.topology import FLAGS, Topology, workers
from harness.recipe.catalogue import gpus
from harness.recipe.model import Recipe
from harness.recipe.model_configs import model_config
from harness.recipe.yamlsrc import dig
from harness.run.estimate.env import EstimatorEnv, find_env, setup_command

DRIVER = Path(__file__).resolve().parent / "driver.py"
TOOL = "aiconfigurator"
BACKEND_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TRT-LLM"}

# gpus.yaml type -> AIConfigurator system (aiconfigurator_core/systems/<name>.yaml)
GPU_SYSTEMS = {"A100": "a100_sxm", "H100": "h100_sxm", "H200": "h200_sxm", "B200": "b200_sxm", "GB200": "gb200"}

# A substituted checkpoint (model_configs `substitute`) loses its quantization_config: the recipe's
# precision names the modes (cli_estimate's gemm/moe quant choices). DeepSeek-R1-FP4 quantizes the
# experts only (its model card: "only the weights and activations of the linear operators within
# transformers blocks"... of the MoE); the dense layers stay FP8 block-scaled like the FP8 checkpoint.
PRECISION_QUANT = {
    "fp8": {"gemm_quant_mode": "fp8"},
    "nvfp4": {"gemm_quant_mode": "fp8_block", "moe_quant_mode": "nvfp4"},
}
KV_QUANT = {"fp8": "fp8", "bf16": "bfloat16", "fp16": "bfloat16", "auto": "bfloat16"}


@dataclass(frozen=True)
class Parallel:
    """One worker kind: `tp` ranks (SGLang/TRT-LLM: all GPUs of a replica; vLLM: per DP rank), `dp` DP
    ranks, `ep` expert-parallel ranks, `dp_attention` (SGLang/TRT-LLM attention DP), `workers` replicas."""

    tp: int = 1
    dp: int = 1
    ep: int = 1
    dp_attention: bool = False
    workers: int = 1

    def shape(self, backend: str) -> tuple[int, int]:
        """(attention TP, attention DP) as AIConfigurator counts them."""
        if backend == "vllm":
            return self.tp, self.dp
        if not self.dp_attention:
            return self.tp, 1
        if backend == "sglang":
            return max(1, self.tp // max(1, self.dp)), max(1, self.dp)
        return 1, self.tp  # TRT-LLM enable_attention_dp: every rank runs whole attention

    def gpus(self, backend: str) -> int:
        attn_tp, attn_dp = self.shape(backend)
        return attn_tp * attn_dp

    def label(self) -> str:
        parts = [f"TP{self.tp}"] + ([f"DP{self.dp}"] if self.dp > 1 else []) + ([f"EP{self.ep}"] if self.ep > 1 else [])
        return " ".join(parts) + (" (attention DP)" if self.dp_attention else "") + f" x {self.workers}"


@dataclass(frozen=True)
class Request:
    model: str
    gpu: str
    backend: str
    isl: int
    osl: int
    concurrency: int
    worker: Parallel | None = None  # aggregated
    prefill: Parallel | None = None  # disaggregated
    decode: Parallel | None = None
    precision: str = ""
    kv_cache_dtype: str = ""
    pinned_backend: str = ""  # the engine version the recipe pins, for the caveat

    def gpus(self) -> int:
        """All the deployment's GPUs (AIConfigurator models one aggregated replica; its disagg result
        counts every prefill and decode worker)."""
        kinds = [p for p in (self.worker, self.prefill, self.decode) if p is not None]
        return sum(p.workers * p.gpus(self.backend) for p in kinds)

    @property
    def mode(self) -> str:
        return "disagg" if self.decode is not None else "agg"

    def describe(self) -> str:
        if self.decode is not None:
            shape = f"prefill {self.prefill.label() if self.prefill else '?'}, decode {self.decode.label()}"
        else:
            shape = self.worker.label() if self.worker else "?"
        return f"{self.mode} {shape}, ISL/OSL {self.isl}/{self.osl}, concurrency {self.concurrency}"


@dataclass(frozen=True)
class NoCoverage:
    """AIConfigurator cannot estimate this variant; `reason` says why in its own or the harness's words."""

    request: Request | None
    reason: str


@dataclass(frozen=True)
class Estimate:
    request: Request
    ttft_ms: float
    tpot_ms: float
    tokens_per_s_per_gpu: float
    request_throughput: float
    system: str
    database: str  # the backend database version used
    versions: dict[str, str]
    substitutions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tool_version(self) -> str:
        return self.versions.get("aiconfigurator", "?")

    def source(self) -> str:
        backend = BACKEND_NAMES.get(self.request.backend, self.request.backend)
        pinned = f" (the recipe pins {self.request.pinned_backend})" if self.request.pinned_backend else ""
        text = (
            f"AIConfigurator {self.tool_version} (aiconfigurator-core {self.versions.get('aiconfigurator-core', '?')}) "
            f"cli_estimate, system {self.system}, {backend} {self.database} database{pinned}: "
            f"{self.request.describe()}; a model of the hardware, not a measurement; TTFT and TPOT are modeled means"
        )
        return "; ".join([text, *self.substitutions, *self.notes])

    def targets(self) -> dict[str, Any]:
        """The recipe.yaml `targets` entry (schemas/recipe-metadata.json, kind: estimate)."""
        return {
            "kind": "estimate",
            "outputTokenThroughputPerGpu": round(self.tokens_per_s_per_gpu, 1),
            "requestThroughput": round(self.request_throughput, 3),
            "ttftMs": round(self.ttft_ms, 1),
            "tpotMs": round(self.tpot_ms, 2),
            "source": self.source(),
            "estimator": {
                "tool": TOOL,
                "version": self.tool_version,
                "system": self.system,
                "backend": self.request.backend,
                "database": self.database,
                "mode": self.request.mode,
            },
        }


# --- requests -----------------------------------------------------------------------------------


def _parallel(topo: Topology, workers_: int) -> Parallel:
    return Parallel(tp=topo.tp, dp=topo.dp, ep=topo.ep, dp_attention=topo.dp_attention, workers=workers_)


def recipe_request(recipe: Recipe) -> Request | NoCoverage:
    """The request for a recipe as written: its model, GPU, backend, workers' parallelism and benchmark."""
    if recipe.kustomize_build is not None:
        return NoCoverage(None, "a kustomize overlay has no recipe.yaml of its own: estimate the recipe it builds on")
    meta = recipe.metadata
    model, gpu = dig(meta, "model", "id"), dig(meta, "hardware", "gpu")
    bench = dig(meta, "benchmark") or {}
    isl, osl, conc = (bench.get(k) if hasattr(bench, "get") else None for k in ("isl", "osl", "concurrency"))
    if not (isinstance(model, str) and isinstance(gpu, str)):
        return NoCoverage(None, "recipe.yaml names no model.id or hardware.gpu")
    if not all(isinstance(v, int) and v > 0 for v in (isl, osl, conc)):
        return NoCoverage(None, "recipe.yaml's benchmark has no isl, osl and concurrency")
    by_role: dict[str, list[tuple[Any, Topology]]] = {}
    for svc, topo in workers(recipe):
        by_role.setdefault(svc.role, []).append((svc, topo))
    common = {
        "model": model,
        "gpu": gpu,
        "backend": recipe.framework,
        "isl": isl,
        "osl": osl,
        "concurrency": conc,
        "precision": str(dig(meta, "model", "precision") or ""),
        "kv_cache_dtype": str(dig(meta, "model", "kvCacheDtype") or ""),
        "pinned_backend": str(dig(meta, "versions", "backend") or ""),
    }
    if set(by_role) == {"worker"} and len(by_role["worker"]) == 1:
        svc, topo = by_role["worker"][0]
        return Request(**common, worker=_parallel(topo, svc.replicas))
    if set(by_role) == {"prefill", "decode"} and len(by_role["prefill"]) == len(by_role["decode"]) == 1:
        (ps, pt), (ds, dt) = by_role["prefill"][0], by_role["decode"][0]
        return Request(**common, prefill=_parallel(pt, ps.replicas), decode=_parallel(dt, ds.replicas))
    roles = ", ".join(f"{r} x {len(v)}" for r, v in sorted(by_role.items())) or "none"
    return NoCoverage(None, f"worker services ({roles}) are neither one aggregated nor one prefill + one decode kind")


def request(
    model: str,
    gpu: str,
    backend: str,
    tp: int,
    dp: int,
    isl: int,
    osl: int,
    concurrency: int,
    *,
    ep: int = 1,
    dp_attention: bool = False,
    replicas: int = 1,
    precision: str = "",
    kv_cache_dtype: str = "",
    pinned_backend: str = "",
) -> Request:
    """An aggregated request from explicit values (what `derive` knows of a variant)."""
    worker = Parallel(tp=tp, dp=dp, ep=ep, dp_attention=dp_attention, workers=replicas)
    return Request(model, gpu, backend, isl, osl, concurrency, worker=worker, precision=precision,
                   kv_cache_dtype=kv_cache_dtype, pinned_backend=pinned_backend)  # fmt: skip


# --- the call -----------------------------------------------------------------------------------


def _checkpoint(req: Request) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """(model id AIConfigurator knows, quant overrides, substitution notes)."""
    cfg = model_config(req.model)
    if cfg is None or not cfg.provenance.get("substitute"):
        return req.model, {}, ()
    stem = re.sub(r"_config\.json$", "", Path(cfg.provenance["path"]).name)
    model = stem.replace("--", "/", 1)
    quant = PRECISION_QUANT.get(req.precision, {})
    note = f"estimated with {model}'s architecture (the recorded config the recipe's checkpoint shares)"
    if quant:
        note += "; quantization from the recipe's precision " + ", ".join(f"{k}={v}" for k, v in quant.items())
    return model, dict(quant), (note,)


def _is_moe(model: str) -> bool:
    cfg = model_config(model)
    keys = ("num_experts", "n_routed_experts", "num_local_experts")
    return bool(cfg and any(cfg.config.get(k) for k in keys))


def _kwargs(req: Request, moe: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"isl": req.isl, "osl": req.osl}
    kv = KV_QUANT.get(req.kv_cache_dtype)
    if kv:
        kw["kvcache_quant_mode"] = kv

    def shape(prefix: str, p: Parallel) -> None:
        attn_tp, attn_dp = p.shape(req.backend)
        kw[f"{prefix}tp_size"] = attn_tp
        kw[f"{prefix}attention_dp_size"] = attn_dp
        if moe:
            ep = max(1, p.ep)
            kw[f"{prefix}moe_ep_size"] = ep
            kw[f"{prefix}moe_tp_size"] = max(1, p.gpus(req.backend) // ep)

    if req.decode is None:
        assert req.worker is not None
        shape("", req.worker)
        ranks = req.worker.workers * req.worker.shape(req.backend)[1]
        kw["batch_size"] = max(1, math.ceil(req.concurrency / ranks))
    else:
        prefill = req.prefill or req.decode
        shape("prefill_", prefill)
        shape("decode_", req.decode)
        kw["prefill_batch_size"] = 1
        kw["prefill_num_workers"] = prefill.workers
        kw["decode_num_workers"] = req.decode.workers
        ranks = req.decode.workers * req.decode.shape(req.backend)[1]
        kw["decode_batch_size"] = max(1, math.ceil(req.concurrency / ranks))
    return kw


def estimate_many(
    requests: list[Request], env: EstimatorEnv | None = None, timeout: float = 900
) -> list[Estimate | NoCoverage]:
    """Estimates for many requests in one AIConfigurator process (its import takes a few seconds)."""
    env = env or find_env()
    if env is None:
        return [NoCoverage(r, f"the AIConfigurator env is not set up: run `{setup_command()}`") for r in requests]
    answers: dict[int, Estimate | NoCoverage] = {}
    jobs, plans = [], {}
    for i, req in enumerate(requests):
        system = GPU_SYSTEMS.get(req.gpu)
        if system is None:
            known = ", ".join(f"{g} ({s})" for g, s in GPU_SYSTEMS.items())
            answers[i] = NoCoverage(req, f"no AIConfigurator system for GPU {req.gpu!r}; it models {known}")
            continue
        if req.backend not in BACKEND_NAMES:
            answers[i] = NoCoverage(req, f"AIConfigurator has no backend {req.backend!r}")
            continue
        model, quant, subs = _checkpoint(req)
        kwargs = _kwargs(req, _is_moe(req.model)) | quant
        plans[i] = (system, subs)
        jobs.append(
            {"id": i, "model": model, "system": system, "backend": req.backend, "mode": req.mode, "kwargs": kwargs}
        )
    if not jobs:
        return [answers[i] for i in range(len(requests))]
    proc = subprocess.run(
        [env.python, str(DRIVER)], input=json.dumps({"requests": jobs}), capture_output=True, text=True, timeout=timeout
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    meta = next((x["meta"] for x in lines if "meta" in x), {})
    versions = dict(meta.get("versions") or env.versions)
    results = {x["id"]: x for x in lines if "id" in x}
    for job in jobs:
        i = job["id"]
        req, (system, subs) = requests[i], plans[i]
        res = results.get(i)
        if res is None:
            tail = (proc.stderr or "").strip().splitlines()[-5:]
            answers[i] = NoCoverage(
                req, f"the AIConfigurator driver gave no answer (exit {proc.returncode}): {' '.join(tail)}"
            )
            continue
        answers[i] = _answer(req, system, subs, res, versions)
    return [answers[i] for i in range(len(requests))]


def _answer(
    req: Request, system: str, subs: tuple[str, ...], res: dict, versions: dict[str, str]
) -> Estimate | NoCoverage:
    cov = res.get("coverage") or {}
    backend = BACKEND_NAMES[req.backend]
    if system not in (cov.get("systems") or [system]):
        return NoCoverage(req, f"AIConfigurator {versions.get(TOOL, '?')} has no system {system}")
    if cov and not cov.get("databases"):
        return NoCoverage(req, f"AIConfigurator has no {backend} database for {system}")
    rows = (cov.get("matrix") or {}).get("rows") or []
    if not res.get("ok"):
        failed = [r for r in rows if r.get("status") != "PASS" and r.get("error")]
        why = f"; its support matrix: {failed[0]['error']}" if failed else ""
        return NoCoverage(req, f"AIConfigurator could not estimate it: {res.get('error')}{why}")
    notes = []
    if not rows:
        notes.append(
            f"AIConfigurator's support matrix ({system}.csv) lists no {req.mode} run of this model on {backend}"
        )
    elif not any(r.get("status") == "PASS" for r in rows):
        notes.append(f"AIConfigurator's support matrix marks this model {rows[0].get('status')} on {backend}")
    result = res["result"]
    raw = result.get("raw") or {}
    if result.get("kv_cache_warning"):
        notes.append(f"AIConfigurator warns: {result['kv_cache_warning']}")
    return Estimate(
        request=req,
        ttft_ms=float(result["ttft"]),
        tpot_ms=float(result["tpot"]),
        tokens_per_s_per_gpu=float(raw.get("tokens/s/gpu") or 0.0),
        request_throughput=float(raw.get("seq/s/gpu") or 0.0) * req.gpus(),
        system=system,
        database=str(result.get("backend_version") or "?"),
        versions=versions,
        substitutions=subs,
        notes=tuple(notes),
        raw=raw,
    )


def estimate(
    model: str,
    gpu: str,
    backend: str,
    tp: int,
    dp: int,
    isl: int,
    osl: int,
    concurrency: int,
    **extra: Any,
) -> Estimate | NoCoverage:
    """One aggregated variant's estimate (for `derive`); `extra` as `request()` takes (ep, dp_attention,
    replicas, precision, kv_cache_dtype, pinned_backend)."""
    return estimate_many([request(model, gpu, backend, tp, dp, isl, osl, concurrency, **extra)])[0]


def estimate_recipe(recipe: Recipe) -> Estimate | NoCoverage:
    req = recipe_request(recipe)
    return req if isinstance(req, NoCoverage) else estimate_many([req])[0]


def with_load(
    req: Request, *, isl: int | None = None, osl: int | None = None, concurrency: int | None = None
) -> Request:
    return replace(req, isl=isl or req.isl, osl=osl or req.osl, concurrency=concurrency or req.concurrency)


def known_gpus() -> list[str]:
    return [g for g in gpus() if g in GPU_SYSTEMS]


def write_targets(path: Path, targets: dict[str, Any]) -> bool:
    """Replace the `targets` mapping of a recipe.yaml in place (comments and order elsewhere kept).
    Returns whether the file changed."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    text = path.read_text()
    data = y.load(text)
    if not hasattr(data, "get"):
        raise ValueError(f"{path}: not a YAML mapping")
    if data.get("targets") == targets:
        return False
    data["targets"] = targets
    buf = io.StringIO()
    y.dump(data, buf)
    path.write_text(buf.getvalue())
    return True


# --- derive's hook ------------------------------------------------------------------------------


def estimate_for_plan(plan: Any, recipe: Recipe) -> dict[str, Any]:
    """`recipe-harness derive`'s estimator (harness.analysis.variant.Estimator): the variant's targets from
    AIConfigurator, from the source recipe's request with what the plan changes (model, GPU, load, each
    worker's TP/DP flags and replicas). Where AIConfigurator does not cover the variant, a `kind: target`
    entry whose source says why, so the variant's recipe.yaml states it."""
    base = recipe_request(recipe)
    result = base if isinstance(base, NoCoverage) else estimate_many([planned_request(plan, recipe, base)])[0]
    if isinstance(result, Estimate):
        return result.targets()
    return {
        "kind": "target",
        "source": f"none yet for this variant: no AIConfigurator estimate ({result.reason}); record the first baseline",
    }


def planned_request(plan: Any, recipe: Recipe, base: Request) -> Request:
    meta = plan.spec.metadata

    def planned(key: tuple[str, ...], current: Any) -> Any:
        entry = meta.get(key)
        return entry[0] if entry else current

    def shape(p: Parallel | None, role: str) -> Parallel | None:
        if p is None:
            return None
        for svc, topo in workers(recipe):
            ws = plan.spec.workers.get(svc.name)
            if ws is None or (svc.role if svc.role in ("prefill", "decode") else "worker") != role:
                continue
            tp, dp = p.tp, p.dp
            for name in ("tp", "dp"):
                written = topo.get(name)
                spellings = {written.source} if written is not None else set(FLAGS[recipe.framework].get(name, ()))
                value = next((ws.flags[f][0] for f in spellings if f in ws.flags), None)
                if value is not None:
                    tp, dp = (int(value), dp) if name == "tp" else (tp, int(value))
            return replace(p, tp=tp, dp=dp, workers=ws.replicas)
        return p

    return replace(
        base,
        model=planned(("model", "id"), base.model),
        gpu=planned(("hardware", "gpu"), base.gpu),
        isl=planned(("benchmark", "isl"), base.isl),
        osl=planned(("benchmark", "osl"), base.osl),
        concurrency=planned(("benchmark", "concurrency"), base.concurrency),
        precision=planned(("model", "precision"), base.precision),
        worker=shape(base.worker, "worker"),
        prefill=shape(base.prefill, "prefill"),
        decode=shape(base.decode, "decode"),
    )
