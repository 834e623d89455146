"""Where the harness keeps what it builds outside the repository (conformance envs, the control plane's
binaries, kustomize, AIConfigurator's env): `$RECIPE_HARNESS_CACHE`, default `~/.cache/recipe-harness`."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RECIPE_HARNESS_CACHE"


def cache_dir(part: str) -> Path:
    """`$RECIPE_HARNESS_CACHE/<part>`, default `~/.cache/recipe-harness/<part>`."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "recipe-harness")
    return Path(base) / part
