"""Which conventions a recipes tree follows: the catalogue's own, or none (a foreign tree such as upstream's).

The catalogue convention is this repository's way of writing recipes: `<model>/<framework>/<mode>/`
directories holding `deploy.yaml`, `perf.yaml` and `recipe.yaml` metadata, a release matrix in
`versions.yaml` at the top of the tree, a model README in one format and generated `README.md` /
`SIZING.md`. Checks that judge a recipe against that convention (rather than against what Dynamo,
Kubernetes or the engines accept) are registered with `convention=True` and do not run on a tree
that does not follow it.

A tree follows the catalogue convention when it has adopted one of its marker files:
`versions.yaml` at its top, or `recipe.yaml` in at least one `<model>/<framework>/<mode>/`
directory. Any other tree (upstream's `recipes/` has neither) is a foreign tree: convention `none`.
`--convention catalogue|none` overrides the detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.recipe.model import METADATA_FILE
from harness.recipe.versions import VERSIONS_FILE

CATALOGUE = "catalogue"
NONE = "none"
CONVENTIONS = (CATALOGUE, NONE)


@dataclass(frozen=True)
class Convention:
    """The convention a run applies to its tree, and why (for the run header)."""

    name: str  # CATALOGUE or NONE
    reason: str  # "versions.yaml at the top of the tree", "--convention none", ...

    @property
    def catalogue(self) -> bool:
        return self.name == CATALOGUE

    def describe(self) -> str:
        kind = "catalogue convention" if self.catalogue else "foreign tree (no catalogue convention)"
        return f"{kind}: {self.reason}"


def detect_convention(root: Path) -> Convention:
    """The tree's convention from its marker files (see the module docstring)."""
    if (root / VERSIONS_FILE).is_file():
        return Convention(CATALOGUE, f"{VERSIONS_FILE} at the top of the tree")
    for model in _subdirs(root):
        for framework in _subdirs(model):
            for mode in _subdirs(framework):
                if (mode / METADATA_FILE).is_file():
                    return Convention(CATALOGUE, f"{mode.relative_to(root)}/{METADATA_FILE} exists")
    return Convention(NONE, f"no {VERSIONS_FILE} at the top and no {METADATA_FILE} in any <model>/<framework>/<mode>/")


def choose_convention(root: Path, override: str | None = None) -> Convention:
    """The run's convention: the override (`--convention`) when given, else the detected one."""
    if override:
        if override not in CONVENTIONS:
            raise ValueError(f"--convention {override!r}: choose one of {', '.join(CONVENTIONS)}")
        return Convention(override, f"--convention {override}")
    return detect_convention(root)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
