"""Kustomize the way users run it: real `kustomize build` of every overlay, findings at the source line
(base or patch), never on a bare patch, and a broken kustomization as one finding with kustomize's message.

The fixture tree (tests/fixtures/kustomize/overlay-component/) is a foreign tree: a base DynamoGraphDeployment,
a Component whose strategic merge patch alone is no deployment (no image, no GPU), and two overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.recipe import kustomize
from harness.recipe.discovery import RENDERED_NAME
from harness.run.static import context_for, make_selection, run_static

from .test_changes import commit, git

FIXTURES = Path(__file__).parent / "fixtures" / "kustomize"
TREE = FIXTURES / "overlay-component" / "recipes"
AGG = "demo/vllm/agg/kustomize"

RUNNER = kustomize.locate()
needs_kustomize = pytest.mark.skipif(RUNNER is None, reason=kustomize.missing_reason())


def _copy(tmp_path: Path, tree: Path = TREE) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(tree, root)
    return root


def _edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def _check(root: Path):
    selection = make_selection(root)
    return selection, run_static(selection, context_for(selection))


@needs_kustomize
def test_overlays_are_recipes_and_patches_are_not():
    selection, report = _check(TREE)
    ids = sorted(r.id for r in selection.all)
    assert ids == [f"{AGG}/overlays/fast-net", f"{AGG}/overlays/plain"]
    assert all(r.manifest.name == RENDERED_NAME for r in selection.all)
    assert report.findings == [], "\n".join(f.format() for f in report.findings)


@needs_kustomize
def test_rendered_overlay_merges_the_component_patch():
    built = kustomize.build(TREE / AGG / "overlays" / "fast-net")
    assert built.ok, built.error
    dgd = next(d for d in built.documents if d.kind == "DynamoGraphDeployment")
    worker = next(c for c in dgd.data["spec"]["components"] if c["name"] == "Worker")
    main = worker["podTemplate"]["spec"]["containers"][0]
    assert main["image"] == "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1"  # from the base, kept by the merge
    assert {e["name"] for e in main["env"]} == {"HF_HOME", "UCX_TLS"}
    base, patch = TREE / AGG / "base" / "deploy.yaml", TREE / AGG / "components" / "fast-net" / "patch-dgd.yaml"
    # each value is located where it is written: the image in the base, the patch's variable in the patch
    assert main.loc_of("image").file == base
    assert main.loc_of("image").line == _line_of(base, "vllm-runtime:1.6.1", nth=2)
    ucx = next(e for e in main["env"] if e["name"] == "UCX_TLS")
    assert ucx.loc_of("value").file == patch and ucx.loc_of("value").line == _line_of(patch, "rc,cuda_copy,tcp")
    assert "config.kubernetes.io/origin" not in built.text  # the build metadata the harness asked for is removed


def _line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[nth - 1]


@needs_kustomize
def test_a_base_defect_is_reported_once_at_the_base_line_naming_the_overlays(tmp_path):
    root = _copy(tmp_path)
    base = root / AGG / "base" / "deploy.yaml"
    line = _edit(
        base,
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1\n              command: [python3, -m, dynamo.vllm]",
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:latest\n              command: [python3, -m, dynamo.vllm]",
    )
    _, report = _check(root)
    hits = [f for f in report.findings if f.check_id == "image-tag-pinned" or f.check_id == "image-reference-pinned"]
    assert hits, "\n".join(f.format() for f in report.findings)
    assert {(f.file, f.line) for f in hits} == {(str(base), line)}
    assert len([f for f in hits if f.check_id == hits[0].check_id]) == 1  # two overlays, one finding
    assert "overlays/fast-net" in hits[0].message and "overlays/plain" in hits[0].message
    assert not [f for f in report.findings if "components" in f.file]


@needs_kustomize
def test_a_value_a_patch_sets_is_reported_at_the_patch_line(tmp_path):
    root = _copy(tmp_path)
    patch = root / AGG / "components" / "fast-net" / "patch-dgd.yaml"
    line = (
        _edit(
            patch,
            "            - name: main\n",
            "            - name: main\n              image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:latest\n",
        )
        + 1
    )
    _, report = _check(root)
    hits = [f for f in report.findings if f.check_id in ("image-tag-pinned", "image-reference-pinned")]
    assert [(f.file, f.line) for f in hits] == [(str(patch), line)], "\n".join(f.format() for f in report.findings)
    assert "overlays/fast-net" in hits[0].message and "overlays/plain" not in hits[0].message


@needs_kustomize
def test_a_broken_kustomization_is_one_finding_with_kustomizes_message(tmp_path):
    root = _copy(tmp_path)
    kfile = root / AGG / "overlays" / "plain" / "kustomization.yaml"
    kfile.write_text(kfile.read_text() + "  - missing-pvc.yaml\n")
    selection, report = _check(root)
    broken = [f for f in report.findings if f.check_id == "kustomize-build"]
    assert len(broken) == 1, "\n".join(f.format() for f in report.findings)
    assert broken[0].file == str(kfile) and broken[0].severity.value == "error"
    assert "missing-pvc.yaml" in broken[0].message and "no such file or directory" in broken[0].message
    assert f"{AGG}/overlays/plain" not in [r.id for r in selection.all]  # nothing rendered, nothing else judged


def test_without_kustomize_each_root_is_one_warning_and_resources_are_plain_files(tmp_path, monkeypatch):
    """No kustomize anywhere (an empty PATH, a fresh cache, no RECIPE_HARNESS_KUSTOMIZE): a warning per
    overlay, the base's deploy.yaml checked as a plain file, the patch still never."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(kustomize.ENV_BINARY, raising=False)
    assert kustomize.locate() is None
    selection, report = _check(TREE)
    assert [r.manifest for r in selection.all] == [TREE / AGG / "base" / "deploy.yaml"]
    warned = [f for f in report.findings if f.check_id == "kustomize-build"]
    assert sorted(Path(f.file).parent.name for f in warned) == ["fast-net", "plain"]
    assert all(f.severity.value == "warning" for f in warned)
    assert [f for f in report.findings if f.check_id != "kustomize-build"] == []
    monkeypatch.setenv("RECIPE_HARNESS_STRICT", "1")
    selection = make_selection(TREE)
    from harness.run.static import check_options

    strict = run_static(selection, context_for(selection, check_options()))
    assert {f.severity.value for f in strict.findings if f.check_id == "kustomize-build"} == {"error"}


