"""`recipe-harness conformance`:
set up the conformance envs, parse the recipes' command lines, record TRT-LLM's surface."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.commands import add_selection_args, selection_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="real Dynamo/engine argument parsing of every recipe (setup, check)")
    csub = p.add_subparsers(dest="conformance_command", metavar="ACTION")

    s = csub.add_parser("setup", help="build the isolated envs (ai-dynamo + engine) the conformance tier runs in")
    s.add_argument(
        "--release",
        action="append",
        default=[],
        metavar="R",
        help="Dynamo release (repeatable; default: the releases the recipes pin)",
    )
    s.add_argument(
        "--engine",
        action="append",
        default=[],
        choices=("vllm", "sglang", "trtllm"),
        help="engine (repeatable; default: vllm and sglang, whose envs also serve the frontend and TRT-LLM)",
    )
    s.add_argument("--recipes-dir", metavar="PATH", help="recipes tree whose versions.yaml pins the engines")
    s.add_argument("--dry-run", action="store_true", help="print what would be installed, install nothing")
    s.set_defaults(func=run_setup)

    c = csub.add_parser("check", help="parse every worker's and frontend's command line with the real parsers")
    add_selection_args(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.set_defaults(func=run_check)

    r = csub.add_parser("record-trtllm", help="record TensorRT-LLM's LlmArgs field surface from its llm_args.py source")
    r.add_argument("--source", required=True, metavar="FILE", help="a local copy of tensorrt_llm/llmapi/llm_args.py")
    r.add_argument(
        "--version", required=True, help="the TensorRT-LLM version the source belongs to (versions.yaml trtllm)"
    )
    r.add_argument("--commit", required=True, help="the commit the source was taken from")
    r.add_argument("--repo", default="NVIDIA/TensorRT-LLM")
    r.add_argument("--path", default="tensorrt_llm/llmapi/llm_args.py", help="the file's path in the repository")
    r.add_argument(
        "--build-config-source",
        metavar="FILE",
        help="the file defining BuildConfig (tensorrt_llm/builder.py) when llm_args.py does not",
    )
    r.add_argument("--note", default="", help="provenance note (e.g. the closest version available)")
    r.add_argument("--out-dir", metavar="DIR", help="default: harness/run/conformance/data")
    r.set_defaults(func=run_record)

    ls = csub.add_parser("list", help="the envs that are set up, with versions and sizes")
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _releases_and_versions(recipes_dir: str | None) -> dict[str, dict[str, str]]:
    """release -> {engine: version} for the releases the recipes pin, from versions.yaml."""
    from harness.recipe.versions import VERSIONS_FILE, version_matrix
    from harness.run.conformance.client import recipe_release
    from harness.run.static import make_selection

    selection = make_selection(recipes_dir, [])
    out: dict[str, dict[str, str]] = {}
    for recipe in selection.all:
        release = recipe_release(recipe)
        if release and release not in out:
            matrix = version_matrix(recipe.load(recipe.root / VERSIONS_FILE))
            rel = matrix.release(release) if matrix else None
            out[release] = dict(rel.backends) if rel else {}
    return out


def run_setup(args: argparse.Namespace) -> int:
    from harness.run.conformance import envs

    pins = _releases_and_versions(args.recipes_dir)
    releases = args.release or sorted(pins)
    engines = args.engine or ["vllm", "sglang"]
    if not releases:
        print("recipe-harness: no recipe pins a Dynamo release; pass --release", file=sys.stderr)
        return 2
    installer, _ = envs.choose_installer()
    failed = 0
    for release in releases:
        for engine in engines:
            kind = envs.FRAMEWORK_ENV[engine]
            version = pins.get(release, {}).get(engine)
            if engine == "trtllm":
                have = envs.locate(release, "trtllm")
                if have is not None:
                    print(
                        f"{release} trtllm: TensorRT-LLM is not on the package index; Dynamo's own TRT-LLM parser runs "
                        f"with a stub in {have.path} (already set up)"
                    )
                    continue
                print(
                    f"{release} trtllm: TensorRT-LLM is not on the package index; Dynamo's own TRT-LLM parser runs "
                    f"with a stub in an ai-dynamo-only env"
                )
            path = envs.cache_root() / envs.env_name(release, kind)
            ready = envs.find_env(release, kind)
            if ready is not None:
                m = ready.marker
                print(
                    f"{release} {kind}: ready at {path} ({', '.join(m.get('requirements', []))}; "
                    f"{m.get('size_bytes', 0) / 1e9:.1f} GB, built in {m.get('install_seconds', '?')} s)"
                )
                continue
            reqs = (
                envs.requirements(release, kind, version)
                if (version or kind == "dynamo")
                else [f"ai-dynamo=={release}", f"{engine}==<pin of ai-dynamo[{engine}]>"]
            )
            estimate = {
                "vllm": "~1.5 min with uv (~5 min with pip), ~9 GB",
                "sglang": "~1.5 min with uv (~6 min with pip), ~10 GB",
                "dynamo": "~15 s, ~0.6 GB",
            }[kind]
            print(f"{release} {kind}: installing {' '.join(reqs)} into {path} with {installer} ({estimate})")
            if args.dry_run:
                continue
            t0 = time.monotonic()
            try:
                env = envs.ensure_env(release, kind, version, say=lambda m: None)
            except (envs.EnvBuildError, ValueError) as exc:
                print(f"recipe-harness: {release} {kind}: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(
                f"{release} {kind}: ready in {time.monotonic() - t0:.0f} s "
                f"({env.marker.get('size_bytes', 0) / 1e9:.1f} GB; versions {json.dumps(env.versions)})"
            )
    return 1 if failed else 0


def run_check(args: argparse.Namespace) -> int:
    from harness.run.conformance.client import check_recipes, failure_text

    selection = selection_from(args)
    if selection is None:
        return 2
    outcomes = check_recipes(selection.chosen)
    findings = [f for o in outcomes for f in o.findings]
    broken = [o for o in outcomes if o.result.kind == "driver"]
    skipped = [o for o in outcomes if o.skipped]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "findings": [f.to_dict() for f in findings],
                    "jobs": [
                        {
                            "id": o.job.id,
                            "release": o.job.release,
                            "ok": not o.findings and not o.skipped and o.result.kind != "driver",
                            "skipped": o.skipped,
                            "notes": o.job.notes,
                            "env": o.result.env,
                            "substitutions": o.result.substitutions,
                        }
                        for o in outcomes
                    ],
                },
                indent=2,
            )
        )
    else:
        for o in outcomes:
            if o.findings or o.result.kind == "driver":
                print(failure_text(o))
        for reason in sorted({o.skipped for o in skipped if o.skipped}):
            print(f"skipped: {reason}")
        for line in parsed_by(outcomes):
            print(line)
        print(
            f"conformance: {len(outcomes)} command lines, {len(findings)} error(s), "
            f"{len(skipped)} skipped, {len(broken)} not parsed"
        )
    return 1 if findings or broken else 0


def parsed_by(outcomes: list) -> list[str]:
    """Per recipe, the release and env that parsed its command lines, or why none did (a release without an env)."""
    per: dict[str, set[str]] = {}
    for o in outcomes:
        if o.job.skip_reason:
            continue
        what = o.result.env or (f"no env for Dynamo {o.job.release}" if o.result.unavailable else "")
        if what:
            per.setdefault(o.job.recipe.id, set()).add(f"Dynamo {o.job.release}: {what}" if o.result.env else what)
    return [f"parsed by: {rid}: {'; '.join(sorted(v))}" for rid, v in sorted(per.items())]


def run_record(args: argparse.Namespace) -> int:
    from harness.run.conformance import trtllm

    source = Path(args.source).read_text()
    try:
        build = Path(args.build_config_source).read_text() if args.build_config_source else None
        data = trtllm.record_surface(
            source,
            version=args.version,
            repo=args.repo,
            path=args.path,
            commit=args.commit,
            note=args.note,
            build_source=build,
        )
    except (ValueError, SyntaxError) as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir) if args.out_dir else Path(trtllm.__file__).with_name("data")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / trtllm.data_file_name(args.version)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    root = trtllm.Surface(data)
    print(
        f"wrote {out}: {len(data['classes'])} classes, {len(root.accepts(data['root']))} {data['root']} keys, "
        f"BuildConfig defaults {data['build_config_defaults']}"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from harness.run.conformance import envs

    found = envs.list_envs()
    if not found:
        print(f"no conformance envs under {envs.cache_root()}: run `{envs.SETUP_COMMAND}`")
    for env in found:
        m = env.marker
        print(
            f"{env.path}: {', '.join(m.get('requirements', []))} "
            f"({m.get('size_bytes', 0) / 1e9:.1f} GB, built {m.get('built_at')})"
        )
    return 0
