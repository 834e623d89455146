"""The command line behaves like the tools users know (issue 26): never green on nothing, never overwrite
a foreign tree, hints that point at the line to fix, paths as arguments, the usual selection and output
options, a config file, and progress for long work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "recipes"
RECIPE = "qwen3-32b/vllm/agg-round-robin"

needs_catalogue = pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")


def small_catalogue(dest: Path, recipes: tuple[str, ...] = (RECIPE,)) -> Path:
    """A catalogue-convention tree with a few shipped recipes, their model files and versions.yaml."""
    for rid in recipes:
        model = rid.split("/")[0]
        shutil.copytree(CATALOGUE / rid, dest / rid)
        if not (dest / model / "model-cache").exists():
            shutil.copytree(CATALOGUE / model / "model-cache", dest / model / "model-cache")
            shutil.copy(CATALOGUE / model / "README.md", dest / model / "README.md")
    shutil.copy(CATALOGUE / "versions.yaml", dest / "versions.yaml")
    return dest


def foreign_tree(dest: Path) -> Path:
    """A tree in upstream's shape: a DynamoGraphDeployment under a free name, a hand-written README."""
    (dest / "qwen3" / "vllm" / "agg").mkdir(parents=True)
    shutil.copy(CATALOGUE / RECIPE / "deploy.yaml", dest / "qwen3" / "vllm" / "agg" / "deploy.yaml")
    shutil.copy(CATALOGUE / RECIPE / "deploy.yaml", dest / "qwen3" / "vllm" / "deploy_hopper.yaml")
    (dest / "README.md").write_text("# Our recipes\n\nWritten by hand.\n")
    (dest / "SIZING.md").write_text("hand-written sizing\n")
    return dest


# --- 1. docs never overwrites a foreign tree -----------------------------------------------------


@needs_catalogue
def test_docs_refuses_a_foreign_tree(tmp_path, capsys):
    tree = foreign_tree(tmp_path / "foreign")
    assert main(["docs", "--recipes-dir", str(tree)]) == 2
    err = capsys.readouterr().err
    assert "foreign tree" in err and "--convention catalogue" in err
    assert (tree / "README.md").read_text() == "# Our recipes\n\nWritten by hand.\n"
    assert (tree / "SIZING.md").read_text() == "hand-written sizing\n"


@needs_catalogue
def test_docs_writes_a_foreign_tree_when_told_it_is_a_catalogue(tmp_path, capsys):
    tree = foreign_tree(tmp_path / "foreign")
    assert main(["docs", "--recipes-dir", str(tree), "--convention", "catalogue"]) == 0
    assert "Written by hand" not in (tree / "README.md").read_text()


# --- 2. a missing or empty tree is a usage error -------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["check"], ["docs"], ["list"], ["conformance", "check"], ["docs", "--check"]], ids=" ".join
)
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_missing_or_empty_tree_is_a_usage_error(tmp_path, capsys, argv, kind):
    tree = tmp_path / "nope"
    if kind == "empty":
        tree.mkdir()
    assert main([*argv, "--recipes-dir", str(tree)]) == 2
    err = capsys.readouterr().err
    assert str(tree) in err and ("no such directory" if kind == "missing" else "no recipe found") in err


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_pytest_missing_or_empty_tree_is_a_usage_error(pytester: pytest.Pytester, kind):
    tree = pytester.path / "nope"
    if kind == "empty":
        tree.mkdir()
    res = pytester.runpytest_subprocess("-m", "static", "--recipes-dir", str(tree), "-p", "no:cacheprovider")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*{tree}*"])


# --- 3. a strict switch: every skip is a failure -------------------------------------------------


