"""The per-tree ignore file `.recipe-harness.yaml`:
which checks a tree does not (yet) hold some of its files or recipes to.

A tree adopts the gate gradually, as with ruff's `per-file-ignores` or yamllint's per-rule `ignore`:
the file sits at the top of the recipes tree, and each entry names check ids (or globs of them)
and, optionally, where they are ignored, with a reason:

    ignore:
      - checks: [no-privileged]              # check ids; globs allowed (`perf-*`)
        recipes: ["gpt-oss-120b/*"]          # globs on the recipe id (`catalogue` for tree checks)
        reason: RDMA pods, reviewed in #1234
      - checks: [image-reference-pinned]
        paths: ["*/model-cache/*.yaml"]      # globs on the file path below the tree
      - checks: [perf-job-limits]            # neither paths nor recipes: the whole tree

Globs are fnmatch patterns: `*` also crosses `/`. An entry applies when a finding's check matches
and (when given) its file matches one of `paths` or its recipe one of `recipes`. A malformed file,
or a check id that no check has, is a usage error naming the file and line: an ignore that can
never match would hide nothing and look as if it did.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe.findings import Finding, Loc
from harness.recipe.yamlsrc import SrcList, SrcMap, load_yaml_file

IGNORE_FILE = ".recipe-harness.yaml"
_FILE_LOC = Loc(Path(IGNORE_FILE))  # frozen: one shared default is safe
_KEYS = {"checks", "paths", "recipes", "reason"}


class IgnoreFileError(ValueError):
    """A malformed ignore file; the message starts with `path:line:`."""


@dataclass(frozen=True)
class Ignore:
    """One entry of the ignore file."""

    checks: tuple[str, ...]
    paths: tuple[str, ...] = ()
    recipes: tuple[str, ...] = ()
    reason: str = ""
    loc: Loc = _FILE_LOC

    def matches(self, finding: Finding, relative_file: str) -> bool:
        if not any(fnmatch.fnmatchcase(finding.check_id, c) for c in self.checks):
            return False
        if not self.paths and not self.recipes:
            return True
        return any(fnmatch.fnmatchcase(relative_file, p) for p in self.paths) or any(
            fnmatch.fnmatchcase(finding.recipe, r) for r in self.recipes
        )

    def describe(self) -> str:
        where = [f"paths {', '.join(self.paths)}"] if self.paths else []
        where += [f"recipes {', '.join(self.recipes)}"] if self.recipes else []
        text = (
            f"{self.loc.file.name}:{self.loc.line}: {', '.join(self.checks)} "
            f"ignored in {' or '.join(where) or 'the whole tree'}"
        )
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass
class Ignores:
    """The ignore file of one tree (no entries when it has none) and how often each entry matched."""

    root: Path
    path: Path | None = None
    entries: list[Ignore] = field(default_factory=list)
    used: Counter = field(default_factory=Counter)  # entry index -> findings it ignored

    def ignored(self, finding: Finding) -> bool:
        """Whether an entry ignores this finding (and count it for the summary)."""
        if not self.entries:
            return False
        rel = _relative(finding.file, self.root)
        for i, entry in enumerate(self.entries):
            if entry.matches(finding, rel):
                self.used[i] += 1
                return True
        return False

    def summary(self) -> list[str]:
        return [f"{e.describe()}: {self.used[i]} finding(s) ignored" for i, e in enumerate(self.entries)]


def load_ignores(root: Path, known_checks: Iterable[str]) -> Ignores:
    """The tree's `.recipe-harness.yaml` (an empty Ignores when there is none); raises IgnoreFileError."""
    path = root / IGNORE_FILE
    if not path.is_file():
        return Ignores(root)
    loaded = load_yaml_file(path, root)
    if loaded.problems:
        p = loaded.problems[0]
        raise IgnoreFileError(f"{path}:{p.loc.line}: {p.message}")
    data = loaded.documents[0].data if loaded.documents else None
    if data is None:
        return Ignores(root, path)
    if not isinstance(data, SrcMap) or set(data) - {"ignore"}:
        raise IgnoreFileError(f"{path}:1: the file holds one mapping with the key `ignore` (a list of entries)")
    items = data.get("ignore")
    if items is None:
        return Ignores(root, path)
    if not isinstance(items, SrcList):
        raise IgnoreFileError(f"{path}:{data.loc_of('ignore').line}: `ignore` must be a list of entries")
    known = set(known_checks)
    return Ignores(root, path, [_entry(path, items, i, known) for i in range(len(items))])


def _entry(path: Path, items: SrcList, i: int, known: set[str]) -> Ignore:
    item, loc = items[i], items.loc_of(i)
    where = f"{path}:{loc.line}"
    if not isinstance(item, SrcMap):
        raise IgnoreFileError(f"{where}: an entry is a mapping with `checks` and optional `paths`, `recipes`, `reason`")
    extra = set(item) - _KEYS
    if extra:
        raise IgnoreFileError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} (known: {', '.join(sorted(_KEYS))})"
        )
    checks = _strings(item.get("checks"))
    if not checks:
        raise IgnoreFileError(f"{where}: `checks` must name at least one check id")
    for c in checks:
        if not any(fnmatch.fnmatchcase(k, c) for k in known):
            raise IgnoreFileError(
                f"{path}:{item.loc_of('checks').line}: {c!r} matches no check id (`recipe-harness checks` lists them)"
            )
    for key in ("paths", "recipes"):
        if key in item and not _strings(item.get(key)):
            raise IgnoreFileError(f"{path}:{item.loc_of(key).line}: `{key}` must be a list of globs")
    reason = item.get("reason")
    return Ignore(
        tuple(checks),
        tuple(_strings(item.get("paths"))),
        tuple(_strings(item.get("recipes"))),
        str(reason).strip() if reason is not None else "",
        Loc(path, loc.line),
    )


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def _relative(file: str, root: Path) -> str:
    """The finding's file relative to the tree root, with `/` (findings print paths relative to the cwd)."""
    try:
        return Path(os.path.relpath(Path(file).absolute(), root.absolute())).as_posix()
    except ValueError:
        return Path(file).as_posix()
