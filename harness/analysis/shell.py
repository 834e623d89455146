"""What a container's command line becomes: the kubelet's `$(VAR)` expansion, then a POSIX shell's word parsing.

Strings here are *traced*: every character carries the origin it came from (a manifest token and
an offset in it, or None for text the operator wrote), so a word the engine finally receives can
be pointed back at the line of deploy.yaml it was written on.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Origin = tuple[int, int] | None  # (index of the manifest token, offset in its text); None = operator text


@dataclass(frozen=True)
class Traced:
    """A string whose characters each remember their origin."""

    text: str
    origins: tuple[Origin, ...]

    @staticmethod
    def of(text: str, origin: Origin = None) -> Traced:
        return Traced(text, (origin,) * len(text))

    @staticmethod
    def token(text: str, index: int) -> Traced:
        """A manifest token: character k comes from (index, k)."""
        return Traced(text, tuple((index, k) for k in range(len(text))))

    def __add__(self, other: Traced) -> Traced:
        return Traced(self.text + other.text, self.origins + other.origins)

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, key: slice) -> Traced:
        return Traced(self.text[key], self.origins[key])


def join(parts: Iterable[Traced], sep: str = " ") -> Traced:
    out = Traced("", ())
    for i, part in enumerate(parts):
        out = out + (Traced.of(sep) + part if i else part)
    return out


def concat(*parts: Traced | str) -> Traced:
    out = Traced("", ())
    for part in parts:
        out = out + (Traced.of(part) if isinstance(part, str) else part)
    return out


# --- the kubelet -------------------------------------------------------------------------------


def kubelet_expand(s: Traced, env: Mapping[str, str]) -> Traced:
    """`$(VAR)` expansion as the kubelet applies it to command and args, before any shell runs.

    A port of `Expand`/`tryReadVariableName` in kubernetes third_party/forked/golang/expansion/expand.go
    (used by kubelet `kubecontainer.ExpandContainerCommandAndArgs`): `$(NAME)` becomes the value of a
    defined env var and stays literal when undefined; `$$` is an escaped `$`; any other `$x` stays as is.
    Quotes and backslashes mean nothing to it, which is why `\\$(VAR)` written by a quoting helper
    becomes `\\<value>`. The expanded value carries the origin of the `$` it replaced.
    """
    text, origins = s.text, s.origins
    out_t: list[str] = []
    out_o: list[Origin] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out_t.append(text[checkpoint:cursor])
            out_o.extend(origins[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out_t.append("$")
                out_o.append(origins[cursor])
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close >= 0:
                    name = text[cursor + 2 : close]
                    value = env.get(name, f"$({name})")
                    out_t.append(value)
                    out_o.extend((origins[cursor],) * len(value))
                    advance = close - cursor
                else:  # incomplete reference: "$(" is kept and scanning resumes after it
                    out_t.append("$(")
                    out_o.extend(origins[cursor : cursor + 2])
                    advance = 1
            else:
                out_t.append("$" + nxt)
                out_o.extend(origins[cursor : cursor + 2])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out_t.append(text[checkpoint:])
    out_o.extend(origins[checkpoint:])
    return Traced("".join(out_t), tuple(out_o))


def kubelet_env(entries: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """Env var values as the kubelet resolves them: in order, `$(VAR)` in a value sees earlier vars only."""
    env: dict[str, str] = {}
    for name, value in entries:
        if value is None:
            continue
        env[name] = kubelet_expand(Traced.of(value), env).text
    return env


# --- the shell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One argument after quote removal and expansion."""

    text: str
    origins: tuple[Origin, ...]
    anchor: Origin = None  # where the word started (its opening quote, say): the origin of an empty word

    @property
    def origin(self) -> Origin:
        return next((o for o in (self.anchor, *self.origins) if o is not None), None)

    @property
    def traced(self) -> Traced:
        return Traced(self.text, self.origins)


@dataclass(frozen=True)
class SimpleCommand:
    words: list[Word]
    separator: str  # the operator that ended it: ";", "&&", "||", "|", "&", "\n" or ""


