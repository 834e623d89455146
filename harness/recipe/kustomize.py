"""Kustomize the way users run it: find the kustomizations of a tree, build each with the real kustomize,
and hand back the rendered objects with every node's position in the source file that produced it.

Public API (what discovery, the checks and the overlays use):

- `locate() -> Kustomize | None`: the kustomize to run (see `locate` for the order), or None.
- `build(directory, runner=None) -> Build`: `kustomize build` of one kustomization directory; `Build.ok`,
  `Build.error` (kustomize's own message), `Build.documents` (the rendered objects, as `Document`s whose
  nodes point at the base file line, or at the patch that set the value).
- `scan(root) -> KustomizeTree`: every kustomization below a tree, its buildable roots, and the files that
  are patches, Component parts or resources (never checked as whole objects on their own).
- `setup(progress) -> Path`: build kustomize into the cache with the Go toolchain (`go install`).

Sources: kustomize v5.8.0 (`sigs.k8s.io/kustomize/kustomize/v5`): `buildMetadata: [originAnnotations,
transformerAnnotations]` writes `config.kubernetes.io/origin` (the file a resource came from, relative to the
kustomization that asked) and `alpha.config.kubernetes.io/transformations` (the kustomization that configured
each patch applied to it); the kustomization fields read here are those of api/types/kustomization.go
(`resources`, `bases`, `components`, `patches`, `patchesStrategicMerge`, `patchesJson6902`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from harness.recipe.cachedir import cache_dir
from harness.recipe.findings import Loc
from harness.recipe.yamlsrc import Document, LoadedFile, SrcList, SrcMap, load_yaml_file, parse_yaml_bytes

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
COMPONENT_KIND = "Component"
ENV_BINARY = "RECIPE_HARNESS_KUSTOMIZE"  # a kustomize binary to use before any other
VERSION = "v5.8.0"  # the version `setup` builds
MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
SETUP_COMMAND = "recipe-harness cluster setup"  # builds kustomize into the cache too (needs Go)
ORIGIN = "config.kubernetes.io/origin"
TRANSFORMATIONS = "alpha.config.kubernetes.io/transformations"
BUILD_TIMEOUT_S = 60
_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "node_modules"}


# --- locating and building kustomize ---------------------------------------------------------------


@dataclass(frozen=True)
class Kustomize:
    """A kustomize that runs: `argv + [dir]` builds `dir` and prints the objects."""

    argv: tuple[str, ...]  # ("/usr/local/bin/kustomize", "build") or ("kubectl", "kustomize")
    version: str  # "v5.8.0"
    source: str  # how it was found: "PATH", "RECIPE_HARNESS_KUSTOMIZE", "cache", "kubectl"

    def describe(self) -> str:
        return f"kustomize {self.version} ({' '.join(self.argv)}, from {self.source})"


def cache_bin() -> Path:
    """`$RECIPE_HARNESS_CACHE/bin`, default `~/.cache/recipe-harness/bin`: where `setup` installs kustomize."""
    return cache_dir("bin")


def _binary_version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v?\d+\.\d+\.\d+\S*", out.stdout)
    return (m.group(0) if m.group(0).startswith("v") else "v" + m.group(0)) if out.returncode == 0 and m else None


def _kubectl_version() -> str | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=20)
        version = json.loads(out.stdout).get("kustomizeVersion") if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError):
        return None
    return version if isinstance(version, str) and version else None


def locate() -> Kustomize | None:
    """The kustomize to run, None when there is none:
    1. `$RECIPE_HARNESS_KUSTOMIZE` (a binary named explicitly wins);
    2. `kustomize` on PATH;
    3. the cached build, `~/.cache/recipe-harness/bin/kustomize` (`setup`, run by `recipe-harness cluster setup`);
    4. `kubectl kustomize`, when `kubectl version --client` names the kustomize built into it."""
    return _locate(os.environ.get(ENV_BINARY, ""), os.environ.get("PATH", ""), str(cache_bin()))


@cache
def _locate(env_binary: str, path_var: str, cached: str) -> Kustomize | None:  # keyed by what it reads
    candidates = [(env_binary, ENV_BINARY)] if env_binary else []
    on_path = shutil.which("kustomize", path=path_var)
    candidates += [(on_path, "PATH")] if on_path else []
    candidates.append((os.path.join(cached, "kustomize"), "cache"))
    for binary, source in candidates:
        if os.access(binary, os.X_OK):
            version = _binary_version(binary)
            if version:
                return Kustomize((binary, "build"), version, source)
    version = _kubectl_version()
    if version:
        return Kustomize((shutil.which("kubectl") or "kubectl", "kustomize"), version, "kubectl")
    return None


def missing_reason() -> str:
    return (
        f"no kustomize found (${ENV_BINARY}, `kustomize` on PATH, {cache_bin() / 'kustomize'}, "
        f"or `kubectl kustomize`): `{SETUP_COMMAND}` builds kustomize {VERSION} with Go"
    )


class SetupError(RuntimeError):
    """kustomize could not be built (no Go, no module proxy); the message says which."""


def setup(progress: Callable[[str], None] = lambda _m: None) -> Path:
    """`GOBIN=<cache>/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0` (about a minute, once);
    returns the binary. An existing binary of that version is kept."""
    target = cache_bin() / "kustomize"
    if os.access(target, os.X_OK) and _binary_version(str(target)) == VERSION:
        progress(f"kustomize {VERSION}: cached at {target}")
        return target
    go = shutil.which("go")
    if not go:
        raise SetupError(f"kustomize {VERSION} is built with Go, and `go` is not on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"kustomize {VERSION}: go install {MODULE}@{VERSION} -> {target}")
    env = {**os.environ, "GOBIN": str(target.parent), "GOFLAGS": "-mod=mod"}
    try:
        out = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"], env=env, capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"go install {MODULE}@{VERSION} failed: {exc}") from exc
    if out.returncode != 0 or not os.access(target, os.X_OK):
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        raise SetupError(f"go install {MODULE}@{VERSION} failed: {' | '.join(tail)}")
    _locate.cache_clear()
    return target


# --- the kustomizations of a tree ---------------------------------------------------------------


@dataclass
class Kustomization:
    """One kustomization file and what it names (paths resolved; remote URLs left out)."""

    file: Path
    kind: str  # "Kustomization" or "Component"
    resources: list[Path] = field(default_factory=list)  # files and directories (`resources`, `bases`)
    components: list[Path] = field(default_factory=list)
    patch_files: list[Path] = field(default_factory=list)  # `patches[].path`, `patchesStrategicMerge`, 6902
    loaded: LoadedFile | None = None

    @property
    def directory(self) -> Path:
        return self.file.parent

    @property
    def component(self) -> bool:
        return self.kind == COMPONENT_KIND


@dataclass
class KustomizeTree:
    """The kustomizations below a tree, which of them are built, and the files they consume."""

    kustomizations: dict[Path, Kustomization]  # by directory
    roots: list[Path]  # the directories built as a whole (see `scan`)
    patches: set[Path]  # patch files and every YAML file of a Component's directory: never whole objects
    resources: set[Path]  # YAML files that are resources of a kustomization: checked through its build

    def consumed(self, path: Path) -> bool:
        """A file that is a patch, a Component's part or a kustomization's resource (not a whole object alone)."""
        return path in self.patches or path in self.resources

    def reached(self, directory: Path, seen: set[Path] | None = None) -> set[Path]:
        """Every file a kustomization reaches through its resources and components, recursively, and the
        directory of every kustomization on the way (its kustomization file, openapi schema, generator inputs)."""
        seen = seen if seen is not None else set()
        k = self.kustomizations.get(directory)
        if k is None or directory in seen:
            return set()
        seen.add(directory)
        out: set[Path] = {directory, *k.patch_files}  # the directory: its kustomization and what it reads
        for p in [*k.resources, *k.components]:
            out |= self.reached(p, seen) if p in self.kustomizations else {p}
        return out


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def _is_remote(ref: str) -> bool:
    return "://" in ref or ref.startswith(("github.com/", "git@", "gitlab.com/", "bitbucket.org/"))


def read_kustomization(file: Path, root: Path | None = None) -> Kustomization:
    """The kustomization's kind and the local paths it names (unreadable ones are left for kustomize to report)."""
    loaded = load_yaml_file(file, root)
    data = loaded.documents[0].data if loaded.documents else None
    k = Kustomization(file, "Kustomization", loaded=loaded)
    if not isinstance(data, dict):
        return k
    if data.get("kind") == COMPONENT_KIND:
        k.kind = COMPONENT_KIND
    here = file.parent

    def local(ref: Any) -> Path | None:
        if not isinstance(ref, str) or not ref.strip() or _is_remote(ref.strip()):
            return None
        return Path(os.path.normpath(here / ref.strip()))

    for key in ("resources", "bases"):
        k.resources += [p for p in map(local, _items(data.get(key))) if p]
    k.components += [p for p in map(local, _items(data.get("components"))) if p]
    for entry in _items(data.get("patches")) + _items(data.get("patchesJson6902")):
        if isinstance(entry, dict) and (p := local(entry.get("path"))):
            k.patch_files.append(p)
    for entry in _items(data.get("patchesStrategicMerge")):
        if isinstance(entry, str) and "\n" not in entry and (p := local(entry)):  # a file, not an inline patch
            k.patch_files.append(p)
    return k


