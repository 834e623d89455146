"""The plugin and `recipe-harness check` decide the applicable checks in one place
(`harness.run.static.applicable_checks`): the same selection gives the same findings both ways."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

from .conftest import CATALOGUE

pytest_plugins = ["pytester"]
ONE_RECIPE = "qwen3-32b/vllm/agg-round-robin"


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch) -> Path:
    """A repository with a copy of the catalogue whose generated docs are stale (a tree finding)."""
    if not CATALOGUE.is_dir():
        pytest.skip("no shipped catalogue under recipes/")
    shutil.copytree(CATALOGUE, pytester.path / "recipes", symlinks=True)
    (pytester.path / "pyproject.toml").write_text("")  # marks the repository root for the default recipes dir
    with (pytester.path / "recipes" / "README.md").open("a") as fh:
        fh.write("\nedited by hand\n")
    monkeypatch.chdir(pytester.path)
    return pytester.path


def _plugin(pytester: pytest.Pytester, *args: str) -> dict:
    out = pytester.path / "plugin.json"
    pytester.runpytest_subprocess("-m", "static", "-p", "no:cacheprovider", "--findings-json", str(out), *args)
    return json.loads(out.read_text())


def _cli(repo: Path, capsys, *args: str) -> dict:
    out = repo / "cli.json"
    main(["check", "--format", "json", "--output", str(out), *args])
    capsys.readouterr()
    return json.loads(out.read_text())


@pytest.mark.parametrize("selection", [[], ["--recipe", ONE_RECIPE]], ids=["whole-tree", "one-recipe"])
def test_plugin_and_cli_give_identical_findings(repo, pytester, capsys, selection):
    via_plugin, via_cli = _plugin(pytester, *selection), _cli(repo, capsys, *selection)
    assert via_plugin["recipes"] == via_cli["recipes"]
    assert via_plugin["findings"] == via_cli["findings"]
    stale = [f for f in via_cli["findings"] if f["check_id"] == "docs-in-sync"]
    # the tree checks run on the whole tree only: a one-recipe selection is about that recipe
    assert bool(stale) == (not selection), via_cli["findings"]
