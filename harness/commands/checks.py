"""`recipe-harness checks`: every check id with its severity and why; one check in full with its
own defect fixture (tests/fixtures/defects/) as the failing example: the edits and the finding."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from harness.checks import Check, all_checks


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checks", help="list the static checks (id, severity, why)")
    p.add_argument("id", nargs="?", help="show one check in full, with its failing example")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = all_checks()
    if args.id:
        match = [c for c in checks if c.id == args.id]
        if not match:
            print(f"recipe-harness: no check {args.id!r}")
            return 2
        c = match[0]
        kind = ", a convention check: catalogue-convention trees only" if c.convention else ""
        print(f"{c.id} ({c.severity.value}, {c.source}, per {c.scope}{kind})\n\n{c.doc}")
        if c.options is not None:
            print("\nOptions:")
            for f in dataclasses.fields(c.options):
                print(f"  {f.name} = {f.default!r}")
        print("\n" + "\n".join(failing_example(c)))
        return 0
    for c in checks:
        print(f"{c.id:<34} {c.severity.value:<8} {'C' if c.convention else ' '} {c.why}")
    print(
        "\nC: a convention check (layout, recipe.yaml, versions.yaml, docs): it runs on catalogue-convention trees only"
    )
    return 0


def failing_example(chk: Check) -> list[str]:
    """The check's first defect fixture: what it breaks in the shipped catalogue and the finding
    the check gives on it (run now, so the example cannot go stale)."""
    from harness.run.defects import (
        DEFECTS,
        REPO,
        describe_edit,
        fixtures_for,
        materialise,
        missing_programs,
        selectors_for,
    )
    from harness.run.static import context_for, make_selection, run_static

    fixtures = sorted(fixtures_for(chk.id), key=lambda d: bool(d.base))  # the shipped catalogue's first
    if not fixtures:
        return [f"Failing example: none (no fixture in {DEFECTS} expects {chk.id}; run from a checkout)"]
    defect = fixtures[0]
    name = f"{DEFECTS.relative_to(REPO)}/{defect.name}.yaml"
    lines = [f"Failing example: {name}" + (f" ({defect.why})" if defect.why else "")]
    if defect.base:
        lines.append(f"  on     {defect.catalogue.relative_to(REPO)}/ (the frozen catalogue the fixture edits)")
    lines += [f"  edit   {describe_edit(e)}" for e in defect.edits]
    missing = missing_programs(defect)
    if missing:
        lines.append(f"  (not run: {', '.join(missing)} is not on PATH; expected:)")
        lines += [
            f"  finding recipes/{e.file}:{e.line}: [{e.check}]"
            + (f" (a message with {e.message!r})" if e.message else "")
            for e in defect.expect
            if e.check == chk.id
        ]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            root, _ = materialise(defect, Path(tmp))
            selection = make_selection(root, [s for s in selectors_for(defect) if s != "*"])
            report = run_static(selection, context_for(selection), [chk])
            found = [f for f in report.findings if f.check_id == chk.id]
            for f in found:
                first, *rest = f.format().replace(str(root) + "/", "recipes/").splitlines()
                lines += ["  finding " + first] + ["  " + t for t in rest]
            if not found:
                lines.append("  (the fixture no longer produces a finding: tests/test_defects.py fails too)")
    if len(fixtures) > 1:
        lines.append("Other fixtures: " + ", ".join(d.name for d in fixtures[1:]))
    return lines
