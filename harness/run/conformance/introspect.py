"""Records the flag surface of Dynamo's entry points from the parsers they really build and call.

Executed with a conformance env's python (like driver.py, next to which it must sit): it imports
only the standard library, the env's packages and driver.py. For each requested entry point it
runs the real `parse_args` on a minimal command line with `argparse.ArgumentParser.parse_known_args`
and `parse_args` wrapped, so every parser the entry point calls is seen in the order it calls them:
Dynamo's own parser, the router-advertisement parser, the engine's parser. Of each such stage it
records every option string, dest, nargs, const, default, choices, action class, the value type
(named, closures unwrapped: `optional_type(int)`), `allow_abbrev`, and whether the stage passes
unknown words on (`parse_known_args`) or rejects them (`parse_args`). Each distinct value type is
then called on sample strings, and the results are recorded as the type's probes: the static
reader (harness/recipe/flagvalues.py) must reproduce them.

stdin:  {"parsers": ["vllm", ...], "argv": {"vllm": [...]}, "remainder_probes": {"vllm": [[...], ...]}}
stdout: one JSON object {"parsers": {name: {"stages": [...], "probes": {...}, "error": ...}},
                         "versions": {...}, "python": "3.11.x"}
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import driver

SAMPLES = (
    "8",
    "0",
    "-1",
    "16K",
    "16k",
    "1.5k",
    "2.5K",
    "128M",
    "auto",
    "AUTO",
    " 64 ",
    "0.9",
    "1e3",
    "true",
    "false",
    "True",
    "1",
    "None",
    "",
    "abc",
    '{"a": 1}',
)


def describe_type(t) -> str | None:
    """A stable name for an argparse `type` callable; closures name what they wrap."""
    if t is None:
        return None
    if isinstance(t, functools.partial):
        args = ", ".join([describe_type(t.func) or "?"] + [repr(a) for a in t.args])
        return f"partial({args})"
    if isinstance(t, type):
        return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    if isinstance(t, (types.FunctionType, types.MethodType)):
        fn = t.__func__ if isinstance(t, types.MethodType) else t
        name = f"{fn.__module__}.{fn.__qualname__}"
        inner = [describe_type(c.cell_contents) for c in fn.__closure__ or () if callable(c.cell_contents)]
        return f"{name}({', '.join(i or '?' for i in inner)})" if inner else name
    if isinstance(t, types.BuiltinFunctionType):
        return f"{t.__module__}.{t.__qualname__}"
    return f"{type(t).__module__}.{type(t).__qualname__}()"


def jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [jsonable(x) for x in v]
        return sorted(items, key=str) if isinstance(v, (set, frozenset)) else items
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if hasattr(v, "value") and isinstance(v.value, (str, int)):  # Enum
        return v.value
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return f"<{type(v).__name__}>"


def action_record(a: argparse.Action) -> dict:
    return {
        "options": list(a.option_strings),
        "dest": a.dest,
        "nargs": a.nargs,
        "const": jsonable(a.const),
        "default": jsonable(a.default),
        "type": describe_type(a.type),
        # sorted: some choices come from the Rust runtime's hash sets, in a new order every run
        "choices": None if a.choices is None else sorted((jsonable(c) for c in a.choices), key=str),
        "action": type(a).__name__,
        "required": bool(a.required),
    }


class Recorder:
    """Wraps argparse so each parser an entry point calls is recorded once, in call order."""

    def __init__(self):
        self.stages: list[tuple[argparse.ArgumentParser, str]] = []
        self.final: set[int] = set()
        self._pk = argparse.ArgumentParser.parse_known_args
        self._pa = argparse.ArgumentParser.parse_args

    def __enter__(self):
        rec = self

        def parse_known_args(parser, args=None, namespace=None):
            if not any(p is parser for p, _ in rec.stages):
                rec.stages.append((parser, "known"))
            return rec._pk(parser, args, namespace)

        def parse_args(parser, args=None, namespace=None):
            rec.final.add(id(parser))
            return rec._pa(parser, args, namespace)

        argparse.ArgumentParser.parse_known_args = parse_known_args
        argparse.ArgumentParser.parse_args = parse_args
        return self

    def __exit__(self, *exc):
        argparse.ArgumentParser.parse_known_args = self._pk
        argparse.ArgumentParser.parse_args = self._pa

    def records(self) -> list[dict]:
        out = []
        for parser, _ in self.stages:
            cls = type(parser)
            out.append(
                {
                    "class": f"{cls.__module__}.{cls.__qualname__}",
                    "allow_abbrev": bool(parser.allow_abbrev),
                    "prefix_chars": parser.prefix_chars,
                    "mode": "final" if id(parser) in self.final else "known",
                    "actions": [action_record(a) for a in parser._actions],
                }
            )
        return out

    def type_callables(self) -> dict[str, object]:
        found: dict[str, object] = {}
        for parser, _ in self.stages:
            for a in parser._actions:
                name = describe_type(a.type)
                if name is not None and name not in found:
                    found[name] = a.type
        return found


def probe(fn) -> list[list]:
    out = []
    for s in SAMPLES:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                out.append([s, {"value": jsonable(fn(s))}])
        except BaseException as e:  # a type function raises ArgumentTypeError, ValueError, TypeError, ...
            out.append([s, {"error": type(e).__name__}])
    return out


def remainder_probe(run, name: str, argv: list[str], extra: list[str], ctx: dict) -> dict:
    """What the entry point does with words no parser stage claims: parse `argv + extra` for real."""
    additions = ["--device", "cpu"] if name == "sglang" else []
    old = sys.argv
    sys.argv = [driver.PROG[name], *argv, *extra, *additions]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            run(argv + extra + additions, {}, ctx)
        return {"argv": extra, "ok": True}
    except SystemExit as e:
        text = err.getvalue().strip().splitlines()
        return {"argv": extra, "ok": False, "error": f"SystemExit({e.code}): {text[-1] if text else ''}"[:300]}
    except BaseException as e:
        return {"argv": extra, "ok": False, "error": driver._fmt_exc(e)[:300]}
    finally:
        sys.argv = old


def record(name: str, argv: list[str], ctx: dict, extras: list[list[str]] = ()) -> dict:
    try:
        run, _subs, dists = driver.SETUP[name](ctx)
    except BaseException as e:
        return {"error": f"import: {driver._fmt_exc(e)}"}
    additions = ["--device", "cpu"] if name == "sglang" else []
    old = sys.argv
    sys.argv = [driver.PROG[name], *argv, *additions]
    error = None
    with Recorder() as rec:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                run(argv + additions, {}, ctx)
        except BaseException as e:  # the stages called before a failure are still recorded
            error = driver._fmt_exc(e)
        finally:
            sys.argv = old
    return {
        "argv": argv,
        "additions": additions,
        "remainder_probes": [remainder_probe(run, name, argv, extra, ctx) for extra in extras],
        "stages": rec.records(),
        "probes": {t: probe(fn) for t, fn in sorted(rec.type_callables().items())},
        "error": error,
        "dists": dists,
    }


def main() -> int:
    req = json.load(sys.stdin)
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    hf_home = tempfile.mkdtemp(prefix="introspect-hf-")
    jobs = [{"argv": v} for v in req.get("argv", {}).values()]
    driver.build_stub_cache(hf_home, jobs)
    os.environ.update(
        {
            "HF_HOME": hf_home,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_NIXL_SIDE_CHANNEL_HOST": "127.0.0.1",
        }
    )
    ctx = {"deep": False, "trtllm_defaults": req.get("trtllm_defaults") or {}}
    result = {"parsers": {}}
    dists: set[str] = set()
    for name in req.get("parsers", []):
        extras = req.get("remainder_probes", {}).get(name, [])
        result["parsers"][name] = record(name, req["argv"].get(name, []), ctx, extras)
        dists.update(result["parsers"][name].pop("dists", []))
    result["versions"] = driver._versions(sorted(dists))
    result["python"] = sys.version.split()[0]
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
