"""Layout checks: the files a recipe needs, where they live, and how they are named."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from harness.checks import CheckContext, check
from harness.recipe.discovery import RecipeTree
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.model import (
    DEPLOY_FILE,
    FRAMEWORKS,
    GAIE_DIR,
    KUSTOMIZATION_FILE,
    KUSTOMIZE_DIR,
    METADATA_FILE,
    MODEL_CACHE_DIR,
    MODEL_CACHE_FILE,
    MODEL_DOWNLOAD_FILE,
    PERF_FILE,
    Recipe,
)
from harness.recipe.yamlsrc import check_path

KEBAB = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")
RECIPE_FILES = {METADATA_FILE, DEPLOY_FILE, PERF_FILE, "README.md", KUSTOMIZATION_FILE}
MODEL_DIR_FILES = {"README.md"}
TREE_FILES = {"README.md", "SIZING.md", "versions.yaml"}


@check("yaml-well-formed")
def yaml_well_formed(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every YAML file of the recipe parses safely: UTF-8, no duplicate keys, no alias bombs,
    no empty files, within the size cap, and no symlink out of the tree.

    Fails: `deploy.yaml` with `replicas: 1` twice in one service, or a file saved as UTF-16.

    Source: YAML 1.2 (mapping keys must be unique, §3.2.1.1) as enforced by `kubectl apply`
    (sigs.k8s.io/yaml strict decoding / server-side field validation `strict`, default since Kubernetes
    1.27: duplicate fields are errors); an empty file gives kubectl 'no objects passed to apply'. The
    alias-bomb, size-cap and symlink rules are this harness's own safety limits
    (harness/recipe/yamlsrc.py), not Kubernetes rules.
    """
    for f in recipe.files():
        yield from f.problems


