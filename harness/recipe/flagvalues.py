"""Reads a `python -m dynamo.<x>` command line the way the release's own parsers do, from their recorded surface.

The surface (harness/recipe/data/flag-surface/<release>.json, recorded from the real parsers by
`python -m harness.run.conformance.surface --release R`) lists, per entry point, the parsers it
calls in order (Dynamo's, the router-advertisement parser, the engine's), each with its options,
`allow_abbrev` and whether it passes unknown words on. `EntryPoint.read` walks an argv through
those stages as argparse does (Python 3.11, the envs' python: exact option, `--opt=value`, unique
prefix when the stage allows abbreviations, `-x` short prefixes), consumes values by nargs, types
them with the option's own type function (`human_readable_int_or_auto`: `16K` -> 16384), checks
choices, and names every word no stage claims. The conformance tier cross-checks every value this
reader gives against the real parser's namespace (harness/run/conformance/client.py), and the
converters reproduce the recorded probes of each type (tests/test_flagvalues.py).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from harness.recipe.commandline import Token

SURFACE_DIR = Path(__file__).resolve().parent / "data" / "flag-surface"
OPAQUE = object()  # a value whose type function the reader does not model (the real parser's result is unknown)


def surface_file(release: str) -> Path:
    return SURFACE_DIR / f"{release}.json"


# --- value types ----------------------------------------------------------------------------------


class TypeError_(ValueError):
    """A value the option's type function rejects."""


_HR = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT])")
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def human_readable_int(value: str) -> int:
    """vLLM 0.31 vllm/utils/argparse_utils.py `human_readable_int`: `1k` 1000, `1K` 1024, `25.6k` 25600;
    no decimals with binary suffixes; else a plain int()."""
    value = value.strip()
    m = _HR.fullmatch(value)
    if m:
        number, suffix = m.groups()
        if suffix in _DECIMAL:
            return int(float(number) * _DECIMAL[suffix])
        if "." in number:
            raise TypeError_(f"Decimals are not allowed with binary suffixes like {suffix}.")
        return int(number) * _BINARY[suffix]
    return _int(value)


def human_readable_int_or_auto(value: str) -> int:
    """vLLM 0.31 `human_readable_int_or_auto`: `-1` or `auto` (any case) is -1, else human_readable_int."""
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


_SGL_HR = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)")
_SI = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_IEC = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def sglang_human_readable_int(value: str) -> int:
    """SGLang 0.5.21 sglang/srt/utils/common.py `human_readable_int`: SI `1k` 1000, `1M` 10**6 (case-sensitive),
    IEC `1Ki` 1024; decimals only with SI suffixes; else a plain int()."""
    value = value.strip()
    m = _SGL_HR.fullmatch(value)
    if m:
        number, suffix = m.groups()
        if suffix in _IEC:
            if "." in number:
                raise TypeError_(f"Decimals are not allowed with IEC suffixes like '{suffix}'.")
            return int(number) * _IEC[suffix]
        return int(Decimal(number) * _SI[suffix])
    return _int(value)


def _nullable_str(value: str) -> str | None:
    return None if not value or value == "None" else value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError as e:
        raise TypeError_(str(e)) from None


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError as e:
        raise TypeError_(str(e)) from None


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as e:
        raise TypeError_(str(e)) from None


def _nullable(inner):
    def convert(value: str) -> Any:
        return None if value in ("", "None") else inner(value)

    return convert


def _union_dict_and_str(value: str) -> Any:
    """vLLM `union_dict_and_str`: a `{...}` text is JSON (optional_type), anything else the string."""
    if not re.match(r"(?s)^\s*{.*}\s*$", value):
        return value
    return _nullable(_json)(value)


# Type functions by the name the recorder gives them (harness/run/conformance/introspect.py describe_type).
_SIMPLE = {
    "str": str,
    "int": _int,
    "float": _float,
    "pathlib.Path": lambda value: str(PurePosixPath(value)),
    "json.loads": _json,
    "vllm.utils.argparse_utils.human_readable_int": human_readable_int,
    "vllm.utils.argparse_utils.human_readable_int_or_auto": human_readable_int_or_auto,
    "vllm.engine.arg_utils.union_dict_and_str": _union_dict_and_str,
    "dynamo.common.configuration.utils.nullable_int": _nullable(_int),
    "dynamo.common.configuration.utils.nullable_float": _nullable(_float),
    "sglang.srt.utils.common.human_readable_int": sglang_human_readable_int,
    "sglang.srt.utils.common.nullable_str": _nullable_str,
}
_WRAPPED = re.compile(r"^(?P<outer>[\w.]+\.<locals>\.\w+)\((?P<inner>.*)\)$")
_WRAPPERS = {
    "vllm.engine.arg_utils.optional_type.<locals>._optional_type": _nullable,
    "vllm.engine.arg_utils.parse_type.<locals>._parse_type": lambda inner: inner,
}


