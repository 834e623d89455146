"""Find recipes under a recipes tree and select them by model prefix, id or glob."""

from __future__ import annotations

import difflib
import fnmatch
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe import kustomize, templates
from harness.recipe.model import (
    DEPLOY_FILE,
    DGD_KIND,
    GAIE_DIR,
    KUSTOMIZATION_FILE,
    METADATA_FILE,
    MODEL_CACHE_DIR,
    PERF_FILE,
    FileCache,
    Recipe,
)

SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "node_modules"}
MODEL_PERF_DIR = "perf"  # upstream's model-level benchmark: <model>/perf/perf.yaml


@dataclass
class RecipeTree:
    """The whole recipes tree, for tree-level checks (docs in sync, layout of the tree) and the generated docs."""

    root: Path
    recipes: list[Recipe]
    cache: FileCache

    @property
    def catalogued(self) -> list[Recipe]:
        """The recipe directories themselves, without the kustomize overlays rendered beside them: what the
        catalogue, SIZING.md and the model READMEs list (the catalogue lists the overlays from their files)."""
        return [r for r in self.recipes if r.kustomize_build is None]


class SelectionError(ValueError):
    """An unknown --recipe selector; the message lists near matches."""


def default_recipes_dir(start: Path | None = None) -> Path:
    """`recipes/` of the repository the command runs in (walks up from the working dir)."""
    here = (start or Path.cwd()).absolute()
    for d in (here, *here.parents):
        if (d / "recipes").is_dir() and ((d / "pyproject.toml").exists() or (d / ".git").exists()):
            return d / "recipes"
    return here / "recipes"


def recipe_dirs(root: Path) -> list[Path]:
    """Every `<model>/<framework>/<mode>/` directory (three levels down, model-cache excluded), except a
    kustomize overlay: a directory holding a kustomization and none of a recipe's own files, which is a
    recipe only as kustomize renders it. The shared Components under `kustomize/` are no model.

    Anything else at those depths is a layout finding, reported by the layout checks."""
    found: list[Path] = []
    if not root.is_dir():
        return found
    for model in _subdirs(root):
        for framework in _subdirs(model):
            if framework.name == MODEL_CACHE_DIR:
                continue
            for mode in _subdirs(framework):
                if mode.name != GAIE_DIR and not is_overlay_dir(mode):
                    found.append(mode)
    return found


def overlay_dirs(root: Path) -> list[Path]:
    """The kustomize overlays of a catalogue tree, `<model>/<framework>/<mode>-<variant>/`, from the files
    alone (whether or not a kustomize is at hand to build them)."""
    out = []
    for model in _subdirs(root):
        for framework in _subdirs(model):
            if framework.name != MODEL_CACHE_DIR:
                out += [mode for mode in _subdirs(framework) if is_overlay_dir(mode)]
    return out


def is_overlay_dir(path: Path) -> bool:
    """A kustomize overlay directory of a catalogue tree: a kustomization and none of a recipe's own files
    (a recipe directory that lost its deploy.yaml stays a recipe, and layout-required-files says so)."""
    own = (DEPLOY_FILE, METADATA_FILE, PERF_FILE)
    return (path / KUSTOMIZATION_FILE).is_file() and not any((path / name).exists() for name in own)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(
            p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS
        )
    except OSError:
        return []


def discover(root: Path, cache: FileCache | None = None, foreign: bool = False) -> list[Recipe]:
    """The recipes of the tree: `<model>/<framework>/<mode>/` directories and the kustomization roots
    beside them that render a DynamoGraphDeployment (`kustomize_recipes`: overlays), and on a foreign tree
    (`foreign`, see harness.recipe.convention) every recipe wherever it lives (`foreign_recipes`)."""
    root = root.absolute()
    cache = cache or FileCache(root)
    templates.template_tree(root, cache)  # envsubst templates are read rendered, as the recipe applies them
    if foreign:
        return foreign_recipes(root, cache)
    plain = [Recipe(p, root, cache) for p in recipe_dirs(root)]
    dirs = {r.path for r in plain}  # a recipe directory's own kustomization renders its plain files again
    return plain + [r for r in kustomize_recipes(root, cache) if r.path not in dirs]


@dataclass
class KustomizeView:
    """The kustomizations of a tree as a run sees them: which kustomize builds them, each root's build,
    and which files are checked only through a build (patches and Component parts always; resources
    when a root that reaches them built: without kustomize, or when every such build fails, a resource
    is checked as a plain file, as before)."""

    tree: kustomize.KustomizeTree
    runner: kustomize.Kustomize | None
    builds: dict[Path, kustomize.Build] = field(default_factory=dict)  # by root directory
    reach: dict[Path, set[Path]] = field(default_factory=dict)  # the files each root's build reaches

    def through_build(self, path: Path) -> bool:
        """Whether a file is not checked as a whole object on its own."""
        if path.name in kustomize.KUSTOMIZATION_FILES or path in self.tree.patches:
            return True
        if path not in self.tree.resources:
            return False
        return any(b.ok and path in self.reached(d) for d, b in self.builds.items())

    def reached(self, directory: Path) -> set[Path]:
        if directory not in self.reach:
            self.reach[directory] = self.tree.reached(directory)
        return self.reach[directory]


_VIEWS: weakref.WeakKeyDictionary[FileCache, KustomizeView] = weakref.WeakKeyDictionary()
RENDERED_NAME = "(kustomize build)"  # the rendered output's name: the FileCache holds it, no file has it


