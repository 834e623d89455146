"""Templates and placeholders: manifests a recipe renders before applying them, read as the user gets them.

Two kinds, treated the same way wherever they appear:
- an `envsubst` template: a script or README of the recipe runs `envsubst [SHELL-FORMAT] < FILE`; the file is
  rendered here with the sample values the recipe documents (`export VAR=value` / `VAR=value` lines of its
  `*.env` files, e.g. `hw/h100.env`, its scripts and README code), substituting exactly what envsubst would
  (`$VAR` and `${VAR}`, only the SHELL-FORMAT's variables when one is given), and the rendered text is what
  every check reads (same lines, the FileCache holds it). A variable without a sample value stays a token;
- a placeholder the README tells the user to replace (`<your-namespace>`, `<IMAGE_TAG>`): documented when a
  README of the recipe (or a file the template's values come from) names it.

`placeholder_lines(recipe)` is every line holding a documented placeholder or an unrendered template token:
no error is reported on such a line (harness.checks.run_check); the `template-placeholders` check reports
them once per recipe as a warning instead.

Sources: GNU gettext `envsubst` (manual, "envsubst Invocation": substitutes `$VARIABLE` and `${VARIABLE}`
references of the environment, an unset variable as the empty string; with a SHELL-FORMAT argument only the
variables it names); POSIX sh assignment and `export` syntax for the sample values.
"""

from __future__ import annotations

import os
import re
import shlex
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe.findings import Loc
from harness.recipe.model import FileCache, Recipe
from harness.recipe.yamlsrc import parse_yaml_bytes

_SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "node_modules"}
_ENVSUBST = re.compile(
    r"\benvsubst\b(?P<args>[^<|\n;&]*)<\s*(?P<file>\"[^\"]+\"|'[^']+'|[^\s|;&)]+)"
    r"|\bcat\s+(?P<cat>\"[^\"]+\"|'[^']+'|[^\s|;&]+)\s*\|\s*envsubst\b(?P<catargs>[^|\n;&]*)"
)
_ASSIGN = re.compile(r"^\s*(?:export\s+)?(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
_REFERENCE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_ANGLE = re.compile(r"<[A-Za-z][A-Za-z0-9_.:/-]*>")


@dataclass
class Template:
    """A YAML file an envsubst call renders, and what the harness filled in."""

    path: Path
    used_by: Loc  # the envsubst call (script or README line)
    variables: tuple[str, ...] | None  # the SHELL-FORMAT's variables; None: every variable
    values: dict[str, tuple[str, Loc]] = field(default_factory=dict)  # var -> (sample value, where it is set)
    missing: list[str] = field(default_factory=list)  # referenced, substituted by envsubst, no sample value
    text: str = ""  # the rendered text the checks read

    @property
    def rendered(self) -> bool:
        return not self.missing


@dataclass
class TemplateTree:
    """The envsubst templates of a tree, by file."""

    templates: dict[Path, Template] = field(default_factory=dict)
    value_files: list[Path] = field(default_factory=list)  # where sample values come from (they document tokens)


_TREES: weakref.WeakKeyDictionary[FileCache, TemplateTree] = weakref.WeakKeyDictionary()


def _walk(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        out += [Path(here) / f for f in sorted(files) if f.endswith(suffixes)]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _unquote(word: str) -> str:
    try:
        parts = shlex.split(word)
    except ValueError:
        return word.strip("'\"")
    return parts[0] if parts else ""


def _assignments(text: str, path: Path) -> dict[str, tuple[str, Loc]]:
    """Literal `VAR=value` / `export VAR=value` lines (first wins; values that run commands are skipped)."""
    out: dict[str, tuple[str, Loc]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _ASSIGN.match(line)
        if not m or m["var"] in out:
            continue
        raw = m["value"].strip()
        if "$(" in raw or "`" in raw:
            continue
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            continue
        if len(words) == 1 and "\n" not in words[0]:
            out[m["var"]] = (words[0], Loc(path, n))
        elif not words and raw in ("", "''", '""'):
            out[m["var"]] = ("", Loc(path, n))
    return out


def template_tree(root: Path, cache: FileCache) -> TemplateTree:
    """Find the tree's envsubst templates and put their rendered text in the FileCache (once per cache)."""
    tree = _TREES.get(cache)
    if tree is not None:
        return tree
    tree = TemplateTree()
    _TREES[cache] = tree
    root = root.absolute()
    callers = [p for p in _walk(root, (".sh", ".md", ".bash")) if "envsubst" in _read(p)]
    for caller in callers:
        text = _read(caller)
        scope = _scope(caller, root)
        # the caller's own default first (`HW="h100"` picks hw/h100.env over hw/gb200.env), then by name
        defaults = {value for value, _ in _assignments(text, caller).values()}
        env_files = sorted(_walk(scope, (".env",)), key=lambda p: (p.stem not in defaults, p))
        values: dict[str, tuple[str, Loc]] = {}
        for source in [caller, *env_files]:
            for var, found in _assignments(_read(source), source).items():
                values.setdefault(var, found)
        tree.value_files += [p for p in env_files if p not in tree.value_files]
        for m in _ENVSUBST.finditer(text):
            line = text[: m.start()].count("\n") + 1
            args = (m["args"] if m["file"] else m["catargs"]) or ""
            variables = _shell_format(args, text)
            target = _unquote(m["file"] or m["cat"] or "")
            for path in _targets(target, caller, scope, variables, values):
                if path not in tree.templates:
                    tree.templates[path] = _render(path, Loc(caller, line), variables, values, cache)
    return tree


def _scope(caller: Path, root: Path) -> Path:
    """Where a caller's templates and sample values live: its directory, or its model directory for a
    README or script at the top of a recipe (`<model>/run-benchmark.sh` renders `<model>/deploy/*.yaml`)."""
    try:
        parts = caller.relative_to(root).parts
    except ValueError:
        return caller.parent
    return root / parts[0] if len(parts) > 1 else caller.parent


def _shell_format(args: str, text: str) -> tuple[str, ...] | None:
    """The SHELL-FORMAT argument's variable names (`'$A $B'`, or `"$FMT"` with `FMT='$A $B'` in the text)."""
    arg = args.strip()
    if not arg or arg.startswith("-"):
        return None
    value = _unquote(arg)
    ref = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value)
    if ref:
        defined = re.search(rf"^\s*(?:export\s+)?{ref.group(1)}=(.*)$", text, re.M)
        value = _unquote(defined.group(1)) if defined else ""
    names = tuple(m["braced"] or m["bare"] for m in _REFERENCE.finditer(value))
    return names or None


def _targets(
    target: str, caller: Path, scope: Path, variables: tuple[str, ...] | None, values: dict[str, tuple[str, Loc]]
) -> list[Path]:
    """The files an envsubst call reads: a literal path (from the caller's directory), else (`"$1"`,
    `$DEPLOY_TPL`) every YAML file of its scope that references a variable the call substitutes."""
    if target and "$" not in target:
        path = Path(os.path.normpath(caller.parent / target))
        return [path] if path.suffix in (".yaml", ".yml") and path.is_file() else []
    wanted = set(variables) if variables else set(values)
    out = []
    for path in _walk(scope, (".yaml", ".yml")):
        names = {m["braced"] or m["bare"] for m in _REFERENCE.finditer(_read(path))}
        if names & wanted:
            out.append(path)
    return out


def _render(
    path: Path, used_by: Loc, variables: tuple[str, ...] | None, values: dict[str, tuple[str, Loc]], cache: FileCache
) -> Template:
    template = Template(path, used_by, variables)
    text = _read(path)

    def substitute(m: re.Match) -> str:
        name = m["braced"] or m["bare"]
        if variables is not None and name not in variables:
            return m.group(0)  # envsubst leaves it alone
        if name in values:
            template.values[name] = values[name]
            return values[name][0]
        if name not in template.missing:
            template.missing.append(name)
        return m.group(0)

    rendered = _REFERENCE.sub(substitute, text)
    template.text = rendered
    if rendered != text:
        cache.put(path, parse_yaml_bytes(rendered.encode("utf-8"), path))
    return template


def applied_text(recipe: Recipe, path: Path) -> str | None:
    """The text `kubectl apply` gets for one of the recipe's files when it is not the file on disk: the
    kustomization's build for its rendered manifest, a template's rendering; None for a plain file."""
    if recipe.kustomize_build is not None and path == recipe.manifest:
        return recipe.kustomize_build.text
    tree = _TREES.get(recipe.cache)
    template = tree.templates.get(path) if tree else None
    return template.text if template is not None and template.values else None


# --- placeholders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placeholder:
    token: str  # `<your-namespace>`, `${HW_NODE_SELECTOR}`
    loc: Loc  # where it is written
    documented: Loc  # the README / value file / envsubst call that says it is to be replaced
    image: bool  # it is in an `image:` value (image-reference-pinned reports those)


def placeholders(recipe: Recipe) -> list[Placeholder]:
    """Every documented placeholder in the files the recipe applies (a kustomization's: the files its build
    read), and every template token envsubst would substitute that has no sample value."""
    return recipe.derived(_placeholders)


def placeholder_lines(recipe: Recipe) -> set[tuple[Path, int]]:
    return {(p.loc.file, p.loc.line) for p in placeholders(recipe)}


def _recipe_paths(recipe: Recipe) -> list[Path]:
    paths = [f.path for f in recipe.files()]
    if recipe.kustomize_build is not None:
        paths = [p for p in paths if p != recipe.manifest] + sorted(recipe.kustomize_build.sources)
    return list(dict.fromkeys(paths))


def _placeholders(recipe: Recipe) -> list[Placeholder]:
    tree = _TREES.get(recipe.cache)
    templates = tree.templates if tree else {}
    docs = [(path, lines) for path, lines in recipe.readmes()]
    docs += [(p, _read(p).splitlines()) for p in (tree.value_files if tree else [])]
    out: list[Placeholder] = []
    for path in _recipe_paths(recipe):
        template = templates.get(path)
        lines = _lines_of(path, template)
        for n, line in enumerate(lines, 1):
            if line.lstrip().startswith("#"):
                continue
            image = bool(re.match(r"\s*(?:-\s*)?image:", line))
            for m in _ANGLE.finditer(line):
                documented = _documented(m.group(0), docs)
                if documented is not None:
                    out.append(Placeholder(m.group(0), Loc(path, n, m.start() + 1), documented, image))
            if template is not None:
                for m in _REFERENCE.finditer(line):
                    name = m["braced"] or m["bare"]
                    if name in template.missing:
                        out.append(Placeholder(m.group(0), Loc(path, n, m.start() + 1), template.used_by, image))
    return out


def _lines_of(path: Path, template: Template | None) -> list[str]:
    """The text the checks read: a rendered template's, else the file's."""
    text = _read(path)
    if template is not None and template.values:
        text = _REFERENCE.sub(
            lambda m: (
                template.values.get(m["braced"] or m["bare"], (m.group(0),))[0]
                if (template.variables is None or (m["braced"] or m["bare"]) in template.variables)
                else m.group(0)
            ),
            text,
        )
    return text.splitlines()


def _documented(token: str, docs: list[tuple[Path, list[str]]]) -> Loc | None:
    for path, lines in docs:
        for n, line in enumerate(lines, 1):
            if token in line:
                return Loc(path, n)
    return None
