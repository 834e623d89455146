"""What the rehearsal keeps of a recipe's command lines: the frontend flags and env the sim itself
controls, the engine flags (and TRT-LLM engine-config keys) the mocker models, the flags that carry
identity or role, and why the rest is dropped (harness/run/sim/plan.py applies them)."""

from __future__ import annotations

import re

ENGINE_TYPES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}

# Set by the local deployer (ports, discovery, transport): a recipe value would break the rehearsal.
FRONTEND_CONTROLLED = {
    "--http-host": "the sim binds 127.0.0.1",
    "--http-port": "the sim picks a free port",
    "--discovery-backend": "the sim uses file discovery in a private directory",
    "--request-plane": "the sim uses the tcp request plane",
    "--event-plane": "the sim uses the zmq event plane",
    "--namespace": "one private discovery store per rehearsal already isolates it",
    "--namespace-prefix": "one private discovery store per rehearsal already isolates it",
    "--tls-cert-path": "the sim serves plain HTTP on loopback",
    "--tls-key-path": "the sim serves plain HTTP on loopback",
    "--kserve-grpc-server": "the smoke suite and AIPerf use the OpenAI HTTP API",
    "--grpc-metrics-port": "the smoke suite and AIPerf use the OpenAI HTTP API",
    "--model-name": "the frontend discovers the model from the mocker workers",
    "--model-path": "a GPU-side path; the frontend discovers the model from the mocker workers",
    "--dump-config-to": "a path inside the pod",
    "--interactive": "the sim runs the frontend as an HTTP server",
    "-i": "the sim runs the frontend as an HTTP server",
}
CONTROLLED_ENV = re.compile(
    r"^DYN_(DISCOVERY_BACKEND|FILE_KV|REQUEST_PLANE|EVENT_PLANE|TCP_.*|SYSTEM_.*|HTTP_.*|NAMESPACE.*|MODEL_NAME|MODEL_PATH|KSERVE_.*|GRPC_.*)$"
)

# Recipe engine flag -> mocker flag, per framework: the only engine settings the mocker models.
MOCKER_EQUIVALENTS: dict[str, dict[str, str]] = {
    "vllm": {
        "--data-parallel-size": "--data-parallel-size",
        "--block-size": "--block-size",
        "--max-num-seqs": "--max-num-seqs",
        "--max-num-batched-tokens": "--max-num-batched-tokens",
        "--max-model-len": "--max-model-len",
        "--kv-cache-dtype": "--kv-cache-dtype",
        "--enable-prefix-caching": "--enable-prefix-caching",
        "--no-enable-prefix-caching": "--no-enable-prefix-caching",
        "--enable-chunked-prefill": "--enable-chunked-prefill",
        "--no-enable-chunked-prefill": "--no-enable-chunked-prefill",
    },
    "sglang": {
        "--dp": "--data-parallel-size",
        "--dp-size": "--data-parallel-size",
        "--data-parallel-size": "--data-parallel-size",
        "--page-size": "--block-size",
        "--max-running-requests": "--max-num-seqs",
        "--chunked-prefill-size": "--sglang-chunked-prefill-size",
        "--max-prefill-tokens": "--sglang-max-prefill-tokens",
        "--schedule-policy": "--sglang-schedule-policy",
        "--schedule-conservativeness": "--sglang-schedule-conservativeness",
        "--kv-cache-dtype": "--kv-cache-dtype",
    },
    "trtllm": {
        "--kv-block-size": "--block-size",
        "--max-batch-size": "--max-num-seqs",
        "--max-num-tokens": "--max-num-batched-tokens",
    },
}
# TRT-LLM engine config (ConfigMap YAML) keys -> mocker flag.
TRTLLM_CONFIG_EQUIVALENTS = {
    "max_batch_size": "--max-num-seqs",
    "max_num_tokens": "--max-num-batched-tokens",
    "tokens_per_block": "--block-size",
    "kv_cache_config.tokens_per_block": "--block-size",
}
MOCKER_BOOLEAN = {
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
}
MOCKER_CHOICES = {
    "--kv-cache-dtype": {"auto", "bfloat16", "fp8", "fp8_ds_mla", "fp8_e4m3", "fp8_e5m2", "fp8_inc"},
    "--sglang-schedule-policy": {"fifo", "fcfs", "lpm"},
}
MOCKER_INTEGER = {
    "--data-parallel-size",
    "--block-size",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--max-model-len",
    "--sglang-chunked-prefill-size",
    "--sglang-max-prefill-tokens",
}

# Flags that carry identity or role: consumed by the plan, not reported as dropped.
IDENTITY_FLAGS = {
    "--model",
    "--model-path",
    "--served-model-name",
    "--disaggregation-mode",
    "--is-prefill-worker",
    "--is-decode-worker",
    "--extra-engine-args",
    "--override-engine-args",
}

DROP_REASONS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"^--(tensor|pipeline|expert)-parallel|^--(tp|pp|ep)(-size)?$|^--enable-(expert-parallel|dp-attention|attention-dp)$|^--moe-|^--enable-eplb|^--ep-|^--nnodes$|^--node-rank$|^--dist-init-addr$|^--data-parallel-(size-local|rank|address|rpc-port|start-rank|hybrid-lb|backend)$|^--gpus-per-node$"
        ),
        "GPU parallelism: the mocker does not model TP/PP/EP; one mocker process stands for one replica",
    ),
    (
        re.compile(r"memory|mem-fraction|^--swap-space$|^--cpu-offload"),
        "GPU memory sizing: only the mocker's AIC model reads it, the default timing model does not",
    ),
    (
        re.compile(
            r"disaggregation-(transfer-backend|bootstrap|ib-device)|^--kv-transfer-config$|^--connector$|^--kv-events-config$|nixl|^--publish-events-and-metrics$|^--publish-kv-events$"
        ),
        "KV transfer or event transport: the mocker simulates transfers and publishes KV events itself",
    ),
    (
        re.compile(
            r"cuda-graph|^--enforce-eager$|^--attention-backend$|^--attn-backend$|compile|^--quantization$|^--quant|^--dtype$|^--torch-dtype$|^--load-format$|^--trust-remote-code$|^--enable-torch-compile$|^--disable-"
        ),
        "kernel, precision or loading option: there are no kernels or weights in the mocker",
    ),
    (
        re.compile(
            r"^--(host|port)$|^--tokenizer|^--download-dir$|^--revision$|^--skip-tokenizer-init$|^--served-model"
        ),
        "pod-local path or address: the sim sets its own",
    ),
    (
        re.compile(r"^--(context-length|max-seq-len)$"),
        "sequence-length cap: the mocker enforces one only for engine type vllm",
    ),
    (
        re.compile(r"speculative|^--spec|^--num-speculative|^--mtp"),
        "speculative decoding: not modelled by the mocker's default timing model",
    ),
]
DEFAULT_DROP_REASON = "engine option the mocker cannot express"
