"""`recipe-harness checks`: every check id with its severity and why; one check in full with its
own defect fixture (tests/fixtures/defects/) as the failing example: the edits and the finding."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from harness.checks import Check, all_checks

EXAMPLES = """examples:
  recipe-harness checks                         every check: id, severity, C for a convention check, why
  recipe-harness checks image-reference-pinned  one check in full, with its failing example run now
  recipe-harness checks --format json           the same as JSON (id, severity, topic, scope, convention, why)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "checks",
        help="list the static checks (id, severity, why)",
        description="List the static checks, or show one in full: what it does, why, a failing example "
        "(its defect fixture, run now) and the source of truth it rests on.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", nargs="?", help="show one check in full, with its failing example")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default, wrapped) or json")
    p.set_defaults(func=run)


def as_dict(c: Check) -> dict:
    return {
        "id": c.id,
        "severity": c.severity.value,
        "topic": c.topic,
        "scope": c.scope,
        "convention": c.convention,
        "why": c.why,
    }


def run(args: argparse.Namespace) -> int:
    checks = all_checks()
    if args.id:
        match = [c for c in checks if c.id == args.id]
        if not match:
            near = difflib.get_close_matches(args.id, [c.id for c in checks], n=3, cutoff=0.5)
            if args.format == "json":
                print(json.dumps({"error": f"no check {args.id!r}", "suggestions": near}, indent=2))
            else:
                hint = f"; did you mean {' or '.join(near)}?" if near else ""
                print(
                    f"recipe-harness: no check {args.id!r}{hint} (`recipe-harness checks` lists them)", file=sys.stderr
                )
            return 2
        c = match[0]
        if args.format == "json":
            print(json.dumps({**as_dict(c), "doc": c.doc}, indent=2))
            return 0
        kind = ", a convention check: catalogue-convention trees only" if c.convention else ""
        print(f"{c.id} ({c.severity.value}, {c.source}, per {c.scope}{kind})\n\n{c.doc}")
        if c.options is not None:
            print("\nOptions:")
            for f in dataclasses.fields(c.options):
                print(f"  {f.name} = {f.default!r}")
        print("\n" + "\n".join(failing_example(c)))
        return 0
    if args.format == "json":
        print(json.dumps([as_dict(c) for c in checks], indent=2))
        return 0
    width = max(shutil.get_terminal_size((100, 24)).columns, 60)
    id_width = max(len(c.id) for c in checks)
    indent = " " * (id_width + 13)
    for c in checks:
        head = f"{c.id:<{id_width}}  {c.severity.value:<8} {'C' if c.convention else ' '}  "
        print(textwrap.fill(c.why, width=width, initial_indent=head, subsequent_indent=indent))
    print(
        "\nC: a convention check (layout, recipe.yaml, versions.yaml, docs): it runs on catalogue-convention trees only"
        "\n`recipe-harness checks ID` shows one in full"
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
