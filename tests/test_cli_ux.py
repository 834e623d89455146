"""The command line behaves like the tools users know (issue 26): never green on nothing, never overwrite
a foreign tree, hints that point at the line to fix, paths as arguments, the usual selection and output
options, a config file, and progress for long work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.recipe import kustomize
from harness.recipe.discovery import is_overlay_dir
from tests.conftest import copy_model

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "recipes"
RECIPE = "qwen3-32b/vllm/agg-round-robin"

needs_catalogue = pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")


def small_catalogue(dest: Path, model: str = "qwen3-32b") -> Path:
    """A clean catalogue-convention tree: one shipped model with its recipes, versions.yaml, generated docs."""
    from harness.analysis.docs import write
    from harness.run.static import make_selection

    copy_model(model, dest)
    write(make_selection(dest).tree)
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
    skipped = res.parseoutcomes()["skipped"]
    assert skipped >= 2 and "passed" not in res.parseoutcomes()
    monkeypatch.setenv("RECIPE_HARNESS_STRICT", "1")
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(failed=skipped)
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
    tree = small_catalogue(tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    assert main(["list", f"recipes/{RECIPE}/deploy.yaml"]) == 0
    assert capsys.readouterr().out.split()[0] == RECIPE
    # the model's recipe directories, and the kustomize overlays beside them when a kustomize builds them
    recipes = [d for d in (tree / "qwen3-32b").glob("*/*") if d.is_dir() and d.parent.name != "model-cache"]
    if kustomize.locate() is None:
        recipes = [d for d in recipes if not is_overlay_dir(d)]
    main(["list", "recipes/qwen3-32b"])
    assert len(capsys.readouterr().out.splitlines()) == len(recipes) >= 2
    main(["list", "recipes/qwen3-32b/model-cache/model-cache.yaml"])  # a model's shared file: its recipes
    assert len(capsys.readouterr().out.splitlines()) == len(recipes)
    main(["check", f"recipes/{RECIPE}", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["recipes"] == [RECIPE]
    assert main(["check", "recipes/no-such-model"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert tree.is_dir()


@needs_catalogue
def test_pytest_takes_recipe_paths(pytester: pytest.Pytester):
    small_catalogue(pytester.path / "recipes")
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
    tree = small_catalogue(pytester.path / "recipes")
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


# --- 9. selection and output ---------------------------------------------------------------------


def broken_catalogue(dest: Path) -> Path:
    """The small catalogue with a floating image tag on the worker (one error of image-reference-pinned)."""
    tree = small_catalogue(dest)
    edit(tree / RECIPE / "deploy.yaml", f"vllm-runtime:{current_release()}", "vllm-runtime:latest")
    return tree


@needs_catalogue
def test_select_ignore_and_statistics(tmp_path, capsys):
    tree = broken_catalogue(tmp_path / "recipes")
    assert main(["check", "--recipes-dir", str(tree), "--select", "image-*", "--statistics"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split() == ["1", "image-reference-pinned", "error"]
    assert main(["check", "--recipes-dir", str(tree), "--ignore", "image-reference-pinned"]) == 0
    capsys.readouterr()
    assert main(["check", "--recipes-dir", str(tree), "--select", "image-refrence-pinned"]) == 2
    assert "did you mean image-reference-pinned" in capsys.readouterr().err


# SARIF 2.1.0 (docs.oasis-open.org/sarif/sarif/v2.1.0, sarif-schema-2.1.0.json): the required properties
# and enums of the objects the harness writes, as a JSON Schema of our own.
SARIF_STRUCTURE = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "shortDescription": {"$ref": "#/$defs/message"},
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "properties": {"level": {"$ref": "#/$defs/level"}},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": -1},
                                "level": {"$ref": "#/$defs/level"},
                                "message": {"$ref": "#/$defs/message"},
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "properties": {
                                                            "uri": {"type": "string"},
                                                            "uriBaseId": {"type": "string"},
                                                        },
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "properties": {
                                                            "startLine": {"type": "integer", "minimum": 1},
                                                            "startColumn": {"type": "integer", "minimum": 1},
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                    "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                },
            },
        },
    },
    "$defs": {
        "level": {"enum": ["none", "note", "warning", "error"]},
        "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}]},
    },
}


@needs_catalogue
def test_sarif_output_is_sarif_2_1_0(tmp_path, capsys, monkeypatch):
    import jsonschema

    tree = broken_catalogue(tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--format", "sarif", "--output", "out.sarif", "recipes"]) == 1
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    jsonschema.validate(sarif, SARIF_STRUCTURE)
    run = sarif["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    (result,) = [r for r in run["results"] if r["ruleId"] == "image-reference-pinned"]
    assert rules[result["ruleIndex"]] == "image-reference-pinned" and result["level"] == "error"
    place = result["locations"][0]["physicalLocation"]
    assert place["artifactLocation"]["uri"] == f"recipes/{RECIPE}/deploy.yaml"
    text = (tree / RECIPE / "deploy.yaml").read_text().splitlines()
    assert "latest" in text[place["region"]["startLine"] - 1]


@needs_catalogue
def test_junit_from_the_cli(tmp_path, capsys):
    import xml.etree.ElementTree as ET

    tree = broken_catalogue(tmp_path / "recipes")
    assert main(["check", "--recipes-dir", str(tree), "--format", "junit", "--output", str(tmp_path / "j.xml")]) == 1
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    assert failed == [f"static::{RECIPE}::image-reference-pinned"]
    assert f"static::{RECIPE}::schema-valid" in cases and int(suite.get("tests")) == len(cases) > 30


@needs_catalogue
def test_conformance_check_github_format(tmp_path, capsys, monkeypatch):
    tree = small_catalogue(tmp_path / "recipes")
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.delenv("RECIPE_HARNESS_STRICT", raising=False)
    assert main(["conformance", "check", "--recipes-dir", str(tree), "--format", "github"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("::warning ") for line in lines), lines


def test_checks_listing_wraps_and_has_json(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["checks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 120
    assert main(["checks", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"id", "severity", "why", "convention"} <= set(data[0])
    assert main(["checks", "image-pinned", "--format", "json"]) == 2
    assert "image-reference-pinned" in json.loads(capsys.readouterr().out)["suggestions"]
    assert main(["checks", "image-pinned"]) == 2
    assert "did you mean image-reference-pinned" in capsys.readouterr().err


SUBCOMMANDS = [
    ["check"],
    ["checks"],
    ["docs"],
    ["list"],
    ["report"],
    ["render"],
    ["schemas"],
    ["schemas", "import-crd"],
    ["bump"],
    ["convert"],
    ["conformance"],
    ["conformance", "setup"],
    ["conformance", "check"],
    ["conformance", "list"],
    ["conformance", "record-trtllm"],
]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_subcommand_help_has_description_and_example(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    _usage, _, rest = out.partition("\n\n")
    assert rest.split("\n\n")[0].strip() and not rest.startswith(("positional", "options")), "a description"
    assert "examples:" in out and "recipe-harness " in out.split("examples:")[1]


# --- 10. configuration ---------------------------------------------------------------------------


@needs_catalogue
def test_config_from_pyproject_at_the_repository_root(tmp_path, capsys):
    repo = tmp_path / "repo"
    tree = broken_catalogue(repo / "recipes")
    (repo / ".git").mkdir()
    (repo / "pyproject.toml").write_text(
        '[tool.recipe-harness]\nseverity-floor = "error"\n'
        '[[tool.recipe-harness.ignore]]\nchecks = ["image-reference-pinned"]\n'
        f'recipes = ["{RECIPE}"]\nreason = "moving tag, reviewed in #1234"\n'
    )
    assert main(["check", "--recipes-dir", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"configuration {repo / 'pyproject.toml'}: ignores, severity-floor" in out
    assert "reviewed in #1234" in out and "1 finding(s) ignored" in out


@needs_catalogue
def test_config_yaml_at_the_repository_root_with_registries(tmp_path, capsys):
    repo = tmp_path / "repo"
    tree = small_catalogue(repo / "recipes")
    (repo / ".git").mkdir()
    (repo / ".recipe-harness.yaml").write_text("registries: [registry.example.com]\n")
    assert main(["check", "--recipes-dir", str(tree), "--select", "image-registry-allowed"]) == 1
    assert "registry.example.com" in capsys.readouterr().out


@needs_catalogue
def test_ignore_unknown_id_did_you_mean_unused_entry_and_quoted_hash(tmp_path, capsys):
    tree = small_catalogue(tmp_path / "recipes")
    config = tree / ".recipe-harness.yaml"
    config.write_text("ignore:\n  - checks: [no-privilegd]\n")
    assert main(["check", "--recipes-dir", str(tree)]) == 2
    assert "did you mean no-privileged" in capsys.readouterr().err
    config.write_text('ignore:\n  - checks: [no-privileged]\n    reason: "RDMA pods, reviewed in #1234"\n')
    assert main(["check", "--recipes-dir", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "(RDMA pods, reviewed in #1234)" in out and "unused" in out
    config.write_text("ignore:\n  - checks: [no-privileged]\n    reason: RDMA pods, reviewed in #1234\n")
    main(["check", "--recipes-dir", str(tree)])
    assert "quote the reason" in capsys.readouterr().out


# --- 12-13. progress, status, bump and convert ---------------------------------------------------


def test_conformance_list_is_a_table(tmp_path, capsys, monkeypatch):
    root = tmp_path / "cache" / "conformance"
    env = root / "1.6.1-vllm"
    env.mkdir(parents=True)
    (env / "conformance-env.json").write_text(
        json.dumps(
            {
                "release": "1.6.1",
                "engine": "vllm",
                "installed": {"ai-dynamo": "1.6.1", "vllm": "0.31.0"},
                "size_bytes": 9.2e9,
                "built_at": "2026-01-01T00:00:00+0000",
            }
        )
    )
    (root / "1.6.1-sglang.lock").write_text("")
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["conformance", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RELEASE", "ENGINE", "VERSION", "SIZE", "STATUS"]
    assert lines[1].split()[:2] == ["1.6.1", "sglang"] and "not built" in lines[1]
    assert lines[2].split()[:6] == ["1.6.1", "vllm", "0.31.0", "9.2", "GB", "ready"]


def test_bump_help_names_the_releases_and_how_to_add_one(capsys):
    from harness.commands.bump import known_releases

    with pytest.raises(SystemExit):
        main(["bump", "--help"])
    out = capsys.readouterr().out
    assert known_releases() and all(r in out for r in known_releases())
    assert "to add one" in out and "harness/recipe/data/artifacts.yaml" in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for `git apply --check`")
def test_convert_dry_run_is_a_patch_git_applies(tmp_path, capsys, monkeypatch):
    import subprocess

    src = REPO / "tests" / "fixtures" / "catalogues" / "1.4.0-v1alpha1"
    if not src.is_dir():
        pytest.skip("no frozen v1alpha1 catalogue in this checkout")
    tree = tmp_path / "elsewhere" / "recipes"
    shutil.copytree(src, tree)
    bad = sorted(tree.glob("*/*/*/deploy.yaml"))[-1]
    bad.write_text(  # v1beta1 has no spec.pvcs: a claim the operator would create cannot be converted
        "apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeployment\nmetadata: {name: x}\n"
        "spec:\n  pvcs: [{name: cache, create: true}]\n  services: {}\n"
    )
    monkeypatch.chdir(tmp_path)
    rc = main(["convert", "--to", "v1beta1", "--recipes-dir", str(tree), "--dry-run"])
    captured = capsys.readouterr()
    patch = tmp_path / "to-v1beta1.patch"
    patch.write_text(captured.out)
    assert captured.out.startswith("diff --git a/elsewhere/recipes/")
    work = tmp_path / "apply"
    shutil.copytree(tmp_path / "elsewhere", work / "elsewhere")
    res = subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert rc == 1  # the broken manifest cannot be converted: named last, on stderr
    last = captured.err.strip().splitlines()
    assert "could not be converted" in last[-2] and str(bad.parent.relative_to(tree)) in last[-1]


FAKE_SIM = """
import harness.plugin as plugin
from harness.run.stage import Step, StepRun


