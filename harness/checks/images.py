"""Image checks: every container names a pinned, published image of the right repository,
one Dynamo release per recipe, listed in the version matrix, from an allowed registry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from harness.checks import CheckContext, check
from harness.recipe.findings import Loc, Problem, Severity, display_path, problem
from harness.recipe.images import (
    DYNAMO_PREFIX,
    TOOL_REPOSITORIES,
    ImageRef,
    image_release,
    image_uses,
    intended_release,
    parse_image,
)
from harness.recipe.model import Recipe
from harness.recipe.versions import VERSIONS_FILE, release_matrix
from harness.recipe.workloads import Pod

RUNTIME_REPOSITORY = {"vllm": "vllm-runtime", "sglang": "sglang-runtime", "trtllm": "tensorrtllm-runtime"}
DYNAMO_REPOSITORIES = set(RUNTIME_REPOSITORY.values()) | {"dynamo-frontend", "dynamo-planner"}
KNOWN_WRONG_REPOSITORIES = {
    "trtllm-runtime": "tensorrtllm-runtime",
    "tensorrt-llm-runtime": "tensorrtllm-runtime",
    "vllm-runtime-cuda": "vllm-runtime",
    "frontend": "dynamo-frontend",
}
# Used when neither the run (--registries) nor recipes/versions.yaml says otherwise.
DEFAULT_REGISTRIES = ("nvcr.io", "docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "public.ecr.aws")

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PLACEHOLDER_CHARS = re.compile(r"[${}<>()*\s]")
_PLACEHOLDER_TAGS = {
    "my-tag",
    "mytag",
    "tag",
    "version",
    "your-tag",
    "yourtag",
    "changeme",
    "change-me",
    "todo",
    "tbd",
    "xxx",
    "placeholder",
    "release",
    "dev",
    "test",
    "none",
    "null",
    "undefined",
    "image-tag",
    "<tag>",
}
_LETTER_VERSION = re.compile(r"^v?[a-zA-Z](?:[.-][a-zA-Z])+$")  # x.y.z, X.Y.Z, vX.Y
_FLOATING_TAGS = {"latest", "main", "master", "nightly", "stable", "edge", "head"}


def placeholder_reason(tag: str) -> str:
    """Why a tag is not a real published tag ("" when it looks like one)."""
    if not tag:
        return ""
    low = tag.lower()
    if _PLACEHOLDER_CHARS.search(tag):
        return "an unexpanded placeholder"
    if low in _PLACEHOLDER_TAGS or low.startswith("my-") or low.startswith("your-"):
        return "a placeholder"
    if _LETTER_VERSION.match(tag):
        return "a version placeholder"
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", tag):
        return "a placeholder (an upper-case variable name)"
    return ""


@check("image-reference-pinned")
def image_reference_pinned(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every container (DGD services, perf Job, download Job, EPP) names a pinned reference,
    `[registry/]repository:tag` or `@sha256:<digest>`, with a real tag. `latest` moves under
    you, and placeholders (`my-tag`, `${VERSION}`, `x.y.z`) were shipped upstream: the
    pods never start (ErrImagePull, InvalidImageName).

    A Docker Hub short name is a full reference: Kubernetes resolves a name without a registry
    host to Docker Hub, an official image (`python:3.12-slim`) to `docker.io/library/<name>` and
    a namespaced one (`someorg/tool:1.0`) to `docker.io/someorg/tool:1.0`, both deterministically
    (kubernetes.io/docs/concepts/containers/images, "Image names"). Its tag is checked like any other.

    A recipe that is a template on purpose says so in its README (the recipe's or its model's):
    when a README names the placeholder (`my-tag`, `<IMAGE_TAG>`, `${VERSION}`) or calls the
    image a placeholder to replace, the recipe gets ONE `template` warning instead of an error
    per image. An undocumented placeholder stays an error: the README applies the file as is.

    Fails: `image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:my-tag` (no README mentions it).

    Source: Kubernetes image names (kubernetes.io/docs/concepts/containers/images:
    `[registry/]repository[:tag][@digest]`, no tag = `latest`, which also defaults imagePullPolicy to
    Always; a name with no registry host is pulled from Docker Hub, `library/` added for a one-part
    name, as the container runtimes normalise it: distribution/reference ParseNormalizedNamed); the
    kubelet does not expand `${VAR}` in `image` (InvalidImageName/ErrImagePull). Published tags: NGC
    nvcr.io/nvidia/ai-dynamo/* release tags.
    """
    held: list[tuple[ImageRef, Loc, str, str, Loc]] = []  # documented placeholders: ref, loc, where, token, README line
    example = example_release(recipe, ctx)
    example_repo = RUNTIME_REPOSITORY.get(_framework(recipe), "vllm-runtime")
    for pod in recipe.workloads.pods:
        for c in pod.containers:
            where = pod.label + (f" container {c.name}" if c.name else "")
            image = c.image
            if not isinstance(image, str) or not image.strip():
                yield problem(
                    c.image_loc,
                    f"{where} has no image",
                    f"name a pinned image, e.g. {DYNAMO_PREFIX}{example_repo}:{example}",
                )
                continue
            ref = parse_image(image)
            token = placeholder_token(ref)
            documented = _documented_placeholder(recipe, token) if token else None
            if documented is not None:
                held.append((ref, c.image_loc, where, token, documented))
                continue
            yield from _pinned(ref, c.image_loc, where, example)
    if held:
        ref, loc, _, _, readme = held[0]
        tokens = ", ".join(dict.fromkeys(repr(h[3]) for h in held))
        yield problem(
            loc,
            f"template: {len(held)} image(s) of this recipe use the placeholder {tokens} "
            f"({'; '.join(h[2] for h in held)}), which {display_path(readme.file)}:{readme.line} says to replace",
            f"replace the placeholder with a published tag (e.g. :{example}) before applying, or pin it here",
            Severity.WARNING,
        )


