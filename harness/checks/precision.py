"""Precision versus GPU: the recipe's weight format runs on every GPU the recipe lists, in its engine."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.sizing import recipe_gpus
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig

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


def _format(text: object) -> str:
    value = str(text or "").strip().lower()
    return ALIASES.get(value, value)


@check("precision-supported-by-gpu")
def precision_supported_by_gpu(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The recipe's weight format (recipe.yaml `model.precision`, and the checkpoint's own format
    from models.yaml) runs on its GPU (`hardware.gpu`) and on every `hardware.alternatives`
    entry, in the recipe's engine: otherwise the engine fails at load ("no kernel for this
    architecture") on exactly the hardware the catalogue advertises. Compute capabilities come
    from gpus.yaml (NVIDIA's CUDA GPUs table); the minimum per engine and format is in
    MIN_CAPABILITY, each with its source; a pair without a source is not checked.

    Fails: a TensorRT-LLM FP8 recipe listing `alternatives: [A100]` (SM 8.0; FP8 needs 8.9),
    or an NVFP4 TensorRT-LLM recipe on H200 (SM 9.0; NVFP4 needs Blackwell).
    Fix: remove the GPU from the list, or give it a recipe with a format it supports.

    Source: NVIDIA CUDA GPUs table (compute capability); TensorRT-LLM support matrix
    (docs/source/reference/support-matrix.md: FP8 on SM 8.9+, NVFP4 on Blackwell); vLLM docs
    features/quantization/fp8.md (FP8 W8A8 on SM 8.9+, weight-only FP8 Marlin from SM 7.5).
    """
    dep = recipe.deployment
    engine = (dep.backend_framework if dep is not None and dep.backend_framework else "") or recipe.framework
    model = recipe.metadata.get("model")
    formats: list[tuple[str, str]] = []
    declared = _format(dig(model, "precision"))
    if declared:
        formats.append((declared, "model.precision"))
    facts = catalogue.model(dig(model, "id")) if isinstance(dig(model, "id"), str) else None
    if facts is not None and facts.precision and _format(facts.precision) != declared:
        formats.append((_format(facts.precision), f"the checkpoint {facts.id} (models.yaml)"))
    for gpu_name, where in recipe_gpus(recipe):
        gpu = catalogue.gpu(gpu_name)
        if gpu is None or gpu.compute_capability is None:
            continue  # weights-fit-gpu reports a GPU missing from the catalogue
        for fmt, source in formats:
            rule = MIN_CAPABILITY.get((engine, fmt))
            if rule is None or gpu.compute_capability >= rule[0]:
                continue
            have = ".".join(map(str, gpu.compute_capability))
            need = ".".join(map(str, rule[0]))
            yield problem(
                where,
                f"{gpu_name} (compute capability {have}) cannot run {fmt} ({source}) in {engine}: {rule[1]} "
                f"(needs {need})",
                f"remove {gpu_name} from the recipe's hardware, or use a {engine} format it supports",
                Severity.ERROR,
            )