def kustomize_view(root: Path, cache: FileCache) -> KustomizeView:
    """Scan the tree's kustomizations and build each root once per FileCache (the run's cache)."""
    view = _VIEWS.get(cache)
    if view is None:
        tree = kustomize.scan(root)
        runner = kustomize.locate() if tree.roots else None
        view = KustomizeView(tree, runner)
        if runner is not None:
            view.builds = kustomize.build_all(tree.roots, runner)
        _VIEWS[cache] = view
    return view


def kustomize_recipes(root: Path, cache: FileCache) -> list[Recipe]:
    """A recipe per kustomization root whose build renders a DynamoGraphDeployment, checked on the rendered
    objects (its id is the root's directory). A build that fails or cannot run is no recipe: the tree
    check `kustomize-build` reports it at the kustomization file."""
    view = kustomize_view(root, cache)
    out = []
    for directory, built in view.builds.items():
        if built.ok and any(d.kind == DGD_KIND for d in built.documents):
            built.inputs = view.reached(directory)
            out.append(Recipe(directory, root, cache, manifest=directory / RENDERED_NAME, kustomize_build=built))
    return out


def foreign_recipes(root: Path, cache: FileCache) -> list[Recipe]:
    """A foreign tree names and nests its manifests freely (upstream has `disagg/deploy_hopper_16gpu.yaml`,
    `disagg/wide_ep/gb200/deploy.yaml`, `cloud-providers/deploy-gke-roce.yaml`), so a recipe is:
    - a `<model>/<framework>/<mode>/` directory holding `deploy.yaml` (whatever it deploys: a bare Pod too);
    - every other `*.yaml` / `*.yml` below the tree that holds a DynamoGraphDeployment;
    - a model-level benchmark `<model>/perf/perf.yaml` (a recipe with a perf Job and no deployment);
    - every kustomization root that renders a DynamoGraphDeployment (`kustomize_recipes`). A kustomize
      patch or a Component's file is never a recipe of its own, nor is a resource a root's build checks.
    """
    view = kustomize_view(root, cache)
    found: dict[Path, Recipe] = {}
    for d in recipe_dirs(root):
        if (d / DEPLOY_FILE).is_file() and not view.through_build(d / DEPLOY_FILE):
            found[d / DEPLOY_FILE] = Recipe(d, root, cache)
    for path in _yaml_files(root):
        if path not in found and not view.through_build(path) and holds_dgd(path, cache):
            found[path] = Recipe(path.parent, root, cache, manifest=path)
    for recipe in kustomize_recipes(root, cache):
        found[recipe.manifest] = recipe
    for model in _subdirs(root):
        perf = model / MODEL_PERF_DIR / PERF_FILE
        if perf.is_file() and perf.parent / DEPLOY_FILE not in found:
            found[perf] = Recipe(perf.parent, root, cache, manifest=perf.parent / DEPLOY_FILE)
    return sorted(found.values(), key=lambda r: r.id)


def holds_dgd(path: Path, cache: FileCache) -> bool:
    """Whether a YAML file holds a DynamoGraphDeployment document (a cheap text test first)."""
    try:
        if DGD_KIND.encode() not in path.read_bytes():
            return False
    except OSError:
        return False
    return any(doc.kind == DGD_KIND for doc in cache.load(path).documents)


def _yaml_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        out += [Path(here) / f for f in sorted(files) if f.endswith((".yaml", ".yml")) and not f.startswith(".")]
    return out


def select(recipes: list[Recipe], selectors: list[str]) -> list[Recipe]:
    """Recipes matching any selector, in discovery order.

    A selector is an exact id (`qwen3-32b/vllm/agg-round-robin`), a glob (`*/trtllm/*`),
    an id prefix by whole segments (`deepseek-r1/sglang`) or a model name prefix at a word
    boundary: `qwen3-235b` selects `qwen3-235b-a22b-fp8`. An exact model name wins over
    prefixes, so `qwen3-32b` selects qwen3-32b and not qwen3-32b-fp8.
    """
    if not selectors:
        return list(recipes)
    chosen: set[str] = set()
    for sel in selectors:
        matched = _match(recipes, sel.strip().strip("/"))
        if not matched:
            raise SelectionError(_unknown_message(sel, recipes))
        chosen.update(r.id for r in matched)
    return [r for r in recipes if r.id in chosen]


def _match(recipes: list[Recipe], sel: str) -> list[Recipe]:
    if not sel:
        return []
    if any(ch in sel for ch in "*?["):
        return [r for r in recipes if fnmatch.fnmatchcase(r.id, sel) or fnmatch.fnmatchcase(r.model, sel)]
    exact = [r for r in recipes if r.id == sel]
    if exact:
        return exact
    if "/" in sel:
        return [r for r in recipes if r.id.startswith(sel + "/")]
    same_model = [r for r in recipes if r.model == sel]
    if same_model:
        return same_model
    return [r for r in recipes if r.model.startswith(sel + "-")]


def _unknown_message(sel: str, recipes: list[Recipe]) -> str:
    names = sorted({r.model for r in recipes} | {r.id for r in recipes})
    near = difflib.get_close_matches(sel, names, n=5, cutoff=0.4)
    if not near:
        near = sorted({r.model for r in recipes})[:8]
    hint = ", ".join(near) if near else "(no recipes found)"
    return f"--recipe {sel!r} matches no recipe. Did you mean: {hint}?"
