# The harness registers itself as a pytest plugin (entry point `recipe_harness` in
# pyproject.toml); this file only marks the repository root for pytest.