@needs_catalogue
def test_conformance_check_strict_fails_on_a_missing_env(tmp_path, capsys, monkeypatch):
    tree = small_catalogue(tmp_path / "recipes")
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.delenv("RECIPE_HARNESS_STRICT", raising=False)
    assert main(["conformance", "check", "--recipes-dir", str(tree)]) == 0  # skips: not strict
    assert "skipped" in capsys.readouterr().out
    assert main(["conformance", "check", "--recipes-dir", str(tree), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "--strict" in out and "skipped" in out
    monkeypatch.setenv("RECIPE_HARNESS_STRICT", "1")
    assert main(["conformance", "check", "--recipes-dir", str(tree)]) == 1


@needs_catalogue
def test_pytest_strict_env_turns_conformance_skips_into_failures(pytester: pytest.Pytester, monkeypatch):
    tree = small_catalogue(pytester.path / "recipes")
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(pytester.path / "no-cache"))
    monkeypatch.delenv("RECIPE_HARNESS_STRICT", raising=False)
    args = ("-m", "conformance", "--recipes-dir", str(tree), "-p", "no:cacheprovider", "-rA")
    res = pytester.runpytest_subprocess(*args)
    assert res.ret == 0
    res.assert_outcomes(skipped=2)
    monkeypatch.setenv("RECIPE_HARNESS_STRICT", "1")
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*RECIPE_HARNESS_STRICT*skipped*recipe-harness conformance setup*"])


@needs_catalogue
def test_pytest_strict_keeps_gpu_skips_unless_gpu_was_asked_for(pytester: pytest.Pytester, monkeypatch):
    tree = small_catalogue(pytester.path / "recipes")
    monkeypatch.setenv("RECIPE_HARNESS_STRICT", "1")
    monkeypatch.setenv("KUBECONFIG", str(pytester.path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    base = ("--recipes-dir", str(tree), "-p", "no:cacheprovider", "--recipe", RECIPE)
    res = pytester.runpytest_subprocess("-m", "gpu", *base)  # gpu asked for: a skip fails
    assert res.parseoutcomes().get("failed", 0) > 0 and "skipped" not in res.parseoutcomes()
    res.stdout.fnmatch_lines(["*RECIPE_HARNESS_STRICT*"])
    res = pytester.runpytest_subprocess("-k", "gpu", *base)  # every tier collected: no cluster, gpu skips by design
    outcomes = res.parseoutcomes()
    assert outcomes.get("skipped", 0) > 0 and outcomes.get("failed", 0) == 0


# --- 5-7. hints point to the right fix -----------------------------------------------------------


def findings_of(tree: Path, capsys, *extra: str) -> list[dict]:
    main(["check", "--recipes-dir", str(tree), "--format", "json", *extra])
    return json.loads(capsys.readouterr().out)["findings"]


def edit(path: Path, old: str, new: str, count: int = 1) -> int:
    """Replace the first `count` occurrences; returns the 1-based line of the first edit."""
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, count))
    return line


def current_release() -> str:
    import yaml

    meta = yaml.safe_load((CATALOGUE / RECIPE / "recipe.yaml").read_text())
    return str(meta["versions"]["dynamo"])


@needs_catalogue
def test_image_hint_blames_the_image_that_differs_from_recipe_yaml(tmp_path, capsys):
    tree = small_catalogue(tmp_path / "recipes")
    release = current_release()
    deploy = tree / RECIPE / "deploy.yaml"
    line = edit(deploy, f"vllm-runtime:{release}", "vllm-runtime:1.6.9")  # the worker; the frontend is untouched
    found = findings_of(tree, capsys)
    consistent = [f for f in found if f["check_id"] == "image-release-consistent"]
    assert [f["line"] for f in consistent] == [line], consistent
    assert "1.6.9" in consistent[0]["message"] and f":{release}" in consistent[0]["hint"]
    assert "recipe.yaml versions.dynamo" in consistent[0]["message"]
    assert not [f for f in found if f["check_id"] == "metadata-dynamo-release"]


@needs_catalogue
def test_metadata_release_hint_never_asks_for_an_outlier_tag(tmp_path, capsys):
    tree = small_catalogue(tmp_path / "recipes")
    release = current_release()
    deploy = tree / RECIPE / "deploy.yaml"
    edit(deploy, f"vllm-runtime:{release}", "vllm-runtime:1.6.9")
    edit(deploy, f"dynamo-frontend:{release}", "dynamo-frontend:1.6.8")
    meta = [f for f in findings_of(tree, capsys) if f["check_id"] == "metadata-dynamo-release"]
    assert len(meta) == 1 and "set versions.dynamo: 1.6" not in meta[0]["hint"]
    assert "1.6.8, 1.6.9" in meta[0]["message"]


@needs_catalogue
def test_counts_that_are_not_numbers_give_no_derived_findings(tmp_path, capsys):
    tree = small_catalogue(tmp_path / "recipes")
    deploy = tree / RECIPE / "deploy.yaml"
    edit(deploy, "replicas: 8", "replicas: eight")
    ids = {f["check_id"] for f in findings_of(tree, capsys)}
    assert "schema-valid" in ids
    assert not ids & {"gpu-total-matches-metadata", "nodes-match-metadata", "gpu-count-matches-topology"}, ids
    edit(deploy, 'nvidia.com/gpu: "2"', "nvidia.com/gpu: two", count=-1)
    ids = {f["check_id"] for f in findings_of(tree, capsys)}
    assert "gpu-count-matches-topology" not in ids, "requests no GPUs would be computed from a default"


@needs_catalogue
def test_pin_hint_names_the_current_release(tmp_path, capsys):
    tree = small_catalogue(tmp_path / "recipes")
    release = current_release()
    edit(tree / RECIPE / "deploy.yaml", f"vllm-runtime:{release}", "vllm-runtime:latest")
    pinned = [f for f in findings_of(tree, capsys) if f["check_id"] == "image-reference-pinned"]
    assert pinned and f":{release}" in pinned[0]["hint"] and "1.4.0" not in pinned[0]["hint"]


@needs_catalogue
def test_foreign_tree_security_hint_does_not_ask_for_recipe_yaml(tmp_path, capsys):
    tree = foreign_tree(tmp_path / "foreign")
    image = f"image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:{current_release()}"
    for deploy in tree.rglob("deploy*.yaml"):
        edit(deploy, image, f"{image}\n              securityContext: {{privileged: true}}")
    found = [f for f in findings_of(tree, capsys) if f["check_id"] == "no-privileged"]
    assert found and all("recipe.yaml" not in f["hint"] and ".recipe-harness.yaml" in f["hint"] for f in found)


def test_no_stale_paths_or_examples_in_the_harness_text():
    """Hints and docstrings name files that exist: harness/recipe/data/, no notes outside the repository,
    no release example frozen in a hint."""
    import re

    stale = re.compile(
        r"(?<!recipe/)harness/data/|/work/notes|operator-facts|e\.g\. :1\.4\.0|e\.g\. nvcr\.io\S*:1\.4\.0"
    )
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in sorted((REPO / "harness").rglob("*.py"))
        if p.name != "render.py"  # harness/analysis/render.py: its provenance note is [control-plane]'s to move
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if stale.search(line)
    ]
    assert not hits, "\n".join(hits)


