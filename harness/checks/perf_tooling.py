"""The perf Job's tooling installs and runs in its image: pip can write where it installs AIPerf,
and AIPerf's compiled dependencies can be built on the node's architecture."""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.checks import CheckContext, check
from harness.recipe.commandline import Command
from harness.recipe.container import Container
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.workloads import Pod
from harness.recipe.yamlsrc import as_int, dig, mapping

# AIPerf releases with a dependency that ships no aarch64 wheel, so pip builds it from its sdist
# (a C extension: it needs gcc). aiperf 0.13.0 METADATA: `Requires-Dist: crick~=0.0.8`; PyPI has
# `crick-0.0.8-cp312-cp312-manylinux_2_17_x86_64` and no aarch64 wheel (`pip download crick==0.0.8
# --platform manylinux2014_aarch64 --only-binary=:all:` finds nothing).
NO_ARM64_WHEEL: dict[str, tuple[str, ...]] = {"0.13.0": ("crick~=0.0.8",)}
# GPUs whose host CPU is NVIDIA Grace (Arm Neoverse V2): their nodes are arm64.
ARM64_GPUS = {"GB200", "GB300", "GH200"}
# Official Docker Python images: Python lives in /usr/local, owned by root; `-slim` and `-alpine`
# variants carry no C compiler (docker-library/python Dockerfiles).
PYTHON_IMAGE = re.compile(r"^(?:(?:docker\.io/)?(?:library/)?)python:(?P<tag>[^@\s]+)")
NO_COMPILER_TAG = re.compile(r"(?:^|-)(?:slim|alpine)")
USER_INSTALL = ("--user", "--target", "--prefix", "-t")
ARCH_LABEL = "kubernetes.io/arch"


def _pip_installs(container: Container, package: str) -> list[Command]:
    out = []
    for cmd in container.script.commands:
        words = [w.value for w in cmd.program_words()]
        if (
            "install" in words
            and any(w in ("pip", "pip3") or w.endswith("/pip") or w == "-m" for w in words[:4])
            and any(re.match(rf"^{re.escape(package)}(\W|$)", w) for w in words)
        ):
            out.append(cmd)
    return out


def _creates_venv(container: Container) -> bool:
    return any("venv" in cmd.text or "virtualenv" in cmd.text or "uv " in cmd.text for cmd in container.script.commands)


def _run_as_user(pod: Pod, container: Container) -> tuple[int | None, Loc | None]:
    """runAsUser of the container, else of the pod (None: the image's user)."""
    for ctx in (mapping(container.data.get("securityContext")), mapping(dig(pod.spec, "securityContext"))):
        if ctx is not None and "runAsUser" in ctx:
            return as_int(ctx["runAsUser"]), ctx.loc_of("runAsUser")
    return None, None


def _arch(pod: Pod, recipe: Recipe) -> tuple[str | None, str]:
    """The node architecture the Job may run on: its nodeSelector, else arm64 for a Grace GPU recipe."""
    selector = mapping(dig(pod.spec, "nodeSelector"))
    if selector is not None and isinstance(selector.get(ARCH_LABEL), str):
        return selector[ARCH_LABEL], f"nodeSelector {ARCH_LABEL}: {selector[ARCH_LABEL]}"
    gpu = dig(recipe.metadata, "hardware", "gpu")
    if isinstance(gpu, str) and gpu in ARM64_GPUS:
        return "arm64", f"no {ARCH_LABEL} nodeSelector on a {gpu} (Grace, arm64) cluster"
    return None, ""


def _version(recipe: Recipe, container: Container) -> str | None:
    v = container.env.get("AIPERF_VERSION") or dig(recipe.metadata, "versions", "aiperf")
    return str(v) if v is not None else None


@check("perf-tooling-installs-in-image")
def perf_tooling_installs_in_image(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When the perf Job pip-installs AIPerf, the install can succeed in its image:

    - the user can write where pip installs: an official `python:` image keeps Python in
      /usr/local, owned by root, so `runAsUser` other than 0 needs `pip install --user`,
      `--target`/`--prefix`, or a venv; otherwise pip fails with "Permission denied";
    - on arm64 nodes (`nodeSelector kubernetes.io/arch: arm64`, or a Grace GPU such as GB200
      with no amd64 nodeSelector) AIPerf's dependencies without aarch64 wheels are compiled, so
      the image needs a C compiler: a `-slim` or `-alpine` Python image has none, and the Job
      fails before the benchmark starts.

    Fails: `image: python:3.12.11-slim` in a GB200 recipe's perf Job installing aiperf 0.13.0.
    Fix: the full `python:3.12.11` image (it ships gcc), or `nodeSelector: {kubernetes.io/arch: amd64}`.

    Source: aiperf 0.13.0 METADATA (`Requires-Dist: crick~=0.0.8`); PyPI files of crick 0.0.8
    (x86_64 manylinux wheel only; checked with `pip download crick==0.0.8 --platform
    manylinux2014_aarch64 --only-binary=:all:`); docker-library/python Dockerfiles (Python
    under /usr/local as root; slim and alpine images without gcc); NVIDIA Grace (arm64) hosts
    of GB200.
    """
    pod = recipe.workloads.perf
    found = recipe.workloads.aiperf()
    if pod is None or found is None:
        return
    container = found[0]
    installs = _pip_installs(container, "aiperf")
    if not installs:
        return
    image = str(container.image or "")
    python_image = PYTHON_IMAGE.match(image)
    install = installs[0]
    at = install.words[0].loc
    uid, uid_loc = _run_as_user(pod, container)
    user_install = any(
        w.value in USER_INSTALL or w.value.startswith("--prefix=") or w.value.startswith("--target=")
        for w in install.words
    )
    if python_image and uid not in (None, 0) and not user_install and not _creates_venv(container):
        yield problem(
            uid_loc or at,
            f"the perf Job runs as uid {uid} but pip installs AIPerf into {image}'s /usr/local, "
            "which only root can write: the install fails with Permission denied",
            "drop runAsUser (the python image runs as root), or use pip install --user / a venv",
        )
    arch, why = _arch(pod, recipe)
    version = _version(recipe, container)
    needs_build = NO_ARM64_WHEEL.get(version or "")
    if arch == "arm64" and needs_build and python_image and NO_COMPILER_TAG.search(python_image.group("tag")):
        yield problem(
            container.image_loc,
            f"the perf Job may run on arm64 ({why}) and aiperf {version} needs "
            f"{', '.join(needs_build)}, which has no aarch64 wheel and is compiled there, "
            f"but {image} has no C compiler: pip install fails",
            "use the full python image (it ships gcc), or pin the Job to amd64 nodes "
            f"(nodeSelector: {{{ARCH_LABEL}: amd64}})",
        )
