"""Engine flags and features against the release of the image a worker pins: a flag its Dynamo release does
not have yet, a feature its engine version does not ship yet."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.analysis.topology import VLLM_ROLE_FLAG, VLLM_ROLE_FLAG_SINCE, service_image_release, workers
from harness.checks import CheckContext, check
from harness.recipe.commandline import expand_script_vars
from harness.recipe.findings import Problem, problem
from harness.recipe.images import parse_image, release_tuple
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.versions import builtin_matrix, release_matrix


@dataclass(frozen=True)
class FlagSince:
    """A flag of a `dynamo.<engine>` entry point and the first Dynamo release whose parser accepts it."""

    engine: str
    flag: str
    since: tuple[int, ...]
    instead: str  # what the older release takes instead


FLAGS_SINCE = (FlagSince("vllm", VLLM_ROLE_FLAG, VLLM_ROLE_FLAG_SINCE, "--is-prefill-worker (decode: no flag)"),)


@dataclass(frozen=True)
class EngineFeature:
    """A Dynamo option whose feature needs a minimum engine version inside the image."""

    engine: str
    flag: str  # the option that turns the feature on (a value other than 0)
    unless: str  # an option under which the feature takes another path
    minimum: tuple[int, ...]
    what: str


# dynamo.vllm `--multimodal-embedding-cache-capacity-gb` > 0 without `--route-to-encoder` configures vLLM's
# ECTransferConfig with ec_role "ec_both" (ai-dynamo/dynamo components/src/dynamo/vllm/main.py, v1.0.0), whose
# connector needs vLLM 0.17.0 (multimodal_utils/multimodal_embedding_cache_connector.py MINIMUM_VLLM_VERSION;
# docs/features/multimodal/embedding-cache.md "This support requires vLLM 0.17.0 or newer").
ENGINE_FEATURES = (
    EngineFeature(
        "vllm",
        "--multimodal-embedding-cache-capacity-gb",
        "--route-to-encoder",
        (0, 17, 0),
        "the aggregated embedding cache (vLLM ECConnector role ec_both)",
    ),
)


def _text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@check("flags-in-image-release")
def flags_in_image_release(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A worker passes only flags that the `dynamo.<engine>` of its image's Dynamo release accepts:
    a flag added in a later release makes the parser exit with "unrecognized arguments" and the pod
    crash-loop. Judged by the release tag of a Dynamo runtime image (`vllm-runtime:0.8.0`); a custom
    or placeholder image is not judged.

    Fails: `--disaggregation-mode prefill` on `nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.0`.
    Fix: `--is-prefill-worker` on that image (or an image of Dynamo 1.0.0 or later).

    Source: ai-dynamo/dynamo tags: v0.9.1 components/src/dynamo/vllm/args.py (`--is-prefill-worker`,
    `--is-decode-worker`, then vLLM's FlexibleArgumentParser.parse_args, which rejects unknown words),
    v1.0.0 components/src/dynamo/vllm/backend_args.py (adds `--disaggregation-mode`).
    """
    for svc, _ in workers(recipe):
        release = service_image_release(svc)
        if release is None:
            continue
        for row in FLAGS_SINCE:
            found = svc.flags.get(row.flag) if svc.engine == row.engine else None
            if found is None or release >= row.since:
                continue
            yield problem(
                found.flag.loc,
                f"worker {svc.name}: {row.flag} is not a flag of dynamo.{row.engine} in Dynamo {_text(release)} "
                f"(image {svc.main.image}); it arrived in {_text(row.since)}: the parser exits with "
                "'unrecognized arguments'",
                f"use {row.instead} on this image, or an image of Dynamo {_text(row.since)} or later",
            )


def _enabled(svc: Service, flag: str) -> bool:
    found = svc.flags.get(flag)
    if found is None or svc.main is None:
        return False
    value = expand_script_vars(found.value.value, svc.main.script, svc.main).strip().strip("\"'")
    try:
        return float(value) != 0
    except ValueError:
        return "$" not in value  # a value the tree does not resolve: not judged


@check("engine-features-in-image")
def engine_features_in_image(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A feature a worker turns on is supported by the engine version its image ships: the release
    matrix (the tree's versions.yaml, or the built-in one of every published Dynamo release) says which
    vLLM, SGLang or TRT-LLM a Dynamo release's runtime image carries (the built-in one for a release the
    tree's matrix does not list). An older engine lacks the
    feature and the worker fails or silently runs without it.

    Fails: `--multimodal-embedding-cache-capacity-gb 4` on `vllm-runtime:1.0.0`, which ships vLLM
    0.16.0: the aggregated embedding cache needs vLLM 0.17.0.
    Fix: an image of a Dynamo release that ships vLLM 0.17.0 or later (Dynamo 1.1.0 ships 0.19.0).

    Source: ai-dynamo/dynamo components/src/dynamo/vllm/main.py (ec_both ECTransferConfig when the cache
    capacity is above 0 and the worker does not route to an encoder) and
    multimodal_utils/multimodal_embedding_cache_connector.py (MINIMUM_VLLM_VERSION 0.17.0),
    docs/features/multimodal/embedding-cache.md; the engine pins of each release: the ai-dynamo
    wheels' Requires-Dist (harness/recipe/data/releases.yaml).
    """
    matrix, _ = release_matrix(recipe, ctx.catalogue)
    published = builtin_matrix()  # a release the tree's versions.yaml does not list still ships its engines
    for svc, _ in workers(recipe):
        if svc.main is None:
            continue
        ref = parse_image(str(svc.main.image or ""))
        row = None
        if ref.is_dynamo and ref.release:
            row = (matrix.release(ref.release) if matrix else None) or published.release(ref.release)
        for feature in ENGINE_FEATURES:
            if svc.engine != feature.engine or row is None or not _enabled(svc, feature.flag):
                continue
            if svc.flags.get(feature.unless) is not None:
                continue
            shipped = release_tuple(row.backends.get(feature.engine, ""))
            if shipped is None or shipped >= feature.minimum:
                continue
            found = svc.flags.get(feature.flag)
            yield problem(
                found.flag.loc,
                f"worker {svc.name}: {feature.flag} turns on {feature.what}, which needs {feature.engine} "
                f"{_text(feature.minimum)}, but Dynamo {ref.release}'s image ships {feature.engine} "
                f"{row.backends[feature.engine]}",
                f"use an image whose release ships {feature.engine} {_text(feature.minimum)} or later",
            )
