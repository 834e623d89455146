"""`recipe-harness conformance`:
set up the conformance envs, parse the recipes' command lines, record TRT-LLM's surface."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from harness.commands import add_selection_args, examples, selection_from
from harness.run.strict import STRICT_ENV, StrictValueError, strict_from_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conformance",
        help="real Dynamo/engine argument parsing of every recipe (setup, check)",
        description="Parse every worker's and frontend's command line with the real parsers of the recipe's "
        "Dynamo release and engine, in isolated envs built once by `conformance setup`.",
        **examples(
            ("recipe-harness conformance setup", "build the envs the recipes' releases need (once)"),
            ("recipe-harness conformance check --strict", "parse every command line; a skip fails"),
            ("recipe-harness conformance list", "the envs that are set up"),
        ),
    )
    csub = p.add_subparsers(dest="conformance_command", metavar="ACTION")

    s = csub.add_parser(
        "setup",
        help="build the isolated envs (ai-dynamo + engine) the conformance tier runs in",
        description="Build the isolated envs (ai-dynamo + engine) the conformance tier runs in, under "
        "~/.cache/recipe-harness/conformance (RECIPE_HARNESS_CACHE moves it); a ready env returns at once.",
        **examples(
            ("recipe-harness conformance setup", "the releases the recipes pin, vllm and sglang"),
            ("recipe-harness conformance setup --release 1.6.1 --engine vllm", "one env"),
            ("recipe-harness conformance setup --dry-run", "what would be installed"),
        ),
    )
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

    c = csub.add_parser(
        "check",
        help="parse every worker's and frontend's command line with the real parsers",
        description="Parse every worker's and frontend's command line with the real parsers (the same as "
        "`pytest -m conformance`). Exit 1 on a rejected command line, and with --strict on a skipped one.",
        **examples(
            ("recipe-harness conformance check", "every recipe"),
            ("recipe-harness conformance check recipes/qwen3-32b --strict", "one model; a missing env fails"),
            ("recipe-harness conformance check --format github", "GitHub annotations"),
        ),
    )
    add_selection_args(c)
    c.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default=None,
        help="text (default), json, or github annotations (default when GITHUB_ACTIONS is set)",
    )
    c.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help=f"a skipped command line (no env: a CI cache miss) fails the run; also set by {STRICT_ENV}=1",
    )
    c.set_defaults(func=run_check)

    r = csub.add_parser(
        "record-trtllm",
        help="record TensorRT-LLM's LlmArgs field surface from its llm_args.py source",
        description="Record TensorRT-LLM's LlmArgs field surface from its llm_args.py source (a generated data "
        "file with provenance; TensorRT-LLM is not on the package index).",
        **examples(
            (
                "recipe-harness conformance record-trtllm --source llm_args.py --version V --commit C",
                "write harness/run/conformance/data/trtllm-V.json",
            ),
        ),
    )
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

    ls = csub.add_parser(
        "list",
        help="the envs that are set up, with versions and sizes",
        description="The conformance envs under the cache: release, engine, version, size and status.",
        **examples(
            ("recipe-harness conformance list", "a table of the envs"),
        ),
    )
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _releases_and_versions(recipes_dir: str | None) -> dict[str, dict[str, str]]:
    """release -> {engine: version} for the releases the recipes pin, from versions.yaml."""
    from harness.recipe.versions import VERSIONS_FILE, version_matrix
    from harness.run.static import make_selection

    # `--release R` needs no tree: without --recipes-dir a checkout's missing recipes/ pins nothing
    selection = make_selection(recipes_dir, [], require_recipes=recipes_dir is not None)
    out: dict[str, dict[str, str]] = {}
    for recipe in selection.all:
        release = recipe.release
        if release and release not in out:
            matrix = version_matrix(recipe.load(recipe.root / VERSIONS_FILE))
            rel = matrix.release(release) if matrix else None
            out[release] = dict(rel.backends) if rel else {}
    return out


def run_setup(args: argparse.Namespace) -> int:
    from harness.recipe.discovery import SelectionError
    from harness.run.conformance import envs

    try:
        pins = _releases_and_versions(args.recipes_dir)
    except SelectionError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
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
                with SetupProgress(f"{release} {kind}", envs.cache_root() / f"{envs.env_name(release, kind)}.log") as p:
                    env = envs.ensure_env(release, kind, version, say=p.say)
            except (envs.EnvBuildError, ValueError) as exc:
                print(f"recipe-harness: {release} {kind}: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(
                f"{release} {kind}: ready in {time.monotonic() - t0:.0f} s "
                f"({env.marker.get('size_bytes', 0) / 1e9:.1f} GB; versions {json.dumps(env.versions)})"
            )
    return 1 if failed else 0


PROGRESS_INTERVAL = 10.0  # seconds between two progress lines of a running install
_PHASES = (  # the installer command running (the log's last `$ ...` line) -> the phase it is
    ("--no-deps", "installing ai-dynamo --no-deps"),
    (" venv ", "creating the venv"),
    ("-m venv", "creating the venv"),
    ("pip install", "resolving, downloading and installing the requirements"),
)


def setup_phase(log_text: str) -> tuple[str, str]:
    """(phase, the installer's last line) from an env's build log (harness.run.conformance.envs writes
    `$ <command>` before each step and the installer's output after it)."""
    phase, last = "preparing", ""
    for line in log_text.splitlines():
        if line.startswith("$ "):
            phase = next((name for key, name in _PHASES if key in line), line[2:60])
            last = ""
        elif line.strip() and not line.startswith("#"):
            last = line.strip()
    return phase, last[:100]


class SetupProgress:
    """An env build's progress on stdout: the build's own messages and, every PROGRESS_INTERVAL seconds
    while the installer runs, the elapsed time, the phase and the installer's last log line (uv prints
    `Resolved N packages`, `Prepared N packages`, `Installed N packages`), instead of minutes of silence."""

    def __init__(self, label: str, log: Path):
        self.label, self.log = label, log
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def say(self, message: str) -> None:
        print(f"  [{time.monotonic() - self.t0:4.0f} s] {message.removeprefix('conformance: ')}", flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL):
            try:
                phase, last = setup_phase(self.log.read_text(errors="replace"))
            except OSError:
                phase, last = "waiting for the build lock", ""
            self.say(f"{self.label}: {phase}" + (f" ({last})" if last else ""))

    def __enter__(self) -> SetupProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_check(args: argparse.Namespace) -> int:
    from harness.run.conformance.client import check_recipes, failure_text

    try:
        strict = bool(args.strict) or "conformance" in strict_from_env()
    except StrictValueError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 2
    selection = selection_from(args)
    if selection is None:
        return 2
    outcomes = check_recipes(selection.chosen)
    findings = [f for o in outcomes for f in o.findings]
    broken = [o for o in outcomes if o.result.kind == "driver"]
    skipped = [o for o in outcomes if o.skipped]
    from harness.run.static import in_github_actions

    fmt = args.format or ("github" if in_github_actions() else "text")
    if fmt == "github":
        for f in findings:
            print(f.github_annotation())
        for o in broken:
            print(f"::error title=recipe-harness conformance::{_gh(f'{o.job.id}: not parsed: {failure_text(o)}')}")
        for reason in sorted({o.skipped for o in skipped if o.skipped}):
            print(f"::{'error' if strict else 'warning'} title=recipe-harness conformance::{_gh(f'skipped: {reason}')}")
    elif fmt == "json":
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
    if strict and skipped and fmt == "text":
        how = "--strict" if args.strict else f"{STRICT_ENV}={os.environ.get(STRICT_ENV, '')}"
        print(f"{how}: {len(skipped)} skipped command line(s) fail the run (a parse that did not run proves nothing)")
    return 1 if findings or broken or (strict and skipped) else 0


def _gh(text: str) -> str:
    """A GitHub workflow command's message: `%`, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


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

    rows = env_rows(envs.cache_root())
    if not rows:
        print(f"no conformance envs under {envs.cache_root()}: run `{envs.SETUP_COMMAND}`")
        return 0
    header = ("RELEASE", "ENGINE", "VERSION", "SIZE", "STATUS")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"(under {envs.cache_root()}; `{envs.SETUP_COMMAND}` builds a missing one)")
    return 0


def env_rows(root: Path) -> list[tuple[str, str, str, str, str]]:
    """One row per env under the cache root, ready or not: release, engine, engine version, size, status."""
    from harness.run.conformance import envs

    if not root.is_dir():
        return []
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    names |= {p.name.removesuffix(".lock") for p in root.glob("*.lock")}
    rows = []
    for name in sorted(names):
        path = root / name
        marker = envs.read_marker(path) if path.is_dir() else None
        release, _, kind = name.rpartition("-")
        if marker is not None:
            installed = marker.get("installed") or {}
            engine = str(marker.get("engine") or kind)
            version = installed.get(envs.ENGINE_DIST.get(engine, "ai-dynamo")) or installed.get("ai-dynamo") or "?"
            size = f"{marker.get('size_bytes', 0) / 1e9:.1f} GB"
            status = f"ready (built {marker.get('built_at', '?')})"
            rows.append((str(marker.get("release") or release), engine, str(version), size, status))
        else:
            status = "building" if _lock_held(root / f"{name}.lock") else "not built (a failed or stopped setup)"
            rows.append((release, kind, "-", "-", status))
    return rows


def _lock_held(lock: Path) -> bool:
    """Whether a setup holds the env's build lock now (harness.run.conformance.envs builds under flock)."""
    import fcntl

    if not lock.is_file():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
