"""Helpers for the sim tests: fixture recipes by id, and the real model dir built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.recipe.discovery import discover, select
from harness.recipe.model import Recipe

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sim"
RECIPES = FIXTURES / "recipes"
BROKEN = FIXTURES / "broken"


def load_recipe(recipe_id: str, root: Path = RECIPES) -> Recipe:
    return select(discover(root), [recipe_id])[0]


@pytest.fixture
def fixture_recipe():
    """A recipe from tests/fixtures/sim/recipes by id."""
    return load_recipe


@pytest.fixture
def broken_recipe():
    """A recipe from tests/fixtures/sim/broken by id (named after what is wrong with it)."""
    return lambda recipe_id: load_recipe(recipe_id, BROKEN)


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-cache")
