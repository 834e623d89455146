"""Every defect fixture is caught with the right check id, file and line; the run completes."""

from __future__ import annotations

import pytest

from harness.checks import all_checks, run_check
from harness.run.defects import load_defects, materialise, missing_programs, selectors_for
from harness.run.static import applicable_checks, context_for, make_selection, run_static

from .conftest import CATALOGUE

DEFECTS = load_defects()


@pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")
@pytest.mark.parametrize("defect", DEFECTS, ids=[d.name for d in DEFECTS])
def test_defect_is_caught(defect, tmp_path):
    assert not defect.broken, defect.broken
    missing = missing_programs(defect)
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: install it to run this fixture")
    root, expected = materialise(defect, tmp_path)
    selection = make_selection(root, [s for s in selectors_for(defect) if s != "*"])
    checks = [c for c in all_checks() if c.scope == "recipe" or any(e.check == c.id for e in expected)]
    report = run_static(selection, context_for(selection), checks)
    internal = [f for f in report.findings if f.message.startswith("internal error")]
    assert not internal, "\n".join(f.format() for f in internal)
    for exp in expected:
        path = str(root / exp.file)
        hits = [f for f in report.findings if f.check_id == exp.check and f.file == path]
        assert hits, f"[{exp.check}] not reported on {exp.file}; got:\n" + "\n".join(
            f.format() for f in report.findings
        )
        if exp.line is not None:
            assert any(f.line == exp.line for f in hits), (
                f"[{exp.check}] on {exp.file} at lines {[f.line for f in hits]}, expected {exp.line}"
            )
        if exp.message:
            assert any(exp.message in f.message for f in hits), [f.message for f in hits]


def test_every_check_has_a_defect_fixture():
    covered = {e.check for d in DEFECTS for e in d.expect}
    missing = sorted(c.id for c in all_checks() if c.id not in covered)
    assert not missing, f"checks without a defect fixture (add tests/fixtures/defects/<what-is-wrong>.yaml): {missing}"


@pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")
def test_every_check_has_a_passing_example():
    """Each check's other example: a subject of the shipped catalogue (a recipe, or the tree) it runs on
    and passes without a finding, beside the defect fixture it must fail on."""
    selection = make_selection(CATALOGUE)
    ctx = context_for(selection)
    without = []
    for chk in all_checks():
        subjects = [subject for _, subject in applicable_checks(selection, [chk])]
        if not any(not run_check(chk, subject, ctx) for subject in subjects):
            without.append(chk.id)
    assert not without, f"checks that pass on no recipe of the shipped catalogue: {without}"


def test_fixtures_expect_registered_checks():
    ids = {c.id for c in all_checks()}
    unknown = sorted({(d.name, e.check) for d in DEFECTS for e in d.expect if e.check not in ids})
    assert not unknown, f"fixtures expecting a check that does not exist: {unknown}"
