"""`recipe-harness docs`: write the generated docs (recipes/README.md, recipes/SIZING.md), or
with --check say which are stale and exit 1."""

from __future__ import annotations

import argparse
import sys

from harness.analysis.docs import stale_files, write
from harness.recipe.findings import display_path
from harness.run.static import make_selection


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "docs", help="generate recipes/README.md and recipes/SIZING.md from the metadata (--check: fail when stale)"
    )
    p.add_argument("--recipes-dir", metavar="PATH", help="recipes tree (default: ./recipes)")
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 and show a diff summary when a file is stale"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tree = make_selection(args.recipes_dir).tree
    if not tree.root.is_dir():
        print(f"recipe-harness: recipes directory {tree.root} not found", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(tree)
        for s in stale:
            print(f"{display_path(s.path)}: stale ({s.summary()})")
            for line in s.diff() if s.actual is not None else []:
                print(f"    {line}")
        if stale:
            print("run `recipe-harness docs` and commit the result")
            return 1
        print("generated docs are up to date")
        return 0
    written = write(tree)
    for path in written:
        print(f"wrote {display_path(path)}")
    if not written:
        print("generated docs are up to date")
    return 0