_PLACEHOLDER_PART = re.compile(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*|<[^>]*>")


def placeholder_token(ref: ImageRef) -> str:
    """The placeholder in an image reference (`${VERSION}`, `<IMAGE_TAG>`, `my-tag`), "" when it has none."""
    text = ref.text.strip()
    if _PLACEHOLDER_CHARS.search(text):
        m = _PLACEHOLDER_PART.search(text)
        return m.group(0) if m else (ref.tag or text)
    if ref.digest or not ref.tag or ref.tag.lower() in _FLOATING_TAGS:
        return ""
    return ref.tag if placeholder_reason(ref.tag) else ""


def _documented_placeholder(recipe: Recipe, token: str) -> Loc | None:
    """The README line (the recipe's, then its model's) that documents the placeholder: it names it
    (`:my-tag`, `` `my-tag` ``, `${VERSION}`, `<IMAGE_TAG>`), or calls the image a placeholder."""
    names = [token] if token[:1] in "$<" else [f":{token}", f"`{token}`"]
    readmes = recipe.readmes()
    for path, lines in readmes:
        for n, line in enumerate(lines, 1):
            if any(name in line for name in names):
                return Loc(path, n)
    for path, lines in readmes:
        for n, line in enumerate(lines, 1):
            low = line.lower()
            if "placeholder" in low and "image" in low:
                return Loc(path, n)
    return None


def example_release(recipe: Recipe, ctx: CheckContext) -> str:
    """The release a hint shows as an example tag: the recipe's own (recipe.yaml versions.dynamo), else the
    newest of the release matrix the run judges by (versions.yaml, or the built-in one on a foreign tree)."""
    intended = intended_release(recipe)
    if intended:
        return intended
    matrix, _ = release_matrix(recipe, ctx)
    names = list(matrix.releases) if matrix else []
    return max(names, key=_release_key) if names else "<release>"


def _release_key(name: str) -> tuple:
    """1.10.0 after 1.9.0; a pre-release suffix sorts before its release."""
    parts = re.findall(r"\d+|[a-z]+", name.lower())
    return tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts) + ((1, 0, ""),)


