"""`recipe-harness check`: the static checks without pytest, for scripts, pre-commit and code scanning."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from harness.checks import TREE_ID, Check, all_checks
from harness.commands import add_selection_args, selection_from
from harness.recipe.findings import Severity, sorted_findings
from harness.recipe.model import Recipe
from harness.run.ignores import IgnoreFileError, did_you_mean
from harness.run.static import (
    SEVERITY_FLOORS,
    applicable_checks,
    check_options,
    context_for,
    in_github_actions,
    make_gate,
    run_header,
    run_static,
    summary_line,
)

FORMATS = ("text", "json", "github", "sarif", "junit")
EXAMPLES = """examples:
  recipe-harness check                                       every recipe of ./recipes
  recipe-harness check recipes/qwen3-32b                     the recipes below a path (a manifest works too)
  recipe-harness check --select 'image-*' --statistics       some checks, then counts per check
  recipe-harness check --format sarif --output rh.sarif      for GitHub code scanning (upload-sarif)
  recipe-harness check --recipes-dir ../dynamo/recipes       a foreign tree (its convention is detected)

exit status: 0 no error, 1 errors found (warnings too with --strict), 2 usage error (bad option, missing
tree, unknown check id, malformed configuration).
configuration: .recipe-harness.yaml or [tool.recipe-harness] in pyproject.toml (ignores, severity-floor,
registries), the nearest walking up from the tree to the repository root."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="run the static checks and print findings",
        description="Run the static checks (the same as `pytest -m static`) and print one "
        "`path:line:col: [check-id] message` per finding with a hint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_selection_args(p)
    p.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="ID",
        help="run only these checks (ids or globs, comma-separated or repeated)",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID",
        help="do not run these checks (ids or globs, comma-separated or repeated)",
    )
    p.add_argument("--crd", action="append", default=[], metavar="PATH", help="also validate against this CRD")
    p.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="allowed image registry (repeatable; replaces the configuration's and versions.yaml's allow-list)",
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
        choices=FORMATS,
        default=None,
        help="text (default), json, github annotations (default when GITHUB_ACTIONS is set), sarif (2.1.0), junit",
    )
    p.add_argument("--output", metavar="PATH", help="write the report here instead of stdout")
    p.add_argument("--statistics", action="store_true", help="print the number of findings per check")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument(
        "--severity-floor",
        choices=SEVERITY_FLOORS,
        default=None,
        help="report only findings at or above this severity (default: the configuration's, else warning: all)",
    )
    p.set_defaults(func=run)


class UnknownCheck(ValueError):
    pass


def chosen_checks(select: list[str], ignore: list[str]) -> list[Check]:
    """The checks --select and --ignore leave (globs allowed); raises UnknownCheck for a pattern no id matches."""
    checks = all_checks()
    ids = [c.id for c in checks]

    def patterns(values: list[str], option: str) -> list[str]:
        out = [p.strip() for v in values for p in v.split(",") if p.strip()]
        for pat in out:
            if not fnmatch.filter(ids, pat):
                raise UnknownCheck(f"{option} {pat!r}: no check has that id{did_you_mean(pat, ids)}")
        return out

    sel, ign = patterns(select, "--select"), patterns(ignore, "--ignore")
    return [
        c
        for c in checks
        if (not sel or any(fnmatch.fnmatchcase(c.id, p) for p in sel))
        and not any(fnmatch.fnmatchcase(c.id, p) for p in ign)
    ]


def run(args: argparse.Namespace) -> int:
    try:
        checks = chosen_checks(args.select, args.ignore)
    except UnknownCheck as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    selection = selection_from(args)
    if selection is None:
        return 2
    try:
        gate = make_gate(selection, args.severity_floor, every_check=not (args.select or args.ignore))
    except IgnoreFileError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    registries = args.registry or list(gate.registries)
    ctx = context_for(selection, check_options(args.crd, registries, args.storage_margin))
    report = run_static(selection, ctx, checks, gate=gate)
    fmt = args.format or ("github" if in_github_actions() else "text")
    if fmt == "json":
        text = report.to_json()
    elif fmt == "github":
        text = "\n".join(f.github_annotation() for f in sorted_findings(report.findings))
    elif fmt in ("sarif", "junit"):
        from harness.run.formats import to_junit, to_sarif

        ran = [(chk, s.id if isinstance(s, Recipe) else TREE_ID) for chk, s in applicable_checks(selection, checks)]
        if fmt == "sarif":
            text = to_sarif(report.findings, list(dict.fromkeys(chk for chk, _ in ran)))
        else:
            text = to_junit(report.findings, ran)
    else:
        lines = [f"recipe-harness: {line}" for line in run_header(selection, gate)]
        lines += [f.format() for f in sorted_findings(report.findings)]
        lines.extend(selection.notes)
        lines.extend(gate.summary())
        lines.append(summary_line(report))
        text = "\n".join(lines)
    if args.statistics:
        from harness.run.formats import statistics

        counts = statistics(report.findings)
        if fmt == "text" and not args.output:
            text = "\n".join([text, *counts])
        else:
            print("\n".join(counts), file=sys.stderr)  # stdout holds the machine format
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    failing = report.errors + (report.warnings if args.strict else 0)
    return 1 if failing else 0


__all__ = ["Severity", "add_parser", "run"]