def type_function(name: str | None):
    """The converter for a recorded type name, or None when the reader does not model it."""
    if name is None:
        return str
    if name in _SIMPLE:
        return _SIMPLE[name]
    m = _WRAPPED.match(name)
    if m and m.group("outer") in _WRAPPERS:
        inner = type_function(m.group("inner"))
        return _WRAPPERS[m.group("outer")](inner) if inner is not None else None
    return None


# --- the surface ----------------------------------------------------------------------------------

_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
FLAG_ACTIONS = {"_StoreTrueAction", "_StoreFalseAction", "_StoreConstAction", "BooleanOptionalAction", "_CountAction"}


@dataclass(frozen=True)
class Option:
    """One argparse action of a stage, as recorded."""

    options: tuple[str, ...]
    dest: str
    nargs: Any
    const: Any
    default: Any
    type: str | None
    choices: tuple[Any, ...] | None
    action: str
    stage: int

    @property
    def name(self) -> str:
        """The spelling for messages: the first long option."""
        return next((o for o in self.options if o.startswith("--")), self.options[0])

    @property
    def takes_value(self) -> bool:
        return self.nargs != 0 and self.action not in FLAG_ACTIONS


@dataclass
class Stage:
    cls: str
    allow_abbrev: bool
    mode: str  # "known": unknown words pass on to the next stage; "final": they are an error
    prefix_chars: str
    options: dict[str, Option]

    @property
    def flexible(self) -> bool:
        """vLLM's FlexibleArgumentParser: `--max_model_len` is `--max-model-len`, `--opt.key v` sets a JSON key
        (vllm/utils/argparse_utils.py FlexibleArgumentParser.parse_args)."""
        return self.cls.endswith("FlexibleArgumentParser")

    def resolve(self, word: str) -> tuple[Option | None, str | None, str | None, list[str]]:
        """(option, the option string matched, explicit `=` value, ambiguous matches) as argparse 3.11's
        `_parse_optional` and `_get_option_tuples` resolve a word."""
        if word in self.options:
            return self.options[word], word, None, []
        if len(word) < 2:
            return None, None, None, []
        if "=" in word:
            head, value = word.split("=", 1)
            if head in self.options:
                return self.options[head], head, value, []
        matches: list[tuple[str, str | None]] = []
        if word[1] in self.prefix_chars:
            if self.allow_abbrev:
                prefix, explicit = word.split("=", 1) if "=" in word else (word, None)
                matches = [(o, explicit) for o in self.options if o.startswith(prefix)]
        else:
            short, attached = word[:2], word[2:]
            for o in self.options:
                if o == short:
                    matches.append((o, attached))
                elif o.startswith(word):
                    matches.append((o, None))
        if len(matches) > 1:
            return None, None, None, [o for o, _ in matches]
        if len(matches) == 1:
            o, explicit = matches[0]
            return self.options[o], o, explicit, []
        return None, None, None, []


@dataclass(frozen=True)
class FlagValue:
    """One option as the parser reads it: which option, the value as typed, and where it is written."""

    option: Option
    written: str  # the option string as written (`--tp`, `--max_model_len`)
    matched: str  # the option string it resolved to (`--tp-size`)
    raw: str | list[str] | None  # the value word(s); None for a switch
    value: Any  # typed; OPAQUE when the type function is not modelled
    token: Token  # the flag word
    value_tokens: tuple[Token, ...] = ()
    error: str | None = None  # the parser would reject this value (its message)

    @property
    def at(self) -> Token:
        """The word a person edits for the value (the value word, else the flag)."""
        return self.value_tokens[0] if self.value_tokens else self.token


@dataclass(frozen=True)
class UnknownFlag:
    token: Token
    flag: str
    suggestions: tuple[str, ...]
    ambiguous: tuple[str, ...] = ()  # a prefix several options start with (argparse: "ambiguous option")


@dataclass
class ReadCommand:
    """An argv read through every stage of an entry point."""

    values: list[FlagValue] = field(default_factory=list)
    unknown: list[UnknownFlag] = field(default_factory=list)

    def get(self, dest: str) -> FlagValue | None:
        """The last occurrence of an option with this dest (argparse keeps the last)."""
        found = [v for v in self.values if v.option.dest == dest]
        return found[-1] if found else None

    @property
    def errors(self) -> list[FlagValue]:
        return [v for v in self.values if v.error]

    @property
    def trusted(self) -> bool:
        """Every word was claimed and every value is valid: a rule may reason about what is absent."""
        return not self.unknown and not self.errors


