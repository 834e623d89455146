"""`recipe-harness render RECIPE`: the pods the pinned operator would create, and the argv each engine receives."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import yaml

from harness.analysis.render import MULTINODE_DEPLOYERS, RenderedPod, RenderError, operator_release, render_recipe
from harness.commands import examples
from harness.recipe.findings import display_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="print the pods the operator would create per service (command, args, env, "
        "volumes) and the engine argv as received",
        description="Model the Dynamo operator's pod rendering for a recipe: each pod's command, args, env and "
        "volumes, and the argv its engine receives after $(VAR) expansion and the shell, traced to deploy.yaml.",
        **examples(
            ("recipe-harness render qwen3-32b/vllm/agg-round-robin", "the pods of one recipe, as YAML"),
            ("recipe-harness render deepseek-r1/trtllm/disagg-wide-ep --multinode lws", "multinode through LWS"),
        ),
    )
    p.add_argument(
        "recipe", metavar="RECIPE", help="recipe id, model prefix or glob (e.g. deepseek-r1/trtllm/disagg-wide-ep)"
    )
    p.add_argument(
        "--multinode",
        choices=MULTINODE_DEPLOYERS,
        default="grove",
        help="how multinode services are deployed (default: grove, the operator's default when Grove is installed)",
    )
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("--namespace", default="default", help="the Kubernetes namespace (it names DYN_NAMESPACE)")
    p.add_argument("--recipes-dir", metavar="PATH", help="recipes tree (default: ./recipes)")
    p.set_defaults(func=run)


def _at(loc) -> str:
    return f"{display_path(loc.file)}:{loc.line}"


def pod_view(pod: RenderedPod) -> dict:
    """The pod for people: the engine argv as plain strings; where things came from, separately."""
    view = pod.to_dict()
    for item in view["volumeMounts"]:
        item.pop("source", None)
    if pod.launcher:  # one line: it is long (mpirun forwards every env var by name)
        view["launcher"] = shlex.join(pod.launcher)
    if pod.engine_argv is not None:
        view["engineArgv"] = [t.value for t in pod.engine_argv]
        injected = [t.value for t in pod.engine_argv if t.injected]
        if injected:
            view["injectedByOperator"] = injected
    if pod.mangled:
        view["mangled"] = [
            {"at": _at(m.token.loc), "written": m.token.value, "meant": list(m.written), "received": list(m.received)}
            for m in pod.mangled
        ]
    return view


def run(args: argparse.Namespace) -> int:
    from harness.commands import selection_from

    args.recipe, selector = [args.recipe], args.recipe
    args.changed_since = None
    selection = selection_from(args)
    if selection is None:
        return 2
    if not selection.chosen:
        print(f"recipe-harness: no recipe matches {selector!r}", file=sys.stderr)
        return 2
    out = []
    status = 0
    for recipe in selection.chosen:
        try:
            pods = render_recipe(recipe, args.multinode, args.namespace)
        except RenderError as exc:
            print(f"recipe-harness: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.format == "json":
            out.append(
                {
                    "recipe": recipe.id,
                    "multinode": args.multinode,
                    "operator": operator_release(recipe),
                    "pods": [p.to_dict() for p in pods],
                }
            )
        else:
            out.append(
                {
                    "recipe": recipe.id,
                    "multinode": args.multinode,
                    "operator": operator_release(recipe),
                    "pods": [pod_view(p) for p in pods],
                }
            )
    if args.format == "json":
        print(json.dumps(out if len(out) != 1 else out[0], indent=2))
    else:
        for item in out:
            print(
                yaml.safe_dump(item, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True), end=""
            )
            print("---")
    return status