@needs_kustomize
def test_a_component_directory_is_never_built_nor_checked_alone():
    tree = kustomize.scan(TREE)
    component = TREE / AGG / "components" / "fast-net"
    assert component not in tree.roots and (TREE / AGG / "base") not in tree.roots  # the base: through overlays
    assert component / "patch-dgd.yaml" in tree.patches
    assert TREE / AGG / "base" / "deploy.yaml" in tree.resources


@needs_kustomize
@pytest.mark.parametrize(
    "changed, expected",
    [
        ("base/deploy.yaml", ["fast-net", "plain"]),  # the base both overlays build on
        ("components/fast-net/patch-dgd.yaml", ["fast-net"]),  # only the overlay that uses the Component
        ("components/merge-keys/dgd-merge-keys.json", ["fast-net", "plain"]),  # a file a reached kustomization reads
    ],
)
def test_changed_since_selects_the_overlays_that_read_the_changed_file(tmp_path, changed, expected):
    repo = tmp_path / "repo"
    shutil.copytree(TREE, repo / "recipes")
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "tree")
    path = repo / "recipes" / AGG / changed
    path.write_text(path.read_text() + ("\n" if path.suffix == ".json" else "# changed\n"))
    selection = make_selection(repo / "recipes", changed_since="main")
    assert sorted(r.id.rsplit("/", 1)[-1] for r in selection.chosen) == expected


@needs_kustomize
def test_a_documented_placeholder_in_a_base_is_one_warning_through_the_overlays(tmp_path):
    root = _copy(tmp_path)
    base = root / AGG / "base" / "deploy.yaml"
    line = _edit(base, "  name: demo-agg\n", "  name: demo-agg\n  namespace: <your-namespace>\n") + 1
    (root / "demo" / "README.md").write_text("Replace `<your-namespace>` with the namespace you deploy into.\n")
    _, report = _check(root)
    assert [(f.check_id, f.severity.value, f.file, f.line) for f in report.findings] == [
        ("template-placeholders", "warning", str(base), line)
    ], "\n".join(f.format() for f in report.findings)


@needs_kustomize
def test_a_hostile_file_is_not_handed_to_kustomize(tmp_path):
    """kustomize expands YAML aliases without a limit (a billion-laughs resource kept it busy for minutes); the
    harness refuses what its own loader refuses, at once, and says which file and why."""
    base = tmp_path / "base"
    base.mkdir()
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    (base / "bomb.yaml").write_text("\n".join(rows) + "\n")
    (base / "kustomization.yaml").write_text("resources:\n  - bomb.yaml\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources:\n  - ../base\n")
    result = kustomize.build(overlay, RUNNER)
    assert not result.ok
    assert result.error.startswith(f"not built: {base / 'bomb.yaml'}: YAML expands to more than"), result.error
