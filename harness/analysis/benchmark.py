"""The recipe's benchmark as its perf Job defines it: the `aiperf profile` invocation in perf.yaml,
read with the Job's env and script variables resolved (aiperf 0.13 option names and aliases)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.recipe.model import Container, Recipe, pod_containers

_SEPARATORS = {"&&", "||", ";", "|", "&", "\n"}
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_WARMUP = re.compile(r"warm[-_ ]?up", re.IGNORECASE)  # a call that only warms the server up
# aiperf option aliases -> one canonical name (aiperf 0.13 `profile --help`).
ALIASES = {
    "-m": "--model",
    "--model-names": "--model",
    "-u": "--url",
    "--isl": "--synthetic-input-tokens-mean",
    "--prompt-input-tokens-mean": "--synthetic-input-tokens-mean",
    "--isl-stddev": "--synthetic-input-tokens-stddev",
    "--prompt-input-tokens-stddev": "--synthetic-input-tokens-stddev",
    "--osl": "--output-tokens-mean",
    "--prompt-output-tokens-mean": "--output-tokens-mean",
    "--osl-stddev": "--output-tokens-stddev",
    "--prompt-output-tokens-stddev": "--output-tokens-stddev",
    "--num-requests": "--request-count",
}


NO_VALUE = {
    "--streaming",
    "--use-server-token-count",
    "--no-gpu-telemetry",
    "--verbose",
    "-v",
    "--extra-verbose",
    "-vv",
    "--use-legacy-max-tokens",
    "--no-server-metrics",
}


class PerfConfigError(ValueError):
    """The recipe's perf Job has no usable `aiperf profile` invocation."""


@dataclass(frozen=True)
class AiperfInvocation:
    """The `aiperf profile` options of a perf Job, canonical names, repeats kept in order."""

    options: tuple[tuple[str, str | None], ...]
    where: str = ""

    def get(self, flag: str) -> str | None:
        values = self.all(flag)
        return values[-1] if values else None

    def all(self, flag: str) -> list[str]:
        return [v for f, v in self.options if f == flag and v is not None]

    def has(self, flag: str) -> bool:
        return any(f == flag for f, _ in self.options)

    @property
    def model(self) -> str | None:
        return self.get("--model")

    @property
    def extra_inputs(self) -> dict[str, str]:
        return extra_inputs(self.all("--extra-inputs"))


def find_invocation(recipe: Recipe) -> AiperfInvocation:
    job = recipe.perf_job()
    if job is None and recipe.perf is not None:  # a bare Pod runs the benchmark in some upstream recipes
        job = next((d for d in recipe.perf.documents if d.kind == "Pod" and d.data is not None), None)
    if job is None:
        raise PerfConfigError(f"{recipe.id}: perf.yaml has no Job or Pod")
    for container in pod_containers(job):
        words = aiperf_words(container)
        if words is not None:
            loc = container.shell_script.loc if container.shell_script else container.loc
            return parse_options(words, where=f"{_rel(loc.file, recipe.root)}:{loc.line}")
    raise PerfConfigError(f"{recipe.id}: no container of the perf Job runs `aiperf profile`")


def aiperf_words(container: Container) -> list[str] | None:
    """The words after `aiperf profile` with env and script variables resolved, or None."""
    script = container.shell_script
    if script is None:
        words = [t.value for t in container.argv]
        return _after_profile(words)
    variables: dict[str, str] = {}
    warmup: list[str] | None = None
    for command in shell_commands(script.value):
        found = _after_profile(command)
        resolver = Container(container.data, {**container.env, **variables})
        if found is not None:
            words = [resolver.expand(w) for w in found]
            if not any(
                _WARMUP.search(w) for w in words if not w.startswith("-")
            ):  # values, not `--warmup-request-count`
                return words
            warmup = warmup or words  # a warmup run: the benchmark is a later call
            continue
        assignment = command[1:] if command[:1] == ["export"] else command
        for word in assignment:
            m = _ASSIGNMENT.match(word)
            if not m:
                break
            variables[m.group(1)] = resolver.expand(m.group(2))
    return warmup


def shell_commands(script: str) -> list[list[str]]:
    """A script split into simple commands (newlines, `;`, `&&`, `||` and `|` end one); comments dropped."""
    joined = script.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # unbalanced quotes: whitespace is the best guess
            words = line.split()
        current: list[str] = []
        for w in words:
            if w in _SEPARATORS:
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(w)
        if current:
            commands.append(current)
    return commands


def _after_profile(words: list[str]) -> list[str] | None:
    for i in range(len(words) - 1):
        if Path(words[i]).name == "aiperf" and words[i + 1] == "profile":
            rest = words[i + 2 :]
            end = next((k for k, w in enumerate(rest) if w in _SEPARATORS), len(rest))
            return rest[:end]
    return None


def parse_options(words: list[str], where: str = "") -> AiperfInvocation:
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            i += 1
            continue
        flag, eq, inline = word.partition("=")
        flag = ALIASES.get(flag, flag)
        if eq:
            options.append((flag, inline))
            i += 1
        elif flag in NO_VALUE or i + 1 >= len(words) or words[i + 1].startswith("--"):
            options.append((flag, None))
            i += 1
        else:
            options.append((flag, words[i + 1]))
            i += 2
    return AiperfInvocation(tuple(options), where)


def extra_inputs(values: list[str]) -> dict[str, str]:
    """`--extra-inputs key:value` and JSON-object forms, merged in order, values as strings."""
    out: dict[str, str] = {}
    for v in values:
        v = v.strip()
        if v.startswith("{"):
            try:
                obj = json.loads(v)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.update({str(k): json.dumps(val) if not isinstance(val, str) else val for k, val in obj.items()})
            continue
        key, sep, value = v.partition(":")
        if sep:
            out[key] = value
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
