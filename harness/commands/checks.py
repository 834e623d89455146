"""`recipe-harness checks`: every check id with its severity and why."""

from __future__ import annotations

import argparse

from harness.checks import all_checks


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
        print(f"{c.id} ({c.severity.value}, {c.topic}, per {c.scope})\n\n{c.doc}")
        return 0
    for c in checks:
        print(f"{c.id:<34} {c.severity.value:<8} {c.why}")
    return 0