def _items(value: Any) -> list:
    return list(value) if isinstance(value, list) else []


def _walk_dirs(root: Path) -> Iterator[Path]:
    for here, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        yield Path(here)


def _yaml_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    except OSError:
        return []


def scan(root: Path) -> KustomizeTree:
    """Every kustomization below `root`. Its roots are the non-Component kustomizations that no other
    kustomization of the tree names as a resource: overlays, and standalone bases. A base an overlay uses
    is checked through that overlay (building it again alone would report each of its defects twice).
    Patch files and every YAML file of a Component's directory are `patches`; the files kustomizations
    name as resources are `resources`."""
    root = root.absolute()
    found: dict[Path, Kustomization] = {}
    for d in _walk_dirs(root):
        f = kustomization_file(d)
        if f is not None:
            found[d] = read_kustomization(f, root)
    used_as_resource = {p for k in found.values() for p in k.resources if p in found}
    roots = [d for d, k in found.items() if not k.component and d not in used_as_resource]
    patches = {p for k in found.values() for p in k.patch_files}
    patches |= {p for k in found.values() if k.component for p in _yaml_files(k.directory)}
    resources = {p for k in found.values() for p in k.resources if p not in found}
    return KustomizeTree(found, roots, patches, resources - {k.file for k in found.values()})


