"""`recipe-harness report`: rebuild a run's summary.json, summary.md and report.html from the history,
or merge several runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import examples
from harness.results.baselines import HISTORY_ROOT, REPORTS_DIR, BaselineError, PolicyError, load_policy
from harness.results.report import (
    SUMMARY_JSON,
    load_histories,
    load_summary,
    mark_regressions,
    merge_summaries,
    summary_from_history,
    write_report,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild a run's summary.json, summary.md and report.html (trend plots) from the history",
        description="Rebuild the run reports (summary.json, summary.md, report.html with trend plots per "
        "recipe and metric) from the benchmark history under reports/history.",
        **examples(
            ("recipe-harness report", "the reports of every environment's history"),
            ("recipe-harness report --env sim", "the sim's only"),
        ),
    )
    p.add_argument(
        "--history", type=Path, default=HISTORY_ROOT, metavar="DIR", help=f"history folder (default: {HISTORY_ROOT})"
    )
    p.add_argument("--env", metavar="ENV", help="only this environment: sim or gpu/<hardware>")
    p.add_argument(
        "--run-id",
        metavar="ID",
        help="the run to report (default: the latest in the history; with --aggregate: the merged run's id)",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help=f"where to write the three files (default: {REPORTS_DIR}/runs/<run-id>)"
    )
    p.add_argument(
        "--aggregate",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="merge every summary.json below DIR (repeatable) instead of reading one run from the history",
    )
    p.add_argument(
        "--nightly",
        action="store_true",
        help="mark a failing metric suspect, or a confirmed regression after two consecutive failing runs; "
        "exit 1 on a confirmed one",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        policy = load_policy()
        histories = load_histories(args.history, args.env) if args.history.is_dir() else {}
        if args.aggregate:
            summary = merge_summaries(_summaries(args.aggregate, args.out), args.run_id)
            if args.nightly:
                for r in summary.recipes:
                    if (r.environment, r.recipe) in histories:
                        mark_regressions(r, histories[(r.environment, r.recipe)], policy)
        elif not histories:
            print(
                f"recipe-harness: no history under {args.history}{f' for {args.env}' if args.env else ''}",
                file=sys.stderr,
            )
            return 2
        else:
            summary = summary_from_history(histories, args.run_id, nightly=args.nightly, policy=policy)
        out = args.out or REPORTS_DIR / "runs" / summary.run_id
        paths = write_report(summary, out, histories)
    except (BaselineError, PolicyError) as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    counts = ", ".join(f"{n} {v}" for v, n in summary.counts.items()) or "no recipes"
    print(
        f"run {summary.run_id} ({summary.environment}): {summary.verdict}: {len(summary.recipes)} recipe(s), {counts}"
    )
    confirmed = summary.confirmed_regressions()
    for r in confirmed:
        print(f"confirmed regression: {r.message()}")
    return 1 if args.nightly and confirmed else 0


def _summaries(dirs: list[Path], out: Path | None) -> list:
    found = sorted({p.resolve() for d in dirs for p in Path(d).rglob(SUMMARY_JSON)})
    skip = (
        (out / SUMMARY_JSON).resolve() if out else None
    )  # rerunning into the same folder must not merge the old merge
    return [load_summary(p) for p in found if p != skip]
