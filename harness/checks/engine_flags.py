"""Engine flags as the release's parsers read them: unknown options, ambiguous prefixes and values they reject."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.surface import engine_surface
from harness.analysis.topology import flag_line
from harness.checks import CheckContext, check
from harness.recipe.findings import Problem, problem
from harness.recipe.model import Recipe


@check("engine-flags-known")
def engine_flags_known(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every word of a `python -m dynamo.<x>` command line is one the release's parsers accept: a
    misspelt option (`--tensor-paralel-size`) makes the worker exit at start with "unrecognized
    arguments", an ambiguous prefix with "ambiguous option", and a value its type or choices reject
    (`--max-model-len 16Q`, `--kv-cache-dtype fp9`) with "invalid ... value" or "invalid choice".

    The reading is the release's own, from its recorded parser surface
    (harness/recipe/data/flag-surface/<release>.json, recorded from the real parsers by
    `python -m harness.run.conformance.surface`): the stages each entry point calls (Dynamo's
    parser, the router-advertisement parser, the engine's), their options, value types and
    whether they accept abbreviations, so `--tp 8` (a unique prefix of SGLang's `--tp-size`) and
    `--max-model-len 16K` (vLLM's `human_readable_int_or_auto`) pass. The "did you mean" comes
    from that parser's own option strings. A value taken from an unexpanded variable (`$TP`) is
    not judged. `pytest -m conformance` runs the same command lines through the parsers
    themselves and cross-checks every value read here.

    Fails: `--tensor-paralel-size 2` on a vLLM worker (did you mean `--tensor-parallel-size`?).

    Source: the release's parsers, as recorded: ai-dynamo 1.6.1 dynamo/vllm/args.py
    `_parse_cli_args` (Dynamo's parser with allow_abbrev=False, then
    dynamo/common/configuration/groups/router_args.py `parse_worker_router_config`, then vLLM
    0.31 `FlexibleArgumentParser.parse_args`), dynamo/sglang/args.py `parse_args` (SGLang 0.5.21
    `ServerArgs.add_cli_args`), dynamo/trtllm/args.py `parse_args` (`--trtllm.<key>` dynamic
    flags), dynamo/frontend/main.py `parse_args` ("Unknown arguments specified").
    """
    dep = recipe.deployment
    if dep is None:
        return
    for svc in dep.services:
        surface = engine_surface(recipe, svc)
        inv = svc.main.dynamo_invocation() if svc.main is not None else None
        if surface is None or inv is None:
            continue
        program = f"dynamo.{surface.name} (Dynamo {surface.release})"
        read = surface.read(inv[1])
        for unknown in read.unknown:
            loc = flag_line(unknown.token.at, unknown.flag)
            if unknown.ambiguous:
                yield problem(
                    loc,
                    f"service {svc.name}: {program} rejects {unknown.flag}: ambiguous option: could match "
                    f"{', '.join(unknown.ambiguous)}",
                    "write the option in full",
                )
                continue
            hint = (
                f"did you mean {' or '.join(unknown.suggestions)}?"
                if unknown.suggestions
                else f"remove it; `python -m dynamo.{surface.name} --help` lists the options"
            )
            yield problem(
                loc,
                f"service {svc.name}: {program} rejects {unknown.flag}: unrecognized arguments: {unknown.flag}",
                hint,
            )
        for value in read.errors:
            words = value.raw if isinstance(value.raw, list) else [value.raw or ""]
            if any("$" in w for w in words):
                continue  # an unexpanded variable: its value is only known in the pod
            yield problem(
                value.at.loc,
                f"service {svc.name}: {program} rejects it: {value.error}",
                f"give {value.matched} a value its parser accepts",
            )
