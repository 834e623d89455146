"""Nothing is lost by the fast paths: per-recipe items report what per-check items report (findings
JSON, JUnit cases, failure lines), and compiled schema validation finds what pure-Python validation
finds, on the shipped catalogue, every defect fixture and the hostile inputs. The 1,000-recipe
equality runs in benchmarks/static_scale.py."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.checks import all_checks
from harness.recipe import compiled
from harness.recipe.schemas import core_validator, generated_validator, metadata_validator
from harness.run.defects import apply_edit, load_defects
from harness.run.static import context_for, make_selection, run_static

from .conftest import CATALOGUE, hostile_tree

pytest_plugins = ["pytester"]
SCHEMA_CHECKS = ("schema-valid", "metadata-schema")


def defect_tree(root: Path) -> Path:
    """The catalogue, every defect fixture, and the hostile foreign inputs (`m1`) in one tree.

    The fixtures are packed into copies of the models they edit (`<model>-d<N>`): a fixture goes into
    the first copy where none of its files has been edited yet, and a copy keeps only the recipes its
    fixtures edit (the first one when they edit the model's shared files). That keeps the tree at
    about 40 recipes, so the comparisons below stay fast."""
    shutil.copytree(CATALOGUE, root, symlinks=True)
    # (base catalogue, model) -> the files edited in each of its copies; a fixture may name a frozen base
    copies: dict[tuple[Path, str], list[set[str]]] = {}
    for defect in load_defects():
        assert not defect.broken, defect.broken
        files_by_model: dict[str, set[str]] = {}
        for edit in defect.edits:
            model, _, rest = edit["file"].partition("/")
            files_by_model.setdefault(model, set()).add(rest)
        target: dict[str, str] = {}
        for model, files in files_by_model.items():
            taken = copies.setdefault((defect.catalogue, model), [])
            n = next((i for i, used in enumerate(taken) if not used & files), len(taken))
            name = f"{model}-d{n}" if defect.catalogue == CATALOGUE else f"{model}-{defect.catalogue.name}-d{n}"
            if n == len(taken):
                taken.append(set())
                shutil.copytree(defect.catalogue / model, root / name, symlinks=True)
            taken[n] |= files
            target[model] = name
        for edit in defect.edits:
            model, _, rest = edit["file"].partition("/")
            apply_edit({**edit, "file": f"{target[model]}/{rest}"}, root / target[model] / rest)
    for (base, model), taken in copies.items():
        for n, files in enumerate(taken):
            copy = root / (f"{model}-d{n}" if base == CATALOGUE else f"{model}-{base.name}-d{n}")
            edited = {tuple(f.split("/")[:2]) for f in files}
            recipes = sorted(p.parent.relative_to(copy) for p in copy.glob("*/*/recipe.yaml"))
            keep = {r for r in recipes if tuple(r.parts) in edited} or set(recipes[:1])
            for r in recipes:
                if r not in keep:
                    shutil.rmtree(copy / r)
            # the kustomize variants beside the recipes: the fixtures edit plain recipes, and an overlay of a
            # removed base would only add a broken build (the catalogue's own overlays stay in the tree)
            for k in copy.glob("*/*/kustomization.yaml"):
                if not (k.parent / "recipe.yaml").exists():
                    shutil.rmtree(k.parent)
    hostile_tree(root)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    if not CATALOGUE.is_dir():
        pytest.skip("no shipped catalogue under recipes/")
    return defect_tree(tmp_path_factory.mktemp("speed") / "recipes")


def _junit(path: Path) -> dict:
    root = ET.parse(path).getroot()
    return {
        (tc.get("classname"), tc.get("name")): (tc.get("file"), [(c.tag, c.get("message"), c.text) for c in tc])
        for tc in root.iter("testcase")
    }


def _run(pytester: pytest.Pytester, tree: Path, mode: str, *args: str) -> tuple[dict, dict, list[str]]:
    out, xml = pytester.path / f"{mode}.json", pytester.path / f"{mode}.xml"
    res = pytester.runpytest_subprocess(
        "-m",
        "static",
        "-p",
        "no:cacheprovider",
        "--recipes-dir",
        str(tree),
        "--max-file-bytes",
        "100000",
        "--static-items",
        mode,
        "--findings-json",
        str(out),
        f"--junitxml={xml}",
        *args,
    )
    text = res.stdout.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-3000:]
    failed = sorted(line.split(" - ")[0] for line in res.stdout.lines if line.startswith("FAILED "))
    return json.loads(out.read_text()), _junit(xml), failed


def test_per_recipe_items_report_what_per_check_items_report(pytester: pytest.Pytester, tree: Path):
    per_check, per_recipe = _run(pytester, tree, "per-check"), _run(pytester, tree, "per-recipe")
    assert per_recipe[0] == per_check[0]  # findings JSON
    assert per_recipe[1] == per_check[1]  # one JUnit case per check: names, files, failure texts
    assert per_recipe[2] == per_check[2] and per_check[2]  # the FAILED lines
    assert len(per_check[1]) > 2000
    dup = next(f for f in per_check[0]["findings"] if "duplicate key 'kind'" in f["message"])
    assert dup["line"] == 3 and dup["file"].endswith("m1/vllm/dupkey/deploy.yaml")  # hostile input: file and line


def test_keyword_selects_single_checks_in_a_recipe_item(pytester: pytest.Pytester):
    tree = hostile_tree(pytester.path / "foreign")
    expr = ("-k", "schema-valid and not wrong or dupkey and yaml")
    per_check, per_recipe = _run(pytester, tree, "per-check", *expr), _run(pytester, tree, "per-recipe", *expr)
    assert per_recipe[1] == per_check[1] and per_recipe[2] == per_check[2]
    cases = set(per_check[1])
    assert ("static.m1/vllm/dupkey", "yaml-well-formed") in cases and ("static.m1/vllm/dupkey", "schema-valid") in cases
    assert {name for _, name in cases} == {"schema-valid", "yaml-well-formed"}, cases
    assert not any("wrong-kind" in cls for cls, _ in cases)


def test_compiled_and_python_schema_validation_find_the_same(tree: Path, monkeypatch):
    if not compiled.enabled():
        pytest.skip("jsonschema-rs is not installed: only the pure-Python validation runs")
    checks = [c for c in all_checks() if c.id in SCHEMA_CHECKS]

    def findings() -> list[dict]:
        selection = make_selection(tree)  # a fresh load: nothing cached on the recipes
        return [f.to_dict() for f in run_static(selection, context_for(selection), checks).findings]

    fast = findings()
    monkeypatch.setenv(compiled.ENGINE_ENV, "python")
    assert findings() == fast
    assert any(f["check_id"] == "schema-valid" for f in fast)


# Values where Rust and Python regex/number semantics could part: the twin may only ever be stricter
# (then Python decides), never accept what Python rejects.
EDGE_VALUES = [
    {"metadata": {"name": "ok\n"}},
    {"metadata": {"name": "x" * 300}},
    {"metadata": {"name": "Ab"}},
    {"metadata": {"name": "a\u0660b"}},
    {"spec": {"replicas": 1.0}},
    {"spec": {"replicas": 1.5}},
    {"spec": {"replicas": True}},
    {"spec": {"replicas": 2**70}},
    {"spec": {"replicas": float("nan")}},
    {"metadata": {"labels": {"a": 1}}},
    {"metadata": {"labels": {1: "a"}}},
    {"spec": None},
    {"metadata": []},
]


def test_the_twin_never_accepts_what_python_rejects():
    pod = core_validator("v1", "Pod")
    validators = [v for v in (pod, metadata_validator()) if v is not None]
    dgd = generated_validator("nvidia.com/v1alpha1", "DynamoGraphDeployment")
    if dgd is not None:
        validators.append(dgd[0])
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}}
    for v in validators:
        for edge in EDGE_VALUES:
            instance = {**base, **edge}
            if compiled.known_valid(v, instance):
                assert not list(v.iter_errors(instance)), (v.schema.get("title"), edge)
