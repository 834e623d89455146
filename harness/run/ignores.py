"""The run's configuration file: which checks a tree does not (yet) hold some of its files or recipes to,
the severity floor and the registry allow-list, from `.recipe-harness.yaml` or `[tool.recipe-harness]`.

A tree adopts the gate gradually, as with ruff's `per-file-ignores` or yamllint's per-rule `ignore`.
The configuration is the first found walking up from the recipes tree to the repository root (the
directory holding `.git`): `.recipe-harness.yaml` in a directory, else its `pyproject.toml` when that has
a `[tool.recipe-harness]` table with one of these keys (the `baselines` table there is the baselines
policy's, harness.results.baselines.policy). Each ignore entry names check ids (or globs of them) and,
optionally, where they are ignored, with a reason:

    severity-floor: error                      # report errors only (the command line's option wins)
    registries: [nvcr.io]                      # allowed image registries (--registry wins)
    ignore:
      - checks: [no-privileged]              # check ids; globs allowed (`perf-*`)
        recipes: ["gpt-oss-120b/*"]          # globs on the recipe id (`catalogue` for tree checks)
        reason: "RDMA pods, reviewed in #1234"   # quoted: in YAML an unquoted ` #` starts a comment
      - checks: [image-reference-pinned]
        paths: ["*/model-cache/*.yaml"]      # globs on the file path below the configuration's directory
      - checks: [perf-job-limits]            # neither paths nor recipes: the whole tree

    [tool.recipe-harness]                      # the same in pyproject.toml
    severity-floor = "error"
    [[tool.recipe-harness.ignore]]
    checks = ["no-privileged"]
    recipes = ["gpt-oss-120b/*"]
    reason = "RDMA pods, reviewed in #1234"

Globs are fnmatch patterns: `*` also crosses `/`. An entry applies when a finding's check matches
and (when given) its file matches one of `paths` or its recipe one of `recipes`. A malformed file,
an unknown key or a check id that no check has is a usage error naming the file and line, with the
nearest known names: an ignore that can never match would hide nothing and look as if it did. An
entry that ignored nothing in a run over the whole tree is reported as unused.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.recipe.findings import Finding, Loc
from harness.recipe.yamlsrc import SrcList, SrcMap, load_yaml_file

IGNORE_FILE = ".recipe-harness.yaml"
PYPROJECT = "pyproject.toml"
TOOL_TABLE = "tool.recipe-harness"
_FILE_LOC = Loc(Path(IGNORE_FILE))  # frozen: one shared default is safe
_KEYS = {"checks", "paths", "recipes", "reason"}
_TOP_KEYS = ("ignore", "severity-floor", "registries")
_PYPROJECT_OTHER_KEYS = ("baselines",)  # read by harness.results.baselines.policy
SEVERITY_FLOORS = ("warning", "error")


class IgnoreFileError(ValueError):
    """A malformed configuration; the message starts with `path:line:` (or `path: [tool.recipe-harness]`)."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean x?)` for the nearest known names, "" when none is near."""
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(near)}?)" if near else ""


@dataclass(frozen=True)
class Ignore:
    """One entry of the ignore list."""

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
        at = f"{self.loc.file.name}:{self.loc.line}" if self.loc.line else self.loc.file.name
        text = f"{at}: {', '.join(self.checks)} ignored in {' or '.join(where) or 'the whole tree'}"
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass
class Ignores:
    """The ignore entries in effect (none without a configuration) and how often each matched."""

    root: Path  # globs in `paths` are relative to it: the configuration's directory
    path: Path | None = None
    entries: list[Ignore] = field(default_factory=list)
    used: Counter = field(default_factory=Counter)  # entry index -> findings it ignored
    warnings: list[str] = field(default_factory=list)  # valid but probably not what was meant
    report_unused: bool = False  # the run covered the whole tree with every check: an unused entry is dead

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
        lines = []
        for i, e in enumerate(self.entries):
            if self.used[i] or not self.report_unused:
                lines.append(f"{e.describe()}: {self.used[i]} finding(s) ignored")
            else:
                lines.append(f"{e.describe()}: unused, it ignored nothing in a run over the whole tree: remove it")
        return lines


