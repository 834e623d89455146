"""Foreign-tree mode, the built-in release matrix, the severity floor and the per-tree ignore file.

The trees are the fixture pairs (tests/fixtures/pairs/): small recipes trees written in upstream's forms.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.checks import all_checks
from harness.cli import main
from harness.recipe.convention import CATALOGUE, NONE, detect_convention
from harness.recipe.findings import Severity
from harness.recipe.versions import VERSIONS_FILE, builtin_matrix, parse_versions
from harness.recipe.yamlsrc import load_yaml_file
from harness.run.static import context_for, make_gate, make_selection, run_static

REPO = Path(__file__).resolve().parent.parent
PAIRS = REPO / "tests" / "fixtures" / "pairs"
FOREIGN = PAIRS / "foreign-tree" / "clean" / "recipes"
DEEP = PAIRS / "manifest-at-any-depth"

# What the catalogue convention covers (harness.recipe.convention): changing the set is a decision, not an accident.
CONVENTION_CHECKS = {
    "layout-required-files",
    "layout-perf-present",
    "layout-framework-dir",
    "layout-kebab-case",
    "layout-stray-files",
    "layout-tree",
    "docs-in-sync",
    "model-readme-format",
    "metadata-schema",
    "metadata-matches-path",
    "metadata-dynamo-release",
    "gpu-total-matches-metadata",
    "nodes-match-metadata",
    "gpus-per-node-within-hardware",
    "perf-concurrency-matches-metadata",
    "perf-lengths-match-metadata",
    "model-revision-pinned",
    "weights-fit-gpu",
    "perf-runs-aiperf",  # AIPerf is what this catalogue's nightly reads; a foreign benchmark tool works
    "cache-pvcs-meet-minimums",  # the 50 GB / 5 GB minimums are this catalogue's sizing guidance (models.yaml)
}


def findings(root: Path, convention: str | None = None):
    selection = make_selection(root, convention=convention)
    return selection, run_static(selection, context_for(selection)).findings


def test_the_convention_checks_are_the_documented_set():
    assert {c.id for c in all_checks() if c.convention} == CONVENTION_CHECKS


def test_detection_by_marker_files(tmp_path):
    assert detect_convention(REPO / "recipes").name == CATALOGUE  # versions.yaml
    assert detect_convention(FOREIGN).name == NONE
    tree = shutil.copytree(FOREIGN, tmp_path / "recipes")
    (tree / "qwen3-0.6b" / "vllm" / "disagg" / "recipe.yaml").write_text("schemaVersion: 1\n")
    assert detect_convention(tree).name == CATALOGUE  # one recipe.yaml adopts the convention


def test_foreign_tree_runs_no_convention_check_and_says_so_once():
    selection, found = findings(FOREIGN)
    assert selection.convention.name == NONE
    assert not [f for f in found if f.check_id in CONVENTION_CHECKS]
    notes = [n for n in selection.notes if "convention checks did not apply" in n]
    assert len(notes) == 1 and notes[0].startswith(f"foreign tree: {len(CONVENTION_CHECKS)} convention checks")


def test_convention_override_applies_them_to_the_same_tree():
    _, found = findings(FOREIGN, convention="catalogue")
    errors = {f.check_id for f in found if f.severity is Severity.ERROR}
    assert {"layout-required-files", "layout-tree"} <= errors
    # and discovery is the catalogue's: deploy_hopper_2gpu.yaml is a stray file, its directory lacks deploy.yaml
    assert any(f.message == "missing deploy.yaml" for f in found)


def test_foreign_tree_may_benchmark_with_another_tool(tmp_path):
    # genai-perf (older upstream recipes) works on the cluster; only the catalogue reads AIPerf's export
    root = tmp_path / "recipes"
    shutil.copytree(FOREIGN, root)
    perf = root / "qwen3-0.6b" / "perf" / "perf.yaml"
    text = perf.read_text()
    assert "          aiperf profile \\\n" in text
    perf.write_text(text.replace("          aiperf profile \\\n", "          genai-perf profile \\\n"))
    _, found = findings(root)
    assert not [f for f in found if f.severity is Severity.ERROR], [f.format() for f in found]


def test_catalogue_tree_still_runs_aiperf(tmp_path):
    root = tmp_path / "recipes"
    shutil.copytree(REPO / "recipes" / "qwen3-32b", root / "qwen3-32b")
    shutil.copy(REPO / "recipes" / VERSIONS_FILE, root / VERSIONS_FILE)
    perf = root / "qwen3-32b" / "vllm" / "agg-round-robin" / "perf.yaml"
    text = perf.read_text()
    assert " aiperf profile " in text
    perf.write_text(text.replace(" aiperf profile ", " genai-perf profile "))
    _, found = findings(root)
    assert any(f.check_id == "perf-runs-aiperf" and "never runs `aiperf profile`" in f.message for f in found)


def test_manifests_are_found_at_any_depth_and_model_level_perf_too():
    selection, _ = findings(DEEP / "clean" / "recipes")
    assert [r.id for r in selection.all] == [
        "qwen3-0.6b/perf",
        "qwen3-0.6b/vllm/disagg/deploy_hopper_2gpu",
        "qwen3-0.6b/vllm/disagg/wide_ep/h200",
    ]
    perf = selection.all[0]
    assert perf.deployment is None and perf.perf_job() is not None
    named = selection.all[1]
    assert named.deploy.path.name == "deploy_hopper_2gpu.yaml" and named.model_dir.name == "qwen3-0.6b"


def test_catalogue_discovery_is_unchanged():
    selection = make_selection(REPO / "recipes")
    plain = [r for r in selection.all if r.kustomize_build is None]
    assert plain and all(len(r.id.split("/")) == 3 and r.manifest == r.path / "deploy.yaml" for r in plain)
    # the kustomize variants beside them (`<mode>-<variant>/`): a kustomization and no deployment of their own
    overlays = [r for r in selection.all if r.kustomize_build is not None]
    assert all(
        len(r.id.split("/")) == 3
        and (r.path / "kustomization.yaml").is_file()
        and not (r.path / "deploy.yaml").exists()
        for r in overlays
    ), [r.id for r in overlays]


def test_builtin_matrix_agrees_with_the_catalogue_matrix_and_names_its_wheels():
    builtin = builtin_matrix()
    ours = parse_versions(load_yaml_file(REPO / "recipes" / VERSIONS_FILE))
    for name, row in ours.releases.items():
        assert builtin.release(name).backends == row.backends, name
    text = yaml.safe_load(builtin.path.read_text())["releases"]
    assert {"1.3.0", "1.3.1", "1.5.1", "0.7.0"} <= set(builtin.releases)
    assert all(r["wheel"].startswith("ai_dynamo-") and len(r["sha256"]) == 64 for r in text.values())


def test_cli_header_states_the_convention(capsys):
    assert main(["check", "--recipes-dir", str(FOREIGN)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"recipe-harness: recipes tree {FOREIGN}: foreign tree")
    assert sum("convention checks did not apply" in line for line in out) == 1


def test_severity_floor_leaves_warnings_out(capsys):
    assert main(["check", "--recipes-dir", str(FOREIGN)]) == 0
    assert "warning:" in capsys.readouterr().out
    assert main(["check", "--recipes-dir", str(FOREIGN), "--severity-floor", "error"]) == 0
    out = capsys.readouterr().out
    assert "warning:" not in out and "severity floor: error" in out and "below it not reported" in out


def test_ignore_file_ignores_what_it_names_and_the_header_lists_it(tmp_path, capsys):
    tree = shutil.copytree(DEEP / "defective" / "recipes", tmp_path / "recipes")
    assert main(["check", "--recipes-dir", str(tree)]) == 1
    capsys.readouterr()
    (tree / ".recipe-harness.yaml").write_text(
        "ignore:\n"
        "  - checks: [no-privileged]\n"
        "    recipes: ['*/wide_ep/*']\n"
        "    reason: GPUDirect node setup, reviewed\n"
    )
    assert main(["check", "--recipes-dir", str(tree)]) == 0
    out = capsys.readouterr().out
    assert (
        ".recipe-harness.yaml:2: no-privileged ignored in recipes */wide_ep/* (GPUDirect node setup, reviewed)" in out
    )
    assert "1 finding(s) ignored" in out and "[no-privileged]" not in out


def test_ignore_by_path_glob(tmp_path):
    tree = shutil.copytree(DEEP / "defective" / "recipes", tmp_path / "recipes")
    (tree / ".recipe-harness.yaml").write_text(
        "ignore:\n  - checks: ['no-*']\n    paths: ['*/wide_ep/h200/deploy.yaml']\n"
    )
    selection = make_selection(tree)
    gate = make_gate(selection)
    report = run_static(selection, context_for(selection), gate=gate)
    assert report.errors == 0 and gate.ignores.used[0] == 1


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("ignore:\n  - checks: [no-such-check]\n", 2, "matches no check id"),
        ("ignore:\n  - checks: [no-privileged]\n    path: ['x']\n", 2, "unknown key"),
        ("ignore: [no-privileged]\n", 1, "is a mapping"),
        ("ignore:\n  - paths: ['x']\n", 2, "`checks`"),
    ],
)
def test_a_malformed_ignore_file_is_a_usage_error_with_its_line(tmp_path, capsys, text, line, words):
    tree = shutil.copytree(FOREIGN, tmp_path / "recipes")
    (tree / ".recipe-harness.yaml").write_text(text)
    assert main(["check", "--recipes-dir", str(tree)]) == 2
    err = capsys.readouterr().err
    assert f".recipe-harness.yaml:{line}:" in err and words in err, err


pytest_plugins = ["pytester"]


def test_pytest_header_gate_and_ignores(pytester: pytest.Pytester):
    tree = shutil.copytree(DEEP / "defective" / "recipes", pytester.path / "recipes")
    res = pytester.runpytest_subprocess("-m", "static", "--recipes-dir", str(tree), "-p", "no:cacheprovider")
    text = res.stdout.str()
    assert res.ret == 1 and f"recipe-harness: recipes tree {tree}: foreign tree" in text
    assert "wide_ep/h200/deploy.yaml" in text and "[no-privileged]" in text and "1 failed" in text, text
    assert "layout-required-files" not in text.split("recipe-harness: foreign tree:")[0]
    (tree / ".recipe-harness.yaml").write_text("ignore:\n  - checks: [no-privileged]\n    recipes: ['*/h200']\n")
    res = pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), "-p", "no:cacheprovider", "--severity-floor", "error"
    )
    text = res.stdout.str()
    assert res.ret == 0, text
    assert "severity floor: error" in text and "no-privileged ignored in recipes */h200" in text
    assert "1 finding(s) ignored" in text
    res = pytester.runpytest_subprocess(
        "-m", "static", "--recipes-dir", str(tree), "-p", "no:cacheprovider", "--convention", "catalogue"
    )
    assert res.ret == 1 and "catalogue convention: --convention catalogue" in res.stdout.str()
