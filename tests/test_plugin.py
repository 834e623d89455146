"""The pytest plugin end to end: test ids, selection errors, hostile foreign trees, reporters."""

from __future__ import annotations

import json

import pytest

from .conftest import hostile_tree

pytest_plugins = ["pytester"]


def test_hostile_foreign_tree_completes_with_findings(pytester: pytest.Pytester):
    tree = hostile_tree(pytester.path / "foreign")
    out_json = pytester.path / "findings.json"
    res = pytester.runpytest_subprocess(
        "-m",
        "static",
        "--recipes-dir",
        str(tree),
        "--findings-json",
        str(out_json),
        "-p",
        "no:cacheprovider",
        "--max-file-bytes",
        "100000",
    )
    text = res.stdout.str()
    assert res.ret == 1, text  # tests failed, no internal error, no usage error
    assert "Traceback" not in text and "INTERNALERROR" not in text
    assert "internal error in check" not in text
    findings = json.loads(out_json.read_text())["findings"]
    got = {(f["recipe"].rsplit("/", 1)[-1], f["check_id"]) for f in findings}
    for mode in ("binary", "bomb", "empty", "dupkey", "huge", "deep"):
        assert (mode, "yaml-well-formed") in got, mode
    assert ("wrong-kind", "schema-valid") in got
    assert ("not-a-mapping", "schema-valid") in got
    assert ("agg", "yaml-well-formed") in got  # the symlink out of the tree
    assert ("agg", "layout-framework-dir") in got
    dup = next(f for f in findings if "duplicate key" in f["message"])
    assert dup["line"] == 3
    # every finding printed as path:line:col: [check-id] message
    assert any(":3:1: [yaml-well-formed] duplicate key 'kind'" in line for line in text.splitlines())


def test_test_ids_are_stable(pytester: pytest.Pytester):
    tree = hostile_tree(pytester.path / "foreign")
    res = pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), "--collect-only", "-q", "-p", "no:cacheprovider"
    )
    ids = set(res.stdout.str().splitlines())
    assert "static::m1/vllm/dupkey::yaml-well-formed" in ids
    assert "static::m1/vllm/dupkey::schema-valid" in ids
    assert "static::catalogue::layout-tree" in ids
    assert not any(i.startswith(("sim::", "gpu::")) for i in ids)  # -m static builds no stage items


def test_junit_names_carry_recipe_and_check(pytester: pytest.Pytester):
    tree = hostile_tree(pytester.path / "foreign")
    xml = pytester.path / "junit.xml"
    pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), f"--junitxml={xml}", "-p", "no:cacheprovider"
    )
    body = xml.read_text()
    assert 'classname="static.m1/vllm/dupkey" name="yaml-well-formed"' in body


def test_unknown_selector_is_a_usage_error_with_near_matches(pytester: pytest.Pytester):
    tree = hostile_tree(pytester.path / "foreign")
    res = pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), "--recipe", "m2", "-p", "no:cacheprovider"
    )
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "matches no recipe" in res.stderr.str() and "m1" in res.stderr.str()


def test_github_annotations(pytester: pytest.Pytester, monkeypatch):
    tree = hostile_tree(pytester.path / "foreign")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    res = pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), "--recipe", "m1/vllm/dupkey", "-p", "no:cacheprovider"
    )
    lines = [ln for ln in res.stdout.str().splitlines() if ln.startswith("::error file=")]
    assert any(",line=3," in ln and "title=yaml-well-formed" in ln for ln in lines), res.stdout.str()


def test_explicit_test_paths_do_not_pull_in_recipes(pytester: pytest.Pytester):
    pytester.makepyfile(test_one="def test_x():\n    assert True\n")
    res = pytester.runpytest_subprocess("test_one.py", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert "static::" not in res.stdout.str()
