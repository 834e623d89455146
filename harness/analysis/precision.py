"""Which GPUs run a weight format in an engine: the lowest compute capability per (engine, format), each
with its source. Read by the precision check and by `recipe-harness derive`'s refusals."""

from __future__ import annotations

from harness.recipe.catalogue import GpuFacts

# The lowest compute capability on which each engine runs a weight format, only where a source says
# so (a format/engine pair not listed gives no finding: never stricter than the engine).
#   bf16: BF16 tensor-core arithmetic starts with Ampere (SM 8.0); vLLM refuses bfloat16 below it
#         ("Bfloat16 is only supported on GPUs with compute capability of at least 8.0").
#   fp8, TensorRT-LLM: FP8 kernels need Ada/Hopper/Blackwell, SM 8.9+ (TensorRT-LLM support matrix).
#   fp8, vLLM: W8A8 needs SM 8.9+, but FP8 checkpoints run weight-only (W8A16) through FP8 Marlin
#         from SM 7.5 (vLLM docs features/quantization/fp8.md), so only below 7.5 is it an error.
#   nvfp4, TensorRT-LLM: NVFP4 kernels exist for Blackwell only, SM 10.0+ (TensorRT-LLM support matrix).
MIN_CAPABILITY: dict[tuple[str, str], tuple[tuple[int, int], str]] = {
    ("vllm", "bf16"): ((8, 0), "BF16 needs Ampere (SM 8.0) or newer"),
    ("sglang", "bf16"): ((8, 0), "BF16 needs Ampere (SM 8.0) or newer"),
    ("trtllm", "bf16"): ((8, 0), "BF16 needs Ampere (SM 8.0) or newer"),
    ("trtllm", "fp8"): ((8, 9), "TensorRT-LLM's FP8 kernels need Ada, Hopper or Blackwell (SM 8.9+)"),
    ("vllm", "fp8"): ((7, 5), "vLLM runs FP8 weight-only through FP8 Marlin from SM 7.5"),
    ("trtllm", "nvfp4"): ((10, 0), "TensorRT-LLM's NVFP4 kernels need Blackwell (SM 10.0+)"),
}
ALIASES = {"bfloat16": "bf16", "fp8_e4m3": "fp8", "float8": "fp8", "fp4": "nvfp4"}


def weight_format(text: object) -> str:
    value = str(text or "").strip().lower()
    return ALIASES.get(value, value)


def unsupported(engine: str, fmt: str, gpu: GpuFacts) -> str | None:
    """Why `gpu` cannot run weight format `fmt` in `engine` ("H100 (compute capability 9.0) ..."), or None
    when it can or no source says otherwise."""
    rule = MIN_CAPABILITY.get((engine, weight_format(fmt)))
    if rule is None or gpu.compute_capability is None or gpu.compute_capability >= rule[0]:
        return None
    have = ".".join(map(str, gpu.compute_capability))
    need = ".".join(map(str, rule[0]))
    return (
        f"{gpu.name} (compute capability {have}) cannot run {weight_format(fmt)} in {engine}: {rule[1]} (needs {need})"
    )
