"""Container images of a recipe: references parsed, where each is written and what runs it, and the
Dynamo release the images agree on (read by `Recipe.release`)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.recipe.findings import Loc

if TYPE_CHECKING:  # the model reads the release from here (Recipe.release); recipes are only passed in
    from harness.recipe.container import Container
    from harness.recipe.model import Recipe
    from harness.recipe.workloads import Pod

DYNAMO_PREFIX = "nvcr.io/nvidia/ai-dynamo/"
DYNAMO_PATH = "nvidia/ai-dynamo/"  # NGC's path, which registry mirrors keep (kustomize/components/registry-mirror)
# Tools NVIDIA publishes under nvcr.io/nvidia/ai-dynamo/ with their own version line, not a Dynamo release:
# AIPerf's image (`aiperf:0.11.0` in upstream's recipes/glm-5.2/perf/perf.yaml, whose README says the Job
# runs it directly; other trees use 0.7.0 and 0.12.0).
TOOL_REPOSITORIES = {"aiperf"}
_RELEASE = re.compile(r"^v?(\d+\.\d+\.\d+(?:(?:\.post|\.dev|rc|-rc\.?|\.rc)\d+)?)")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: [registry/]repository[:tag][@digest]."""

    text: str
    registry: str
    repository: str
    tag: str
    digest: str

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def basename(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    @property
    def dynamo_repository(self) -> str:
        """The repository below `nvidia/ai-dynamo/` ("" for another image): on nvcr.io, or on a registry
        mirror that keeps NGC's path (a pull-through cache may put a project in front of it, e.g.
        `harbor.example.com/nvcr/nvidia/ai-dynamo/vllm-runtime`): the same image, the same release."""
        path = "/" + self.repository
        at = path.find("/" + DYNAMO_PATH)
        return path[at + 1 + len(DYNAMO_PATH) :] if at >= 0 and (self.registry or at > 0) else ""

    @property
    def is_dynamo(self) -> bool:
        return bool(self.dynamo_repository)

    @property
    def release(self) -> str:
        m = _RELEASE.match(self.tag)
        return m.group(1) if m else ""


def release_tuple(release: str) -> tuple[int, ...] | None:
    """A release's (major, minor, patch): `0.8.1.post1` -> (0, 8, 1); None for "" or a text that is not one."""
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", release)
    return tuple(int(g) for g in m.groups()) if m else None


def parse_image(text: str) -> ImageRef:
    rest, _, digest = text.strip().partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = ""
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    registry, _, repository = rest.partition("/")
    if not repository or not ("." in registry or ":" in registry or registry == "localhost"):
        registry, repository = "", rest
    return ImageRef(text, registry, repository, tag, digest)


@dataclass(frozen=True)
class ImageUse:
    """One container's image, where it is written, and what runs it."""

    ref: ImageRef
    loc: Loc
    pod: Pod
    container: Container

    @property
    def where(self) -> str:
        return self.pod.label + (f" container {self.container.name}" if self.container.name else "")


def image_uses(recipe: Recipe) -> list[ImageUse]:
    """Every container image of the recipe that is a non-empty string."""
    out = []
    for pod in recipe.workloads.pods:
        for c in pod.containers:
            if isinstance(c.image, str) and c.image.strip():
                out.append(ImageUse(parse_image(c.image), c.image_loc, pod, c))
    return out


def intended_release(recipe: Recipe) -> str:
    """recipe.yaml's `versions.dynamo` (catalogue convention; empty on a foreign tree or when unset). A
    kustomize overlay has no recipe.yaml of its own: the release is that of the recipe whose deploy.yaml
    its build renders (its base states the images it meant)."""
    meta = recipe.metadata
    if not meta and recipe.kustomize_build is not None:
        for src in sorted(recipe.kustomize_build.sources):
            loaded = recipe.load(src.parent / "recipe.yaml") if src.name == "deploy.yaml" else None
            if loaded is not None and loaded.documents and isinstance(loaded.documents[0].data, dict):
                meta = loaded.documents[0].data
                break
    versions = meta.get("versions")
    value = versions.get("dynamo") if isinstance(versions, dict) else None
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) else ""


def image_release(recipe: Recipe) -> tuple[str, list[ImageUse]]:
    """The release of the recipe's Dynamo images and those images ("" when no Dynamo image carries a release
    tag): recipe.yaml's `versions.dynamo` when an image carries it (the author's stated intent, so the image
    that differs from it is the one to fix), else the most common one, the workers' on a tie. A model download
    Job's image is not one of them: it runs `hf download` and talks to no frontend or worker.
    `Recipe.release` reads it first."""
    downloads = recipe.workloads.downloads  # `hf download` talks to no Dynamo component: its image is any tool image
    uses = [
        u
        for u in image_uses(recipe)
        if u.ref.is_dynamo
        and u.ref.release
        and u.ref.basename not in TOOL_REPOSITORIES
        and not any(u.pod is d for d in downloads)
    ]
    if not uses:
        return "", []
    counts = Counter(u.ref.release for u in uses)
    intended = intended_release(recipe)
    if intended in counts:
        return intended, uses
    workers = [u.ref.release for u in uses if u.pod.service is not None and u.pod.service.is_worker]
    top = max(counts.values())
    tied = [r for r, n in counts.items() if n == top]
    release = next((r for r in workers if r in tied), tied[0])
    return release, uses
