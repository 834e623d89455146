"""Which Dynamo runs a rehearsal: the frontend and mocker of the recipe's own release line.

The `.[sim]` extra installs ai-dynamo 1.4.x into the harness's environment (1.5+ requires
`aisimulate`, which cannot be a plain dependency offline). A recipe on that release line rehearses
there. A recipe on another release rehearses on a harness-managed env of its release: the
conformance env of the release (the lightest ready one: `dynamo`, i.e. ai-dynamo alone, else the
vLLM or SGLang env; for >= 1.5 ai-dynamo is installed `--no-deps` without aisimulate, see
harness/run/conformance/envs.py), else a `dynamo` env built on first use (~1-2 min with uv,
~0.6 GB) under `$RECIPE_HARNESS_CACHE/conformance/<release>-dynamo`. plan.json, result.json and the pytest
header say which release rehearsed and from where.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from harness.run.conformance import envs

THIS_ENV = "this environment (the .[sim] extra)"


class RuntimeError_(RuntimeError):
    """No Dynamo of the recipe's release can run here; the message says why and what to run."""


@dataclass(frozen=True)
class SimRuntime:
    """The interpreter whose `dynamo.frontend` and `dynamo.mocker` rehearse a recipe."""

    recipe_release: str  # the release the recipe pins ("" when it pins none)
    release: str  # the ai-dynamo version that rehearses
    python: str
    source: str  # THIS_ENV or the managed env's path
    note: str = ""  # e.g. "installed --no-deps, without aisimulate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        extra = f"; {self.note}" if self.note else ""
        return f"Dynamo {self.release} from {self.source}{extra}"


def installed_release() -> str:
    """The ai-dynamo version of this interpreter ("" when not installed)."""
    try:
        return importlib.metadata.version("ai-dynamo")
    except importlib.metadata.PackageNotFoundError:
        return ""


def release_line(version: str) -> tuple[str, ...]:
    """`1.4.2` -> ("1", "4"): patch releases of one line share the protocol and the CLIs."""
    return tuple(version.split(".")[:2])


def resolve(
    recipe_release: str, *, build: bool = True, here: str | None = None, say: Callable[[str], None] | None = None
) -> SimRuntime:
    """The runtime for a recipe of `recipe_release`: this interpreter when it holds that release
    line, else the managed env of the release (built when `build`, else an error naming the command)."""
    here = installed_release() if here is None else here
    if not recipe_release or (here and release_line(here) == release_line(recipe_release)):
        note = (
            ""
            if not recipe_release or here == recipe_release
            else f"the recipe pins {recipe_release}; same release line"
        )
        return SimRuntime(recipe_release, here, sys.executable, THIS_ENV, note)
    # any env of the release holds its ai-dynamo: the lightest ready one (dynamo, vllm, sglang) serves
    env = envs.locate(recipe_release, "frontend")
    if env is None and not build:
        raise RuntimeError_(
            f"no Dynamo {recipe_release} to rehearse with: run "
            f"`{envs.SETUP_COMMAND} --release {recipe_release}`, or let the sim stage build it"
        )
    if env is None:
        try:
            env = envs.ensure_env(recipe_release, "dynamo", say=say)
        except (envs.EnvBuildError, ValueError) as exc:
            raise RuntimeError_(f"could not set up Dynamo {recipe_release} for the rehearsal: {exc}") from None
    return SimRuntime(
        recipe_release, env.versions.get("ai-dynamo", recipe_release), env.python, str(env.path), envs.install_note(env)
    )


_FRONTEND_CLI_CODE = """
import argparse, json
from dynamo.frontend.frontend_args import FrontendArgGroup
p = argparse.ArgumentParser(add_help=False)
FrontendArgGroup().add_arguments(p)
a = p._option_string_actions
print(json.dumps({"flags": sorted(a), "no_value": sorted(f for f, x in a.items() if x.nargs == 0),
                  "choices": {f: [str(c) for c in x.choices] for f, x in a.items() if x.choices}}))
"""


@lru_cache(maxsize=8)
def frontend_cli_data(python: str) -> dict[str, Any]:
    """The option strings of `dynamo.frontend` as the runtime's own parser defines them."""
    res = subprocess.run([python, "-c", _FRONTEND_CLI_CODE], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError_(f"cannot read dynamo.frontend's arguments from {python}: {res.stderr.strip()[-1500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def header_lines(releases: list[str], here: str | None = None) -> list[str]:
    """The run header: per Dynamo release the recipes pin, the conformance envs that parse it and what
    rehearses it (never builds anything); what the envs were installed without is said once per release."""
    here = installed_release() if here is None else here
    out = []
    for release in releases:
        ready = [e for e in (envs.find_env(release, k) for k in envs.ENV_KINDS) if e is not None]
        conf = ", ".join(_env_label(e) for e in ready) or "none set up"
        notes = list(dict.fromkeys(envs.install_note(e) for e in ready))
        if here and release_line(here) == release_line(release):
            sim = f"Dynamo {here} from {THIS_ENV}"
        else:
            env = envs.locate(release, "frontend")
            if env is not None and env not in ready:
                notes = list(dict.fromkeys([*notes, envs.install_note(env)]))
            sim = (
                f"Dynamo {env.versions.get('ai-dynamo', release)} from {env.path.name if env in ready else env.path}"
                if env
                else f"a managed ai-dynamo {release} env, built on first use"
            )
        out.append(f"recipe-harness: Dynamo {release}: conformance envs: {conf}; sim rehearses on {sim}")
        out.extend(f"recipe-harness:   {note}" for note in _merged(notes) if note != f"ai-dynamo {release}")
    return out


def _env_label(env: envs.Env) -> str:
    engine = env.versions.get(env.kind) if env.kind in envs.ENGINE_DIST else None
    return f"{env.path.name} ({env.kind} {engine})" if engine else env.path.name


def _merged(notes: list[str]) -> list[str]:
    """The envs' install notes with their shared first part (`ai-dynamo R (installed --no-deps, without X)`)
    said once: `ai-dynamo 1.6.1 (...); vllm 0.31.0 resolved without ...; sglang 0.5.21 resolved without ...`."""
    heads: dict[str, list[str]] = {}
    for note in notes:
        head, _, tail = note.partition("; ")
        heads.setdefault(head, [])
        if tail:
            heads[head].append(tail)
    return ["; ".join([head, *tails]) for head, tails in heads.items()]