class FakeStage:
    name = "sim"

    def steps(self, recipe):
        return [Step("deploy", lambda run: None, setup=True), Step("smoke-chat", lambda run: None)]

    def available(self, options):
        return None

    def open(self, recipe, options):
        return StepRun(self.steps(recipe))


plugin.STAGE_IMPLEMENTATIONS["sim"] = "conftest:FakeStage"
"""


@needs_catalogue
def test_sim_steps_are_announced_as_they_start_without_verbose(pytester: pytest.Pytester):
    tree = small_catalogue(pytester.path / "recipes")
    pytester.makeconftest(FAKE_SIM)
    res = pytester.runpytest_subprocess(
        "-m", "sim", "--recipes-dir", str(tree), "--recipe", RECIPE, "-p", "no:cacheprovider"
    )
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([f"sim {RECIPE}: deploy . smoke-chat .*"])


@needs_catalogue
def test_conformance_setup_shows_phase_and_elapsed_time(tmp_path, capsys, monkeypatch):
    import time

    from harness.commands import conformance
    from harness.run.conformance import envs

    tree = small_catalogue(tmp_path / "recipes")
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(conformance, "PROGRESS_INTERVAL", 0.05)
    monkeypatch.setattr(envs, "requirements", lambda *a: ["ai-dynamo==1.6.1", "vllm==0.31.0"])

    def fake_build(release, kind, version, say):  # what ensure_env writes to its log, over time
        log = envs.cache_root() / f"{envs.env_name(release, kind)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        say(f"conformance: building {kind}")
        log.write_text("# building\n$ uv pip install --python x ai-dynamo==1.6.1 vllm==0.31.0\nResolved 152 packages\n")
        time.sleep(0.3)
        log.write_text(log.read_text() + "$ uv pip install --no-deps ai-dynamo==1.6.1\nInstalled 1 package\n")
        time.sleep(0.3)
        return envs.Env(release, kind, log.parent / "x", {"size_bytes": 1e9, "installed": {"vllm": "0.31.0"}})

    monkeypatch.setattr(envs, "ensure_env", fake_build)
    assert main(["conformance", "setup", "--recipes-dir", str(tree), "--release", "1.6.1", "--engine", "vllm"]) == 0
    out = capsys.readouterr().out
    assert "resolving, downloading and installing the requirements (Resolved 152 packages)" in out
    assert "installing ai-dynamo --no-deps (Installed 1 package)" in out
    assert "s] 1.6.1 vllm:" in out and "ready in" in out


# --- E. the README shows the conventions, and its examples work ----------------------------------


def test_readme_cli_conventions_and_its_config_examples_keep_the_reason(tmp_path):
    import re

    from harness.checks import all_checks
    from harness.run.ignores import load_config

    readme = (REPO / "README.md").read_text()
    section = readme.split("## CLI conventions", 1)[1].split("\n## ", 1)[0]
    for topic in ("Exit codes", "`0`", "`1`", "`2`", "Selection", "Configuration", "Output formats", "sarif"):
        assert topic in section, topic
    ids = [c.id for c in all_checks()]
    yaml_block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "ignore:" in b)
    toml_block = next(b for b in re.findall(r"```toml\n(.*?)```", section, re.S))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".recipe-harness.yaml").write_text(yaml_block)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "pyproject.toml").write_text(toml_block.replace("\n  ", "\n"))
    for d in ("a", "b"):
        (tmp_path / d / ".git").mkdir()
        config = load_config(tmp_path / d, ids)
        assert config.ignores.entries[0].reason == "RDMA pods, reviewed in #1234"
        assert not config.ignores.warnings
