"""Fixture pairs in the forms upstream recipe trees use: a clean twin that must pass, a defective twin
that must still fail with the named check.

Each `tests/fixtures/pairs/<what-it-covers>/` holds:

    expect.yaml       why: ...            # the false-finding class (or rule) the pair pins
                      check: <check-id>   # the check the defective twin must trip (error severity)
                      file: <path>        # optional: relative to the defective tree's recipes/ root
                      line: <n>           # optional
                      message: <text>     # optional substring
    clean/recipes/... a small recipes tree, written from scratch in the upstream form
    defective/recipes/... the same tree with one true defect

Both trees are checked whole (`--recipes-dir`), as a user adopting the gate on their own tree would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.recipe.findings import Severity
from harness.run.static import context_for, make_selection, run_static

PAIRS = Path(__file__).resolve().parent / "fixtures" / "pairs"
NAMES = sorted(p.name for p in PAIRS.iterdir() if (p / "expect.yaml").is_file()) if PAIRS.is_dir() else []


def _findings(root: Path):
    selection = make_selection(root)
    return run_static(selection, context_for(selection)).findings


def _spec(name: str) -> dict:
    spec = yaml.safe_load((PAIRS / name / "expect.yaml").read_text())
    assert isinstance(spec, dict) and spec.get("check"), f"{name}/expect.yaml needs at least `check:`"
    return spec


@pytest.mark.parametrize("name", NAMES)
def test_clean_twin_passes(name):
    errors = [f for f in _findings(PAIRS / name / "clean" / "recipes") if f.severity is Severity.ERROR]
    assert not errors, "\n".join(f.format() for f in errors)


@pytest.mark.parametrize("name", NAMES)
def test_defective_twin_fails_with_its_check(name):
    spec = _spec(name)
    root = PAIRS / name / "defective" / "recipes"
    findings = _findings(root)
    hits = [f for f in findings if f.check_id == spec["check"] and f.severity is Severity.ERROR]
    if spec.get("file"):
        hits = [
            f for f in hits if Path(f.file).resolve() == (root / spec["file"]).resolve()
        ]  # f.file is shown relative to the cwd
    if spec.get("line"):
        hits = [f for f in hits if f.line == int(spec["line"])]
    if spec.get("message"):
        hits = [f for f in hits if spec["message"] in f.message]
    assert hits, f"[{spec['check']}] not reported as expected; got:\n" + "\n".join(f.format() for f in findings)
