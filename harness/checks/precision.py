"""Precision versus GPU: the recipe's weight format runs on every GPU the recipe lists, in its engine."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.precision import MIN_CAPABILITY, weight_format
from harness.analysis.sizing import recipe_gpus
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig


@check("precision-supported-by-gpu")
def precision_supported_by_gpu(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The recipe's weight format (recipe.yaml `model.precision`, and the checkpoint's own format
    from models.yaml) runs on its GPU (`hardware.gpu`) and on every `hardware.alternatives`
    entry, in the recipe's engine: otherwise the engine fails at load ("no kernel for this
    architecture") on exactly the hardware the catalogue advertises. Compute capabilities come
    from gpus.yaml (NVIDIA's CUDA GPUs table); the minimum per engine and format is in
    MIN_CAPABILITY (harness/analysis/precision.py), each with its source; a pair without a source is
    not checked.

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
    declared = weight_format(dig(model, "precision"))
    if declared:
        formats.append((declared, "model.precision"))
    facts = catalogue.model(dig(model, "id")) if isinstance(dig(model, "id"), str) else None
    if facts is not None and facts.precision and weight_format(facts.precision) != declared:
        formats.append((weight_format(facts.precision), f"the checkpoint {facts.id} (models.yaml)"))
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
