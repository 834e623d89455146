"""Turn `recipe-harness list --json` into the nightly's GitHub Actions matrix (one GPU job per recipe).

    recipe-harness list --json | python -m harness.ci.matrix --hardware h200,b200 --repeats 3

prints `{"include": [...]}`; each entry names the recipe, a slug fit for artifact names, and the
self-hosted runner labels the job needs: `[self-hosted, linux, <label>...]`, where the labels
are the recipe's `hardware.labels` (e.g. `h200-8gpu`), or its GPU type (`h200`) when it has none.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from harness.recipe.catalogue import matches_hardware

RUNNER_BASE = ("self-hosted", "linux")
SKIPPED_STATUSES = ("deprecated",)  # not worth a night of GPU time


def runner_labels(entry: dict) -> list[str]:
    labels = [str(x).lower() for x in entry.get("labels") or []]
    if not labels and entry.get("gpu"):
        labels = [str(entry["gpu"]).lower()]
    return [*RUNNER_BASE, *labels]


def slug(recipe_id: str) -> str:
    """Artifact names may not contain `/`."""
    return recipe_id.replace("/", "__")


def include_entries(
    entries: Iterable[dict],
    hardware: Iterable[str] = (),
    repeats: int = 1,
    skip_statuses: Iterable[str] = SKIPPED_STATUSES,
) -> list[dict]:
    """One matrix entry per recipe that runs on the wanted hardware (any of it; all when none)."""
    wanted = [h for h in hardware if h]
    skipped = set(skip_statuses)
    out = []
    for e in entries:
        if e.get("status") in skipped or not matches_hardware(
            {"labels": e.get("labels") or [], "gpu": e.get("gpu")}, wanted
        ):
            continue
        out.append(
            {
                "recipe": e["id"],
                "slug": slug(e["id"]),
                "runs-on": runner_labels(e),
                "gpu": e.get("gpu"),
                "gpus": e.get("gpus"),
                "nodes": e.get("nodes"),
                "repeats": repeats,
            }
        )
    return out


def split_words(values: Iterable[str]) -> list[str]:
    """`--hardware "h200, b200" --hardware gb200` -> [h200, b200, gb200]."""
    return [w for v in values for w in v.replace(",", " ").split()]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.ci.matrix", description=__doc__.splitlines()[0])
    p.add_argument("list_json", nargs="?", default="-", help="output of `recipe-harness list --json` (default: stdin)")
    p.add_argument(
        "--hardware",
        action="append",
        default=[],
        metavar="LABELS",
        help="keep recipes with any of these hardware labels or GPU types (comma or space separated, repeatable)",
    )
    p.add_argument("--repeats", type=positive_int, default=1, help="benchmark runs per recipe (--repeats of pytest)")
    p.add_argument("--include-deprecated", action="store_true", help="also run recipes with status: deprecated")
    p.add_argument(
        "--github-output", metavar="PATH", help="append matrix=<json> and count=<n> to this file ($GITHUB_OUTPUT)"
    )
    args = p.parse_args(argv)
    text = sys.stdin.read() if args.list_json == "-" else Path(args.list_json).read_text()
    try:
        entries = json.loads(text)
    except ValueError as exc:
        print(f"ci_matrix: not the JSON of `recipe-harness list --json`: {exc}", file=sys.stderr)
        return 2
    include = include_entries(
        entries, split_words(args.hardware), args.repeats, () if args.include_deprecated else SKIPPED_STATUSES
    )
    matrix = json.dumps({"include": include}, separators=(",", ":"))
    if args.github_output:
        with open(args.github_output, "a") as out:
            out.write(f"matrix={matrix}\ncount={len(include)}\n")
    print(matrix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