# --- building one kustomization ---------------------------------------------------------------


@dataclass
class Build:
    """The result of `kustomize build` of one directory: the rendered objects, or kustomize's message."""

    directory: Path
    kustomization: Path | None  # its kustomization file
    runner: Kustomize | None
    documents: list[Document] = field(default_factory=list)  # nodes located in their source files
    error: str = ""  # kustomize's own message when the build failed, or why it did not run
    text: str = ""  # the rendered YAML, as kustomize printed it (origin annotations removed)
    sources: set[Path] = field(default_factory=set)  # the files the rendered objects came from (resources, patches)
    inputs: set[Path] = field(default_factory=set)  # files and kustomization directories it reads (KustomizeTree)

    @property
    def ok(self) -> bool:
        return self.runner is not None and not self.error


def build(directory: Path, runner: Kustomize | None = None) -> Build:
    """`kustomize build directory`, every rendered node located in the file and line that produced it:
    the resource's own file (origin annotation) where the value is the one written there, else the patch
    that set it, else the nearest enclosing node that has a place."""
    return build_all([directory], runner)[directory.absolute()]


def build_all(directories: list[Path], runner: Kustomize | None = None) -> dict[Path, Build]:
    """`build` of several directories, by absolute directory; the kustomize processes run side by side
    (a build is mostly waiting for its process) and share the parsed sources."""
    _load.cache_clear()  # sources are read afresh per call (a long session may see them change)
    _patch_sources_cached.cache_clear()
    runner = runner or locate()
    dirs = [d.absolute() for d in directories]
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(dirs), os.cpu_count() or 1))) as pool:
        return dict(zip(dirs, pool.map(lambda d: _build(d, runner), dirs), strict=True))