@dataclass
class RunConfig:
    """What the configuration sets for a run (the command line's options win over it)."""

    path: Path | None
    ignores: Ignores
    severity_floor: str | None = None
    registries: tuple[str, ...] = ()


def find_config(root: Path) -> Path | None:
    """The nearest configuration walking up from the tree to the repository root (see the module doc)."""
    for d in (root, *root.parents):
        if (d / IGNORE_FILE).is_file():
            return d / IGNORE_FILE
        if (d / PYPROJECT).is_file() and _pyproject_table(d / PYPROJECT, check=False):
            return d / PYPROJECT
        if (d / ".git").exists():
            return None
    return None


def load_config(root: Path, known_checks: Iterable[str]) -> RunConfig:
    """The run's configuration (empty when there is none); raises IgnoreFileError."""
    root = root.absolute()
    path = find_config(root)
    if path is None:
        return RunConfig(None, Ignores(root))
    known = set(known_checks)
    if path.name == PYPROJECT:
        return _from_pyproject(path, known)
    return _from_yaml(path, known)


def load_ignores(root: Path, known_checks: Iterable[str]) -> Ignores:
    """The ignore entries of the run's configuration (see load_config)."""
    return load_config(root, known_checks).ignores


def _from_yaml(path: Path, known: set[str]) -> RunConfig:
    loaded = load_yaml_file(path, path.parent)
    if loaded.problems:
        p = loaded.problems[0]
        raise IgnoreFileError(f"{path}:{p.loc.line}: {p.message}")
    data = loaded.documents[0].data if loaded.documents else None
    if data is None:
        return RunConfig(path, Ignores(path.parent, path))
    if not isinstance(data, SrcMap):
        raise IgnoreFileError(f"{path}:1: the file holds one mapping with the keys {', '.join(_TOP_KEYS)}")
    for key in data:
        if key not in _TOP_KEYS:
            raise IgnoreFileError(
                f"{path}:{data.key_loc(key).line}: unknown key {key!r} (known: {', '.join(_TOP_KEYS)})"
                + did_you_mean(str(key), _TOP_KEYS)
            )
    lines = path.read_text(errors="replace").splitlines()
    ignores = Ignores(path.parent, path)
    items = data.get("ignore")
    if items is not None:
        if not isinstance(items, SrcList):
            raise IgnoreFileError(f"{path}:{data.loc_of('ignore').line}: `ignore` must be a list of entries")
        for i in range(len(items)):
            item, loc = items[i], items.loc_of(i)
            if not isinstance(item, SrcMap):
                raise IgnoreFileError(
                    f"{path}:{loc.line}: an entry is a mapping with `checks` and optional `paths`, `recipes`, `reason`"
                )
            ignores.entries.append(_entry(path, item, loc.line, lambda k, m=item: m.loc_of(k).line, known))
            warning = _reason_cut_by_comment(path, item, lines)
            if warning:
                ignores.warnings.append(warning)
    return RunConfig(
        path,
        ignores,
        _floor(path, data.get("severity-floor"), data.loc_of("severity-floor").line),
        _registries(path, data.get("registries"), data.loc_of("registries").line),
    )


