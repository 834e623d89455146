"""`--changed-since REF` on a throwaway git repository: which recipes a change selects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.recipe.changes import ChangeError, changed_files, select_changed
from harness.recipe.discovery import discover

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}

TREE = {  # the recipes need not be valid: only their place in the tree matters here
    "recipes/m1/README.md": "# m1\n",
    "recipes/m1/model-cache/model-cache.yaml": "kind: PersistentVolumeClaim\n",
    "recipes/m1/vllm/agg/recipe.yaml": "schemaVersion: 1\n",
    "recipes/m1/vllm/agg/deploy.yaml": "kind: DynamoGraphDeployment\n",
    "recipes/m1/vllm/disagg/deploy.yaml": "kind: DynamoGraphDeployment\n",
    "recipes/m2/sglang/agg/deploy.yaml": "kind: DynamoGraphDeployment\n",
    "recipes/versions.yaml": "dynamo: 1.4.2\n",
    "harness/x.py": "X = 1\n",
    "schemas/s.json": "{}\n",
    "pyproject.toml": "[project]\nname = 'x'\n",
    "docs/notes.md": "notes\n",
}
ALL = ["m1/vllm/agg", "m1/vllm/disagg", "m2/sglang/agg"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout


def write(repo: Path, rel: str, text: str) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`main` with two models, three recipes and a harness; HEAD on a fresh branch `change`."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, text in TREE.items():
        write(repo, rel, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "catalogue")
    git(repo, "checkout", "-q", "-b", "change")
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template repository (copying is faster than committing anew)."""
    return Path(shutil.copytree(template, tmp_path / "repo", symlinks=True))


def selected(repo: Path, ref: str = "main") -> list[str]:
    root = repo / "recipes"
    return [r.id for r in select_changed(discover(root), root, ref)]


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_no_change_selects_nothing(repo):
    assert selected(repo) == []


@pytest.mark.parametrize(
    "path, expected",
    [
        ("recipes/m1/vllm/agg/deploy.yaml", ["m1/vllm/agg"]),
        ("recipes/m2/sglang/agg/deploy.yaml", ["m2/sglang/agg"]),
        ("recipes/m1/model-cache/model-cache.yaml", ["m1/vllm/agg", "m1/vllm/disagg"]),  # shared by the model's recipes
        ("recipes/m1/README.md", ["m1/vllm/agg", "m1/vllm/disagg"]),
        ("harness/x.py", ALL),
        ("schemas/s.json", ALL),
        ("pyproject.toml", ALL),
        ("recipes/versions.yaml", ALL),
        ("docs/notes.md", []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_committed_change_selects(repo, path, expected):
    write(repo, path, (repo / path).read_text() + "# changed\n")
    commit(repo)
    assert selected(repo) == expected


def test_harness_change_is_global(repo):
    write(repo, "harness/x.py", "X = 2\n")
    commit(repo)
    changes = changed_files(repo, "main")
    assert changes.everything and changes.files == ("harness/x.py",)


def test_uncommitted_and_untracked_files_count(repo):
    write(repo, "recipes/m1/vllm/disagg/deploy.yaml", "kind: Changed\n")  # modified, not staged
    assert selected(repo) == ["m1/vllm/disagg"]
    write(repo, "recipes/m2/sglang/agg/gaie/pool.yaml", "kind: InferencePool\n")  # untracked
    assert selected(repo) == ["m1/vllm/disagg", "m2/sglang/agg"]


def test_ignored_files_do_not_count(repo):
    write(repo, ".gitignore", "*.log\n")
    commit(repo, "ignore logs")
    write(repo, "recipes/m2/sglang/agg/run.log", "noise\n")
    assert selected(repo) == []


def test_a_file_moved_between_recipes_selects_both(repo):
    write(repo, "recipes/m1/vllm/agg/perf.yaml", "kind: Job\n")
    commit(repo, "perf")
    git(repo, "branch", "-f", "main")  # the perf file is part of the base now
    git(repo, "mv", "recipes/m1/vllm/agg/perf.yaml", "recipes/m2/sglang/agg/perf.yaml")
    commit(repo)
    assert selected(repo) == ["m1/vllm/agg", "m2/sglang/agg"]


def test_paths_with_spaces_and_non_ascii_names(repo):
    write(repo, "recipes/m2/sglang/agg/notes for reviewers.md", "x\n")
    write(repo, "recipes/m1/vllm/disagg/größe.yaml", "x: 1\n")
    commit(repo)
    assert selected(repo) == ["m1/vllm/disagg", "m2/sglang/agg"]
    assert "recipes/m1/vllm/disagg/größe.yaml" in changed_files(repo, "main").files


def test_the_merge_base_not_the_tip_of_ref(repo):
    """Work landed on main after the branch point is not this change's."""
    git(repo, "checkout", "-q", "main")
    write(repo, "recipes/m2/sglang/agg/deploy.yaml", "kind: OnMain\n")
    commit(repo, "main moves on")
    git(repo, "checkout", "-q", "change")
    write(repo, "recipes/m1/vllm/agg/deploy.yaml", "kind: OnBranch\n")
    commit(repo)
    assert selected(repo) == ["m1/vllm/agg"]


def test_unknown_ref_is_a_clear_error(repo):
    with pytest.raises(ChangeError) as exc:
        selected(repo, "origin/mian")
    message = str(exc.value)
    assert "--changed-since origin/mian: no such branch, tag or commit" in message and "fetch-depth: 0" in message


def test_no_common_ancestor_is_a_clear_error(repo):
    git(repo, "checkout", "-q", "--orphan", "unrelated")
    commit(repo, "unrelated history")
    with pytest.raises(ChangeError, match="no common ancestor.*shallow clone"):
        selected(repo, "main")


def test_not_a_git_checkout(tmp_path):
    (tmp_path / "recipes").mkdir()
    with pytest.raises(ChangeError, match="needs a git checkout"):
        select_changed([], tmp_path / "recipes", "main")


def test_recipes_tree_outside_recipes_dir_keeps_its_versions_file_global(repo):
    git(repo, "mv", "recipes", "catalogue")
    commit(repo, "move the tree")
    git(repo, "branch", "-f", "main")
    write(repo, "catalogue/versions.yaml", "dynamo: 1.4.3\n")
    root = repo / "catalogue"
    assert [r.id for r in select_changed(discover(root), root, "main")] == ALL


# --- through the command line and through pytest --------------------------------------------


def test_list_changed_since(repo, capsys):
    write(repo, "recipes/m1/vllm/agg/deploy.yaml", "kind: Changed\n")
    commit(repo)
    assert main(["list", "--json", "--changed-since", "main", "--recipes-dir", str(repo / "recipes")]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == ["m1/vllm/agg"]


def test_list_bad_ref_exits_2(repo, capsys):
    assert main(["list", "--changed-since", "nope", "--recipes-dir", str(repo / "recipes")]) == 2
    assert "--changed-since nope: no such branch" in capsys.readouterr().err


def test_pytest_collects_only_the_changed_recipe(repo):
    write(repo, "recipes/m2/sglang/agg/deploy.yaml", "kind: Changed\n")
    commit(repo)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:dash",
            "-m",
            "static",
            "--collect-only",
            "-q",
            "--changed-since",
            "main",
            "--recipes-dir",
            "recipes",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ids = [line for line in out.stdout.splitlines() if line.startswith("static::")]
    recipes = {i.split("::")[1] for i in ids}
    assert recipes == {"m2/sglang/agg", "catalogue"}, out.stdout + out.stderr