def _build(directory: Path, runner: Kustomize | None) -> Build:
    kfile = kustomization_file(directory)
    result = Build(directory, kfile, runner)
    if runner is None:
        result.error = missing_reason()
        return result
    hostile = _hostile_input(directory)
    if hostile:
        result.error = f"not built: {hostile} (the harness does not hand such a file to kustomize)"
        return result
    with tempfile.TemporaryDirectory(prefix="rh-kustomize-") as wrapper:
        rel = os.path.relpath(directory, wrapper)
        Path(wrapper, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n- {json.dumps(rel)}\n"
            "sortOptions:\n  order: fifo\n"
            "buildMetadata: [originAnnotations, transformerAnnotations]\n"
        )
        try:
            out = subprocess.run(
                [*runner.argv, wrapper], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, cwd=directory
            )
        except subprocess.TimeoutExpired:
            result.error = f"kustomize did not finish within {BUILD_TIMEOUT_S} s"
            return result
        except OSError as exc:
            result.error = f"kustomize did not start: {exc}"
            return result
        if out.returncode != 0:
            result.error = _clean_error(out.stderr or out.stdout, wrapper, directory)
            return result
        result.documents, result.text = _locate_documents(out.stdout, Path(wrapper), directory)
    result.sources = {loc.file for doc in result.documents for loc in _locs(doc.data)}
    return result


def _locs(node: Any) -> Iterator[Loc]:
    if isinstance(node, SrcMap):
        yield node.loc
        yield from node.value_locs.values()
        for v in node.values():
            yield from _locs(v)
    elif isinstance(node, SrcList):
        yield node.loc
        yield from node.item_locs
        for v in node:
            yield from _locs(v)


_KLOG = re.compile(r'^[EWI]\d{4} [\d:.]+\s+\d+ \S+\] "command failed" err="(?P<err>.*)"$')
_WRAPPER = re.compile(
    r"^accumulating resources: accumulation err='accumulating resources from '[^']*': '[^']*' must resolve to a "
    r"file': recursed accumulation of path '[^']*': "
)


def _clean_error(message: str, wrapper: str, directory: Path) -> str:
    """kustomize's message (kubectl's klog line unwrapped), without the wrapper's own layer."""
    text = " ".join(message.strip().split())
    m = _KLOG.match(text)
    if m:
        text = m.group("err").replace('\\"', '"').replace("\\\\", "\\")
    text = _WRAPPER.sub("", text.removeprefix("Error: "))
    return text.replace(wrapper, "<build>") or "kustomize build failed"


def _locate_documents(text: str, wrapper: Path, directory: Path) -> tuple[list[Document], str]:
    virtual = directory / "(kustomize build)"
    loaded = parse_yaml_bytes(text.encode("utf-8"), virtual)
    docs: list[Document] = []
    plain: list[Any] = []
    for doc in loaded.documents:
        if not isinstance(doc.data, SrcMap):
            continue
        origin, configured = _pop_metadata(doc.data, wrapper)
        origin_doc = _origin_document(origin, doc.data) if origin else None
        patches = [p for k in configured for p in _patch_sources(k)]
        kfile = configured[0] if configured else directory / KUSTOMIZATION_FILES[0]
        fallback = origin_doc.loc if origin_doc else Loc(kfile)
        _relocate(doc.data, origin_doc.data if origin_doc else None, patches, fallback)
        docs.append(Document(origin or virtual, len(docs), doc.data, fallback))
        plain.append(_plain(doc.data))
    return docs, yaml.safe_dump_all(plain, sort_keys=False) if plain else ""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _pop_metadata(data: SrcMap, wrapper: Path) -> tuple[Path | None, list[Path]]:
    """Remove the build metadata annotations; return the origin file and the kustomizations that patched it."""
    meta = data.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, SrcMap) else None
    if not isinstance(annotations, SrcMap):
        return None, []
    origin_text = annotations.pop(ORIGIN, None)
    transformations = annotations.pop(TRANSFORMATIONS, None)
    if not annotations and isinstance(meta, SrcMap):
        meta.pop("annotations", None)
    origin: Path | None = None
    try:
        o = yaml.safe_load(origin_text) if isinstance(origin_text, str) else None
        if isinstance(o, dict) and isinstance(o.get("path"), str) and not o.get("repo"):
            origin = Path(os.path.normpath(wrapper / o["path"]))
        t = yaml.safe_load(transformations) if isinstance(transformations, str) else None
    except yaml.YAMLError:
        t = None
    configured = []
    for entry in t if isinstance(t, list) else []:
        by = entry.get("configuredBy") if isinstance(entry, dict) else None
        where = entry.get("configuredIn") if isinstance(entry, dict) else None
        if isinstance(by, dict) and by.get("kind") == "PatchTransformer" and isinstance(where, str):
            path = Path(os.path.normpath(wrapper / where))
            if path not in configured:
                configured.append(path)
    return origin, configured


