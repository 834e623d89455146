"""Derives the required flag pairs of a Dynamo release from its parsers' source, proven by the real parser.

Every `raise` in the release's argument modules (dynamo/<engine>/args.py, backend_args.py,
dynamo/frontend/frontend_args.py) whose message says "`--a [v]` requires `--b [w]`" or "When
using `--a v`, you must explicitly provide `--b`" is a candidate pair. Each candidate is then run
through the conformance driver (harness/run/conformance/driver.py) on a minimal command line: it
is `verified` when the argv with `--a` alone fails with that message and the argv with `--b`
added does not. The result is written with its provenance (package, version, file, sha256,
function) to harness/recipe/data/flag-pairs/<release>.json, which the static check
`required-flag-pairs` (harness/checks/flag_pairs.py) applies without any env.

    python -m harness.run.conformance.pairs --release 1.4.0           # re-derive and write
    python -m harness.run.conformance.pairs --release 1.4.0 --check   # exit 1 when the file differs
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.recipe.flag_pairs import DATA_DIR, data_file
from harness.run.conformance import envs
from harness.run.conformance.client import DRIVER, DRIVER_TIMEOUT_S

# The modules that hold each parser's validation (ai-dynamo 1.4.0 layout), relative to site-packages.
SOURCES = {
    "vllm": ("dynamo/vllm/args.py", "dynamo/vllm/backend_args.py"),
    "sglang": ("dynamo/sglang/args.py", "dynamo/sglang/backend_args.py"),
    "trtllm": ("dynamo/trtllm/args.py", "dynamo/trtllm/backend_args.py"),
    "frontend": ("dynamo/frontend/frontend_args.py",),
}
# The smallest command line each parser accepts (the driver's stub HF cache knows this model).
BASE_ARGV = {
    "vllm": ["--model", "Qwen/Qwen3-0.6B"],
    "sglang": ["--model-path", "Qwen/Qwen3-0.6B"],
    "trtllm": ["--model-path", "Qwen/Qwen3-0.6B"],
    "frontend": [],
}
ENV_FOR = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "frontend": "frontend"}

_FLAG = r"--[a-z][a-z0-9-]*"
_VALUE = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*"
_REQUIRES = re.compile(
    rf"(?P<when>{_FLAG})(?:[= ](?P<wv>{_VALUE}))?,? (?:currently )?requires (?P<req>{_FLAG})(?:[= ](?P<rv>{_VALUE}))?"
)
_WHEN_USING = re.compile(
    rf"When using (?P<when>{_FLAG})(?: (?P<wv>{_VALUE}))?, you must (?:explicitly )?provide (?P<req>{_FLAG})"
)
_EXAMPLE = re.compile(r"Example:\s*(?P<cmd>--.+)", re.S)


@dataclass
class Candidate:
    engine: str
    when: str
    when_value: str | None
    requires: str
    requires_value: str | None  # what the parse adds (a value the message names, or its example)
    accepted: list[str] | None  # the values the message accepts for `requires`; None: any value
    message: str
    key: str  # the matched sentence: a parse error naming this pair contains it
    file: str
    function: str
    line: int


def _message(node: ast.expr) -> str:
    """The constant text of a raise's message (f-string holes become `{}`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _message(node.left) + _message(node.right)
    return ""


def _raises(tree: ast.AST) -> Iterator[tuple[str, ast.Raise]]:
    """(enclosing function, raise statement) for every raise in a module."""
    stack: list[tuple[ast.AST, str]] = [(tree, "<module>")]
    while stack:
        node, fn = stack.pop()
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Raise):
                yield fn, child
            stack.append((child, name))


def candidates(engine: str, site: Path) -> tuple[list[Candidate], dict[str, str]]:
    """The candidate pairs of one parser and the sha256 of each source file read."""
    out: list[Candidate] = []
    hashes: dict[str, str] = {}
    for rel in SOURCES[engine]:
        path = site / rel
        if not path.is_file():
            continue
        data = path.read_bytes()
        hashes[rel] = hashlib.sha256(data).hexdigest()
        for fn, node in _raises(ast.parse(data)):
            exc = node.exc
            if not isinstance(exc, ast.Call) or not exc.args:
                continue
            text = _message(exc.args[0])
            m = _REQUIRES.search(text) or _WHEN_USING.search(text)
            if m is None:
                continue
            req_value = m.groupdict().get("rv")
            accepted = None
            if req_value is not None:  # "requires --x=a, --x=b, or --x=c": each is accepted
                accepted = sorted(set(re.findall(rf"{re.escape(m.group('req'))}[= ]({_VALUE})", text)))
            example = _EXAMPLE.search(text)
            if req_value is None and example:
                words = shlex.split(example.group("cmd"))
                if len(words) > 1 and words[0] == m.group("req"):
                    req_value = words[1]
            out.append(
                Candidate(
                    engine,
                    m.group("when"),
                    m.group("wv"),
                    m.group("req"),
                    req_value,
                    accepted,
                    text.split("\n")[0],
                    m.group(0),
                    rel,
                    fn,
                    node.lineno,
                )
            )
    return out, hashes


