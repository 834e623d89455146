"""The required flag pairs of a Dynamo release, as derived from its parsers (harness/run/conformance/pairs.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data" / "flag-pairs"


@dataclass(frozen=True)
class FlagPair:
    """`when` (with `when_value`, if any) makes the parser of `engine` demand `requires`."""

    engine: str  # vllm | sglang | trtllm | frontend: the `dynamo.<engine>` module
    when: str
    when_value: str | None
    requires: str
    requires_value: str | None  # a value that satisfies the parser (the message's own, or its example)
    accepted_values: tuple[str, ...] | None  # the values the parser accepts; None: any value
    message: str  # the parser's own message
    source: str  # "dynamo/vllm/args.py:update_dynamo_config_with_engine (ai-dynamo 1.4.0, sha256 ...)"


def data_file(release: str) -> Path:
    return DATA_DIR / f"{release}.json"


@cache
def flag_pairs(release: str) -> tuple[FlagPair, ...]:
    """The verified pairs of a release; empty when none were derived for it."""
    path = data_file(release)
    if not path.is_file():
        return ()
    data = json.loads(path.read_text())
    out = []
    for p in data.get("pairs", []):
        if not p.get("verified"):
            continue
        s = p["source"]
        out.append(
            FlagPair(
                p["engine"],
                p["when"],
                p.get("when_value"),
                p["requires"],
                p.get("requires_value"),
                None if p.get("accepted_values") is None else tuple(p["accepted_values"]),
                p["message"],
                f"{s['file']}:{s['function']} ({s['package']} {s['version']}, sha256 {s['sha256'][:12]})",
            )
        )
    return tuple(out)
