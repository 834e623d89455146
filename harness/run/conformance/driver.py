"""Runs Dynamo worker and frontend command lines through the real Dynamo and engine argument parsers.

Executed with a conformance env's python (harness/run/conformance/envs.py), as a script: it
imports only the standard library and the env's own packages, never the harness. One process
imports each parser once and parses many command lines. Parse only: no GPU, no weights, no
network (HF offline, a stub HF cache with a config.json per model).

stdin:  {"jobs": [{"id": "...", "parser": "vllm"|"sglang"|"frontend"|"trtllm",
                   "argv": ["--model", "X", ...],
                   "files": {"/config/engine.yaml": "<content>"},   # files the container mounts
                   "model_config": {...optional config.json...}}],
         "trtllm_defaults": {"max_batch_size": ..., ...},         # for the tensorrt_llm stub
         "deep": false}       # vllm only: also run AsyncEngineArgs.create_engine_config()
stdout: one JSON object per job, in order:
         {"id", "ok", "kind", "error", "unrecognized", "additions", "substitutions",
          "warnings", "where", "summary", "seconds"}
        then one line {"meta": {"import_seconds": {parser: s}, "versions", "python", "jobs", "ok"}}.
kind (when not ok): "argparse" (SystemExit 2; the message is argparse's), "exit" (another
SystemExit; the message is the last error log record), "validation" (an exception raised by
Dynamo's or the engine's checks), "model" (model resolution), "platform" (device detection),
"engine_config" (deep mode only), "import" (the parser could not be imported).

Entry points (ai-dynamo 1.4.0):
  vllm     dynamo.vllm.args.parse_args(argv) + configure_rl_logprobs_mode(config): what
           dynamo.vllm.main.worker() runs before fetch_model and create_engine_config.
  sglang   asyncio.run(dynamo.sglang.args.parse_args(argv)); it calls fetch_model(), replaced
           here by an offline resolver, then ServerArgs.from_cli_args().
  frontend dynamo.frontend.main.parse_args(), which reads sys.argv.
  trtllm   dynamo.trtllm.args.parse_args(argv), with a stub tensorrt_llm when the real one is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import types
import warnings
from typing import ClassVar

# ---------------------------------------------------------------- stub HF cache

_LLAMA70 = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    hidden_act="silu",
    tie_word_embeddings=False,
    rope_scaling=dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192, rope_type="llama3"
    ),
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    torch_dtype="bfloat16",
)
_LLAMA8 = dict(_LLAMA70, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32)
_LLAMA405 = dict(_LLAMA70, hidden_size=16384, intermediate_size=53248, num_hidden_layers=126, num_attention_heads=128)
_DSV3 = dict(
    architectures=["DeepseekV3ForCausalLM"],
    model_type="deepseek_v3",
    hidden_size=7168,
    intermediate_size=18432,
    moe_intermediate_size=2048,
    num_hidden_layers=61,
    num_attention_heads=128,
    num_key_value_heads=128,
    vocab_size=129280,
    max_position_embeddings=163840,
    kv_lora_rank=512,
    q_lora_rank=1536,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    n_routed_experts=256,
    n_shared_experts=1,
    num_experts_per_tok=8,
    first_k_dense_replace=3,
    n_group=8,
    topk_group=4,
    routed_scaling_factor=2.5,
    norm_topk_prob=True,
    scoring_func="sigmoid",
    topk_method="noaux_tc",
    num_nextn_predict_layers=1,
    rms_norm_eps=1e-6,
    rope_theta=10000,
    hidden_act="silu",
    tie_word_embeddings=False,
    rope_scaling=dict(
        type="yarn",
        factor=40,
        original_max_position_embeddings=4096,
        beta_fast=32,
        beta_slow=1,
        mscale=1.0,
        mscale_all_dim=1.0,
    ),
    bos_token_id=0,
    eos_token_id=1,
    torch_dtype="bfloat16",
)
_QWEN3 = dict(
    architectures=["Qwen3ForCausalLM"],
    model_type="qwen3",
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    rope_theta=1000000,
    hidden_act="silu",
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151645,
    torch_dtype="bfloat16",
)
_QWEN3_SIZES = {
    "0.6b": {},
    "1.7b": dict(hidden_size=2048, intermediate_size=6144),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
    "8b": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        tie_word_embeddings=False,
    ),
    "14b": dict(
        hidden_size=5120,
        intermediate_size=17408,
        num_hidden_layers=40,
        num_attention_heads=40,
        tie_word_embeddings=False,
    ),
    "32b": dict(
        hidden_size=5120,
        intermediate_size=25600,
        num_hidden_layers=64,
        num_attention_heads=64,
        tie_word_embeddings=False,
    ),
}
_QWEN3_MOE = dict(
    _QWEN3,
    architectures=["Qwen3MoeForCausalLM"],
    model_type="qwen3_moe",
    hidden_size=4096,
    intermediate_size=12288,
    moe_intermediate_size=1536,
    num_hidden_layers=94,
    num_attention_heads=64,
    num_key_value_heads=4,
    num_experts=128,
    num_experts_per_tok=8,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    tie_word_embeddings=False,
)
_QWEN3_30B = dict(
    _QWEN3_MOE,
    hidden_size=2048,
    intermediate_size=6144,
    moe_intermediate_size=768,
    num_hidden_layers=48,
    num_attention_heads=32,
)


def guess_config(model: str) -> tuple[dict, str]:
    """A plausible config.json for an HF model id: (config, how it was chosen)."""
    n = model.lower()
    if "deepseek-r1" in n or "deepseek-v3" in n:
        return dict(_DSV3), "DeepSeek-V3 preset"
    if "llama" in n:
        if "405b" in n:
            return dict(_LLAMA405), "Llama-405B preset"
        if "70b" in n:
            return dict(_LLAMA70), "Llama-70B preset"
        return dict(_LLAMA8), "Llama-8B preset"
    if "qwen3" in n:
        if "235b" in n:
            return dict(_QWEN3_MOE), "Qwen3-235B-A22B preset"
        if "30b-a3b" in n:
            return dict(_QWEN3_30B), "Qwen3-30B-A3B preset"
        for size, over in _QWEN3_SIZES.items():
            if f"-{size}" in n:
                return dict(_QWEN3, **over), f"Qwen3-{size.upper()} preset"
        return dict(_QWEN3), "Qwen3-0.6B preset"
    return dict(_LLAMA8), "fallback Llama-8B-shaped preset (unknown model family)"


MODEL_FLAGS = (
    "--model",
    "--model-path",
    "--tokenizer",
    "--tokenizer-path",
    "--speculative-draft-model-path",
    "--speculative-model",
)
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def models_in(argv: list[str]) -> list[str]:
    out = []
    for i, tok in enumerate(argv):
        flag, eq, val = tok.partition("=")
        if flag in MODEL_FLAGS:
            v = val if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if v and HF_ID.match(v) and not os.path.exists(v):
                out.append(v)
    return out


def build_stub_cache(hf_home: str, jobs: list[dict]) -> dict[str, str]:
    """HF_HOME/hub/models--org--name/{refs/main, snapshots/<rev>/config.json} per model."""
    rev = "0" * 40
    notes: dict[str, str] = {}
    for job in jobs:
        for model in models_in(job.get("argv", [])):
            if model in notes:
                continue
            if job.get("model_config"):
                cfg, how = job["model_config"], "from the request"
            else:
                cfg, how = guess_config(model)
            repo = os.path.join(hf_home, "hub", "models--" + model.replace("/", "--"))
            snap = os.path.join(repo, "snapshots", rev)
            os.makedirs(snap, exist_ok=True)
            os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
            with open(os.path.join(repo, "refs", "main"), "w") as f:
                f.write(rev)
            with open(os.path.join(snap, "config.json"), "w") as f:
                json.dump(cfg, f, indent=1)
            gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id") if k in cfg}
            with open(os.path.join(snap, "generation_config.json"), "w") as f:
                json.dump(gen, f)
            notes[model] = how
    return notes


# ---------------------------------------------------------------- capture helpers


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if not any(r is record for r in self.records):  # seen once per logger it passes
            self.records.append(record)


CAPTURED_LOGGERS = ("", "vllm", "sglang", "dynamo", "dynamo.runtime")


def _fmt_exc(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _where(e: BaseException) -> str | None:
    """file:line function of the innermost frame inside dynamo / the engine."""
    tb = traceback.extract_tb(e.__traceback__)
    best = None
    for fr in tb:
        if any(
            p in fr.filename
            for p in ("/dynamo/", "/vllm/", "/sglang/", "/tensorrt_llm/", "/transformers/", "/huggingface_hub/")
        ):
            best = fr
    if best is None and tb:
        best = tb[-1]
    if best is None:
        return None
    fn = best.filename
    i = fn.find("site-packages/")
    return f"{fn[i + 14 :] if i >= 0 else fn}:{best.lineno} {best.name}"


def _classify(e: BaseException) -> str:
    name = type(e).__name__
    text = str(e)
    if (
        name
        in (
            "LocalEntryNotFoundError",
            "HFValidationError",
            "RepositoryNotFoundError",
            "GatedRepoError",
            "OfflineModeIsEnabled",
            "EntryNotFoundError",
        )
        or "offline" in text.lower()
        or "huggingface" in text.lower()
    ):
        return "model"
    if re.search(r"infer device type|No accelerator|CUDA|cuda|GPU|nvidia-smi|NVML", text):
        return "platform"
    return "validation"


_UNRECOG = re.compile(r"unrecognized arguments: (.*)$", re.M)
_UNKNOWN_LIST = re.compile(r"Unknown arguments specified: (\[.*\])")
_UNRECOG_ONE = re.compile(r"Unrecognized argument: (\S+)")  # dynamo.trtllm dynamic_flags


def _flags(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("-")]


# ---------------------------------------------------------------- engines


def _versions(dists) -> dict:
    import importlib.metadata as md

    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def setup_vllm(ctx):
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms.current_platform = CpuPlatform()
    from dynamo.vllm import args as dargs

    def run(argv, job, ctx):
        config = dargs.parse_args(argv)
        dargs.configure_rl_logprobs_mode(config)
        summary = {
            k: _jsonable(getattr(config, k, None))
            for k in ("namespace", "component", "endpoint", "disaggregation_mode", "served_model_name", "use_kv_events")
        }
        ea = config.engine_args
        summary["model"] = config.model  # the name on the command line (ea.model is the local path)
        kvt = getattr(ea, "kv_transfer_config", None)
        summary["kv_transfer_config"] = (
            None
            if kvt is None
            else {"kv_connector": getattr(kvt, "kv_connector", None), "kv_role": getattr(kvt, "kv_role", None)}
        )
        for k in (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "data_parallel_size",
            "enable_expert_parallel",
            "max_model_len",
            "gpu_memory_utilization",
            "enable_prefix_caching",
        ):
            summary[k] = _jsonable(getattr(ea, k, None))
        if ctx.get("deep"):
            from vllm.usage.usage_lib import UsageContext

            try:
                ea.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
            except Exception as e:
                raise _EngineConfigError(e) from e
        return summary

    subs = [
        "vllm.platforms.current_platform = CpuPlatform() (no GPU)",
        "VLLM_NIXL_SIDE_CHANNEL_HOST=127.0.0.1 (skips host-IP detection for NixlConnector)",
    ]
    return run, subs, ["ai-dynamo", "vllm", "torch", "transformers"]


def setup_sglang(ctx):
    from dynamo.sglang import args as dargs

    async def offline_fetch_model(remote_name: str, ignore_weights: bool = False) -> str:
        # Stands in for dynamo.common.model_fetch.fetch_model (Rust hub/ModelExpress client):
        # resolve from the stub HF cache only, never the network.
        from huggingface_hub import snapshot_download

        return snapshot_download(remote_name, local_files_only=True)

    dargs.fetch_model = offline_fetch_model

    def run(argv, job, ctx):
        config = asyncio.run(dargs.parse_args(argv))
        sa, dc = config.server_args, config.dynamo_args
        summary = {k: _jsonable(getattr(dc, k, None)) for k in ("namespace", "component", "endpoint", "use_kv_events")}
        for k in (
            "model_path",
            "tp_size",
            "dp_size",
            "ep_size",
            "pp_size",
            "disaggregation_mode",
            "disaggregation_transfer_backend",
            "disaggregation_bootstrap_port",
            "enable_dp_attention",
            "device",
            "attention_backend",
            "mem_fraction_static",
            "served_model_name",
        ):
            summary[k] = _jsonable(getattr(sa, k, None))
        return summary

    subs = ["dynamo.sglang.args.fetch_model replaced by an offline HF-cache resolver"]
    return run, subs, ["ai-dynamo", "sglang", "torch", "transformers"]


def setup_frontend(ctx):
    from dynamo.frontend import main as fmain

    def run(argv, job, ctx):
        old = sys.argv
        sys.argv = ["dynamo.frontend", *argv]
        try:
            config, vllm_flags, sglang_flags = fmain.parse_args()
        finally:
            sys.argv = old
        summary = {
            k: _jsonable(getattr(config, k, None))
            for k in (
                "router_mode",
                "http_port",
                "http_host",
                "namespace",
                "chat_processor",
                "kv_cache_block_size",
                "migration_limit",
                "discovery_backend",
                "request_plane",
            )
        }
        summary["engine_flags"] = "vllm" if vllm_flags else "sglang" if sglang_flags else None
        return summary

    return run, [], ["ai-dynamo"]


# Defaults that dynamo.trtllm.backend_args reads from BuildConfig.model_fields[...].default; the
# harness sends the values recorded from TensorRT-LLM's source ("trtllm_defaults"). These are the
# fallback when nothing was recorded; they only change defaults shown in the summary.
TRTLLM_STUB_DEFAULTS = {"max_batch_size": 2048, "max_num_tokens": 8192, "max_seq_len": None, "max_beam_width": 1}


def install_tensorrt_llm_stub(defaults: dict) -> bool:
    """Put a minimal tensorrt_llm in sys.modules unless the real one imports."""
    try:
        import tensorrt_llm.llmapi  # noqa: F401

        return False
    except Exception:
        pass
    for k in [k for k in sys.modules if k == "tensorrt_llm" or k.startswith("tensorrt_llm.")]:
        del sys.modules[k]

    class _Field:
        def __init__(self, default):
            self.default = default

    class BuildConfig:  # stands in for tensorrt_llm.llmapi.BuildConfig (a pydantic model)
        model_fields: ClassVar[dict[str, _Field]] = {k: _Field(v) for k, v in defaults.items()}

    root = types.ModuleType("tensorrt_llm")
    root.__path__ = []  # a package
    root.__version__ = "0+stub"
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.__path__ = []
    llmapi.BuildConfig = BuildConfig
    llm_args = types.ModuleType("tensorrt_llm.llmapi.llm_args")
    llm_args.BaseLlmArgs = BuildConfig
    root.llmapi = llmapi
    llmapi.llm_args = llm_args
    sys.modules.update({"tensorrt_llm": root, "tensorrt_llm.llmapi": llmapi, "tensorrt_llm.llmapi.llm_args": llm_args})
    return True


def setup_trtllm(ctx):
    defaults = dict(TRTLLM_STUB_DEFAULTS, **(ctx.get("trtllm_defaults") or {}))
    stubbed = install_tensorrt_llm_stub(defaults)
    from dynamo.trtllm import args as dargs

    def run(argv, job, ctx):
        config = dargs.parse_args(argv)
        return {
            k: _jsonable(getattr(config, k, None))
            for k in (
                "model",
                "served_model_name",
                "namespace",
                "component",
                "endpoint",
                "disaggregation_mode",
                "tensor_parallel_size",
                "pipeline_parallel_size",
                "expert_parallel_size",
                "max_batch_size",
                "max_num_tokens",
                "max_seq_len",
                "max_beam_width",
                "extra_engine_args",
                "override_engine_args",
                "connector",
            )
        }

    subs = (
        [
            f"tensorrt_llm stub module: llmapi.BuildConfig.model_fields defaults {defaults}"
            + ("" if ctx.get("trtllm_defaults") else " (not recorded from TensorRT-LLM's source)")
        ]
        if stubbed
        else []
    )
    return run, subs, ["ai-dynamo", "tensorrt-llm"]


SETUP = {"vllm": setup_vllm, "sglang": setup_sglang, "frontend": setup_frontend, "trtllm": setup_trtllm}
PROG = {"vllm": "dynamo.vllm", "sglang": "dynamo.sglang", "frontend": "dynamo.frontend", "trtllm": "dynamo.trtllm"}


class _EngineConfigError(Exception):
    pass


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "value") and isinstance(v.value, (str, int)):  # Enum
        return v.value
    if hasattr(v, "model_dump"):
        with contextlib.suppress(Exception):
            return _jsonable(v.model_dump(exclude_defaults=True))
    return str(v)


# ---------------------------------------------------------------- main


def run_job(engine: str, run, job: dict, base_subs: list[str], ctx: dict) -> dict:
    argv = [str(a) for a in job.get("argv", [])]
    additions: list[str] = []
    if engine == "sglang" and not any(a == "--device" or a.startswith("--device=") for a in argv):
        additions = ["--device", "cpu"]
    res = {
        "id": job.get("id"),
        "ok": False,
        "kind": None,
        "error": None,
        "unrecognized": [],
        "additions": additions,
        "substitutions": list(base_subs),
        "warnings": [],
        "where": None,
        "summary": None,
    }
    env_before = dict(os.environ)
    argv0 = sys.argv
    sys.argv = [PROG[engine], *argv]
    cap = _Capture()
    loggers = [logging.getLogger(n) for n in CAPTURED_LOGGERS]
    for lg in loggers:
        lg.addHandler(cap)
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as wlist, contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                res["summary"] = run(argv + additions, job, ctx)
                res["ok"] = True
            except SystemExit as e:
                text = err.getvalue()
                if e.code == 2 and "error:" in text:
                    res["kind"] = "argparse"
                    res["error"] = text.strip().splitlines()[-1]
                    m = _UNRECOG.search(text)
                    if m:
                        res["unrecognized"] = _flags(m.group(1).split())
                else:
                    res["kind"] = "exit"
                    errs = [r.getMessage() for r in cap.records if r.levelno >= logging.ERROR]
                    res["error"] = (errs[-1] if errs else text.strip()[-2000:]) or f"SystemExit({e.code!r})"
                    m1 = _UNRECOG_ONE.search(res["error"])
                    if m1:
                        res["unrecognized"] = _flags([m1.group(1)])
                    m = _UNKNOWN_LIST.search(res["error"])
                    if m:
                        with contextlib.suppress(Exception):
                            import ast

                            res["unrecognized"] = _flags(ast.literal_eval(m.group(1)))
                res["exit_code"] = e.code
            except _EngineConfigError as e:
                cause = e.__cause__
                res["kind"] = "engine_config"
                res["error"] = _fmt_exc(cause)
                res["where"] = _where(cause)
            except Exception as e:
                res["kind"] = _classify(e)
                res["error"] = _fmt_exc(e)
                res["where"] = _where(e)
        res["warnings"] = (
            [f"{r.name}: {r.getMessage()}"[:500] for r in cap.records if r.levelno < logging.ERROR or res["ok"]]
            + [
                f"{w.category.__name__}: {w.message}"[:500]
                for w in wlist
                if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
            ]
        )[:20]
    finally:
        res["seconds"] = round(time.perf_counter() - t0, 4)
        for lg in loggers:
            lg.removeHandler(cap)
        sys.argv = argv0
        os.environ.clear()
        os.environ.update(env_before)
    return res


def materialize_files(root: str, job: dict) -> tuple[list[str], list[str]]:
    """Write the job's mounted files (ConfigMap contents) under `root` and point the argv at them.

    Returns (argv, substitutions). The container reads e.g. /config/engine.yaml from a ConfigMap
    volume; here the same content sits at a temp path that replaces the container path."""
    argv = [str(a) for a in job.get("argv", [])]
    subs = []
    for n, (path, content) in enumerate(sorted((job.get("files") or {}).items())):
        local = os.path.join(root, f"{job.get('id', 'job')}-{n}".replace("/", "_"), os.path.basename(path) or "file")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as f:
            f.write(content)
        for i, tok in enumerate(argv):
            if tok == path:
                argv[i] = local
            elif "=" in tok and tok.split("=", 1)[1] == path:
                argv[i] = tok.split("=", 1)[0] + "=" + local
        subs.append(f"{path} read from the manifest's ConfigMap (written to a temp file)")
    return argv, subs


def main() -> int:
    ap = argparse.ArgumentParser(description="parse Dynamo command lines (JSON on stdin)")
    ap.add_argument("--request", help="read the request from this file instead of stdin")
    opts = ap.parse_args()
    if opts.request:
        with open(opts.request) as f:
            req = json.load(f)
    else:
        req = json.load(sys.stdin)
    jobs = req.get("jobs", [])

    # Our JSON goes to the real stdout; anything the libraries print goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    hf_home = tempfile.mkdtemp(prefix="conformance-hf-")
    stub_notes = build_stub_cache(hf_home, jobs)
    os.environ.update(
        {
            "HF_HOME": hf_home,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_NIXL_SIDE_CHANNEL_HOST": "127.0.0.1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    os.environ.pop("HF_HUB_CACHE", None)
    os.environ.pop("HUGGINGFACE_HUB_CACHE", None)

    ctx = {"deep": bool(req.get("deep")), "trtllm_defaults": req.get("trtllm_defaults") or {}}
    parsers: dict = {}  # parser -> (run, subs, dists) or the import failure
    import_s: dict = {}
    n_ok = 0
    try:
        for job in jobs:
            name = job.get("parser")
            if name not in SETUP:
                emit(
                    {
                        "id": job.get("id"),
                        "ok": False,
                        "kind": "request",
                        "unrecognized": [],
                        "error": f"unknown parser {name!r} (one of {sorted(SETUP)})",
                    }
                )
                continue
            if name not in parsers:  # one import per parser per process
                t0 = time.perf_counter()
                try:
                    parsers[name] = SETUP[name](ctx)
                except BaseException as e:
                    parsers[name] = e
                import_s[name] = round(time.perf_counter() - t0, 2)
            setup = parsers[name]
            if isinstance(setup, BaseException):
                emit(
                    {
                        "id": job.get("id"),
                        "ok": False,
                        "kind": "import",
                        "error": _fmt_exc(setup),
                        "where": _where(setup),
                        "unrecognized": [],
                    }
                )
                continue
            run, subs, _dists = setup
            argv, file_subs = materialize_files(hf_home, job)
            res = run_job(name, run, dict(job, argv=argv), subs + file_subs, ctx)
            models = models_in(argv)
            if models:
                res["stub_models"] = {m: stub_notes.get(m) for m in models}
            n_ok += res["ok"]
            emit(res)
        dists = sorted({d for v in parsers.values() if not isinstance(v, BaseException) for d in v[2]})
        emit(
            {
                "meta": {
                    "import_seconds": import_s,
                    "versions": _versions(dists),
                    "python": sys.version.split()[0],
                    "jobs": len(jobs),
                    "ok": n_ok,
                }
            }
        )
    finally:
        if not req.get("keep_hf_home"):
            import shutil

            shutil.rmtree(hf_home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
