"""Subcommands of `recipe-harness`: each module defines `add_parser(subparsers)` and sets `func`."""

from __future__ import annotations

import argparse
import sys


def examples(*pairs: tuple[str, str], note: str = "") -> dict:
    """`add_parser` keywords for a subcommand's --help: its examples as an epilog, kept as written."""
    width = max(len(cmd) for cmd, _ in pairs)
    text = "examples:\n" + "\n".join(f"  {cmd:<{width}}  {what}" for cmd, what in pairs)
    return {"epilog": text + (f"\n\n{note}" if note else ""), "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """The recipe selection options shared by every subcommand that works on recipes."""
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="recipes to work on, by path: a tree, a model or recipe directory, a manifest (default: the whole tree)",
    )
    parser.add_argument(
        "--recipe", action="append", default=[], metavar="SEL", help="model prefix, recipe id or glob (repeatable)"
    )
    parser.add_argument("--recipes-dir", metavar="PATH", help="recipes tree (default: ./recipes)")
    parser.add_argument("--changed-since", metavar="REF", help="only recipes touched since the merge base with REF")
    parser.add_argument(
        "--convention",
        choices=("catalogue", "none"),
        default=None,
        help="the tree's convention: catalogue (recipe.yaml, versions.yaml, our layout) or none (a foreign "
        "tree: convention checks do not apply, manifests are found at any depth); default: detected",
    )


def selection_from(args: argparse.Namespace):
    """The recipes the arguments select, or None after printing why (the caller exits 2)."""
    from harness.recipe.changes import ChangeError
    from harness.recipe.discovery import SelectionError
    from harness.run.static import make_selection

    try:
        return make_selection(
            args.recipes_dir,
            args.recipe,
            args.changed_since,
            convention=getattr(args, "convention", None),
            paths=getattr(args, "paths", None) or (),
        )
    except (SelectionError, ChangeError) as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return None
