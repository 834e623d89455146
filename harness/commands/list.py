"""`recipe-harness list`: the selected recipes, as text or as the nightly's JSON matrix."""

from __future__ import annotations

import argparse
import json

from harness.commands import add_selection_args, examples, selection_from
from harness.recipe.catalogue import matches_hardware
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="list recipes (--json: the nightly matrix with hardware labels)",
        description="List the selected recipes with their GPUs and nodes, or as the nightly's JSON matrix.",
        **examples(
            ("recipe-harness list", "every recipe: id, GPUs x type, nodes"),
            ("recipe-harness list recipes/qwen3-32b", "the recipes below a path"),
            ("recipe-harness list --json --hardware h200", "the nightly matrix for H200 runners"),
        ),
    )
    add_selection_args(p)
    p.add_argument(
        "--json", action="store_true", help="a JSON array of {id, model, framework, mode, gpu, gpus, nodes, labels}"
    )
    p.add_argument(
        "--hardware",
        action="append",
        default=[],
        metavar="LABEL",
        help="only recipes whose hardware labels or GPU type include LABEL (repeatable: any)",
    )
    p.set_defaults(func=run)


def entry(recipe: Recipe) -> dict:
    meta = recipe.metadata
    gpu = dig(meta, "hardware", "gpu")
    labels = list(dig(meta, "hardware", "labels") or [])
    return {
        "id": recipe.id,
        "model": recipe.model,
        "framework": recipe.framework,
        "mode": recipe.mode,
        "gpu": gpu if isinstance(gpu, str) else None,
        "gpus": meta.get("gpus") if isinstance(meta.get("gpus"), int) else None,
        "nodes": meta.get("nodes") if isinstance(meta.get("nodes"), int) else None,
        "labels": [str(x) for x in labels],
        "status": meta.get("status") if isinstance(meta.get("status"), str) else None,
    }


def run(args: argparse.Namespace) -> int:
    selection = selection_from(args)
    if selection is None:
        return 2
    entries = [e for e in (entry(r) for r in selection.chosen) if matches_hardware(e, args.hardware)]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for e in entries:
            print(f"{e['id']:<45} {e['gpus'] or '?':>3} x {e['gpu'] or '?':<6} {e['nodes'] or '?'} node(s)")
    return 0
