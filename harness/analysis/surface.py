"""Which recorded parser surface reads a service's command line: its `dynamo.<x>` module in the recipe's release."""

from __future__ import annotations

import re

from harness.recipe.flagvalues import EntryPoint, load_surface
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import dig

_RELEASE_TAG = re.compile(r":v?(\d+\.\d+\.\d+)(?:$|[-@])")


def engine_surface(recipe: Recipe, service: Service) -> EntryPoint | None:
    """The recorded parsers of the service's `dynamo.<x>` module in the recipe's Dynamo release
    (recipe.yaml `versions.dynamo`, else the release of the service's image tag); None when the
    release has no recorded surface (harness/recipe/data/flag-surface/)."""
    module = service.module
    if module is None:
        return None
    release = dig(recipe.metadata, "versions", "dynamo")
    if not release and service.main is not None:
        m = _RELEASE_TAG.search(str(service.main.image or ""))
        release = m.group(1) if m else None
    surface = load_surface(str(release)) if release else None
    return surface.entry_point(module.value) if surface is not None else None
