"""Cross-checks the static flag reader against the real parsers: for every command line parsed, each value
the static tier reads (harness/recipe/flagvalues.py) must be the value the release's parser put in its
namespace, and both must agree on which words are flags at all.

The driver reports the namespace of every argparse parser the entry point called (its stages) for the
(stage, dest) pairs the static reader resolved; a difference is a finding of the conformance tier,
because the static checks and the sizing guide would then reason about a value the engine never sees.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.recipe.commandline import Token
from harness.recipe.findings import Finding, Severity, display_path
from harness.recipe.flagvalues import OPAQUE, EntryPoint, FlagValue, ReadCommand, load_surface

if TYPE_CHECKING:
    from harness.run.conformance.client import Job, ParseResult

CHECK_ID = "conformance"


def surface_for(job: Job) -> EntryPoint | None:
    surface = load_surface(job.release) if job.release else None
    return surface.entry_point(job.parser) if surface is not None else None


def static_read(job: Job) -> ReadCommand | None:
    surface = surface_for(job)
    return surface.read(job.argv) if surface is not None else None


def _last_values(read: ReadCommand) -> list[FlagValue]:
    """The value argparse keeps per (stage, dest): the last one, when the parser would accept it."""
    last: dict[tuple[int, str], FlagValue] = {}
    for v in read.values:
        last[(v.option.stage, v.option.dest)] = v
    return [v for v in last.values() if v.error is None and v.value is not OPAQUE]


def wanted(job: Job) -> list[list[Any]]:
    """The (stage, dest) pairs whose parsed values the driver should report for this job."""
    read = static_read(job)
    return [] if read is None else [[v.option.stage, v.option.dest] for v in _last_values(read)]


def _same(static: Any, real: Any) -> bool:
    return json.loads(json.dumps(static)) == real or (
        isinstance(static, (int, float)) and isinstance(real, (int, float)) and float(static) == float(real)
    )


def _finding(job: Job, tok_loc, message: str, surface: EntryPoint) -> Finding:
    return Finding(
        CHECK_ID,
        Severity.ERROR,
        display_path(tok_loc.file),
        max(tok_loc.line, 1),
        max(tok_loc.column, 1),
        message,
        f"the static tier's reading (harness/recipe/flagvalues.py over harness/recipe/data/flag-surface/"
        f"{surface.release}.json) disagrees with the release's parser: re-record the surface "
        f"(python -m harness.run.conformance.surface --release {surface.release}) or fix the reader",
        job.recipe.id,
    )


def findings(job: Job, result: ParseResult) -> tuple[list[Finding], list[str]]:
    """(disagreements between the static reader and the real parser, notes)."""
    if job.skip_reason:
        return [], []
    surface = surface_for(job)
    if surface is None:
        return [], [f"no recorded flag surface for Dynamo {job.release}: the static tier reads these flags generically"]
    if result.parsed is None or result.unavailable or result.kind == "driver":
        return [], []
    read = surface.read(job.argv)
    out: list[Finding] = []
    stages = result.parsed.get("stages", [])
    recorded = [(s.cls, len(s.options)) for s in surface.stages]
    if [s["class"] for s in stages[: len(recorded)]] != [c for c, _ in recorded]:
        return [], [
            f"the parsers called ({[s['class'] for s in stages]}) differ from the recorded stages "
            f"({[c for c, _ in recorded]}), e.g. a --config file: values not cross-checked"
        ]
    values = result.parsed.get("values", {})
    mounted = {f.path for f in job.files}
    for v in _last_values(read):
        key = f"{v.option.stage}:{v.option.dest}"
        if key not in values or (isinstance(v.raw, str) and v.raw in mounted):
            continue  # the parse stopped before this stage, or the driver passed a temp copy of a mounted file
        if not _same(v.value, values[key]):
            out.append(
                _finding(
                    job,
                    v.token.at,
                    f"{v.written}: the static reader reads {v.value!r}, dynamo.{job.parser}'s parser "
                    f"{values[key]!r} ({v.option.dest})",
                    surface,
                )
            )
    parser_unknown = set(result.unrecognized)
    # the parser got past argument parsing, or listed every word it did not know: its verdict is complete
    passed = ("validation", "engine_config", "model", "platform")
    conclusive = result.ok or result.kind in passed or bool(parser_unknown)
    for u in read.unknown:
        if conclusive and not u.ambiguous and u.flag not in parser_unknown:
            message = f"{u.flag}: the static reader rejects it, dynamo.{job.parser}'s parser does not"
            out.append(_finding(job, u.token.at, message, surface))
    static_unknown = {u.flag for u in read.unknown}
    for flag in parser_unknown - static_unknown:
        tok = next((t for t in job.argv if t.value.split("=", 1)[0] == flag), None)
        if tok is not None:
            message = f"{flag}: dynamo.{job.parser}'s parser rejects it, the static reader does not"
            out.append(_finding(job, tok.at, message, surface))
    return out, []


def flag_named_by(job: Job, message: str) -> Token | None:
    """The flag an engine's validation message is about when it names the setting, not the flag
    ("tensor parallel size (3)", "max_model_len (300000)"): the option whose dest it names, longest first."""
    read = static_read(job)
    if read is None:
        return None
    text = message.lower()
    best: tuple[int, Token] | None = None
    for v in read.values:
        dest = v.option.dest.lower()
        if (dest in text or dest.replace("_", " ") in text) and (best is None or len(dest) > best[0]):
            best = (len(dest), v.token)
    return best[1] if best else None
