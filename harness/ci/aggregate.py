"""Glue between the night's GPU jobs and `recipe-harness report --aggregate DIR --nightly`.

A regression is confirmed after consecutive failing nights, so the history must outlive a run:
each GPU job starts from the previous night's history (an artifact), appends its recipe's run and
uploads its copy. `merge-history` folds those copies back into one history; `missing` lists the
matrix recipes that produced no summary.json (the job died before measuring), which the
aggregated report cannot know about.

    python -m harness.ci.aggregate merge-history nightly/*/history --into reports/history
    python -m harness.ci.aggregate missing nightly --matrix "$MATRIX" >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

SUMMARY_FILE = "summary.json"
HISTORY_GLOB = "*.jsonl"


def merge_histories(sources: Iterable[Path], into: Path) -> list[str]:
    """Copy every history file to INTO, keeping of each file's copies (INTO's own included) the one
    with the most lines: the files are append-only, so that copy holds every other's entries.
    Returns one warning per copy that is not a prefix of the kept one (it is dropped, and said so)."""
    copies: dict[Path, list[Path]] = {}
    for root in [into, *sources]:
        for path in sorted(Path(root).rglob(HISTORY_GLOB)) if Path(root).is_dir() else []:
            copies.setdefault(path.relative_to(root), []).append(path)
    warnings = []
    for rel, paths in sorted(copies.items()):
        texts = {p: p.read_text() for p in paths}
        keep = max(paths, key=lambda p: (len(texts[p].splitlines()), p == into / rel))
        for p in paths:
            if not texts[keep].startswith(texts[p]):
                warnings.append(f"{p}: diverges from {keep}; kept the longer one")
        if keep != into / rel:
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(keep, into / rel)
    return warnings


def summarized_recipes(root: Path) -> set[str]:
    """Recipe ids named by any readable summary.json below ROOT."""
    found: set[str] = set()
    for path in Path(root).rglob(SUMMARY_FILE):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        recipes = data.get("recipes") if isinstance(data, dict) else None
        found.update(r["recipe"] for r in recipes or [] if isinstance(r, dict) and isinstance(r.get("recipe"), str))
    return found


def matrix_recipes(matrix_json: str) -> list[str]:
    """The recipe ids of the nightly matrix, `{"include": [{"recipe": ...}, ...]}`; ValueError if it is not one."""
    data = json.loads(matrix_json or "{}")
    include = data.get("include") if isinstance(data, dict) else None
    if not isinstance(include, list):
        raise ValueError('expected {"include": [...]}')
    return [e["recipe"] for e in include if isinstance(e, dict) and isinstance(e.get("recipe"), str)]


def missing_markdown(missing: list[str]) -> str:
    if not missing:
        return ""
    lines = [
        "### No report",
        "",
        f"{len(missing)} recipe(s) of the matrix produced no summary.json "
        "(the job failed before measuring: see its log):",
        "",
    ]
    return "\n".join(lines + [f"- `{m}`" for m in missing]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.ci.aggregate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("merge-history", help="fold the GPU jobs' history copies into one history")
    m.add_argument("sources", nargs="*", type=Path, help="history folders of the jobs' artifacts")
    m.add_argument("--into", type=Path, required=True, help="the merged history (e.g. reports/history)")
    s = sub.add_parser("missing", help="Markdown list of matrix recipes without a summary.json")
    s.add_argument("directory", type=Path, help="where the night's artifacts were downloaded")
    s.add_argument("--matrix", required=True, metavar="JSON", help="the nightly matrix")
    s.add_argument("--github-output", metavar="PATH", help="append missing=<n> to this file ($GITHUB_OUTPUT)")
    args = p.parse_args(argv)

    if args.what == "merge-history":
        args.into.mkdir(parents=True, exist_ok=True)
        for warning in merge_histories([s for s in args.sources if s.is_dir()], args.into):
            print(f"ci_aggregate: {warning}", file=sys.stderr)
        print(
            f"ci_aggregate: {sum(1 for _ in args.into.rglob(HISTORY_GLOB))} history file(s) in {args.into}",
            file=sys.stderr,
        )
        return 0
    try:
        expected = matrix_recipes(args.matrix)
    except ValueError as exc:
        print(f"ci_aggregate: --matrix is not the nightly matrix: {exc}", file=sys.stderr)
        return 2
    seen = summarized_recipes(args.directory)
    missing = [r for r in expected if r not in seen]
    print(missing_markdown(missing), end="")
    if args.github_output:
        with open(args.github_output, "a") as out:
            out.write(f"missing={len(missing)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