# What the harness's own loader refuses as hostile (yamlsrc: an alias bomb, nesting, a file over the size cap).
# kustomize expands aliases without a limit: a billion-laughs file in a kustomization kept it busy for minutes.
HOSTILE_MARKERS = ("alias/anchor bomb", "nesting deeper than", "-byte cap for a manifest")


def _hostile_input(directory: Path, seen: set[Path] | None = None) -> str:
    """The first YAML file in the kustomization's directory, or in a local directory it names (resources,
    components, bases), that the harness's loader refuses as hostile: `path: message`; "" when there is none."""
    seen = seen if seen is not None else set()
    directory = directory.resolve()
    if directory in seen or len(seen) > 200:
        return ""
    seen.add(directory)
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        bad = next((p for p in _load(path).problems if any(m in p.message for m in HOSTILE_MARKERS)), None)
        if bad is not None:
            return f"{path}: {bad.message}"
    kfile = kustomization_file(directory)
    data = _load(kfile).documents if kfile is not None and kfile.is_file() else []
    for doc in data:
        if not isinstance(doc.data, SrcMap):
            continue
        for key in ("resources", "components", "bases"):
            for ref in doc.data.get(key) or []:
                if isinstance(ref, str) and not _is_remote(ref) and (directory / ref).is_dir():
                    found = _hostile_input(directory / ref, seen)
                    if found:
                        return found
    return ""


@cache
def _load(path: Path) -> LoadedFile:
    return load_yaml_file(path, None)


def _origin_document(origin: Path, rendered: SrcMap) -> Document | None:
    """The document of the origin file the rendered object came from: same kind and name (kustomize may
    add a prefix or suffix to the name), else same kind, else the first."""
    if not origin.is_file():
        return None
    docs = [d for d in _load(origin).documents if isinstance(d.data, SrcMap)]
    kind = rendered.get("kind")
    name = str((rendered.get("metadata") or {}).get("name") or "")
    same_kind = [d for d in docs if d.kind == kind]
    named = [d for d in same_kind if d.name and d.name in name]
    return (named or same_kind or docs or [None])[0]


@dataclass
class _Patch:
    """One patch a kustomization applies: a strategic merge patch (`data` a mapping) or a JSON 6902
    patch (`ops`: the path of each operation and its value node)."""

    data: Any = None
    ops: list[tuple[tuple[str, ...], Any, Loc]] = field(default_factory=list)


def _patch_sources(kfile: Path) -> list[_Patch]:
    """The patches a kustomization file configures, with positions in their own file (or, for an inline
    patch, in the kustomization file itself)."""
    return list(_patch_sources_cached(kfile))


@cache
def _patch_sources_cached(kfile: Path) -> tuple[_Patch, ...]:
    loaded = _load(kfile)
    data = loaded.documents[0].data if loaded.documents else None
    if not isinstance(data, SrcMap):
        return ()
    out: list[_Patch] = []
    entries: list[tuple[Any, Loc]] = []
    for key in ("patches", "patchesJson6902", "patchesStrategicMerge"):
        seq = data.get(key)
        if isinstance(seq, SrcList):
            entries += [(item, seq.loc_of(i)) for i, item in enumerate(seq)]
    for entry, loc in entries:
        docs: list[Any] = []
        if isinstance(entry, SrcMap) and isinstance(entry.get("path"), str):
            path = Path(os.path.normpath(kfile.parent / entry["path"]))
            docs = [d.data for d in _load(path).documents] if path.is_file() else []
        elif isinstance(entry, SrcMap) and isinstance(entry.get("patch"), str):
            docs = _inline(entry["patch"], kfile, entry.loc_of("patch"))
        elif isinstance(entry, str):
            docs = _inline(entry, kfile, loc) if "\n" in entry else []
            path = Path(os.path.normpath(kfile.parent / entry))
            docs = docs or ([d.data for d in _load(path).documents] if path.is_file() else [])
        for d in docs:
            if isinstance(d, SrcList):
                out.append(_Patch(ops=_json_ops(d)))
            elif isinstance(d, SrcMap):
                out.append(_Patch(data=d))
    return tuple(out)


