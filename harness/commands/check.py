"""`recipe-harness check`: the static checks without pytest, for scripts and pre-commit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import add_selection_args, selection_from
from harness.recipe.findings import Severity, sorted_findings
from harness.run.ignores import IgnoreFileError
from harness.run.static import (
    SEVERITY_FLOORS,
    check_options,
    context_for,
    in_github_actions,
    make_gate,
    run_header,
    run_static,
    summary_line,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the static checks and print findings")
    add_selection_args(p)
    p.add_argument("--crd", action="append", default=[], metavar="PATH", help="also validate against this CRD")
    p.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="allowed image registry (repeatable; replaces the allow-list in recipes/versions.yaml)",
    )
    p.add_argument(
        "--storage-margin",
        type=float,
        default=None,
        metavar="F",
        help="model-cache PVC size / checkpoint size (default: the catalogue's rule, 1.2 or 1.3)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default=None,
        help="text (default), json, or github annotations (default when GITHUB_ACTIONS is set)",
    )
    p.add_argument("--output", metavar="PATH", help="write the report here instead of stdout")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument(
        "--severity-floor",
        choices=SEVERITY_FLOORS,
        default=None,
        help="report only findings at or above this severity (default: warning, i.e. all)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    selection = selection_from(args)
    if selection is None:
        return 2
    try:
        gate = make_gate(selection, args.severity_floor)
    except IgnoreFileError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    report = run_static(
        selection, context_for(selection, check_options(args.crd, args.registry, args.storage_margin)), gate=gate
    )
    fmt = args.format or ("github" if in_github_actions() else "text")
    if fmt == "json":
        text = report.to_json()
    elif fmt == "github":
        text = "\n".join(f.github_annotation() for f in sorted_findings(report.findings))
    else:
        lines = [f"recipe-harness: {line}" for line in run_header(selection, gate)]
        lines += [f.format() for f in sorted_findings(report.findings)]
        lines.extend(selection.notes)
        lines.extend(gate.summary())
        lines.append(summary_line(report))
        text = "\n".join(lines)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    failing = report.errors + (report.warnings if args.strict else 0)
    return 1 if failing else 0


__all__ = ["Severity", "add_parser", "run"]
