"""`recipe-harness convert --to v1beta1`: rewrite the selected recipes' DynamoGraphDeployments from
v1alpha1 to v1beta1 (comments and field order kept; --dry-run prints the diff and writes nothing)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from harness.commands import add_selection_args, selection_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="rewrite DynamoGraphDeployments from v1alpha1 (services) to v1beta1 (components)",
        description="Rewrite the selected recipes' v1alpha1 DynamoGraphDeployments as v1beta1 with the field "
        "mapping of the operator's conversion webhook, keeping comments and field order.",
        epilog="""examples:
  recipe-harness convert --to v1beta1                              convert every recipe in place
  recipe-harness convert --to v1beta1 --dry-run > to-v1beta1.patch  a patch for review: git apply to-v1beta1.patch

With --dry-run stdout is a patch `git apply` accepts (paths relative to the working directory, or to the
tree's parent when it lies outside it); notes and failures go to stderr, failures last with their files.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", required=True, choices=("v1beta1",), help="the API version to convert to")
    add_selection_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the patch (unified diff), write nothing")
    p.set_defaults(func=run)


def patch_name(path: Path, tree_root: Path) -> str:
    """The file's name in the patch: relative to the working directory (where `git apply` runs), else to
    the tree's parent; never absolute (git apply rejects `a//abs/path`)."""
    path = path.absolute()
    for base in (Path.cwd(), tree_root.absolute().parent):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name


def unified_diff(old: str, new: str, name: str) -> list[str]:
    """A git-style file patch: `diff --git` header, and the no-newline marker git needs for a last line
    without one."""
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
        )
    )
    if not lines:
        return []
    out = [f"diff --git a/{name} b/{name}\n"]
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary file beside it, then a rename), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from harness.recipe.convert import ConvertError, convert_text
    from harness.recipe.findings import display_path

    selection = selection_from(args)
    if selection is None:
        return 2
    say = sys.stderr if args.dry_run else sys.stdout  # with --dry-run stdout is the patch alone
    failures: list[str] = []
    changed = 0
    for recipe in selection.chosen:
        path = recipe.path / "deploy.yaml"
        if not path.is_file():
            continue
        old = path.read_text()
        try:
            conv = convert_text(old, path)
        except ConvertError as exc:
            failures.append(f"{display_path(path)} ({recipe.id}): {exc}")
            continue
        for note in conv.notes:
            print(f"note: {note}", file=say)
        if not conv.changed:
            print(f"{display_path(path)}: already v1beta1 (nothing to convert)", file=say)
            continue
        changed += 1
        if args.dry_run:
            sys.stdout.writelines(unified_diff(old, conv.text, patch_name(path, selection.root)))
            continue
        write_atomic(path, conv.text)
        print(f"converted {display_path(path)} to v1beta1")
    verb = "would convert" if args.dry_run else "converted"
    print(f"convert: {verb} {changed} of {len(selection.chosen)} recipes, {len(failures)} failed", file=say)
    if failures:  # last, so a long run's failures are not scrolled away
        print(f"convert: {len(failures)} recipe(s) could not be converted:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
    return 1 if failures else 0
