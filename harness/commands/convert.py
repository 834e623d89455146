"""`recipe-harness convert --to v1beta1`: rewrite the selected recipes' DynamoGraphDeployments from
v1alpha1 to v1beta1 (comments and field order kept; --dry-run prints the diff and writes nothing)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from harness.commands import add_selection_args, selection_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="rewrite DynamoGraphDeployments from v1alpha1 (services) to v1beta1 (components)"
    )
    p.add_argument("--to", required=True, choices=("v1beta1",), help="the API version to convert to")
    add_selection_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the unified diff, write nothing")
    p.set_defaults(func=run)


def unified_diff(old: str, new: str, name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )


def run(args: argparse.Namespace) -> int:
    from harness.recipe.convert import ConvertError, convert_text
    from harness.recipe.findings import display_path

    selection = selection_from(args)
    if selection is None:
        return 2
    failed = changed = 0
    for recipe in selection.chosen:
        path = recipe.path / "deploy.yaml"
        if not path.is_file():
            continue
        old = path.read_text()
        try:
            conv = convert_text(old, path)
        except ConvertError as exc:
            print(f"{display_path(path)}: cannot convert: {exc}", file=sys.stderr)
            failed += 1
            continue
        for note in conv.notes:
            print(f"note: {note}")
        if not conv.changed:
            print(f"{display_path(path)}: already v1beta1 (nothing to convert)")
            continue
        changed += 1
        if args.dry_run:
            sys.stdout.writelines(unified_diff(old, conv.text, str(display_path(path))))
            continue
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(conv.text)
        os.replace(tmp, path)
        print(f"converted {display_path(path)} to v1beta1")
    verb = "would convert" if args.dry_run else "converted"
    print(f"convert: {verb} {changed} of {len(selection.chosen)} recipes, {failed} failed")
    return 1 if failed else 0
