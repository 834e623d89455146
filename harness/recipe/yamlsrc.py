"""Safe, source-aware YAML loading: every mapping and sequence remembers where it came from.

Hostile input (bad encoding, duplicate keys, alias bombs, deep nesting, huge files,
symlinks out of the tree) becomes a Problem with a file and line, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.recipe.findings import Loc, Problem, Severity, problem

try:  # the C scanner is ~10x faster; positions come from the composer either way
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-Python fallback
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a recipe manifest is a few KiB
MAX_NODES_PER_FILE = 200_000  # after alias expansion: stops billion-laughs before it walks
MAX_DEPTH = 200


_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap"}


class SrcMap(dict):
    """A YAML mapping with the 1-based line/column of itself, each key and each value."""

    __slots__ = ("key_locs", "loc", "value_locs")

    def __init__(self, loc: Loc):
        super().__init__()
        self.loc = loc
        self.key_locs: dict[Any, Loc] = {}
        self.value_locs: dict[Any, Loc] = {}

    def loc_of(self, key: Any) -> Loc:
        """Where the value of `key` is (the mapping itself when the key is absent)."""
        return self.value_locs.get(key) or self.loc

    def key_loc(self, key: Any) -> Loc:
        return self.key_locs.get(key) or self.loc


class SrcList(list):
    """A YAML sequence with the line/column of itself and of each item."""

    __slots__ = ("item_locs", "loc")

    def __init__(self, loc: Loc):
        super().__init__()
        self.loc = loc
        self.item_locs: list[Loc] = []

    def loc_of(self, index: int) -> Loc:
        return self.item_locs[index] if 0 <= index < len(self.item_locs) else self.loc


@dataclass
class Document:
    """One document of a (possibly multi-document) YAML file."""

    file: Path
    index: int
    data: Any
    loc: Loc

    @property
    def kind(self) -> str:
        return (
            self.data.get("kind", "") if isinstance(self.data, dict) and isinstance(self.data.get("kind"), str) else ""
        )

    @property
    def api_version(self) -> str:
        v = self.data.get("apiVersion", "") if isinstance(self.data, dict) else ""
        return v if isinstance(v, str) else ""

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        n = meta.get("name", "") if isinstance(meta, dict) else ""
        return n if isinstance(n, str) else ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass
class LoadedFile:
    path: Path
    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity in (None, Severity.ERROR) for p in self.problems)


class _TooBig(Exception):
    def __init__(self, loc: Loc, message: str):
        self.loc, self.message = loc, message


def _loc(path: Path, node: yaml.Node) -> Loc:
    return Loc(path, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Builds SrcMap/SrcList trees from composed nodes, counting expanded nodes."""

    def __init__(self, path: Path, loader: yaml.Loader, problems: list[Problem]):
        self.path = path
        self.loader = loader
        self.problems = problems
        self.count = 0

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES_PER_FILE:
            raise _TooBig(
                _loc(self.path, node),
                f"YAML expands to more than {MAX_NODES_PER_FILE} nodes (an alias/anchor bomb?)",
            )
        if depth > MAX_DEPTH:
            raise _TooBig(_loc(self.path, node), f"YAML nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            self.problems.append(
                problem(
                    _loc(self.path, node),
                    f"unsupported YAML tag {node.tag!r} (manifests are plain YAML)",
                    "remove the tag",
                )
            )
        if isinstance(node, yaml.MappingNode):
            out = SrcMap(_loc(self.path, node))
            for key_node, value_node in self._pairs(node):
                key = self.build(key_node, depth + 1)
                if isinstance(key, (dict, list)):
                    self.problems.append(problem(_loc(self.path, key_node), "mapping key is not a scalar"))
                    continue
                if key in out:
                    first = out.key_locs[key]
                    self.problems.append(
                        problem(
                            _loc(self.path, key_node),
                            f"duplicate key {key!r} (first defined at line {first.line}); "
                            "Kubernetes keeps only one of them",
                            "remove or merge one of the two keys",
                        )
                    )
                    continue
                out[key] = self.build(value_node, depth + 1)
                out.key_locs[key] = _loc(self.path, key_node)
                out.value_locs[key] = _loc(self.path, value_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = SrcList(_loc(self.path, node))
            for item in node.value:
                seq.append(self.build(item, depth + 1))
                seq.item_locs.append(_loc(self.path, item))
            return seq
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(problem(_loc(self.path, node), f"bad scalar: {_first_line(exc)}"))
            return None

    def _pairs(self, node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs with YAML merge keys (`<<`) expanded, explicit keys winning."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        self.count += len(src.value)
                        merged.extend(src.value)
                    else:
                        self.problems.append(problem(_loc(self.path, src), "merge key `<<` must name a mapping"))
            else:
                own.append((key_node, value_node))
        if not merged:
            yield from own
            return
        own_keys = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        seen: set = set()
        for key_node, value_node in merged:
            k = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if k in own_keys or k in seen:
                continue
            seen.add(k)
            yield key_node, value_node
        yield from own


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_path(path: Path, root: Path | None) -> Problem | None:
    """A path must be a regular file inside the tree (symlinks may not leave it)."""
    if root is not None and path.is_symlink():
        try:
            path.resolve(strict=True).relative_to(root.resolve())
        except (ValueError, OSError, RuntimeError):
            return problem(
                Loc(path),
                f"symlink leaves the recipe tree (points to {os.readlink(path)!s})",
                "recipes must be self-contained: copy the file instead of linking outside the tree",
            )
    if not path.is_file():
        return problem(Loc(path), "not a regular file")
    return None


def load_yaml_file(path: Path, root: Path | None = None, max_bytes: int = MAX_FILE_BYTES) -> LoadedFile:
    """Load every document of a YAML file with source positions; problems instead of exceptions."""
    result = LoadedFile(path)
    bad_path = check_path(path, root)
    if bad_path:
        result.problems.append(bad_path)
        return result
    try:
        size = path.stat().st_size
        if size > max_bytes:
            result.problems.append(
                problem(
                    Loc(path),
                    f"file is {size} bytes, over the {max_bytes}-byte cap for a manifest",
                    "split the file or remove embedded data",
                )
            )
            return result
        raw = path.read_bytes()
    except OSError as exc:
        result.problems.append(problem(Loc(path), f"cannot read file: {exc.strerror or exc}"))
        return result
    return parse_yaml_bytes(raw, path, result)


def parse_yaml_bytes(raw: bytes, path: Path, result: LoadedFile | None = None) -> LoadedFile:
    result = result or LoadedFile(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        result.problems.append(
            problem(
                Loc(path, line, column),
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                "save the file as UTF-8",
            )
        )
        return result
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        result.problems.append(problem(Loc(path, line), "file contains a NUL byte (binary data?)"))
        return result
    if not text.strip():
        result.problems.append(problem(Loc(path), "file is empty", "add the manifest or delete the file"))
        return result

    loader = _Loader(text)
    builder = _Builder(path, loader, result.problems)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = builder.build(node)
            result.documents.append(Document(path, index, data, _loc(path, node)))
            index += 1
    except _TooBig as exc:
        result.problems.append(problem(exc.loc, exc.message, "do not use anchors/aliases or deep nesting in manifests"))
        result.documents.clear()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(path, mark.line + 1, mark.column + 1) if mark else Loc(path)
        msg = " ".join(x for x in (exc.context, exc.problem) if x) or _first_line(exc)
        result.problems.append(problem(loc, f"YAML syntax error: {msg}"))
    except yaml.YAMLError as exc:
        result.problems.append(problem(Loc(path), f"YAML error: {_first_line(exc)}"))
    except RecursionError:
        result.problems.append(problem(Loc(path), "YAML nesting too deep to parse"))
        result.documents.clear()
    finally:
        loader.dispose()
    if not result.problems and not result.documents:  # only comments
        result.problems.append(problem(Loc(path), "file is empty", "add the manifest or delete the file"))
    elif result.documents and all(d.data is None for d in result.documents) and not result.problems:
        result.problems.append(problem(Loc(path), "file has no content (only empty documents)"))
    return result


def to_plain(value: Any) -> Any:
    """Strip source positions: plain dicts and lists (for schema validation, JSON, the API)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def loc_at_path(root: Any, path: list | tuple, fallback: Loc) -> Loc:
    """The source position of the node at a JSON path (as jsonschema reports it)."""
    node, loc = root, fallback
    for part in path:
        if (isinstance(node, SrcMap) and part in node) or (
            isinstance(node, SrcList) and isinstance(part, int) and 0 <= part < len(node)
        ):
            loc = node.loc_of(part)
            node = node[part]
        else:
            break
    return loc


# --- navigating a loaded document -------------------------------------------------------


def mapping(value: Any) -> SrcMap | None:
    return value if isinstance(value, SrcMap) else None


def sequence(value: Any) -> SrcList | None:
    return value if isinstance(value, SrcList) else None


def dig(node: Any, *keys: Any) -> Any:
    """Follow keys/indexes through mappings and lists; None when any step is missing."""
    for key in keys:
        if isinstance(node, dict) and not isinstance(key, int):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def loc_of(node: Any, *keys: Any, default: Loc | None = None) -> Loc:
    """The deepest known source position along a key path."""
    return loc_at_path(node, keys, getattr(node, "loc", None) or default or Loc(Path("?")))


def as_int(value: Any) -> int | None:
    """Kubernetes quantities for counts come as ints or strings ("4")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
