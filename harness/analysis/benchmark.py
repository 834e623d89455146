"""The recipe's benchmark as its perf Job defines it: the `aiperf profile` invocation in perf.yaml,
read with the Job's env and script variables resolved (aiperf 0.13 option names and aliases)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.recipe.commandline import expand_script_vars
from harness.recipe.model import Recipe

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
    """The perf Job's benchmark: the `aiperf profile` call the static checks judge
    (`Workloads.aiperf_call`: exec form, `sh -c`/`bash -lc` scripts, nested `sh -c '...'`, `&&` lists,
    folded YAML), its words with the container's env and the script's own variables resolved.
    Raises PerfConfigError when the perf Job has none."""
    w = recipe.workloads
    if w.perf is None:
        raise PerfConfigError(f"{recipe.id}: perf.yaml has no Job or Pod")
    call = w.aiperf_call()
    if call is None:
        raise PerfConfigError(f"{recipe.id}: no container of the perf Job runs `aiperf profile`")
    container, _, words = call
    script = container.script
    values = [expand_script_vars(t.value, script, container) for t in words]
    loc = container.shell_script.loc if container.shell_script else container.loc
    return parse_options(values, where=f"{_rel(loc.file, recipe.root)}:{loc.line}")


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
