"""TensorRT-LLM's LlmArgs field surface: recorded from its source, and checked against `--extra-engine-args` YAML.

TensorRT-LLM (1.3.0rc22 for Dynamo 1.4.0) is not on the package index, so its pydantic models
cannot be imported. Instead `recipe-harness conformance record-trtllm` reads
`tensorrt_llm/llmapi/llm_args.py` of the release's version with `ast` (no import, no execution)
and writes every model class, its fields, aliases and whether it forbids extra keys to
`data/trtllm-llmargs-<version>.json`, with provenance (package, version, repository path,
commit, sha256 of the source). That file is generated, never edited by hand.

Dynamo's TRT-LLM worker merges the `--extra-engine-args` YAML into the LLM's keyword arguments
(`dynamo/trtllm/engine.py`, `update_llm_args_with_extra_options`), and TensorRT-LLM validates
them as `TorchLlmArgs`: a model built on `StrictBaseModel` (extra="forbid") rejects a key it does
not know with "Extra inputs are not permitted". A key is reported only where the recorded model
forbids extras, so the check is never stricter than TensorRT-LLM.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import operator
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from harness.recipe.findings import Loc

ROOT_CLASS = "TorchLlmArgs"  # the PyTorch backend's arguments: what Dynamo's TRT-LLM worker builds
STRICT_BASES = {"StrictBaseModel"}
BUILD_CONFIG_FIELDS = ("max_batch_size", "max_num_tokens", "max_seq_len", "max_beam_width")
DATA_PACKAGE = "harness.run.conformance"


@dataclass(frozen=True)
class ModelClass:
    name: str
    bases: tuple[str, ...]
    fields: dict[str, str]  # field -> annotation text
    aliases: dict[str, str]  # alias -> field
    forbids_extra: bool | None  # None: not said in this class (inherited)


def _annotation_names(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _aliases(value: ast.expr | None) -> list[str]:
    """`Field(alias="x")`, `validation_alias="x"` or `AliasChoices("a", "b")`."""
    out: list[str] = []
    if not isinstance(value, ast.Call):
        return out
    for kw in value.keywords:
        if kw.arg in ("alias", "validation_alias"):
            node = kw.value
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
            elif isinstance(node, ast.Call):
                out += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return out


def _forbids_extra(cls: ast.ClassDef) -> bool | None:
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "model_config" for t in stmt.targets
        ):
            text = ast.unparse(stmt.value)
            if re.search(r"extra\s*=\s*['\"]forbid['\"]", text):
                return True
            if re.search(r"extra\s*=\s*['\"](allow|ignore)['\"]", text):
                return False
    return None


def _default(value: ast.expr | None) -> Any:
    """The literal default of `x: T = <lit>` or `Field(default=<lit>)` / `Field(<lit>)`; "<expr>" otherwise."""
    if value is None:
        return "<required>"
    node: ast.expr | None = value
    if isinstance(value, ast.Call) and ast.unparse(value.func).endswith("Field"):
        node = next((kw.value for kw in value.keywords if kw.arg == "default"), value.args[0] if value.args else None)
        if node is None:
            return "<required>"
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return f"<{ast.unparse(node)}>"


def parse_classes(source: str) -> tuple[dict[str, ModelClass], dict[str, dict[str, Any]]]:
    """Every class of the module with its annotated fields; and the field defaults per class."""
    tree = ast.parse(source)
    classes: dict[str, ModelClass] = {}
    defaults: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, str] = {}
        aliases: dict[str, str] = {}
        defaults[node.name] = {}
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                name = stmt.target.id
                ann = ast.unparse(stmt.annotation)
                if name.startswith("_") or ann.startswith("ClassVar"):
                    continue  # private attributes and class variables are not input fields
                fields[name] = ann
                defaults[node.name][name] = _default(stmt.value)
                for alias in _aliases(stmt.value):
                    aliases[alias] = name
        classes[node.name] = ModelClass(
            node.name, tuple(ast.unparse(b).split(".")[-1] for b in node.bases), fields, aliases, _forbids_extra(node)
        )
    return classes, defaults


def _dropped_before_validation(tree: ast.Module) -> list[str]:
    """Root keys TensorRT-LLM takes off the input before the model validates it, so they are accepted.

    Two places, both in llm_args.py: the removed-argument table `_drop_removed_args` consults
    (`_TORCH_LLMARGS_REMOVED_ARG_CHECKS = {"sampler_type": ...}`), and the YAML merge Dynamo calls,
    `update_llm_args_with_extra_dict`, which renames keys with `llm_args_dict.pop("hf_revision")`."""
    keys: set[str] = set()
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and "REMOVED_ARG" in t.id for t in targets) and isinstance(node.value, ast.Dict):
            keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(node, ast.FunctionDef) and node.name == "update_llm_args_with_extra_dict":
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "pop"
                    and ast.unparse(call.func.value) == "llm_args_dict"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ):
                    keys.add(call.args[0].value)
    return sorted(keys)


def record_surface(
    source: str,
    *,
    version: str,
    repo: str,
    path: str,
    commit: str,
    note: str = "",
    build_source: str | None = None,
    build_path: str = "tensorrt_llm/builder.py",
) -> dict[str, Any]:
    """The data file's content: provenance, the model classes, and BuildConfig's four defaults.

    dynamo.trtllm reads those defaults from `tensorrt_llm.llmapi.BuildConfig`; when BuildConfig is
    not defined in llm_args.py, `build_source` (the file that defines it) supplies them. Without
    one, they come from `BaseLlmArgs`, as in Dynamo's own fallback for releases that dropped
    BuildConfig (`dynamo/trtllm/backend_args.py`: `except ImportError: from
    tensorrt_llm.llmapi.llm_args import BaseLlmArgs as BuildConfig`)."""
    classes, defaults = parse_classes(source)
    if ROOT_CLASS not in classes:
        raise ValueError(f"{path}: no class {ROOT_CLASS} in this source; is it tensorrt_llm/llmapi/llm_args.py?")
    build_from = None
    build_class = "BuildConfig"
    if "BuildConfig" not in classes and build_source is not None:
        _, defaults = parse_classes(build_source)
        build_from = {"path": build_path, "sha256": hashlib.sha256(build_source.encode()).hexdigest()}
    elif "BuildConfig" not in classes:
        build_class = "BaseLlmArgs"
        build_from = {
            "path": path,
            "class": build_class,
            "why": "no BuildConfig in this source: Dynamo falls back to "
            "tensorrt_llm.llmapi.llm_args.BaseLlmArgs (dynamo/trtllm/backend_args.py)",
        }
    build = (
        {k: defaults[build_class].get(k, "<not defined here>") for k in BUILD_CONFIG_FIELDS}
        if build_class in defaults
        else None
    )
    return {
        "provenance": {
            "package": "tensorrt-llm",
            "version": version,
            "repository": repo,
            "path": path,
            "commit": commit,
            "sha256": hashlib.sha256(source.encode()).hexdigest(),
            "recorded_by": "recipe-harness conformance record-trtllm",
            **({"build_config_source": build_from} if build_from else {}),
            **({"note": note} if note else {}),
        },
        "root": ROOT_CLASS,
        "root_dropped_keys": _dropped_before_validation(ast.parse(source)),
        "build_config_defaults": build,
        "classes": {
            c.name: {"bases": list(c.bases), "forbids_extra": c.forbids_extra, "fields": c.fields, "aliases": c.aliases}
            for c in classes.values()
            if c.fields or c.bases
        },
    }


def data_file_name(version: str) -> str:
    return f"trtllm-llmargs-{version}.json"


def load_surface(version: str, directory: Path | None = None) -> Surface | None:
    """The recorded surface of a TensorRT-LLM version, or None when none was recorded."""
    name = data_file_name(version)
    try:
        if directory is not None:
            text = (directory / name).read_text()
        else:
            text = resources.files(DATA_PACKAGE).joinpath("data", name).read_text()
    except (OSError, FileNotFoundError):
        return None
    return Surface(json.loads(text))


class Surface:
    """A recorded LlmArgs surface: which keys a model class accepts, following its bases."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.classes: dict[str, dict[str, Any]] = data.get("classes", {})
        self.provenance: dict[str, Any] = data.get("provenance", {})

    @property
    def tag_source(self) -> bool:
        """Recorded from the release's own git tag (`provenance.tag`); else from the closest readable commit."""
        return bool(self.provenance.get("tag"))

    @property
    def provenance_note(self) -> str:
        p = self.provenance
        return f"LlmArgs recorded from {p.get('path')} @ {str(p.get('commit', ''))[:12]}: {p.get('note', '')}"

    @property
    def label(self) -> str:
        p = self.provenance
        return f"TensorRT-LLM {p.get('version')} {p.get('path')} @ {str(p.get('commit', ''))[:12]}"

    def _mro(self, name: str) -> list[dict[str, Any]]:
        out, todo, seen = [], [name], set()
        while todo:
            n = todo.pop(0)
            if n in seen or n not in self.classes:
                continue
            seen.add(n)
            out.append(self.classes[n])
            todo.extend(self.classes[n].get("bases", []))
        return out

    def _all_bases(self, name: str) -> set[str]:
        out, todo = set(), [name]
        while todo:
            n = todo.pop()
            for b in self.classes.get(n, {}).get("bases", []):
                if b not in out:
                    out.add(b)
                    todo.append(b)
        return out

    def accepts(self, name: str) -> dict[str, str]:
        """Input key -> annotation, for fields and aliases of the class and its bases (and, for the
        root, the keys TensorRT-LLM drops or renames before validating)."""
        keys: dict[str, str] = {}
        if name == self.data.get("root", ROOT_CLASS):
            keys.update({k: "" for k in self.data.get("root_dropped_keys", [])})
        for cls in reversed(self._mro(name)):
            keys.update(cls.get("fields", {}))
            keys.update({alias: cls["fields"].get(f, "") for alias, f in cls.get("aliases", {}).items()})
        return keys

    def forbids_extra(self, name: str) -> bool:
        for cls in self._mro(name):
            if cls.get("forbids_extra") is not None:
                return bool(cls["forbids_extra"])
        return bool(self._all_bases(name) & STRICT_BASES)

    def nested_class(self, annotation: str) -> str | None:
        """The one model class a field's annotation names (`Optional[KvCacheConfig]` -> KvCacheConfig)."""
        found = [n for n in _annotation_names(annotation) if n in self.classes and self.accepts(n)]
        return found[0] if len(found) == 1 else None

    def unknown_keys(self, data: Any, cls: str | None = None, prefix: str = "") -> list[tuple[str, Any, str]]:
        """(dotted key, the mapping holding it, class) for each key the model would reject as extra."""
        cls = cls or self.data.get("root", ROOT_CLASS)
        if not isinstance(data, dict):
            return []
        accepted = self.accepts(cls)
        out: list[tuple[str, Any, str]] = []
        for key, value in data.items():
            k = str(key)
            if k not in accepted:
                if self.forbids_extra(cls):
                    out.append((prefix + k, data, cls))
                continue
            nested = self.nested_class(accepted[k])
            if nested and isinstance(value, dict):
                out.extend(self.unknown_keys(value, nested, f"{prefix}{k}."))
        return out