def _inline(text: str, kfile: Path, value: Loc) -> list[Any]:
    """An inline patch (a block scalar in the kustomization), its lines shifted to where they are written."""
    loaded = parse_yaml_bytes(text.encode("utf-8"), kfile)
    try:
        lines = kfile.read_text(encoding="utf-8").splitlines()
        first = lines[value.line] if value.line < len(lines) else ""
    except OSError:
        first = ""
    indent = len(first) - len(first.lstrip(" "))
    return [_shifted(d.data, value.line, indent) for d in loaded.documents]


def _shifted(node: Any, lines: int, columns: int) -> Any:
    def move(loc: Loc) -> Loc:
        return Loc(loc.file, loc.line + lines, loc.column + columns)

    if isinstance(node, SrcMap):
        node.loc = move(node.loc)
        for k in list(node):
            node.key_locs[k] = move(node.key_locs[k])
            node.value_locs[k] = move(node.value_locs[k])
            _shifted(node[k], lines, columns)
    elif isinstance(node, SrcList):
        node.loc = move(node.loc)
        node.item_locs = [move(x) for x in node.item_locs]
        for item in node:
            _shifted(item, lines, columns)
    return node


def _json_ops(ops: SrcList) -> list[tuple[tuple[str, ...], Any, Loc]]:
    out = []
    for i, op in enumerate(ops):
        if isinstance(op, SrcMap) and isinstance(op.get("path"), str) and op.get("op") in ("add", "replace", "copy"):
            parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/"))
            out.append((parts, op.get("value"), op.loc_of("value") if "value" in op else ops.loc_of(i)))
    return out


# --- locating each rendered node ---------------------------------------------------------------


def _relocate(rendered: Any, origin: Any, patches: list[_Patch], fallback: Loc, path: tuple = ()) -> None:
    """Point every node of `rendered` at its source: the origin where the value is unchanged, else the
    last patch that writes it, else the closest enclosing place."""
    if isinstance(rendered, SrcMap):
        rendered.loc = _container_loc(origin, fallback)
        for key, value in rendered.items():
            child = origin.get(key) if isinstance(origin, SrcMap) else None
            o_loc = origin.loc_of(key) if isinstance(origin, SrcMap) and key in origin else None
            k_loc = origin.key_loc(key) if isinstance(origin, SrcMap) and key in origin else None
            sub = (*path, key)
            p_loc, p_key = _patched(patches, sub, value)
            here = _choose(o_loc, p_loc, child, value) or rendered.loc
            rendered.value_locs[key] = here
            rendered.key_locs[key] = (p_key if p_loc and here is p_loc else k_loc) or here
            _relocate(value, child, patches, here, sub)
    elif isinstance(rendered, SrcList):
        rendered.loc = _container_loc(origin, fallback)
        matched = _match_items(rendered, origin)
        rendered.item_locs = []
        for i, item in enumerate(rendered):
            child, o_loc = matched[i]
            sub = (*path, i, _item_name(item))
            p_loc, _ = _patched(patches, sub, item)
            here = _choose(o_loc, p_loc, child, item) or rendered.loc
            rendered.item_locs.append(here)
            _relocate(item, child, patches, here, sub)


def _container_loc(origin: Any, fallback: Loc) -> Loc:
    return origin.loc if isinstance(origin, (SrcMap, SrcList)) else fallback


def _choose(o_loc: Loc | None, p_loc: Loc | None, origin: Any, value: Any) -> Loc | None:
    """A mapping or list is where the resource writes it (a patch only adds to it); a value is where the
    patch writes it when a patch does and the resource's own differs (or is absent)."""
    if isinstance(value, (dict, list)):
        return o_loc or p_loc
    if p_loc and (o_loc is None or origin != value):
        return p_loc
    return o_loc or p_loc


