"""Records each Dynamo entry point's flag surface from the release's real parsers, as data the static tier reads.

Runs harness/run/conformance/introspect.py in the release's conformance envs: `dynamo.vllm`,
`dynamo.frontend` and `dynamo.trtllm` in the vLLM env, `dynamo.sglang` in the SGLang env. The
result, with its provenance (package versions, python, the command line each entry point was run
on, how it was recorded), goes to harness/recipe/data/flag-surface/<release>.json, which
harness/recipe/flagvalues.py reads without any env. Never edited by hand.

    python -m harness.run.conformance.surface --release 1.6.1           # record and write
    python -m harness.run.conformance.surface --release 1.6.1 --check   # exit 1 when the file differs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.recipe.flagvalues import SURFACE_DIR, surface_file
from harness.run.conformance import envs
from harness.run.conformance.client import DRIVER_TIMEOUT_S

INTROSPECT = Path(__file__).with_name("introspect.py")
# Which env records which entry point: the engines need their own env, the rest run in any env of the release.
ENTRY_POINTS = {"vllm": ("vllm", "frontend", "trtllm"), "sglang": ("sglang",)}
BASE_ARGV = {
    "vllm": ["--model", "Qwen/Qwen3-0.6B"],
    "sglang": ["--model-path", "Qwen/Qwen3-0.6B"],
    "trtllm": ["--model-path", "Qwen/Qwen3-0.6B"],
    "frontend": [],
}
# Words no parser stage claims, parsed for real: is an unknown flag rejected, and which dotted forms
# are taken (vLLM's FlexibleArgumentParser `--<json option>.<key>`, dynamo.trtllm's `--trtllm.<key>`).
REMAINDER_PROBES = {
    "vllm": [["--zz-harness-no-such-flag"], ["--compilation-config.mode", "3"]],
    "sglang": [["--zz-harness-no-such-flag"]],
    "trtllm": [["--zz-harness-no-such-flag"], ["--trtllm.kv_cache_config.free_gpu_memory_fraction", "0.5"]],
    "frontend": [["--zz-harness-no-such-flag"]],
}


def _introspect(env: envs.Env, parsers: tuple[str, ...]) -> dict[str, Any]:
    request = {
        "parsers": list(parsers),
        "argv": {p: BASE_ARGV[p] for p in parsers},
        "remainder_probes": {p: REMAINDER_PROBES[p] for p in parsers},
    }
    proc = subprocess.run(
        [env.python, str(INTROSPECT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"{env.path.name}: introspection gave no result (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def record(release: str, root: Path | None = None) -> dict[str, Any]:
    """The flag surface of every entry point of a release whose env is set up."""
    parsers: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for kind, names in ENTRY_POINTS.items():
        env = envs.find_env(release, kind, root)
        if env is None:
            for name in names:
                sources[name] = {"unavailable": f"no conformance env: run `{envs.setup_command(release, kind)}`"}
            continue
        data = _introspect(env, names)
        for name in names:
            got = data["parsers"].get(name, {})
            if got.get("error") and not got.get("stages"):
                sources[name] = {"unavailable": got["error"]}
                continue
            parsers[name] = {
                "stages": got["stages"],
                "probes": got["probes"],
                "remainder_probes": got.get("remainder_probes", []),
            }
            sources[name] = {
                "env": env.path.name,
                "versions": data.get("versions", {}),
                "python": data.get("python"),
                "argv": got.get("argv"),
                "additions": got.get("additions"),
                "base_parse": "ok" if not got.get("error") else got["error"],
            }
    return {
        "release": release,
        "generated_by": f"python -m harness.run.conformance.surface --release {release}",
        "how": (
            "each entry point's real parse_args run once on `argv` with argparse's parse_known_args/parse_args "
            "wrapped (harness/run/conformance/introspect.py): every parser it calls, in order, with every action; "
            "each value type called on sample strings (probes); never hand-edited"
        ),
        "sources": sources,
        "parsers": parsers,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.run.conformance.surface", description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", required=True)
    ap.add_argument("--check", action="store_true", help="compare with the recorded file instead of writing it")
    args = ap.parse_args(argv)
    data = record(args.release)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    target = surface_file(args.release)
    if args.check:
        same = target.is_file() and json.loads(target.read_text()) == json.loads(text)
        print(f"{target}: {'up to date' if same else 'differs from the parsers: re-run without --check'}")
        return 0 if same else 1
    SURFACE_DIR.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    counts = {n: sum(len(s["actions"]) for s in p["stages"]) for n, p in data["parsers"].items()}
    print(f"wrote {target}: options per entry point {counts}")
    for name, src in data["sources"].items():
        if "unavailable" in src:
            print(f"  {name}: not recorded ({src['unavailable']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