def key_loc(mapping: Any, key: str, fallback: Loc) -> Loc:
    key_locs = getattr(mapping, "key_locs", None)
    if isinstance(key_locs, dict) and key in key_locs:
        return key_locs[key]
    return fallback


# --- typed values: a pydantic model built from the recorded surface --------------------------------

_SCALARS: dict[str, Any] = {"int": int, "float": float, "bool": bool, "str": str}


def _constrained(name: str) -> Any:
    import pydantic

    return {
        "NonNegativeInt": pydantic.NonNegativeInt,
        "PositiveInt": pydantic.PositiveInt,
        "NonNegativeFloat": pydantic.NonNegativeFloat,
        "PositiveFloat": pydantic.PositiveFloat,
        "_StrictNonNegativeInt": pydantic.NonNegativeInt,
        "_StrictPositiveInt": pydantic.PositiveInt,
    }.get(name)


class TypedModels:
    """Pydantic models of the recorded classes, typed as far as the recorded annotations say for sure.

    An annotation becomes: a Literal of its constants, int/float/bool/str and pydantic's constrained
    ints and floats, Optional/Union/List of those, or the nested recorded model. Anything else (enums
    whose members were not recorded, type aliases, objects, custom validators the real class runs
    first) is `Any`, so the model is never stricter than TensorRT-LLM's own. Extra keys are ignored
    here: `Surface.unknown_keys` reports them."""

    def __init__(self, surface: Surface):
        self.surface = surface
        self._models: dict[str, Any] = {}

    def annotation(self, text: str) -> Any:
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            return Any
        return self._type(node)

    def _type(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        if isinstance(node, ast.Name):
            if node.id in _SCALARS:
                return _SCALARS[node.id]
            if _constrained(node.id) is not None:
                return _constrained(node.id)
            if node.id in self.surface.classes and self.surface.accepts(node.id):
                return self.model(node.id)
            return Any
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            head = node.value.id
            args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            if head == "Literal":
                values = [a.value for a in args if isinstance(a, ast.Constant)]
                return Literal[tuple(values)] if len(values) == len(args) else Any
            inner = [self._type(a) for a in args]
            if any(t is Any for t in inner):
                return Any
            if head == "Optional":
                return inner[0] | None
            if head == "Union":
                return functools.reduce(operator.or_, inner)
            if head in ("List", "list") and len(inner) == 1:
                return list[inner[0]]
        return Any

    def model(self, name: str) -> Any:
        """The pydantic model of a recorded class (its bases' fields included), every field optional."""
        import pydantic

        if name in self._models:
            return self._models[name]
        self._models[name] = Any  # a class that refers to itself stays untyped there
        fields: dict[str, Any] = {}
        for key, annotation in self.surface.accepts(name).items():
            if annotation:
                fields[key] = (self.annotation(annotation) | None, None)
        config = pydantic.ConfigDict(extra="ignore", arbitrary_types_allowed=True)
        self._models[name] = pydantic.create_model(f"Recorded{name}", __config__=config, **fields)
        return self._models[name]

    def errors(self, data: Any) -> list[tuple[tuple[str, ...], str]]:
        """(key path, pydantic's message) for each value the recorded types reject."""
        import pydantic

        if not isinstance(data, dict):
            return []
        root = self.surface.data.get("root", ROOT_CLASS)
        try:
            self.model(root).model_validate(_plain(data))
        except pydantic.ValidationError as e:
            out = []
            for err in e.errors(include_url=False):
                path = tuple(str(p) for p in err["loc"] if isinstance(p, str))
                out.append((path, err["msg"]))
            return out
        return []


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
