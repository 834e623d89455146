"""The strict switch: which tiers turn a skip into a failure, so a CI cache miss cannot pass as green.

`RECIPE_HARNESS_STRICT=1` (or `true`, `all`) makes every skip of the conformance, sim and apiserver
tiers a failure; a comma list (`conformance,sim`) names the tiers. The gpu tier skips without a cluster
by design (CI has none): its skips fail only when the run asked for it (`-m gpu`, or `gpu` named in the
list). `recipe-harness conformance check --strict` is the same switch on the command line.
"""

from __future__ import annotations

import os

STRICT_ENV = "RECIPE_HARNESS_STRICT"
STRICT_TIERS = ("conformance", "sim", "apiserver")  # `1`: these; gpu only when asked for
_ALL = {"1", "true", "yes", "on", "all"}
_OFF = {"", "0", "false", "no", "off"}


class StrictValueError(ValueError):
    """An unknown tier in RECIPE_HARNESS_STRICT."""


def strict_from_env(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The tiers the environment makes strict (empty: none)."""
    raw = (environ if environ is not None else os.environ).get(STRICT_ENV, "").strip().lower()
    if raw in _OFF:
        return frozenset()
    if raw in _ALL:
        return frozenset(STRICT_TIERS)
    tiers = {t.strip() for t in raw.split(",") if t.strip()}
    unknown = tiers - {*STRICT_TIERS, "gpu"}
    if unknown:
        raise StrictValueError(
            f"{STRICT_ENV}={raw!r}: unknown tier(s) {', '.join(sorted(unknown))} "
            f"(1 for {', '.join(STRICT_TIERS)}, or a comma list of them and gpu)"
        )
    return frozenset(tiers)
