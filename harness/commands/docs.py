"""`recipe-harness docs`: write the generated docs (recipes/README.md, recipes/SIZING.md), or
with --check say which are stale and exit 1. Refuses a foreign tree: its README is its authors'."""

from __future__ import annotations

import argparse
import sys

from harness.analysis.docs import stale_files, write
from harness.recipe.discovery import SelectionError
from harness.recipe.findings import display_path
from harness.run.static import make_selection

EXAMPLE = """examples:
  recipe-harness docs                      regenerate recipes/README.md and recipes/SIZING.md
  recipe-harness docs --check              exit 1 and show the diff when they are stale (CI, pre-commit)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "docs",
        help="generate recipes/README.md and recipes/SIZING.md from the metadata (--check: fail when stale)",
        description="Generate the catalogue's README.md and SIZING.md from every recipe.yaml and versions.yaml. "
        "Only a catalogue-convention tree has generated docs: on a foreign tree (no recipe.yaml, no versions.yaml) "
        "the command refuses, as those files are written by hand there.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipes-dir", metavar="PATH", help="recipes tree (default: ./recipes)")
    p.add_argument(
        "--convention",
        choices=("catalogue", "none"),
        default=None,
        help="the tree's convention (default: detected); `catalogue` writes the docs into a tree detected as foreign",
    )
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 and show a diff summary when a file is stale"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        selection = make_selection(args.recipes_dir, convention=args.convention)
    except SelectionError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    if not selection.convention.catalogue:
        # the generated README and SIZING.md would overwrite a foreign tree's hand-written ones
        print(
            f"recipe-harness: recipes tree {selection.root}: {selection.convention.describe()}; "
            "`docs` writes the catalogue's generated README.md and SIZING.md, which would replace this tree's own: "
            "pass --convention catalogue to write them anyway",
            file=sys.stderr,
        )
        return 2
    tree = selection.tree
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