def _item_name(item: Any) -> Any:
    return item.get("name") if isinstance(item, SrcMap) else None


def _match_items(rendered: SrcList, origin: Any) -> list[tuple[Any, Loc | None]]:
    """Each rendered item's counterpart in the origin list: by `name` where items have one (a strategic
    merge reorders named items), else by position when the list kept its length."""
    if not isinstance(origin, SrcList):
        return [(None, None)] * len(rendered)
    names = {_item_name(o): i for i, o in enumerate(origin) if _item_name(o) is not None}
    out: list[tuple[Any, Loc | None]] = []
    for i, item in enumerate(rendered):
        name = _item_name(item)
        if name is not None and name in names:
            j = names[name]
            out.append((origin[j], origin.loc_of(j)))
        elif name is None and len(origin) == len(rendered):
            out.append((origin[i], origin.loc_of(i)))
        elif name is None and item in origin:
            j = origin.index(item)
            out.append((origin[j], origin.loc_of(j)))
        else:
            out.append((None, None))
    return out


def _patched(patches: list[_Patch], path: tuple, value: Any) -> tuple[Loc | None, Loc | None]:
    """Where the last patch that writes `path` writes it (value loc, key loc), (None, None) if none does.
    A path step into a list is (index, name): strategic merge patches match list items by name."""
    found: tuple[Loc | None, Loc | None] = (None, None)
    for patch in patches:
        hits = [_smp_lookup(patch.data, path)] if patch.data is not None else []
        hits += [_op_lookup(parts, op_value, op_loc, path) for parts, op_value, op_loc in patch.ops]
        for hit in hits:
            # a value a patch writes is the rendered one unless a later patch overrode it
            if hit is not None and (isinstance(value, (dict, list)) or hit[2] == value):
                found = (hit[0], hit[1])
    return found


def _steps(path: tuple) -> list[Any]:
    """(key, key, index, name, key, ...) -> [key, key, (index, name), key, ...]."""
    out: list[Any] = []
    items = list(path)
    i = 0
    while i < len(items):
        if isinstance(items[i], int):
            out.append((items[i], items[i + 1] if i + 1 < len(items) else None))
            i += 2
        else:
            out.append(items[i])
            i += 1
    return out


def _smp_lookup(patch: SrcMap, path: tuple) -> tuple[Loc, Loc, Any] | None:
    node: Any = patch
    value_loc = key_loc = None
    for step in _steps(path):
        if isinstance(step, tuple):
            _index, name = step
            if not isinstance(node, SrcList) or name is None:
                return None
            j = next((k for k, it in enumerate(node) if _item_name(it) == name), None)
            if j is None:
                return None
            value_loc = key_loc = node.loc_of(j)
            node = node[j]
        else:
            if not isinstance(node, SrcMap) or step not in node:
                return None
            value_loc, key_loc = node.loc_of(step), node.key_loc(step)
            node = node[step]
    if isinstance(node, SrcMap) and set(node) <= {"name"} and isinstance(_steps(path)[-1], tuple):
        return None  # a bare `- name: X` selects an item, it writes nothing
    return (value_loc, key_loc, node) if value_loc and key_loc else None


def _op_lookup(parts: tuple[str, ...], op_value: Any, op_loc: Loc, path: tuple) -> tuple[Loc, Loc, Any] | None:
    steps = _steps(path)
    flat = [str(s[0]) if isinstance(s, tuple) else str(s) for s in steps]
    if len(flat) < len(parts):
        return None
    for want, got in zip(parts, flat, strict=False):
        if want != got and want != "-":
            return None
    node, loc = op_value, op_loc
    for step in steps[len(parts) :]:
        if isinstance(step, tuple):
            index = step[0]
            if not isinstance(node, SrcList) or not 0 <= index < len(node):
                return None
            loc, node = node.loc_of(index), node[index]
        else:
            if not isinstance(node, SrcMap) or step not in node:
                return None
            loc, node = node.loc_of(step), node[step]
    return (loc, loc, node)
