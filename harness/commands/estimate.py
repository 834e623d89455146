"""`recipe-harness estimate RECIPE`: AIConfigurator's predicted throughput and latency for a recipe."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from harness.commands import add_selection_args, examples, selection_from
from harness.run.estimate.env import EstimatorEnvError, ensure_env, find_env
from harness.run.estimate.predict import Estimate, NoCoverage, estimate_many, recipe_request, write_targets


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="predict throughput and latency with AIConfigurator (kind: estimate targets)",
        description="Predict a recipe's output tokens/s per GPU, TTFT and TPOT with AIConfigurator (PyPI "
        "aiconfigurator, NVIDIA's offline performance model) for its model, GPU, backend, parallelism and "
        "benchmark ISL/OSL/concurrency, or say why its databases do not cover it. The estimate is a model, "
        "not a measurement; --write puts it into recipe.yaml as `targets` with kind: estimate.",
        **examples(
            ("recipe-harness estimate --setup", "build the AIConfigurator env once (~0.7 GB, seconds with uv)"),
            ("recipe-harness estimate --recipe qwen3-32b", "the estimates of one model's recipes"),
            ("recipe-harness estimate --recipe qwen3-32b/vllm/agg-round-robin --format yaml", "as a targets entry"),
        ),
    )
    add_selection_args(p)
    p.add_argument("--setup", action="store_true", help="build the AIConfigurator env when it is missing")
    p.add_argument("--format", choices=("text", "json", "yaml"), default="text")
    p.add_argument(
        "--write",
        action="store_true",
        help="replace each covered recipe's `targets` with its estimate (kind: estimate)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.setup:
        try:
            env = ensure_env()
        except EstimatorEnvError as exc:
            print(f"recipe-harness: {exc}", file=sys.stderr)
            return 1
        print(f"estimate: {env.path} ({', '.join(f'{k} {v}' for k, v in env.versions.items())})")
        if not (args.paths or args.recipe):
            return 0
    if find_env() is None:
        print(
            "recipe-harness: the AIConfigurator env is not set up: run `recipe-harness estimate --setup`",
            file=sys.stderr,
        )
        return 2
    selection = selection_from(args)
    if selection is None:
        return 2
    recipes = list(selection.chosen)
    requests = [recipe_request(r) for r in recipes]
    answers = iter(estimate_many([q for q in requests if not isinstance(q, NoCoverage)]))
    results = [q if isinstance(q, NoCoverage) else next(answers) for q in requests]
    out = []
    for recipe, res in zip(recipes, results, strict=True):
        entry: dict = {"id": recipe.id}
        if isinstance(res, Estimate):
            entry["targets"] = res.targets()
            if args.write and recipe.metadata_file is not None:
                entry["written"] = write_targets(recipe.metadata_file.path, entry["targets"])
        else:
            entry["noCoverage"] = res.reason
        out.append(entry)
    if args.format == "json":
        print(json.dumps(out, indent=2))
    elif args.format == "yaml":
        print(yaml.safe_dump(out, sort_keys=False, width=120), end="")
    else:
        for e in out:
            t = e.get("targets")
            if t is None:
                print(f"{e['id']:<40} not covered: {e['noCoverage']}")
                continue
            print(
                f"{e['id']:<40} {t['outputTokenThroughputPerGpu']:>8.1f} tok/s/GPU  TTFT {t['ttftMs']:>7.1f} ms  "
                f"TPOT {t['tpotMs']:>6.2f} ms  ({t['estimator']['system']}, {t['estimator']['backend']} "
                f"{t['estimator']['database']} database){'  written' if e.get('written') else ''}"
            )
            print(f"    {t['source']}")
    return 0
