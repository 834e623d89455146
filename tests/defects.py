"""The defect-fixture framework lives in harness/run/defects.py (the `checks` command shows fixtures too)."""

from harness.run.defects import CATALOGUE, DEFECTS, REPO, Defect, Expected, load_defects, materialise, selectors_for

__all__ = ["CATALOGUE", "DEFECTS", "REPO", "Defect", "Expected", "load_defects", "materialise", "selectors_for"]