def _pinned(ref: ImageRef, loc: Loc, where: str, example: str) -> Iterator[Problem]:
    hint = f"pin a published release tag (e.g. :{example}) or a @sha256 digest"
    if _PLACEHOLDER_CHARS.search(ref.text.strip()):
        yield problem(
            loc,
            f"image {ref.text!r} of {where} contains an unexpanded placeholder; Kubernetes does not expand it",
            hint,
        )
        return
    if ref.digest:
        if not _DIGEST.match(ref.digest):
            yield problem(
                loc,
                f"image digest {ref.digest!r} of {where} is not sha256:<64 hex>",
                "copy the digest from the registry",
            )
    elif not ref.tag:
        yield problem(loc, f"image {ref.text!r} of {where} has no tag, so it is 'latest'", hint)
    elif ref.tag.lower() in _FLOATING_TAGS:
        yield problem(loc, f"image tag {ref.tag!r} of {where} is not pinned (it moves)", hint)
    else:
        reason = placeholder_reason(ref.tag)
        if reason:
            yield problem(loc, f"image tag {ref.tag!r} of {where} is {reason}, not a published tag", hint)


def _framework(recipe: Recipe) -> str:
    dep = recipe.deployment
    fw = (dep.backend_framework if dep else "") or recipe.framework
    return {"tensorrtllm": "trtllm", "tensorrt-llm": "trtllm"}.get(fw.lower(), fw.lower())


def _is_frontend(pod: Pod) -> bool:
    return pod.service is not None and pod.service.role == "frontend"


