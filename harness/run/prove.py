"""Proves one recipe of a tree through the static, conformance and API-server tiers, as values: per tier
whether it ran, why not, and its findings. `recipe-harness derive` proves a variant with it before writing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TIERS = ("static", "conformance", "apiserver")


@dataclass
class TierResult:
    tier: str
    ran: bool = True
    why_not: str = ""  # a tier that could not run says why (the env or binaries missing)
    failures: list[str] = field(default_factory=list)  # one line per finding, `path:line:col: [id] message`
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.ran and not self.failures

    def status(self) -> str:
        if not self.ran:
            return f"could not run: {self.why_not}"
        return "passed" if not self.failures else f"FAILED ({len(self.failures)} finding(s))"


def _static(root: Path, recipe_id: str, touched: set[str] | None = None) -> TierResult:
    from harness.run.static import context_for, make_selection, run_static

    # the tree named: its tree checks (docs in sync, the model README's figures) run too
    selection = make_selection(root, [recipe_id])
    report = run_static(selection, context_for(selection))
    out = TierResult("static")
    for f in report.findings:
        line = f.format().splitlines()[0]
        ours = f.recipe == recipe_id or touched is None or _below(root, f.file) in touched
        if f.severity.value != "error":
            out.notes.append(f"warning: {line}")
        elif ours:
            out.failures.append(line)
        else:  # a tree finding in a file the variant did not write: the tree's, not the variant's
            out.notes.append(f"in the tree already, not the variant's: {line}")
    return out


def _below(root: Path, file: str) -> str:
    path = Path(file) if Path(file).is_absolute() else Path.cwd() / file
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return file


def _conformance(root: Path, recipe_id: str) -> TierResult:
    from harness.run.conformance.client import check_recipes
    from harness.run.static import make_selection

    selection = make_selection(root, [recipe_id])
    out = TierResult("conformance")
    outcomes = check_recipes(selection.chosen)
    skipped = [o for o in outcomes if o.skipped]
    parsed = [o for o in outcomes if not o.skipped]
    for o in parsed:
        out.failures += [f.format().splitlines()[0] for f in o.findings]
        if o.result.kind == "driver":
            out.failures.append(f"{o.job.id}: {o.result.error}")
        out.notes.append(f"{o.job.service}: parsed by {o.result.env}")
    for o in skipped:
        out.notes.append(f"{o.job.service}: not parsed: {o.skipped}")
    engine_jobs = [o for o in skipped if o.result.unavailable]
    if not parsed or engine_jobs:
        out.ran = False
        out.why_not = "; ".join(sorted({str(o.skipped) for o in (engine_jobs or skipped)})) or "no command line"
    return out


def _apiserver(root: Path, recipe_id: str) -> TierResult:
    from harness.run.apiserver.dryrun import RecipeDryRun
    from harness.run.apiserver.session import ApiServerSession, Unavailable
    from harness.run.static import make_selection

    selection = make_selection(root, [recipe_id])
    out = TierResult("apiserver")
    session = ApiServerSession()
    try:
        try:
            client = session.client()
        except Unavailable as exc:
            return TierResult("apiserver", ran=False, why_not=str(exc))
        out.notes.append(session.description)
        for recipe in selection.chosen:
            dry = RecipeDryRun(client, recipe)
            try:
                for outcome in dry.run():
                    out.failures += [f.format().splitlines()[0] for f in outcome.findings]
                    if outcome.skipped:
                        out.notes.append(f"{outcome.target.label}: not sent: {outcome.skipped}")
                out.notes.append(f"{len(dry.targets)} object(s) applied with dryRun=All")
            finally:
                dry.cleanup()
    finally:
        session.close()
    return out


def prove(
    root: Path, recipe_id: str, touched: set[str] | None = None, tiers: tuple[str, ...] = TIERS
) -> list[TierResult]:
    """Each tier's verdict on the recipe `recipe_id` of the tree at `root`. `touched`: the files (relative to
    root) the change wrote; a tree check's error elsewhere was there before and is a note, not a failure."""
    out = []
    for tier in tiers:
        if tier == "static":
            out.append(_static(root, recipe_id, touched))
        else:
            out.append({"conformance": _conformance, "apiserver": _apiserver}[tier](root, recipe_id))
    return out