def _group(c: Candidate, found: list[Candidate]) -> list[Candidate]:
    """The pairs with the same trigger: a parser checks them in turn, so each is proven with the others met."""
    return [o for o in found if (o.engine, o.when, o.when_value) == (c.engine, c.when, c.when_value)]


def _argv(c: Candidate, found: list[Candidate], with_required: bool, values: dict[str, str]) -> list[str]:
    def words(flag: str, value: str | None) -> list[str]:
        value = value or values.get(flag)
        return [flag] + ([value] if value else [])

    argv = BASE_ARGV[c.engine] + words(c.when, c.when_value)
    for other in _group(c, found):
        if other is not c or with_required:
            argv += words(other.requires, other.requires_value)
    return argv


_NEEDS_VALUE = re.compile(r"argument (--[\w-]+)(?:/[-\w]+)*: expected one argument")
PLACEHOLDER = "x"  # the value given to a flag argparse says takes one (the message names no value)


def _parse(env: envs.Env, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [env.python, str(DRIVER)],
        input=json.dumps({"jobs": jobs}),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    by_id = {}
    for line in proc.stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "id" in data:
            by_id[data["id"]] = data
    return [by_id.get(j["id"], {"ok": False, "kind": "driver", "error": proc.stderr[-500:]}) for j in jobs]


def _outcome(result: dict[str, Any]) -> str:
    if result.get("ok"):
        return "ok"
    return f"{result.get('kind')}: {(result.get('error') or '').splitlines()[0] if result.get('error') else ''}"


def derive(release: str, root: Path | None = None) -> dict[str, Any]:
    """The flag pairs of a release, each verified (or not) by the real parser of that release."""
    pairs: list[dict[str, Any]] = []
    sources: dict[str, Any] = {}
    for engine in SOURCES:
        env = envs.locate(release, ENV_FOR[engine], root)
        if env is None:
            sources[engine] = {"unavailable": f"no conformance env: run `{envs.setup_command(release, engine)}`"}
            continue
        site = next(Path(env.path).glob("lib/python*/site-packages"))
        found, hashes = candidates(engine, site)
        sources[engine] = {
            "package": "ai-dynamo",
            "version": env.versions.get("ai-dynamo", "?"),
            "env": env.path.name,
            "files": hashes,
        }
        values: dict[str, str] = {}
        for _round in range(3):  # a flag that takes a value the message does not name gets a placeholder
            jobs = [
                {"id": f"{n}-{w}", "parser": engine, "argv": _argv(c, found, w == "with", values)}
                for n, c in enumerate(found)
                for w in ("without", "with")
            ]
            results = _parse(env, jobs) if jobs else []
            missing = {m.group(1) for r in results for m in [_NEEDS_VALUE.search(r.get("error") or "")] if m}
            if not missing - set(values):
                break
            values.update({f: PLACEHOLDER for f in missing})
        for n, c in enumerate(found):
            without, with_ = results[2 * n], results[2 * n + 1]
            fails_without = not without.get("ok") and c.key in (without.get("error") or "")
            passes_with = with_.get("ok") or c.key not in (with_.get("error") or "")
            pairs.append(
                {
                    "engine": c.engine,
                    "when": c.when,
                    "when_value": c.when_value,
                    "requires": c.requires,
                    "requires_value": c.requires_value,
                    "accepted_values": c.accepted,
                    "message": c.message,
                    "source": {
                        "package": "ai-dynamo",
                        "version": sources[engine]["version"],
                        "file": c.file,
                        "sha256": hashes[c.file],
                        "function": c.function,
                        "line": c.line,
                    },
                    "verified": bool(fails_without and passes_with),
                    "parse": {
                        "without": {"argv": _argv(c, found, False, values), "outcome": _outcome(without)},
                        "with": {"argv": _argv(c, found, True, values), "outcome": _outcome(with_)},
                    },
                }
            )
    return {
        "release": release,
        "generated_by": "python -m harness.run.conformance.pairs --release " + release,
        "note": "derived from the parsers' raise statements and proven by the conformance driver; never hand-edited",
        "sources": sources,
        "pairs": pairs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.run.conformance.pairs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", required=True)
    ap.add_argument("--check", action="store_true", help="compare with the recorded file instead of writing it")
    args = ap.parse_args(argv)
    data = derive(args.release)
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    target = data_file(args.release)
    if args.check:
        same = target.is_file() and target.read_text() == text
        print(f"{target}: {'up to date' if same else 'differs from the parsers: re-run without --check'}")
        return 0 if same else 1
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    verified = sum(p["verified"] for p in data["pairs"])
    print(f"wrote {target}: {len(data['pairs'])} candidate pairs, {verified} verified by the parser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