@check("layout-required-files", convention=True)
def layout_required_files(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A recipe needs its DynamoGraphDeployment (`deploy.yaml`), its metadata (`recipe.yaml`),
    and its model's cache: `../../model-cache/model-cache.yaml` (PVC) and `model-download.yaml` (Job).

    Fails: a mode directory with only `deploy.yaml`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    file set (recipe.yaml, deploy.yaml, ../../model-cache/{model-cache.yaml,model-download.yaml}) is
    harness/recipe/model.py (METADATA_FILE, DEPLOY_FILE, MODEL_CACHE_FILE, MODEL_DOWNLOAD_FILE).
    """
    for name, hint in (
        (DEPLOY_FILE, "add the DynamoGraphDeployment manifest"),
        (METADATA_FILE, "add recipe metadata (see schemas/recipe-metadata.json)"),
    ):
        if not _exists(recipe.path / name):
            yield problem(Loc(recipe.path / name), f"missing {name}", hint)
    for name, what in (
        (MODEL_CACHE_FILE, "the model-cache PersistentVolumeClaim"),
        (MODEL_DOWNLOAD_FILE, "the model download Job"),
    ):
        path = recipe.model_cache_dir / name
        if not _exists(path):
            yield problem(
                Loc(path),
                f"missing {recipe.model}/{MODEL_CACHE_DIR}/{name} ({what})",
                f"every model directory needs {MODEL_CACHE_DIR}/{name}",
            )


@check("layout-perf-present", severity=Severity.WARNING, convention=True)
def layout_perf_present(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A recipe should ship its benchmark (`perf.yaml`, an AIPerf Job): without it nobody can
    reproduce its performance claims and the nightly has nothing to run.

    Fails: a mode directory without `perf.yaml`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    `perf.yaml` is the AIPerf Job the nightly runs (harness/run/perf.py); Dynamo needs no benchmark to
    serve.
    """
    if not _exists(recipe.path / PERF_FILE):
        yield problem(
            Loc(recipe.path / PERF_FILE),
            "missing perf.yaml (the AIPerf benchmark Job)",
            "add a perf Job following the benchmark conventions",
        )


@check("layout-framework-dir", convention=True)
def layout_framework_dir(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The second path level names the backend: vllm, sglang or trtllm. The harness picks
    flag spellings and images by it.

    Fails: `recipes/llama-3-70b/tensorrt/agg/`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    directory names are the backends a DynamoGraphDeployment can name in `spec.backendFramework` (vllm,
    sglang, trtllm: DGD CRD, schemas/dynamo/1.4.0/provenance.json), and the harness picks flag spellings
    and runtime images by them.
    """
    if recipe.framework not in FRAMEWORKS:
        yield problem(
            Loc(recipe.path),
            f"framework directory {recipe.framework!r} is not one of {', '.join(FRAMEWORKS)}",
            f"move the recipe under recipes/{recipe.model}/<{'|'.join(FRAMEWORKS)}>/{recipe.mode}/",
        )


@check("layout-kebab-case", convention=True)
def layout_kebab_case(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Model, framework and mode directories and every file name are kebab-case, so recipe ids
    are stable test ids and URL-safe.

    Fails: `recipes/Llama_3/vllm/Agg/`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees.
    Kebab-case keeps recipe ids stable as pytest ids and URLs; Kubernetes does not look at file names.
    """
    for part, kind in ((recipe.model, "model"), (recipe.mode, "mode")):
        if not KEBAB.match(part):
            yield problem(
                Loc(recipe.path), f"{kind} directory {part!r} is not kebab-case", "use lower-case words joined by '-'"
            )
    gaie = recipe.path / GAIE_DIR
    for path in _listing(recipe.path) + (_listing(gaie) if gaie.is_dir() else []):
        stem = path.name.rsplit(".", 1)[0] if path.is_file() else path.name
        if path.name != "README.md" and not KEBAB.match(stem):
            yield problem(Loc(path), f"file name {path.name!r} is not kebab-case", "rename it in lower-case kebab-case")


@check("layout-stray-files", severity=Severity.WARNING, convention=True)
def layout_stray_files(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A recipe directory holds only what the harness knows (recipe.yaml, deploy.yaml,
    perf.yaml, README.md, gaie/); anything else is unchecked and usually a leftover.

    Fails: `deploy.yaml.bak` or `notes.txt` next to `deploy.yaml`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    known files are RECIPE_FILES and gaie/ in harness/checks/layout.py (a `kustomization.yaml` makes the
    recipe a kustomize base for the overlays beside it); anything else is simply not read by the harness.
    """
    for path in _listing(recipe.path):
        if path.is_dir():
            if path.name != GAIE_DIR:
                yield problem(Loc(path), f"unknown directory {path.name}/ in a recipe", "only gaie/ is expected")
            else:
                for sub in _listing(path):
                    if not (sub.is_file() and sub.suffix in (".yaml", ".yml")):
                        yield problem(Loc(sub), f"unexpected {sub.name} in gaie/ (only YAML manifests are checked)")
        elif path.name not in RECIPE_FILES:
            yield problem(
                Loc(path),
                f"unknown file {path.name} in the recipe (it is not checked)",
                "delete it, or move documentation into the model README",
            )
        else:
            bad = check_path(path, recipe.root)
            if bad:
                yield bad


@check("layout-tree", scope="tree", convention=True)
def layout_tree(tree: RecipeTree, ctx: CheckContext) -> Iterator[Problem]:
    """The recipes tree has the shape `<model>/<framework>/<mode>/` plus `<model>/model-cache/`
    and `<model>/README.md`; files or directories elsewhere are never checked. `kustomize/` at the
    top holds the shared kustomize Components the overlays (`<mode>-<variant>/`) use: no model.

    Fails: `recipes/llama-3-70b/deploy.yaml` (a manifest at the model level).

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    tree shape `<model>/<framework>/<mode>/` plus `<model>/model-cache/` and `<model>/README.md` is
    harness/recipe/model.py (FRAMEWORKS, MODEL_CACHE_DIR) and harness/recipe/discovery.py.
    """
    root = tree.root
    if not root.is_dir():
        yield problem(Loc(root), "recipes directory not found", "pass --recipes-dir PATH")
        return
    for model in _listing(root):
        if model.name == KUSTOMIZE_DIR and model.is_dir():
            continue  # kustomize Components, built through the overlays that use them
        if model.is_file():
            if model.name not in TREE_FILES:
                yield problem(
                    Loc(model), f"unknown file {model.name} at the top of the recipes tree", severity=Severity.WARNING
                )
            continue
        if not (model / "README.md").is_file():
            yield problem(
                Loc(model / "README.md"), f"model {model.name} has no README.md", "add one in the model README format"
            )
        for child in _listing(model):
            if child.is_file():
                if child.name not in MODEL_DIR_FILES:
                    yield problem(
                        Loc(child),
                        f"unknown file {child.name} in model directory {model.name}/",
                        "recipe files belong in <framework>/<mode>/",
                        Severity.WARNING,
                    )
            elif child.name == MODEL_CACHE_DIR:
                for f in _listing(child):
                    if f.name not in (MODEL_CACHE_FILE, MODEL_DOWNLOAD_FILE, "README.md", KUSTOMIZATION_FILE):
                        yield problem(
                            Loc(f),
                            f"unknown file {f.name} in {model.name}/{MODEL_CACHE_DIR}/",
                            severity=Severity.WARNING,
                        )
            elif child.name not in FRAMEWORKS:
                yield problem(
                    Loc(child),
                    f"{model.name}/{child.name}/ is neither a framework ({', '.join(FRAMEWORKS)}) "
                    f"nor {MODEL_CACHE_DIR}/",
                )
            else:
                for mode in _listing(child):
                    if mode.is_file():
                        yield problem(
                            Loc(mode),
                            f"file {mode.name} directly under {model.name}/{child.name}/: recipes are directories",
                            severity=Severity.WARNING,
                        )


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _listing(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.name != "__pycache__")
    except OSError:
        return []