class _Field:
    """The word being built: characters plus whether any quoting made it exist even when empty."""

    def __init__(self, origin: Origin) -> None:
        self.chars: list[str] = []
        self.origins: list[Origin] = []
        self.quoted = False
        self.start = origin

    def add(self, text: str, origins: Sequence[Origin]) -> None:
        self.chars.append(text)
        self.origins.extend(origins)

    def word(self) -> Word | None:
        if not self.chars and not self.quoted:
            return None
        return Word("".join(self.chars), tuple(self.origins), self.start)


_BLANKS = " \t"
_IFS = " \t\n"
_METAS = set(" \t\n;&|()<>")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ShellParser:
    """A POSIX `sh -c` script as words: quoting, parameter/arithmetic expansion, field splitting.

    Enough of the shell language for container commands: simple commands joined by `;`, `&&`,
    `||`, `|`, `&` and newlines (compound commands such as `for ... do ... done` are read as their
    simple commands, which is all we need to find the one that starts the engine), redirections
    dropped. `$(...)` command substitution is answered by `substitute` (the caller knows the few
    idioms the operator writes); unset variables by `unset` (empty, as in sh, by default).
    Globbing is not performed (no container command of ours relies on it).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        substitute: Callable[[str], str] | None = None,
        unset: Callable[[str], str] | None = None,
    ) -> None:
        self.env = env
        self.substitute = substitute or (lambda cmd: "")
        self.unset = unset or (lambda name: "")

    # public
    def parse(self, script: Traced) -> list[SimpleCommand]:
        self.s, self.o, self.i = script.text, script.origins, 0
        commands: list[SimpleCommand] = []
        words: list[Word] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in _BLANKS:
                self.i += 1
            elif self.s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            elif c in "\n;&|()":
                sep = self.s[self.i : self.i + 2] if self.s[self.i : self.i + 2] in ("&&", "||", ";;") else c
                self.i += len(sep)
                if words or sep not in "()":
                    commands.append(SimpleCommand(words, sep))
                words = []
            elif c in "<>":
                self._redirection()
            else:
                fields = self._word()
                if self._at_redirection(fields):
                    self._redirection()
                    continue
                words.extend(fields)
        if words:
            commands.append(SimpleCommand(words, ""))
        return [c for c in commands if c.words]

    # internals
    def _at_redirection(self, fields: list[Word]) -> bool:
        # an IO number: digits immediately followed by < or > (e.g. 2>&1)
        return len(fields) == 1 and fields[0].text.isdigit() and self.i < len(self.s) and self.s[self.i] in "<>"

    def _redirection(self) -> None:
        m = re.compile(r"<<-?|>>|>&|<&|<>|>\||<|>").match(self.s, self.i)
        self.i = m.end() if m else self.i + 1
        while self.i < len(self.s) and self.s[self.i] in _BLANKS:
            self.i += 1
        if self.i < len(self.s) and self.s[self.i] not in _METAS:
            self._word()  # the redirection's target is not an argument

    def _word(self) -> list[Word]:
        fields: list[_Field] = [_Field(self.o[self.i])]
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in _METAS:
                break
            if c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated single quote")
                fields[-1].quoted = True
                fields[-1].add(self.s[self.i + 1 : end], self.o[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                fields[-1].quoted = True
                self._double_quoted(fields[-1])
            elif c == "\\":
                if self.s.startswith("\\\n", self.i):
                    self.i += 2
                elif self.i + 1 < len(self.s):
                    fields[-1].quoted = True
                    fields[-1].add(self.s[self.i + 1], self.o[self.i + 1 : self.i + 2])
                    self.i += 2
                else:
                    self.i += 1
            elif c == "$" or c == "`":
                origin = self.o[self.i]
                value = self._expansion()
                if value is None:
                    fields[-1].add("$", (origin,))
                    continue
                # unquoted expansion results are split into fields on IFS whitespace
                parts = re.split(r"[ \t\n]+", value)
                if value and value[0] in _IFS and (fields[-1].chars or fields[-1].quoted):
                    fields.append(_Field(origin))
                for k, part in enumerate(parts):
                    if k:
                        fields.append(_Field(origin))
                    if part:
                        fields[-1].add(part, (origin,) * len(part))
            else:
                fields[-1].add(c, self.o[self.i : self.i + 1])
                self.i += 1
        return [w for w in (f.word() for f in fields) if w is not None]

    def _double_quoted(self, field: _Field) -> None:
        self.i += 1
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < len(self.s) and self.s[self.i + 1] in '$`"\\\n':
                if self.s[self.i + 1] != "\n":
                    field.add(self.s[self.i + 1], self.o[self.i + 1 : self.i + 2])
                self.i += 2
            elif c == "$" or c == "`":
                origin = self.o[self.i]
                value = self._expansion()
                if value is None:
                    field.add("$", (origin,))
                else:
                    field.add(value, (origin,) * len(value))
            else:  # inside double quotes any other backslash is an ordinary character
                field.add(c, self.o[self.i : self.i + 1])
                self.i += 1
        raise ShellSyntaxError("unterminated double quote")

    def _expansion(self) -> str | None:
        """Expand the `$...` or backquote at self.i; None when the `$` is literal (self.i moved past it)."""
        s, i = self.s, self.i
        if s[i] == "`":
            end = s.find("`", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated backquote")
            self.i = end + 1
            return self.substitute(s[i + 1 : end]).rstrip("\n")
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if s.startswith("$((", i):
            end = _matching(s, i + 1)
            self.i = end + 1
            return self._arithmetic(s[i + 3 : end - 1])
        if nxt == "(":
            end = _matching(s, i + 1)
            self.i = end + 1
            return self.substitute(s[i + 2 : end]).rstrip("\n")
        if nxt == "{":
            end = s.find("}", i + 2)
            if end < 0:
                raise ShellSyntaxError("unterminated ${")
            self.i = end + 1
            return self._braced(s[i + 2 : end])
        m = _NAME.match(s, i + 1)
        if m:
            self.i = m.end()
            return self._lookup(m.group(0))
        if nxt and nxt in "?$#@*!-0123456789":
            self.i = i + 2
            return "sh" if nxt == "0" else ""
        self.i = i + 1
        return None

    def _lookup(self, name: str) -> str:
        return self.env[name] if name in self.env else self.unset(name)

    def _braced(self, body: str) -> str:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=+?])(.*))?", body, re.S)
        if not m:
            return ""
        name, op, word = m.groups()
        value = self.env.get(name)
        if op is None:
            return self._lookup(name)
        empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-") or op.endswith("="):
            return word if empty else value or ""
        if op.endswith("+"):
            return "" if empty else word
        return value or ""

    def _arithmetic(self, expr: str) -> str:
        # parameters inside are expanded first, then bare names are variables (unset = 0)
        inner = ShellParser(self.env, self.substitute, lambda n: "0")
        expanded = "".join(
            w.text + " " for c in inner.parse(Traced.of('"' + expr.replace('"', "") + '"')) for w in c.words
        )
        try:
            return str(_evaluate(expanded, self.env))
        except (ValueError, SyntaxError, ZeroDivisionError):
            return f"$(({expr}))"


class ShellSyntaxError(ValueError):
    """The script would not parse in sh."""


def _matching(s: str, open_at: int) -> int:
    """Index of the `)` closing the `(` at open_at, skipping quoted text."""
    depth = 0
    i = open_at
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            i = s.find("'", i + 1)
            if i < 0:
                break
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError("unbalanced parentheses")


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: lambda a, b: int(a / b),
    ast.Mod: lambda a, b: a - b * int(a / b),
}


def _evaluate(expr: str, env: Mapping[str, str]) -> int:
    """Shell integer arithmetic (+ - * / %, parentheses, variables) without eval."""
    tree = ast.parse(expr.replace("/", "//").strip() or "0", mode="eval")

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            raw = env.get(node.id, "0") or "0"
            return int(raw) if raw.strip().lstrip("-").isdigit() else _raise(f"{node.id} is not a number")
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        return _raise("unsupported arithmetic")

    return ev(tree)


def _raise(msg: str) -> int:
    raise ValueError(msg)
