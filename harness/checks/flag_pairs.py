"""Required flag pairs: a flag that Dynamo's parser only accepts together with another one."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.surface import engine_surface
from harness.checks import CheckContext, check
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.flag_pairs import FlagPair, flag_pairs
from harness.recipe.flagvalues import EntryPoint, ReadCommand
from harness.recipe.model import Recipe
from harness.recipe.service import Service

CONFIG_FLAG = "--config"  # vLLM and SGLang read engine flags from a YAML file too: the pair may be met there


def _written(read: ReadCommand | None, surface: EntryPoint | None, svc: Service, flag: str) -> tuple[str, Loc] | None:
    """(value as written, where) of a flag: as the release's parsers read it (aliases, prefixes) when its
    surface is recorded, else from the generic reading of the command line."""
    if read is not None and surface is not None:
        option = surface.option(flag)
        found = read.get(option.dest) if option is not None else None
        if found is None:
            return None
        raw = found.raw[0] if isinstance(found.raw, list) and found.raw else found.raw
        return ("true" if raw is None else str(raw)), found.token.loc
    generic = svc.flags.get(flag)
    return (generic.value.value, generic.flag.loc) if generic is not None else None


def _met(pair: FlagPair, svc: Service, read: ReadCommand | None, surface: EntryPoint | None) -> bool:
    if pair.requires == "--router-mode":  # the frontend also takes it from --load-aware or DYN_ROUTER_MODE
        value: str | None = svc.router_mode.value
    else:
        found = _written(read, surface, svc, pair.requires)
        if found is None:
            return False
        value = found[0]
    return pair.accepted_values is None or value in pair.accepted_values


@check("required-flag-pairs")
def required_flag_pairs(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A flag that the release's parser only accepts together with another one comes with it:
    otherwise the worker (or frontend) raises at start and the pod crash-loops. The pairs are
    not a hand list: `python -m harness.run.conformance.pairs --release R` reads every
    "`--a` requires `--b`" / "when using `--a v`, you must provide `--b`" raise in the release's
    parsers and keeps those the real parser proves on a minimal command line (fails without
    `--b`, passes with it); harness/recipe/data/flag-pairs/<release>.json records them with the
    file, function and sha256 they come from. This check applies them statically (no env), reading
    the flags as the release's parsers do (its recorded surface: aliases and accepted prefixes count);
    `pytest -m conformance` runs the whole command line through the parser.

    Fails: a vLLM worker with `--disaggregation-mode prefill` and no `--kv-transfer-config`
    (ValueError "When using --disaggregation-mode prefill, you must explicitly provide
    --kv-transfer-config"). Fix: add
    `--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'`.

    Source: ai-dynamo 1.4.0 dynamo/vllm/args.py `update_dynamo_config_with_engine`, and the other
    pairs listed in harness/recipe/data/flag-pairs/1.4.0.json (sglang/args.py,
    sglang/backend_args.py, vllm/backend_args.py, frontend/frontend_args.py).
    """
    dep = recipe.deployment
    release = recipe.release
    if dep is None or not release:
        return
    pairs = flag_pairs(release)
    for svc in dep.services:
        engine = svc.engine
        if not engine or (engine != "frontend" and CONFIG_FLAG in svc.flags):
            continue
        surface = engine_surface(recipe, svc)
        inv = svc.main.dynamo_invocation() if svc.main is not None else None
        read = surface.read(inv[1]) if surface is not None and inv is not None else None
        for pair in pairs:
            if pair.engine != engine:
                continue
            trigger = _written(read, surface, svc, pair.when)
            if trigger is None or (pair.when_value is not None and trigger[0] != pair.when_value):
                continue
            if _met(pair, svc, read, surface):
                continue
            want = f"{pair.requires} {pair.requires_value}" if pair.requires_value else pair.requires
            if pair.accepted_values and len(pair.accepted_values) > 1:
                want = f"{pair.requires} ({' | '.join(pair.accepted_values)})"
            written = f"{pair.when} {pair.when_value}" if pair.when_value else pair.when
            yield problem(
                trigger[1],
                f"service {svc.name} passes {written} without {pair.requires}: dynamo.{engine} "
                f'(Dynamo {release}) refuses to start: "{pair.message}" [{pair.source}]',
                f"add {want}",
            )