def _option_like(word: str, prefix_chars: str = "-") -> bool:
    """argparse's 'O' (an option string) rather than 'A' (an argument)."""
    if len(word) < 2 or word[0] not in prefix_chars:
        return False
    return not (_NEGATIVE_NUMBER.match(word) or " " in word)


def _normalize(word: str) -> str:
    """FlexibleArgumentParser: underscores in the key (between `--` and the first `.`/`=`) become dashes."""
    if not word.startswith("--"):
        return word
    head, eq, value = word.partition("=")
    key, dot, rest = head[2:].partition(".")
    return "--" + key.replace("_", "-") + dot + rest + eq + value


@dataclass
class EntryPoint:
    """The parser stages of one `python -m dynamo.<x>` entry point of a release."""

    name: str
    release: str
    stages: list[Stage]
    probes: dict[str, list]
    rejects_unknown: bool
    dotted_prefixes: tuple[str, ...]  # leftover `--trtllm.<key>` words the entry point accepts
    source: str

    def option_strings(self) -> list[str]:
        return sorted({o for s in self.stages for o in s.options})

    def by_dest(self, dest: str) -> Option | None:
        for s in self.stages:
            for o in s.options.values():
                if o.dest == dest:
                    return o
        return None

    def option(self, spelling: str) -> Option | None:
        """The option an exact spelling names, in the first stage that has it."""
        for s in self.stages:
            if spelling in s.options:
                return s.options[spelling]
        return None

    def suggest(self, word: str) -> tuple[str, ...]:
        """The closest option string of this entry point's parsers, as CPython 3.14's argparse
        `suggest_on_error` picks one (difflib.get_close_matches, n=1)."""
        flag = word.split("=", 1)[0]
        pool = [o for o in self.option_strings() if o.startswith("--") == flag.startswith("--")]
        return tuple(difflib.get_close_matches(flag, pool, n=1))

    def read(self, argv: Sequence[Token]) -> ReadCommand:
        out = ReadCommand()
        words = list(argv)
        for stage in self.stages:
            words = self._read_stage(stage, words, out)
        i = 0
        while i < len(words):
            tok = words[i]
            if _option_like(tok.value) and not any(tok.value.startswith(p) for p in self.dotted_prefixes):
                out.unknown.append(UnknownFlag(tok, tok.value.split("=", 1)[0], self.suggest(tok.value)))
            i += 1
        if not self.rejects_unknown:
            out.unknown = []
        return out

    def _read_stage(self, stage: Stage, words: list[Token], out: ReadCommand) -> list[Token]:
        rest: list[Token] = []
        i = 0
        while i < len(words):
            tok = words[i]
            word = _normalize(tok.value) if stage.flexible else tok.value
            if word == "--":
                rest.extend(words[i:])
                break
            if not _option_like(word, stage.prefix_chars):
                rest.append(tok)
                i += 1
                continue
            if stage.flexible and word.startswith("--") and "." in word.split("=", 1)[0]:
                head = word.split("=", 1)[0].split(".", 1)[0]
                if head in stage.options:  # `--compilation-config.mode 3`: one key of a JSON option
                    eq = "=" in word
                    value = word.split("=", 1)[1] if eq else (words[i + 1].value if i + 1 < len(words) else None)
                    vt = () if eq or i + 1 >= len(words) else (words[i + 1],)
                    out.values.append(FlagValue(stage.options[head], tok.value, head, value, OPAQUE, tok, vt))
                    i += 1 if eq else 2
                    continue
            option, matched, explicit, ambiguous = stage.resolve(word)
            if ambiguous:
                flag = word.split("=", 1)[0]
                out.unknown.append(UnknownFlag(tok, flag, (), tuple(ambiguous)))
                i += 1
                continue
            if option is None:
                rest.append(tok)
                i += 1
                continue
            i += 1
            i = self._consume(option, matched or word, explicit, tok, words, i, out)
        return rest

    def _consume(
        self,
        option: Option,
        matched: str,
        explicit: str | None,
        tok: Token,
        words: list[Token],
        i: int,
        out: ReadCommand,
    ) -> int:
        written = tok.value.split("=", 1)[0]
        if not option.takes_value:
            value = _switch_value(option, matched)
            error = f"argument {matched}: ignored explicit argument {explicit!r}" if explicit else None
            out.values.append(FlagValue(option, written, matched, None, value, tok, (), error))
            return i
        taken: list[Token] = []
        if explicit is not None:
            raws: list[str] = [explicit]
        else:
            nargs = option.nargs
            limit = {None: 1, "?": 1}.get(nargs, nargs if isinstance(nargs, int) else None)
            while i < len(words) and not _option_like(words[i].value) and (limit is None or len(taken) < limit):
                taken.append(words[i])
                i += 1
            raws = [t.value for t in taken]
            if (not raws and nargs in (None, "+")) or (isinstance(nargs, int) and len(raws) < nargs):
                need = "expected one argument" if nargs is None else "expected at least one argument"
                out.values.append(
                    FlagValue(option, written, matched, None, None, tok, (), f"argument {matched}: {need}")
                )
                return i
            if not raws and nargs == "?":
                out.values.append(FlagValue(option, written, matched, None, option.const, tok))
                return i
        typed, error = self._typed(option, matched, raws)
        single = option.nargs in (None, "?")
        raw: str | list[str] = raws[0] if single else raws
        value = (typed[0] if typed else None) if single and typed is not OPAQUE else typed
        out.values.append(FlagValue(option, written, matched, raw, value, tok, tuple(taken), error))
        return i

    def _typed(self, option: Option, matched: str, raws: list[str]) -> tuple[Any, str | None]:
        convert = type_function(option.type)
        if convert is None:
            return OPAQUE, None
        out = []
        for raw in raws:
            try:
                value = convert(raw)
            except (TypeError_, ValueError) as e:
                return None, f"argument {matched}: invalid {_type_label(option.type)} value: {raw!r} ({e})"
            if option.choices is not None and value not in option.choices:
                shown = ", ".join(repr(c) for c in option.choices)
                return None, f"argument {matched}: invalid choice: {value!r} (choose from {shown})"
            out.append(value)
        return out, None


