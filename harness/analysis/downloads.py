"""What a model-download Job fetches: each `hf download` / `huggingface-cli download` /
`snapshot_download(...)` call with its repository, revision and include/exclude patterns, each
value at the line to edit."""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.recipe.commandline import Token
from harness.recipe.model import Recipe
from harness.recipe.workloads import Pod

CLI_PROGRAMS = ("hf", "huggingface-cli")
PATTERN_FLAGS = {"--include": "include", "--exclude": "exclude"}
_SNAPSHOT = re.compile(r"snapshot_download\((?P<args>[^()]*(?:\([^()]*\)[^()]*)*)\)", re.S)


@dataclass
class Download:
    """One download call: repository, revision (None: the default branch) and patterns."""

    pod: Pod
    repo: Token | None
    revision: Token | None
    at: Token  # the program word: where a finding about the call goes
    include: list[Token] = field(default_factory=list)
    exclude: list[Token] = field(default_factory=list)

    def fetches(self, path: str) -> bool:
        """Whether a repository file is downloaded, by huggingface_hub's filter_repo_objects rules:
        a pattern ending in `/` means everything below it; fnmatch's `*` also matches `/`."""

        def match(patterns: list[Token]) -> bool:
            return any(fnmatch.fnmatch(path, p.value + "*" if p.value.endswith("/") else p.value) for p in patterns)

        if self.include and not match(self.include):
            return False
        return not match(self.exclude)


def _cli_call(pod: Pod, words: list[Token]) -> Download | None:
    values = [w.value for w in words]
    if not words or words[0].value.rsplit("/", 1)[-1] not in CLI_PROGRAMS or "download" not in values[:2]:
        return None
    rest = words[values.index("download") + 1 :]
    call = Download(pod, None, None, words[0])
    i, positional = 0, 0
    current: str | None = None  # the pattern flag whose values are being read (nargs="*")
    while i < len(rest):
        w = rest[i]
        name, eq, value = w.value.partition("=")
        if name.startswith("-"):
            current = PATTERN_FLAGS.get(name)
            if name == "--revision":
                if eq:
                    call.revision = Token(value, w.loc, w.written)
                elif i + 1 < len(rest):
                    call.revision = rest[i + 1]
                    i += 1
                current = None
            elif current is not None and eq:
                getattr(call, current).append(Token(value, w.loc, w.written))
            elif current is None and not eq and i + 1 < len(rest) and not rest[i + 1].value.startswith("-"):
                i += 1  # another option's value
        elif current is not None:
            getattr(call, current).append(w)
        elif positional == 0:
            call.repo = w
            positional += 1
        i += 1
    return call


def _python_calls(pod: Pod, words: list[Token]) -> Iterator[Download]:
    """`python -c "...snapshot_download(repo_id=..., revision=..., allow_patterns=[...])..."`."""
    for w in words:
        for m in _SNAPSHOT.finditer(w.value):
            try:
                call = ast.parse(f"f({m.group('args')})", mode="eval").body
            except SyntaxError:
                continue
            if not isinstance(call, ast.Call):
                continue
            kw = {k.arg: k.value for k in call.keywords if k.arg}
            if call.args:
                kw.setdefault("repo_id", call.args[0])
            yield Download(
                pod,
                _ast_text(kw.get("repo_id"), w),
                _ast_text(kw.get("revision"), w),
                w,
                _ast_texts(kw.get("allow_patterns"), w),
                _ast_texts(kw.get("ignore_patterns"), w),
            )


def _ast_text(node: ast.expr | None, word: Token) -> Token | None:
    """A string literal of the call, placed at the line of the `python -c` word that holds it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Token(node.value, word.loc)
    return None


def _ast_texts(node: ast.expr | None, word: Token) -> list[Token]:
    """A list/tuple of string literals (non-strings dropped), or a single string literal."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return [t for t in (_ast_text(e, word) for e in node.elts) if t is not None]
    one = _ast_text(node, word)
    return [one] if one else []


def downloads(recipe: Recipe) -> list[Download]:
    """Every download call of the recipe's model-download Jobs (computed once per loaded recipe)."""
    return recipe.derived(_downloads)


def _downloads(recipe: Recipe) -> list[Download]:
    out: list[Download] = []
    for pod in recipe.workloads.downloads:
        for c in pod.containers:
            for cmd in c.script.commands:
                words = cmd.program_words()
                found = _cli_call(pod, words)
                if found is not None:
                    out.append(found)
                else:
                    out.extend(_python_calls(pod, words))
    return out
