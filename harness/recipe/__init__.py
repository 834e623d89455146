"""Recipes as data: YAML with source positions, the domain model, catalogues, discovery and selection."""