def _type_label(name: str | None) -> str:
    if not name:
        return "str"
    return name.rsplit(".", 1)[-1].split("(")[0]


def _switch_value(option: Option, matched: str) -> Any:
    if option.action == "_StoreTrueAction":
        return True
    if option.action == "_StoreFalseAction":
        return False
    if option.action == "BooleanOptionalAction":
        return not matched.startswith("--no-")
    if option.action == "_CountAction":
        return 1
    return option.const


# --- loading --------------------------------------------------------------------------------------


@dataclass
class ReleaseSurface:
    release: str
    entry_points: dict[str, EntryPoint]
    sources: dict[str, Any]
    how: str

    def entry_point(self, module: str) -> EntryPoint | None:
        """`dynamo.vllm` or `vllm` -> its entry point."""
        return self.entry_points.get(module.removeprefix("dynamo."))


def _entry_point(name: str, release: str, data: dict[str, Any], source: dict[str, Any]) -> EntryPoint:
    stages = []
    for n, s in enumerate(data["stages"]):
        options: dict[str, Option] = {}
        for a in s["actions"]:
            if a["action"] in ("_HelpAction", "_VersionAction"):
                continue
            opt = Option(
                tuple(a["options"]),
                a["dest"],
                a["nargs"],
                a["const"],
                a["default"],
                a["type"],
                None if a["choices"] is None else tuple(a["choices"]),
                a["action"],
                n,
            )
            for o in a["options"]:
                options[o] = opt
        stages.append(Stage(s["class"], s["allow_abbrev"], s["mode"], s["prefix_chars"], options))
    probes = data.get("remainder_probes", [])
    unknown_probe = next((p for p in probes if p["argv"][0].startswith("--zz-")), None)
    rejects = unknown_probe is None or not unknown_probe["ok"]
    dotted = tuple(
        p["argv"][0].split(".", 1)[0] + "."
        for p in probes
        if p["ok"] and "." in p["argv"][0] and not any(p["argv"][0].split(".", 1)[0] in s.options for s in stages)
    )
    versions = ", ".join(f"{k} {v}" for k, v in sorted(source.get("versions", {}).items()))
    return EntryPoint(
        name,
        release,
        stages,
        data.get("probes", {}),
        rejects,
        dotted,
        f"dynamo.{name} of Dynamo {release} ({versions}; recorded from the real parsers)",
    )


@cache
def load_surface(release: str, directory: Path | None = None) -> ReleaseSurface | None:
    """The recorded surface of a release, or None when none was recorded for it."""
    path = (directory or SURFACE_DIR) / f"{release}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    sources = data.get("sources", {})
    eps = {name: _entry_point(name, release, ep, sources.get(name, {})) for name, ep in data.get("parsers", {}).items()}
    return ReleaseSurface(release, eps, sources, data.get("how", ""))
