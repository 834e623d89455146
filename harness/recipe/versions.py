"""The version matrix (`recipes/versions.yaml`): which Dynamo release ships which backend and
CUDA versions, which AIPerf the benchmarks pin, and which registries images may come from.

    registries: [nvcr.io/nvidia/ai-dynamo, docker.io/library]   # host or host/path prefixes
    releases:
      "1.4.0": {vllm: 0.26.0, sglang: 0.5.16, trtllm: 1.3.0rc22,
                cuda: {vllm: "13.0", sglang: "13.0", trtllm: "13.1"}}
    aiperf: 0.13.0

`releases` may also be a list of mappings with a `dynamo` (or `release`) key. `cuda` is one
version for every backend's image, or a mapping per backend (the images of one release differ:
TRT-LLM's ships CUDA 13.1 where vLLM's and SGLang's ship 13.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.recipe.findings import Loc
from harness.recipe.yamlsrc import LoadedFile, SrcMap, load_yaml_file

if TYPE_CHECKING:  # the model does not import this module; a Recipe is only passed in
    from harness.recipe.model import Recipe

VERSIONS_FILE = "versions.yaml"
# The harness's own release matrix (every ai-dynamo release whose wheel pins its engines; provenance
# in the file), used for a tree without the catalogue convention, which has no versions.yaml of its own.
BUILTIN_MATRIX = Path(__file__).resolve().parent / "data" / "releases.yaml"
BACKEND_ALIASES = {
    "vllm": "vllm",
    "sglang": "sglang",
    "trtllm": "trtllm",
    "tensorrtllm": "trtllm",
    "tensorrt-llm": "trtllm",
    "tensorrt_llm": "trtllm",
    "trt-llm": "trtllm",
}


@dataclass
class Release:
    """One Dynamo release line and the versions it ships."""

    dynamo: str
    loc: Loc
    backends: dict[str, str] = field(default_factory=dict)  # vllm|sglang|trtllm -> version
    cuda: dict[str, str] = field(default_factory=dict)  # vllm|sglang|trtllm|"*" (every backend) -> CUDA version

    def cuda_for(self, backend: str) -> str:
        """The CUDA version of this release's image for `backend` ("" when not stated)."""
        b = BACKEND_ALIASES.get(backend.lower(), backend.lower())
        return self.cuda.get(b) or self.cuda.get("*", "")


@dataclass
class VersionMatrix:
    path: Path
    releases: dict[str, Release] = field(default_factory=dict)
    registries: list[str] = field(default_factory=list)
    aiperf: str = ""
    aiperf_loc: Loc | None = None

    def release(self, version: str) -> Release | None:
        return self.releases.get(version)


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def _release(name: str, data: SrcMap, loc: Loc) -> Release:
    rel = Release(name, loc)
    for key, value in data.items():
        k = str(key).lower()
        if k in BACKEND_ALIASES and _text(value):
            rel.backends[BACKEND_ALIASES[k]] = _text(value)
        elif k == "cuda" and isinstance(value, SrcMap):
            rel.cuda.update(
                {BACKEND_ALIASES.get(str(b).lower(), str(b).lower()): _text(v) for b, v in value.items() if _text(v)}
            )
        elif k == "cuda" and _text(value):
            rel.cuda["*"] = _text(value)
        elif isinstance(value, SrcMap) and k in ("backends", "engines"):
            rel.backends.update(_release(name, value, loc).backends)
    return rel


def parse_versions(f: LoadedFile) -> VersionMatrix:
    """Build the matrix from a loaded versions.yaml; unknown keys are ignored (the schema of the
    file is the docs generator's concern), missing ones leave the matrix empty."""
    m = VersionMatrix(f.path)
    data = f.documents[0].data if f.documents else None
    if not isinstance(data, SrcMap):
        return m
    releases = data.get("releases") or data.get("dynamo")
    if isinstance(releases, SrcMap):
        for name, value in releases.items():
            if isinstance(value, SrcMap):
                m.releases[_text(name)] = _release(_text(name), value, releases.key_loc(name))
    elif isinstance(releases, list):
        for i, value in enumerate(releases):
            if isinstance(value, SrcMap):
                name = _text(value.get("dynamo") or value.get("release") or value.get("version"))
                if name:
                    m.releases[name] = _release(name, value, releases.loc_of(i))
    regs = data.get("registries")
    if isinstance(regs, list):
        m.registries = [_text(r.get("prefix") or r.get("registry")) if isinstance(r, dict) else _text(r) for r in regs]
        m.registries = [r for r in m.registries if r]
    aiperf = data.get("aiperf")
    if isinstance(aiperf, SrcMap):
        m.aiperf, m.aiperf_loc = _text(aiperf.get("version")), aiperf.loc_of("version")
    elif _text(aiperf):
        m.aiperf, m.aiperf_loc = _text(aiperf), data.loc_of("aiperf")
    else:
        tools = data.get("tools")
        if isinstance(tools, SrcMap) and _text(tools.get("aiperf")):
            m.aiperf, m.aiperf_loc = _text(tools.get("aiperf")), tools.loc_of("aiperf")
    return m


_PARSED: dict[int, tuple[LoadedFile, VersionMatrix]] = {}


def version_matrix(f: LoadedFile | None) -> VersionMatrix | None:
    """The matrix of a loaded file, parsed once per loaded file; None when there is no file."""
    if f is None or not f.documents:
        return None
    hit = _PARSED.get(id(f))
    if hit is None or hit[0] is not f:
        if len(_PARSED) > 64:
            _PARSED.clear()
        hit = (f, parse_versions(f))
        _PARSED[id(f)] = hit
    return hit[1]


_BUILTIN: list[VersionMatrix] = []


def builtin_matrix() -> VersionMatrix:
    """The built-in release matrix (harness/recipe/data/releases.yaml), parsed once."""
    if not _BUILTIN:
        _BUILTIN.append(parse_versions(load_yaml_file(BUILTIN_MATRIX, BUILTIN_MATRIX.parent)))
    return _BUILTIN[0]


def release_matrix(recipe: Recipe, catalogue: bool) -> tuple[VersionMatrix | None, str]:
    """The release matrix a recipe's images are judged by, and its name for messages: the tree's
    `versions.yaml` on a catalogue-convention tree (None when it is missing), else the built-in
    matrix of every published Dynamo release (harness/recipe/data/releases.yaml)."""
    if catalogue:
        return version_matrix(recipe.load(recipe.root / VERSIONS_FILE)), VERSIONS_FILE
    return builtin_matrix(), f"the built-in release matrix ({BUILTIN_MATRIX.name})"
