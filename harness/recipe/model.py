"""The recipe domain model: Recipe -> Deployment -> Service -> Container, with source positions.

The recipe (its files, loaded once, and what is derived from it) lives here; the deployment and its
services in harness/recipe/service.py, containers in harness/recipe/container.py, command lines in
harness/recipe/commandline.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.recipe.findings import Loc
from harness.recipe.service import Deployment
from harness.recipe.yamlsrc import Document, LoadedFile, SrcMap, dig, load_yaml_file

FRAMEWORKS = ("vllm", "sglang", "trtllm")
METADATA_FILE = "recipe.yaml"
DEPLOY_FILE = "deploy.yaml"
PERF_FILE = "perf.yaml"
MODEL_CACHE_DIR = "model-cache"
MODEL_CACHE_FILE = "model-cache.yaml"
MODEL_DOWNLOAD_FILE = "model-download.yaml"
GAIE_DIR = "gaie"
# Kustomize in a catalogue tree: a recipe directory or a model cache may hold the `kustomization.yaml` that
# makes it a base; an overlay is a `<model>/<framework>/<mode>-<variant>/` directory holding only a
# kustomization (kustomize forbids an overlay below its base); shared Components live in `kustomize/`.
KUSTOMIZATION_FILE = "kustomization.yaml"
KUSTOMIZE_DIR = "kustomize"
DGD_KIND = "DynamoGraphDeployment"
DGD_GROUP = "nvidia.com"

if TYPE_CHECKING:
    from harness.recipe.kustomize import Build
    from harness.recipe.workloads import Workloads

T = TypeVar("T")


class Recipe:
    """One recipe directory `recipes/<model>/<framework>/<mode>/`, loaded lazily and once.

    Everything derived from it is cached on the object, so it lives exactly as long as the
    loaded recipe: facts of the model as cached properties (`deployment`, `workloads`), facts
    of the layers above (topology, storage) through `derived(fn)`.

    On a foreign tree a recipe is any manifest holding a DynamoGraphDeployment, at any depth and
    under any name (`manifest`): its id is its directory below the tree, plus the file's stem when
    the file is not `deploy.yaml` (`deepseek-r1/vllm/disagg/deploy_hopper_16gpu`); the model is
    the first directory below the tree.
    """

    def __init__(
        self,
        path: Path,
        root: Path,
        loader: FileCache | None = None,
        manifest: Path | None = None,
        kustomize_build: Build | None = None,
    ):
        self.path = path
        self.root = root
        self.manifest = manifest or path / DEPLOY_FILE
        # A kustomization built by kustomize (harness.recipe.kustomize): `manifest` is its rendered output
        # (held by the FileCache, every node at its source line) and the id is the kustomization's directory.
        self.kustomize_build = kustomize_build
        if manifest is None:
            self.mode = path.name
            self.framework = path.parent.name
            self.model = path.parent.parent.name
            self.id = f"{self.model}/{self.framework}/{self.mode}"
            self._model_dir = path.parent.parent
        else:
            parts = list(_parts_below(path, root))
            self._model_dir = root / parts[0] if parts else root
            if manifest.name != DEPLOY_FILE and kustomize_build is None:
                parts.append(manifest.stem)
            self.model = parts[0] if parts else root.name
            self.framework = parts[1] if len(parts) > 1 else ""
            self.mode = "/".join(parts[2:])
            self.id = "/".join(parts) or root.name
        self._cache = loader or FileCache(root)
        if kustomize_build is not None:
            self._cache.put(self.manifest, LoadedFile(self.manifest, list(kustomize_build.documents)))
        self._derived: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Recipe({self.id})"

    def derived(self, build: Callable[..., T], *args: Any) -> T:
        """`build(self, *args)`, computed once per loaded recipe and args: how a layer above the
        model caches what it derives from a recipe (`recipe_topologies`, `model_cache_needs`)."""
        slot = (build, *args)
        if slot not in self._derived:
            self._derived[slot] = build(self, *args)
        return self._derived[slot]

    @cached_property
    def release(self) -> str:
        """The Dynamo release the recipe is for, the one answer every stage reads (the checks' schemas,
        flag pairs and router modes, the conformance parsers, the sim's runtime, the k8s deployer):

        1. recipe.yaml `versions.dynamo`: the author's statement of the release the recipe is written
           for (platform, operator CRD and images alike);
        2. else the release its Dynamo images agree on (`harness.recipe.images.image_release`: the most
           common `nvcr.io/nvidia/ai-dynamo/*:<release>` tag, the workers' on a tie), which is all a
           foreign tree without recipe.yaml says;
        3. else "" (the recipe does not say).

        Where 1 and 2 disagree, `metadata-dynamo-release` reports it (on a catalogue-convention tree),
        and `image-release-consistent` / `image-release-in-matrix` judge the images by their own release."""
        declared = dig(self.metadata, "versions", "dynamo")
        if isinstance(declared, (str, int, float)) and not isinstance(declared, bool) and str(declared).strip():
            return str(declared).strip()
        from harness.recipe.images import image_release  # it reads this model's workloads

        return image_release(self)[0]

    @cached_property
    def workloads(self) -> Workloads:
        """Every pod of the recipe's manifests with containers, scripts and mounts (built once)."""
        from harness.recipe.workloads import build_workloads  # workloads is built on this model

        return build_workloads(self)

    @property
    def cache(self) -> FileCache:
        """The run's file cache this recipe loads through (shared by the recipes of one discovery)."""
        return self._cache

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def model_cache_dir(self) -> Path:
        return self.model_dir / MODEL_CACHE_DIR

    def load(self, path: Path) -> LoadedFile | None:
        return self._cache.load_if_exists(path)

    @property
    def deploy(self) -> LoadedFile | None:
        return self.load(self.manifest)

    @property
    def perf(self) -> LoadedFile | None:
        return self.load(self.path / PERF_FILE)

    @property
    def metadata_file(self) -> LoadedFile | None:
        return self.load(self.path / METADATA_FILE)

    @property
    def metadata(self) -> SrcMap:
        """The metadata mapping; empty (with the file's position) when missing or broken."""
        f = self.metadata_file
        if f and f.documents and isinstance(f.documents[0].data, SrcMap):
            return f.documents[0].data
        return SrcMap(Loc(self.path / METADATA_FILE))

    def metadata_at(self, *keys: str) -> tuple[object, Loc]:
        """A metadata value and its line (the deepest existing key's line when it is missing)."""
        node, loc = self.metadata, self.metadata.loc
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None, loc
            loc = node.loc_of(key)
            node = node[key]
        return node, loc

    @property
    def model_cache_files(self) -> list[LoadedFile]:
        return [f for f in (self.load(self.model_cache_dir / n) for n in (MODEL_CACHE_FILE, MODEL_DOWNLOAD_FILE)) if f]

    @property
    def gaie_files(self) -> list[LoadedFile]:
        d = self.path / GAIE_DIR
        if not d.is_dir():
            return []
        return [f for f in (self.load(p) for p in sorted(d.glob("*.y*ml"))) if f]

    def readmes(self) -> list[tuple[Path, list[str]]]:
        """The README lines of the recipe's directory and of its model directory (the ones that exist)."""
        if "readmes" not in self._derived:
            out = []
            for path in dict.fromkeys((*self._readme_candidates(), self.model_dir / "README.md")):
                try:
                    out.append((path, path.read_text(encoding="utf-8", errors="replace").splitlines()))
                except OSError:
                    continue
            self._derived["readmes"] = out
        return self._derived["readmes"]

    def _readme_candidates(self) -> list[Path]:
        """The recipe's own README; for a kustomization (`kustomize/overlays/gke/`), the nearest README.md
        walking up to the model directory too, where the recipe documents its overlays."""
        if self.kustomize_build is None:
            return [self.path / "README.md"]
        out = []
        for d in (self.path, *self.path.parents):
            if d == self.model_dir or self.model_dir not in d.parents:
                break
            out.append(d / "README.md")
        return [p for p in out if p.is_file()][:1] or [self.path / "README.md"]

    def files(self) -> list[LoadedFile]:
        """Every YAML file that belongs to the recipe (its own, its model cache, gaie)."""
        own = [self.load(p) for p in (self.path / METADATA_FILE, self.manifest, self.path / PERF_FILE)]
        return [f for f in own if f] + self.model_cache_files + self.gaie_files

    def documents(self, kind: str | None = None) -> list[Document]:
        docs = [
            d for f in self.files() if f.path.name != METADATA_FILE for d in f.documents if isinstance(d.data, SrcMap)
        ]
        return [d for d in docs if kind is None or d.kind == kind]

    @property
    def dgd_doc(self) -> Document | None:
        f = self.deploy
        if not f:
            return None
        return next((d for d in f.documents if d.kind == DGD_KIND and isinstance(d.data, SrcMap)), None)

    @cached_property
    def deployment(self) -> Deployment | None:
        doc = self.dgd_doc
        return Deployment(doc) if doc else None

    def perf_job(self) -> Document | None:
        f = self.perf
        if not f:
            return None
        return next((d for d in f.documents if d.kind == "Job" and isinstance(d.data, SrcMap)), None)


def _parts_below(path: Path, root: Path) -> tuple[str, ...]:
    try:
        return path.relative_to(root).parts
    except ValueError:
        return (path.name,)


class FileCache:
    """Loads each YAML file once per session (model-cache files are shared by recipes)."""

    def __init__(self, root: Path, max_bytes: int | None = None):
        self.root = root
        self.max_bytes = max_bytes
        self._files: dict[Path, LoadedFile] = {}
        self._present: dict[Path, LoadedFile | None] = {}

    def put(self, path: Path, loaded: LoadedFile) -> None:
        """Hold a file that is not on disk (a kustomization's rendered output) under a path of its own."""
        self._files[path.absolute()] = loaded
        self._present[path] = loaded

    def load(self, path: Path) -> LoadedFile:
        key = path.absolute()
        if key not in self._files:
            kwargs = {"max_bytes": self.max_bytes} if self.max_bytes else {}
            self._files[key] = load_yaml_file(path, self.root, **kwargs)
        return self._files[key]

    def load_if_exists(self, path: Path) -> LoadedFile | None:
        """Like load, None for a missing file; existence is remembered too (checks ask many times)."""
        try:
            return self._present[path]
        except KeyError:
            found = self.load(path) if path.exists() or path.is_symlink() else None
            self._present[path] = found
            return found
