"""Container command lines: a `sh -c` script (or the exec form) split into commands with the
line of every word, env expanded, and the flags of a command parsed once, with their positions.

The one reading of a command line that the model (`Service.flags`), the checks, the sim plan and
the k8s deployer share.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.recipe.findings import Loc

if TYPE_CHECKING:  # the model imports this module; a Container is only passed in
    from harness.recipe.container import Container


@dataclass(frozen=True)
class Token:
    """One argument of a command line: its value (env expanded) and the line to edit for it.

    `loc` is the env var's value line when the word takes its value from one (`--model $MODEL`),
    else where the word is written; `at` is always where the word itself is written.
    """

    value: str
    loc: Loc
    written: Loc | None = None  # set when it differs from loc

    @property
    def at(self) -> Loc:
        return self.written or self.loc


_ENV_REFS = re.compile(r"\$(?:\(([A-Za-z_]\w*)\)|\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")
SHELLS = ("sh", "bash", "dash", "ash", "ksh", "zsh")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def is_shell(word: str) -> bool:
    """`sh`, `/bin/bash`, `/usr/bin/zsh`, ...: a POSIX-style shell program."""
    return word.rsplit("/", 1)[-1] in SHELLS


def shell_script_word(words: Sequence[Token]) -> Token | None:
    """The script of a `SHELL [options] -c SCRIPT` command line, else None: `sh -c`, `bash -lc`,
    `/bin/sh -ec`, `bash -o pipefail -c`, `/usr/bin/env bash -c`, `exec sh -c`. The shell must be the
    program (only `env`, its `VAR=value` words and `exec` may come first); one of its short option
    clusters holds `c`, and the script is the first operand after the options (POSIX sh: "-c: read
    commands from the command_string operand")."""
    i = 0
    while i < len(words) and not is_shell(words[i].value):
        word = words[i].value
        if word.rsplit("/", 1)[-1] not in ("env", "exec") and not _ENV_ASSIGNMENT.match(word):
            return None
        i += 1
    j, reads_string = i + 1, False
    while j < len(words) and words[j].value[:1] in "-+" and words[j].value not in ("-", "--", "+"):
        option = words[j].value
        if option in ("-o", "+o", "-O", "+O"):  # takes the option name as its argument
            j += 2
            continue
        if not option.startswith("--") and "c" in option[1:]:
            reads_string = True
        j += 1
    if j < len(words) and words[j].value == "--":
        j += 1
    return words[j] if reads_string and j < len(words) else None


# --- shell scripts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One shell word: its raw text as written, its value (quotes removed) and its offset."""

    raw: str
    value: str
    offset: int


@dataclass
class Command:
    """One simple command of a script, with the operator that ends it (`\\n`, `;`, `&&`, `||`, `|`, `&`)."""

    words: list[Token]
    raw: list[str]
    end: str = ""

    @property
    def name(self) -> str:
        """The program, after `VAR=value` prefixes and `exec`/`timeout N`/`time` wrappers."""
        words = self.program_words()
        return words[0].value if words else ""

    def program_words(self) -> list[Token]:
        w = list(self.words)
        while w and re.match(r"^[A-Za-z_]\w*=", w[0].value):
            w = w[1:]
        while w and w[0].value in ("exec", "time", "nohup", "command"):
            w = w[1:]
        return w

    @property
    def text(self) -> str:
        return " ".join(t.value for t in self.words)

    @property
    def at(self) -> Loc:
        """Where the command's program word is written (its first word when it has only prefixes)."""
        words = self.program_words()
        return (words[0] if words else self.words[0]).loc


def split_shell(text: str) -> list[Word | str]:
    """Split a POSIX shell script into words and control operators (as plain strings).

    Handles quotes, backslash escapes, line continuations, comments, `$(...)` and `${...}`;
    a newline outside quotes ends a command. Offsets let callers map words to source lines.
    """
    out: list[Word | str] = []
    i, n = 0, len(text)
    start, value = -1, []

    def flush(end: int) -> None:
        nonlocal start, value
        if start >= 0:
            out.append(Word(text[start:end], "".join(value), start))
        start, value = -1, []

    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            if text[i + 1] == "\n":  # line continuation
                flush(i)
                i += 2
                continue
            if start < 0:
                start = i
            value.append(text[i + 1])
            i += 2
            continue
        if ch in " \t\r":
            flush(i)
            i += 1
            continue
        if ch == "#" and start < 0:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if (
            ch == "\n"
            or ch == ";"
            or (ch in "&|" and not (ch == "&" and (text[i - 1 : i] == ">" or text[i + 1 : i + 2] == ">")))
        ):
            flush(i)
            op = text[i : i + 2] if text[i : i + 2] in ("&&", "||", ";;") else ch
            out.append(op)
            i += len(op)
            continue
        if start < 0:
            start = i
        if ch == "'":
            j = text.find("'", i + 1)
            j = n if j < 0 else j
            value.append(text[i + 1 : j])
            i = j + 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\$`':
                    value.append(text[j + 1])
                    j += 2
                    continue
                value.append(text[j])
                j += 1
            i = j + 1
        elif ch == "$" and text[i + 1 : i + 2] in ("(", "{"):
            close = ")" if text[i + 1] == "(" else "}"
            depth, j = 0, i + 1
            while j < n:
                if text[j] == text[i + 1]:
                    depth += 1
                elif text[j] == close:
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            value.append(text[i : j + 1])
            i = j + 1
        else:
            value.append(ch)
            i += 1
    flush(n)
    return out


@dataclass
class Script:
    """A container's command line as commands: a `sh -c` script, or the exec form as one command."""

    commands: list[Command]
    shell_flags: str = ""  # e.g. "-ec" for `bash -ec SCRIPT`
    is_shell: bool = False
    loc: Loc | None = None  # where the script text starts

    def find(self, program: str) -> Iterator[Command]:
        for c in self.commands:
            if c.name == program or c.name.endswith("/" + program):
                yield c


def script_line(script: Token, offset: int) -> Loc:
    """The source line of an offset in a script scalar (block scalars start one line below)."""
    text = script.value
    if "\n" not in text.rstrip("\n"):
        return script.loc
    return Loc(script.loc.file, script.loc.line + 1 + text.count("\n", 0, offset), 1)


def first_script_line(script: Token) -> Loc:
    text = script.value
    lead = len(text) - len(text.lstrip())
    return script_line(script, lead)


def _edit_loc(container: Container, raw: str, fallback: Loc) -> Loc:
    """Where to edit a word's value: the env var's line when the word takes its value from
    exactly one literal env var (`$MODEL`, `--url=$URL`, `aiperf==${AIPERF_VERSION}`)."""
    names = {a or b or c for a, b, c in _ENV_REFS.findall(raw)}
    if len(names) == 1:
        name = names.pop()
        if name in container.env and name in container.env_locs:
            return container.env_locs[name]
    return fallback


def script_commands(text: str, token: Callable[[Word], Token]) -> list[Command]:
    """A script's simple commands; `token` turns each word into a Token (value and line)."""
    commands: list[Command] = []
    current: list[Token] = []
    raw: list[str] = []
    for item in split_shell(text):
        if isinstance(item, str):
            if current:
                commands.append(Command(current, raw, item))
            current, raw = [], []
        else:
            current.append(token(item))
            raw.append(item.raw)
    if current:
        commands.append(Command(current, raw, ""))
    return commands


def _word(value: str, edit: Loc, written: Loc) -> Token:
    return Token(value, edit, None if edit == written else written)


def parse_script(container: Container) -> Script:
    """The container's command line split into commands, env expanded, each word with its line."""
    raw = container.command + container.args
    script = container.shell_script
    if script is None:
        words = [_word(container.expand(t.value), _edit_loc(container, t.value, t.loc), t.loc) for t in raw]
        return Script([Command(words, [t.value for t in raw])] if words else [])
    flags = ""
    for t in raw:
        if t is script:
            break
        if t.value.startswith("-") and not t.value.startswith("--"):
            flags += t.value.lstrip("-")

    def token(word: Word) -> Token:
        line = script_line(script, word.offset)
        return _word(container.expand(word.value), _edit_loc(container, word.raw, line), line)

    return Script(script_commands(script.value, token), flags, True, first_script_line(script))


_SCRIPT_VAR = re.compile(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)")
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)=(.*)$", re.S)


def script_vars(script: Script) -> dict[str, str]:
    """Variables a script assigns (`X=...`, `export X=...`, `local X=...`), last value kept;
    functions' bodies included (their assignments are what the aiperf call inside them sees)."""
    out: dict[str, str] = {}
    for cmd in script.commands:
        words = [t.value for t in cmd.words]
        if words and words[0] in ("export", "local", "declare", "readonly", "typeset"):
            words = [w for w in words[1:] if not w.startswith("-")]
        for word in words:
            m = _ASSIGN.match(word)
            if not m:
                break
            out[m.group(1)] = m.group(2)
    return out


def expand_script_vars(text: str, script: Script, container: Container) -> str:
    """`$X` / `${X}` resolved from the script's own assignments, then the container's env."""
    known = {**container.env, **script_vars(script)}

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return known.get(name, m.group(0))

    for _ in range(5):  # assignments refer to each other
        new = _SCRIPT_VAR.sub(sub, text)
        if new == text:
            break
        text = new
    return text


def nested_script(text: str, at: Loc) -> Script:
    """The script of a nested `sh -c TEXT`, every word on the outer command's line."""
    return Script(script_commands(text, lambda w: Token(w.value, at)), "", True, at)


def shell_scripts(script: Script) -> Iterator[tuple[Command, str, bool]]:
    """Nested `sh -c '...'` calls inside a script: (command, inner script text, wrapped in timeout)."""
    for cmd in script.commands:
        words = cmd.program_words()
        bounded = False
        if words and words[0].value == "timeout":
            bounded = True
            words = words[1:]
            while words and (words[0].value.startswith("-") or re.match(r"^\d+[smhd]?$", words[0].value)):
                words = words[1:]
        inner = shell_script_word(words) if words and is_shell(words[0].value) else None
        if inner is not None:
            yield cmd, inner.value, bounded


# --- the Dynamo call ---------------------------------------------------------------------

DYNAMO_PACKAGE = "dynamo."  # `python -m dynamo.vllm|sglang|trtllm|frontend|mocker|planner ...`


def dynamo_module_at(words: Sequence[Token]) -> int | None:
    """The index of the `dynamo.X` word of a `python -m dynamo.X` call among a command's words, or None.
    The one lookup of the Dynamo call: the model (`Container.dynamo_invocation`), the operator's
    rendering (harness/analysis/render.py) and the conformance client read it here."""
    for i, tok in enumerate(words[:-1]):
        if tok.value == "-m" and words[i + 1].value.startswith(DYNAMO_PACKAGE):
            return i + 1
    return None


def dynamo_engine(module: str) -> str:
    """What a Dynamo module runs: `dynamo.vllm` -> `vllm` ("" for a word that names no Dynamo module)."""
    return module[len(DYNAMO_PACKAGE) :] if module.startswith(DYNAMO_PACKAGE) else ""


# --- flags --------------------------------------------------------------------------------

# A word is a flag when it is `-x...` or `--x...` (a letter after the dashes): `-1` and `-0.5` are values.
_FLAG_WORD = re.compile(r"^--?[A-Za-z]")


def is_flag(text: str) -> bool:
    return bool(_FLAG_WORD.match(text))


@dataclass(frozen=True)
class Flag:
    """One flag as written: its name, its value ("true" for a bare flag, at the flag's
    position) and the flag word itself."""

    name: str
    value: Token
    flag: Token
    bare: bool = False  # written without a value (`--streaming`): value is "true"


@dataclass(frozen=True)
class Flags:
    """The flags of one command, in order with repeats kept, and the positional words."""

    items: tuple[Flag, ...] = ()
    positionals: tuple[Token, ...] = ()

    def __iter__(self) -> Iterator[Flag]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.items)

    def get(self, *names: str) -> Flag | None:
        """The last occurrence of any of the names (the one argparse keeps)."""
        found = [f for f in self.items if f.name in names]
        return found[-1] if found else None

    def value(self, *names: str) -> str | None:
        found = self.get(*names)
        return found.value.value if found else None

    def last(self) -> dict[str, Token]:
        """name -> value of its last occurrence."""
        return {f.name: f.value for f in self.items}


def parse_flags(args: list[Token], booleans: Collection[str] = ()) -> Flags:
    """`--flag value`, `--flag=value`, `-f value` and bare `--flag` (value "true").

    `booleans` never take a value, so `--enable-expert-parallel -tp 4` keeps `-tp` a flag and
    `--trust-remote-code MODEL` keeps MODEL positional; any other flag takes the next word
    when it is not a flag itself.
    """
    items: list[Flag] = []
    positionals: list[Token] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if not is_flag(tok.value):
            positionals.append(tok)
            i += 1
            continue
        name, eq, value = tok.value.partition("=")
        if eq:
            items.append(Flag(name, Token(value, tok.loc, tok.written), tok))
        elif name not in booleans and i + 1 < len(args) and not is_flag(args[i + 1].value):
            items.append(Flag(name, args[i + 1], tok))
            i += 1
        else:
            items.append(Flag(name, Token("true", tok.loc, tok.written), tok, bare=True))
        i += 1
    return Flags(tuple(items), tuple(positionals))
