"""Select the recipes a git change touches (`--changed-since REF`)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.recipe.model import MODEL_CACHE_DIR, Recipe

# A change to any of these can change every recipe's verdict: run everything.
GLOBAL_PATHS = ("harness/", "schemas/", "pyproject.toml", "conftest.py", "recipes/versions.yaml")
VERSIONS_FILE = "versions.yaml"  # in the recipes tree: global wherever the tree lives
FETCH_HINT = "in CI, check out with actions/checkout fetch-depth: 0"


class ChangeError(RuntimeError):
    """git could not answer (not a repository, unknown ref, no merge base)."""


@dataclass(frozen=True)
class ChangeSet:
    files: tuple[str, ...]  # repository-relative paths
    everything: bool  # a global path changed

    def touches(self, recipe: Recipe, repo: Path) -> bool:
        if self.everything:
            return True
        own = _rel(recipe.path, repo) + "/"
        cache = _rel(recipe.model_cache_dir, repo) + "/"
        readme = _rel(recipe.model_dir / "README.md", repo)
        # a kustomization's recipe reads its bases, components and patches wherever they are
        inputs = [_rel(p, repo) for p in recipe.kustomize_build.inputs] if recipe.kustomize_build else []
        return any(
            f.startswith(own)
            or f.startswith(cache)
            or f == readme
            or any(f == i or f.startswith(i + "/") for i in inputs)
            for f in self.files
        )


def _rel(path: Path, repo: Path) -> str:
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChangeError(f"git failed: {exc}") from exc


def _git(repo: Path, *args: str) -> str:
    out = _run(repo, *args)
    if out.returncode != 0:
        raise ChangeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"git {' '.join(args)} failed")
    return out.stdout


def _paths(nul_separated: str) -> set[str]:
    # -z output: names are neither split on spaces nor C-quoted (core.quotePath)
    return {p for p in nul_separated.split("\0") if p}


def _toplevel(repo: Path) -> Path:
    out = _run(repo, "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise ChangeError(f"--changed-since needs a git checkout: {repo} is not inside a git repository")
    return Path(out.stdout.strip())


def _merge_base(top: Path, ref: str) -> str:
    if _run(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise ChangeError(
            f"--changed-since {ref}: no such branch, tag or commit in {top}; "
            f"check the spelling, or fetch it ({FETCH_HINT})"
        )
    out = _run(top, "merge-base", ref, "HEAD")
    if out.returncode != 0:
        raise ChangeError(
            f"--changed-since {ref}: {ref} and HEAD have no common ancestor; a shallow clone? ({FETCH_HINT})"
        )
    return out.stdout.strip()


def changed_files(repo: Path, ref: str) -> ChangeSet:
    """Files changed between the merge base of REF and HEAD, plus uncommitted and untracked ones.

    A moved file counts at both places (--no-renames): the recipe it left changed too."""
    top = _toplevel(repo)
    base = _merge_base(top, ref)
    files = _paths(_git(top, "diff", "--name-only", "--no-renames", "-z", base))
    files |= _paths(_git(top, "ls-files", "--others", "--exclude-standard", "-z"))
    everything = any(f.startswith(GLOBAL_PATHS) or f in GLOBAL_PATHS for f in files)
    return ChangeSet(tuple(sorted(files)), everything)


def select_changed(recipes: list[Recipe], root: Path, ref: str) -> list[Recipe]:
    """The recipes of the tree at ROOT that a change since REF touches."""
    top = _toplevel(root)
    changes = changed_files(top, ref)
    if _rel(Path(root) / VERSIONS_FILE, top) in changes.files:  # a tree outside recipes/ has its own
        return list(recipes)
    return [r for r in recipes if changes.touches(r, top)]


def tree_at(root: Path, ref: str, dest: Path) -> Path:
    """The recipes tree at ROOT as it was at the merge base of REF and HEAD, extracted under DEST
    (`git archive`); returns the tree's root there. The same-run reference of a PR's sim rehearsal."""
    top = _toplevel(root)
    base = _merge_base(top, ref)
    rel = _rel(Path(root), top)
    try:
        out = subprocess.run(
            ["git", "-C", str(top), "archive", "--format=tar", base, "--", rel],
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChangeError(f"git archive failed: {exc}") from exc
    if out.returncode != 0:
        raise ChangeError(f"{rel} does not exist at {ref} ({base[:12]}): {out.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest / rel


__all__ = ["MODEL_CACHE_DIR", "ChangeError", "ChangeSet", "changed_files", "select_changed", "tree_at"]
