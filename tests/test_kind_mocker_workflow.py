"""The kind-mocker workflow runs on every change to what its step reads, with the operator of its recipe's release;
the nightly's gpu step never skips a GPU pool scaled to zero.

Its step is `pytest -m gpu --engine mocker --recipe $RECIPE`: the files that run are the harness modules the plugin
and the gpu stage load (found by loading them in a fresh interpreter), the recipe with its model cache, and the
packaging. A path filter that misses one lets a change to it merge untested on the only Kubernetes path CI has.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from harness.recipe.discovery import discover

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "kind-mocker.yml"

# What the gpu stage's run imports: the plugin (which resolves the stage lazily), the stage and its run, the smoke
# suite, the benchmark's export parser and the baselines (harness/run/k8s/run.py).
ENTRY_MODULES = (
    "harness.plugin",
    "harness.run.k8s.stage",
    "harness.run.k8s.run",
    "harness.run.smoke",
    "harness.run.perf",
    "harness.results.baselines",
)


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _paths() -> list[str]:
    on = _workflow().get("on") or _workflow().get(True)  # PyYAML reads the key `on` as True
    return list(on["pull_request"]["paths"])


def _covered(rel: str, patterns: list[str]) -> bool:
    # GitHub's filter: `**` matches any path, `*` one segment; fnmatch's `*` also crosses `/`, which is wider but
    # only for patterns that have a single `*`, and these do not
    return any(fnmatch.fnmatch(rel, p) for p in patterns)


def _loaded_harness_files() -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {ENTRY_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items()) "
        "if n.startswith('harness') and getattr(m, '__file__', None)})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return [str(Path(f).resolve().relative_to(ROOT)) for f in json.loads(out.stdout)]


def test_every_module_the_gpu_stage_loads_triggers_the_workflow():
    patterns = _paths()
    files = _loaded_harness_files()
    assert "harness/run/stage.py" in files and "harness/plugin.py" in files
    missed = [f for f in files if not _covered(f, patterns)]
    assert not missed, f"kind-mocker.yml's paths miss: {missed}"


def test_the_pinned_recipe_its_model_cache_and_the_packaging_trigger_it():
    env = _workflow()["env"]
    recipe_id = env["RECIPE"]
    (recipe,) = [r for r in discover(ROOT / "recipes") if r.id == recipe_id]
    patterns = _paths()
    files = [Path(f.path) for f in recipe.files()] + [ROOT / "recipes" / "versions.yaml", ROOT / "pyproject.toml"]
    missed = [str(p.relative_to(ROOT)) for p in files if not _covered(str(p.relative_to(ROOT)), patterns)]
    assert not missed, f"kind-mocker.yml's paths miss: {missed}"


def test_the_operator_is_the_pinned_recipes_release():
    """The chart, the operator and the mocker image come from the recipe's release (recipe.yaml versions.dynamo):
    1.4.0 under 1.6.1 recipes put a v1alpha1-era operator under v1beta1 manifests."""
    env = _workflow()["env"]
    (recipe,) = [r for r in discover(ROOT / "recipes") if r.id == env["RECIPE"]]
    assert env["DYNAMO_VERSION"] == str(recipe.metadata["versions"]["dynamo"]) == recipe.release


def test_the_nightly_never_skips_a_gpu_pool_scaled_to_zero():
    """Without --missing-gpus fail or wait, no GPU node at night is a skip, and the night ends green."""
    nightly = yaml.safe_load((WORKFLOW.parent / "nightly.yml").read_text())
    runs = [s.get("run", "") for job in nightly["jobs"].values() for s in job.get("steps", [])]
    gpu = [r for r in runs if "pytest -m gpu" in r]
    assert gpu and all(re.search(r"--missing-gpus (fail|wait)\b", r) for r in gpu), gpu
