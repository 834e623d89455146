"""Select the recipes a git change touches (`--changed-since REF`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .model import MODEL_CACHE_DIR, Recipe

# A change to any of these can change every recipe's verdict: run everything.
GLOBAL_PATHS = ("harness/", "schemas/", "pyproject.toml", "conftest.py", "recipes/versions.yaml")


class ChangeError(RuntimeError):
    """git could not answer (not a repository, unknown ref)."""


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
        return any(f.startswith(own) or f.startswith(cache) or f == readme for f in self.files)


def _rel(path: Path, repo: Path) -> str:
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChangeError(f"git failed: {exc}") from exc
    if out.returncode != 0:
        raise ChangeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"git {' '.join(args)} failed")
    return out.stdout


def changed_files(repo: Path, ref: str) -> ChangeSet:
    """Files changed between the merge base of REF and HEAD, plus uncommitted and untracked ones."""
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    base = _git(top, "merge-base", ref, "HEAD").strip()
    files = set(_git(top, "diff", "--name-only", base).split())
    files |= set(_git(top, "ls-files", "--others", "--exclude-standard").split())
    everything = any(f.startswith(GLOBAL_PATHS) or f in GLOBAL_PATHS for f in files)
    return ChangeSet(tuple(sorted(files)), everything)


def select_changed(recipes: list[Recipe], repo: Path, ref: str) -> list[Recipe]:
    changes = changed_files(repo, ref)
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    return [r for r in recipes if changes.touches(r, top)]


__all__ = ["ChangeError", "ChangeSet", "changed_files", "select_changed", "MODEL_CACHE_DIR"]