def _from_pyproject(path: Path, known: set[str]) -> RunConfig:
    table = _pyproject_table(path, check=True)
    where = f"{path}: [{TOOL_TABLE}]"
    for key in table:
        if key not in _TOP_KEYS + _PYPROJECT_OTHER_KEYS:
            raise IgnoreFileError(
                f"{where}: unknown key {key!r} (known: {', '.join(_TOP_KEYS + _PYPROJECT_OTHER_KEYS)})"
                + did_you_mean(key, _TOP_KEYS + _PYPROJECT_OTHER_KEYS)
            )
    ignores = Ignores(path.parent, path)
    items = table.get("ignore", [])
    if not isinstance(items, list):
        raise IgnoreFileError(f"{where}: `ignore` must be an array of tables ([[{TOOL_TABLE}.ignore]])")
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise IgnoreFileError(f"{where}: ignore entry {i} must be a table")
        ignores.entries.append(_entry(path, item, 0, lambda k: 0, known, f"{where} ignore entry {i}"))
    return RunConfig(
        path, ignores, _floor(path, table.get("severity-floor"), 0), _registries(path, table.get("registries"), 0)
    )


def _pyproject_table(path: Path, check: bool) -> dict[str, Any]:
    """`[tool.recipe-harness]` without the keys other parts of the harness own; {} when it sets nothing here."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        if check:
            raise IgnoreFileError(f"{path}: {exc}") from None
        return {}
    table = data.get("tool", {}).get("recipe-harness", {})
    if not isinstance(table, dict) or not set(table) - set(_PYPROJECT_OTHER_KEYS):
        return {}
    return table


def _entry(path: Path, item: Mapping, line: int, line_of: Any, known: set[str], where: str | None = None) -> Ignore:
    where = where or f"{path}:{line}"
    extra = set(item) - _KEYS
    if extra:
        name = sorted(map(str, extra))[0]
        raise IgnoreFileError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} (known: {', '.join(sorted(_KEYS))})"
            + did_you_mean(name, _KEYS)
        )
    checks = _strings(item.get("checks"))
    if not checks:
        raise IgnoreFileError(f"{where}: `checks` must name at least one check id")
    for c in checks:
        if not any(fnmatch.fnmatchcase(k, c) for k in known):
            at = f"{path}:{line_of('checks')}" if line else where
            raise IgnoreFileError(
                f"{at}: {c!r} matches no check id{did_you_mean(c, known)} (`recipe-harness checks` lists them)"
            )
    for key in ("paths", "recipes"):
        if key in item and not _strings(item.get(key)):
            at = f"{path}:{line_of(key)}" if line else where
            raise IgnoreFileError(f"{at}: `{key}` must be a list of globs")
    reason = item.get("reason")
    return Ignore(
        tuple(checks),
        tuple(_strings(item.get("paths"))),
        tuple(_strings(item.get("recipes"))),
        str(reason).strip() if reason is not None else "",
        Loc(path, line),
    )


def _reason_cut_by_comment(path: Path, item: SrcMap, lines: list[str]) -> str:
    """An unquoted `reason: reviewed in #1234` is `reviewed in` to YAML (` #` starts a comment): say so."""
    if "reason" not in item:
        return ""
    loc = item.loc_of("reason")
    text = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
    value = text[max(loc.column - 1, 0) :]
    if value[:1] in ("'", '"') or " #" not in value:
        return ""
    return (
        f"{path.name}:{loc.line}: the reason stops before ` #` (YAML reads the rest as a comment): "
        "quote the reason to keep it"
    )


def _floor(path: Path, value: Any, line: int) -> str | None:
    if value is None:
        return None
    if value not in SEVERITY_FLOORS:
        at = f"{path}:{line}" if line else f"{path}: [{TOOL_TABLE}]"
        raise IgnoreFileError(f"{at}: severity-floor must be one of {', '.join(SEVERITY_FLOORS)}, not {value!r}")
    return str(value)


def _registries(path: Path, value: Any, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    found = _strings(value)
    if not found:
        at = f"{path}:{line}" if line else f"{path}: [{TOOL_TABLE}]"
        raise IgnoreFileError(f"{at}: registries must be a list of registry hosts")
    return tuple(found)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def _relative(file: str, root: Path) -> str:
    """The finding's file relative to the configuration's directory, with `/` (findings print paths
    relative to the cwd)."""
    try:
        return Path(os.path.relpath(Path(file).absolute(), root.absolute())).as_posix()
    except ValueError:
        return Path(file).as_posix()