# --- 8. paths as arguments -----------------------------------------------------------------------


@needs_catalogue
def test_check_takes_paths(tmp_path, capsys, monkeypatch):
    tree = small_catalogue(tmp_path / "recipes", (RECIPE, "qwen3-32b/vllm/disagg-kv-router"))
    monkeypatch.chdir(tmp_path)
    assert main(["list", f"recipes/{RECIPE}/deploy.yaml"]) == 0
    assert capsys.readouterr().out.split()[0] == RECIPE
    main(["list", "recipes/qwen3-32b"])
    assert len(capsys.readouterr().out.splitlines()) == 2
    main(["list", "recipes/qwen3-32b/model-cache/model-cache.yaml"])  # a model's shared file: its recipes
    assert len(capsys.readouterr().out.splitlines()) == 2
    main(["check", f"recipes/{RECIPE}", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["recipes"] == [RECIPE]
    assert main(["check", "recipes/no-such-model"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert tree.is_dir()


@needs_catalogue
def test_pytest_takes_recipe_paths(pytester: pytest.Pytester):
    small_catalogue(pytester.path / "recipes", (RECIPE, "qwen3-32b/vllm/disagg-kv-router"))
    (pytester.path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n")
    res = pytester.runpytest_subprocess("-m", "static", f"recipes/{RECIPE}", "--collect-only", "-q")
    ids = [line for line in res.stdout.lines if line.startswith("static::")]
    assert ids and all(i.startswith(f"static::{RECIPE}::") for i in ids), res.stdout.str()[-2000:]
    res = pytester.runpytest_subprocess("-m", "static", f"recipes/{RECIPE}")
    assert res.ret == 0, res.stdout.str()[-2000:]
    assert "passed" in res.stdout.str()


# --- 11. pytest: rootdir and config kept, one why per check, an honest header ---------------------


@needs_catalogue
def test_pytest_recipes_dir_space_form_keeps_rootdir_and_config(pytester: pytest.Pytester, tmp_path_factory):
    tree = small_catalogue(tmp_path_factory.mktemp("elsewhere") / "recipes")
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider --static-items per-check'\n")
    res = pytester.runpytest_subprocess("-m", "static", "--recipes-dir", str(tree), "--collect-only", "-q")
    lines = res.stdout.lines
    assert any(line.startswith(f"static::{RECIPE}::") for line in lines), res.stdout.str()[-2000:]
    assert not any("../static" in line for line in lines)
    res = pytester.runpytest_subprocess("-m", "static", "--recipes-dir", str(tree))
    res.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: pyproject.toml"])
    assert not [line for line in res.stdout.lines if line.startswith("collected 0 items")]


@needs_catalogue
def test_pytest_why_once_per_check_and_collected_count(pytester: pytest.Pytester):
    tree = small_catalogue(pytester.path / "recipes", (RECIPE, "qwen3-32b/vllm/disagg-kv-router"))
    for deploy in tree.rglob("deploy.yaml"):
        edit(deploy, f"vllm-runtime:{current_release()}", "vllm-runtime:latest", count=-1)
    res = pytester.runpytest_subprocess("-m", "static", "--recipes-dir", str(tree), "-p", "no:cacheprovider")
    out = res.stdout.str()
    assert out.count("[image-reference-pinned] image tag 'latest'") >= 2  # a failure per recipe
    from harness.checks import all_checks

    why = next(c.why for c in all_checks() if c.id == "image-reference-pinned")
    assert out.count(why[:60]) == 1, "the why paragraph is printed once, in the summary"
    collected = [line for line in res.stdout.lines if line.startswith("collected ")]
    assert collected and collected[0] != "collected 0 items"