@check("image-repository-matches-backend")
def image_repository_matches_backend(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The runtime image must carry the engine named by `backendFramework`:
    `vllm-runtime`, `sglang-runtime` or `tensorrtllm-runtime` (frontend and planner may use
    `dynamo-frontend` / `dynamo-planner`). An upstream recipe used `trtllm-runtime`, which was
    never published, and a vLLM image under a TRT-LLM graph fails at start. A frontend may run
    any published runtime image: `dynamo.frontend` ships in every one of them.

    Fails: `backendFramework: trtllm` with `image: nvcr.io/nvidia/ai-dynamo/trtllm-runtime:1.4.0`.

    Source: NGC repositories published under nvcr.io/nvidia/ai-dynamo/: vllm-runtime, sglang-runtime,
    tensorrtllm-runtime (engine images), dynamo-frontend, dynamo-planner (Dynamo 1.4.0 support matrix /
    NGC catalog); `spec.backendFramework` of the DGD CRD (schemas/dynamo/1.4.0) names the engine the
    workers need. Every runtime image installs the one ai-dynamo wheel, which holds `dynamo.frontend`
    next to `dynamo.vllm`, `dynamo.sglang` and `dynamo.trtllm` (ai-dynamo 1.6.1 wheel RECORD), so the
    frontend starts on any of them.
    """
    framework = _framework(recipe)
    expected = RUNTIME_REPOSITORY.get(framework)
    for use in image_uses(recipe):
        if not use.ref.is_dynamo or use.ref.basename in TOOL_REPOSITORIES:
            continue
        repo = use.ref.dynamo_repository
        fix = (
            f"use {DYNAMO_PREFIX}{expected}:<release>" if expected else "use the runtime image of the recipe's backend"
        )
        if repo in KNOWN_WRONG_REPOSITORIES:
            yield problem(
                use.loc,
                f"{DYNAMO_PREFIX}{repo} is a known-wrong repository name (never published); "
                f"the published one is {KNOWN_WRONG_REPOSITORIES[repo]}",
                f"use {DYNAMO_PREFIX}{KNOWN_WRONG_REPOSITORIES[repo]}",
            )
        elif repo not in DYNAMO_REPOSITORIES:
            yield problem(
                use.loc,
                f"{DYNAMO_PREFIX}{repo} is not a published Dynamo repository "
                f"({', '.join(sorted(DYNAMO_REPOSITORIES))})",
                fix,
            )
        elif repo.endswith("-runtime") and expected and repo != expected and not _is_frontend(use.pod):
            yield problem(
                use.loc, f"{use.where} runs {repo} but backendFramework is {framework} (needs {expected})", fix
            )
        elif use.pod.service is not None and use.pod.service.is_worker and expected and repo != expected:
            yield problem(use.loc, f"worker {use.pod.service.name} runs {repo}, which has no {framework} engine", fix)


@check("image-release-consistent")
def image_release_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every Dynamo image (`nvcr.io/nvidia/ai-dynamo/*`) of a recipe comes from one release:
    frontend, workers, planner and the perf and EPP images talk a release-specific protocol
    over NATS/etcd, and mixed release lines shipped upstream.

    Fails: frontend on `dynamo-frontend:1.1.1`, workers on `vllm-runtime:1.4.0`.

    Source: NVIDIA publishes the Dynamo images per release line
    (nvcr.io/nvidia/ai-dynamo/{vllm,sglang,tensorrtllm}-runtime, dynamo-frontend,
    dynamo-planner:<release>; Dynamo support matrix docs.nvidia.com/dynamo/v1.4.0), and the frontend,
    router and workers of one graph are tested together per release; release parsed from the tag by
    `_RELEASE` in harness/recipe/images.py.
    """
    release, uses = image_release(recipe)
    stated = intended_release(recipe) == release
    for u in uses:
        if u.ref.release != release:
            why = f"recipe.yaml versions.dynamo is {release}" if stated else f"the rest of the recipe uses {release}"
            yield problem(
                u.loc,
                f"{u.where} uses Dynamo release {u.ref.release} but {why}",
                f"use :{release} here, like the recipe's other Dynamo images"
                + (" and recipe.yaml versions.dynamo" if stated else ""),
            )


@check("image-release-in-matrix")
def image_release_in_matrix(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The recipe's Dynamo release is a row of the release matrix (a tag that was never
    published is not) and the metadata's backend version (`versions.backend`) is the one that
    release ships: the engine flags, the sizing and the docs are written for that version.
    The matrix is `recipes/versions.yaml` on a catalogue-convention tree; on a foreign tree it
    is the harness's built-in matrix of every ai-dynamo release whose wheel pins its engines
    (harness/recipe/data/releases.yaml, read from the wheels' METADATA on PyPI).

    Fails: `vllm-runtime:1.3.9` (not in versions.yaml), or `versions.backend: 0.19.0` with
    images of release 1.4.0, which ships vLLM 0.26.0.

    Source: The release matrix: on a catalogue tree recipes/versions.yaml (ours); on a foreign tree
    harness/recipe/data/releases.yaml, read from the ai-dynamo wheels' METADATA on PyPI
    (`Requires-Dist: vllm==0.26.0; extra == 'vllm'` etc. for 1.4.0); `versions.backend` is recipe.yaml
    metadata (ours).
    """
    release, uses = image_release(recipe)
    if not release:
        return
    matrix, source = release_matrix(recipe, ctx.catalogue)
    path = recipe.root / VERSIONS_FILE
    if matrix is None:
        yield problem(
            uses[0].loc,
            f"Dynamo release {release} cannot be checked: {VERSIONS_FILE} is missing or empty",
            f"add {path.name} at the top of the recipes tree (release -> vllm/sglang/trtllm/cuda)",
        )
        return
    seen: set[str] = set()
    for u in uses:
        if u.ref.release not in matrix.releases and u.ref.release not in seen:
            seen.add(u.ref.release)
            known = ", ".join(sorted(matrix.releases)) or "none"
            yield problem(
                u.loc,
                f"Dynamo release {u.ref.release} is not in {source} (known: {known})",
                f"use a published release, or add its row to {VERSIONS_FILE}"
                if ctx.catalogue
                else "use a published Dynamo release",
            )
    row = matrix.release(release)
    meta_versions = recipe.metadata.get("versions")
    backend = meta_versions.get("backend") if isinstance(meta_versions, dict) else None
    framework = recipe.metadata.get("framework") or recipe.framework
    if row is None or backend is None:
        return
    shipped = row.backends.get(str(framework))
    if shipped is None:
        yield problem(
            row.loc,
            f"{VERSIONS_FILE} has no {framework} version for Dynamo {release}",
            f"add `{framework}: <version>` to the {release} row",
        )
    elif str(backend) != shipped:
        yield problem(
            meta_versions.loc_of("backend"),
            f"versions.backend is {backend} but Dynamo {release} ships {framework} {shipped} ({VERSIONS_FILE})",
            f"set versions.backend: {shipped}, or use the images of the release that ships {framework} {backend}",
        )


@check("metadata-dynamo-release", convention=True)
def metadata_dynamo_release(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The metadata's `versions.dynamo` is the release of the recipe's Dynamo images: the
    catalogue table, the version matrix docs and the nightly's image pulls all read it.

    Fails: `versions: {dynamo: 1.1.1}` with `vllm-runtime:1.4.0` images.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    Compares recipe.yaml `versions.dynamo` with the release in the Dynamo image tags
    (`nvcr.io/nvidia/ai-dynamo/<repo>:<release>`, harness/recipe/images.py `image_release`).
    """
    release, uses = image_release(recipe)
    versions = recipe.metadata.get("versions")
    if not release or not isinstance(versions, dict) or "dynamo" not in versions:
        return
    if str(versions["dynamo"]) != release:
        releases = sorted({u.ref.release for u in uses})
        if len(releases) == 1:
            message = f"versions.dynamo is {versions['dynamo']} but the recipe's Dynamo images are release {release}"
            hint = f"set versions.dynamo: {release}, or retag the images to :{versions['dynamo']}"
        else:  # the images disagree among themselves: no single tag to copy here (image-release-consistent)
            message = (
                f"versions.dynamo is {versions['dynamo']} but no Dynamo image carries it "
                f"(the images use {', '.join(releases)})"
            )
            hint = "choose the intended release, then tag every Dynamo image and set versions.dynamo to it"
        yield problem(versions.loc_of("dynamo"), message, hint)


@dataclass(frozen=True)
class RegistryOptions:
    """Options of `image-registry-allowed`."""

    registries: tuple[str, ...] = ()  # allowed registries (--registry); empty: recipes/versions.yaml, else the default


def allowed_registries(recipe: Recipe, ctx: CheckContext) -> tuple[list[str], str]:
    """The allow-list and where it came from: the run's option, versions.yaml, or the default."""
    opt = ctx.options_for(RegistryOptions).registries
    if opt:
        return [r.strip() for r in opt], "the run's registries option"
    matrix, source = release_matrix(recipe, ctx.catalogue)
    if matrix is not None and matrix.registries:
        return matrix.registries, source
    return list(DEFAULT_REGISTRIES), "the built-in default"


def registry_allowed(ref: ImageRef, allowed: list[str]) -> bool:
    name = (
        ref.name
        if ref.registry
        else f"docker.io/{ref.repository if '/' in ref.repository else 'library/' + ref.repository}"
    )
    return any(name == a.rstrip("/") or name.startswith(a.rstrip("/") + "/") for a in allowed)


@check("image-registry-allowed", options=RegistryOptions)
def image_registry_allowed(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Images come only from the registries in the allow-list (`registries` in
    `recipes/versions.yaml`, overridable per run): internal registries leaked into upstream
    recipes, and nobody outside could pull them.

    Fails: `image: gitlab-master.nvidia.com:5005/dl/ai-dynamo/vllm-runtime:1.4.0`.

    Source: Policy, not a Dynamo rule: the allow-list is `registries` in this catalogue's
    recipes/versions.yaml (nvcr.io, docker.io), else the run's `--registry`, else DEFAULT_REGISTRIES in
    harness/checks/images.py (nvcr.io, docker.io, ghcr.io, quay.io, registry.k8s.io, public.ecr.aws).
    The failure it prevents is an image from an internal registry (e.g. gitlab-master.nvidia.com:5005)
    that outside users cannot pull.
    """
    allowed, source = allowed_registries(recipe, ctx)
    for u in image_uses(recipe):
        if _PLACEHOLDER_CHARS.search(u.ref.text.strip()):
            continue  # image-reference-pinned reports it
        if not registry_allowed(u.ref, allowed):
            yield problem(
                u.loc,
                f"image {u.ref.text!r} of {u.where} is not from an allowed registry "
                f"({', '.join(allowed)}, from {source})",
                "use a public registry from the allow-list, or add the registry to `registries` in versions.yaml",
            )
