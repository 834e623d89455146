"""`recipe-harness bump --to R`: the versions row, image tags and recipe.yaml versions as text edits,
idempotence, --dry-run, and the before/after report of the static and conformance tiers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.cli import main as cli
from harness.commands import bump as bump_cmd
from harness.recipe import bump
from harness.recipe.findings import Finding, Severity
from harness.run.conformance import envs
from harness.run.conformance.client import Job, JobOutcome, ParseResult

from .conftest import META_161

# The catalogue before the 1.6.1 bump (v1alpha1, Dynamo 1.4.0): what a bump starts from.
PRE_BUMP = Path(__file__).parent / "fixtures" / "catalogues" / "1.4.0-v1alpha1"

FACTS = bump.ReleaseFacts(
    "1.6.1",
    {"vllm": "0.31.0", "sglang": "0.5.21", "trtllm": "1.3.0rc29"},
    {"vllm": "13.0", "sglang": "13.0", "trtllm": "13.1"},
    "1.6.1",
    ["test"],
)


def test_image_tags_move_and_nothing_else_does():
    text = (
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0\n"
        "# a comment naming nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0 stays for a person to review\n"
        "image: nvcr.io/nvidia/ai-dynamo/sglang-runtime:1.4.0-cuda13\n"
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.01\n"
        "image: docker.io/library/python:1.4.0\n"
    )
    new, edits = bump.retag(text, "1.4.0", "1.6.1", Path("deploy.yaml"))
    assert new.splitlines() == [
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
        text.splitlines()[1],
        "image: nvcr.io/nvidia/ai-dynamo/sglang-runtime:1.6.1-cuda13",
        "image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.01",
        "image: docker.io/library/python:1.4.0",
    ]
    assert [(e.line, e.what) for e in edits] == [
        (1, "image vllm-runtime:1.4.0 -> :1.6.1"),
        (3, "image sglang-runtime:1.4.0 -> :1.6.1"),
    ]
    assert bump.mentions(new, "1.4.0") == [2, 5]  # left for a person: a comment, a non-Dynamo image
    assert (
        bump.replace_scalar('  dynamo: "1.4.0"  # pinned\n', 1, 11, "1.4.0", "1.6.1") == '  dynamo: "1.6.1"  # pinned\n'
    )


def test_the_versions_row_is_added_once_newest_first_with_its_source():
    text = (PRE_BUMP / "versions.yaml").read_text()
    new, changed = bump.upsert_release_row(text, FACTS)
    assert changed
    data = yaml.safe_load(new)
    assert next(iter(data["releases"])) == "1.6.1"
    assert data["releases"]["1.6.1"] == {
        "vllm": "0.31.0",
        "sglang": "0.5.21",
        "trtllm": "1.3.0rc29",
        "cuda": {"vllm": "13.0", "sglang": "13.0", "trtllm": "13.1"},
    }
    assert "wheel METADATA" in new and "artifacts table" in new
    assert all(line in new for line in text.splitlines() if line.startswith("#"))  # comments kept
    assert bump.upsert_release_row(new, FACTS) == (new, False)


def test_release_facts_come_from_the_wheel_and_the_artifacts_table(monkeypatch):
    monkeypatch.setattr(envs, "wheel_metadata", lambda release: META_161)
    facts = bump_cmd.release_facts("1.6.1")
    assert facts.engines == {"vllm": "0.31.0", "sglang": "0.5.21", "trtllm": "1.3.0rc29"}
    assert facts.cuda == {"vllm": "13.0", "sglang": "13.0", "trtllm": "13.1"}
    assert any("release-artifacts" in s for s in facts.sources)
    with pytest.raises(ValueError, match="artifacts.yaml"):
        bump_cmd.release_facts("9.9.9")


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    root = tmp_path / "recipes"
    shutil.copytree(PRE_BUMP, root)
    monkeypatch.setattr(bump_cmd, "release_facts", lambda release: FACTS)
    return root


def test_dry_run_prints_changes_and_writes_nothing(tree, capsys):
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    code = cli(
        ["bump", "--to", "1.6.1", "--recipes-dir", str(tree), "--recipe", "qwen3-32b", "--dry-run", "--no-conformance"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "qwen3-32b/vllm/agg-round-robin: 1.4.0 -> 1.6.1" in out
    assert "changed qwen3-32b/vllm/agg-round-robin/recipe.yaml:24: versions.backend 0.26.0 -> 0.31.0" in out
    assert "+          image: nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1" in out
    assert "+| 1.6.1 | 0.31.0 | 0.5.21 | 1.3.0rc29 |" in out  # the regenerated docs are in the diff
    assert "review (still names 1.4.0): qwen3-32b/README.md:5" in out
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


def test_bump_writes_then_is_idempotent_and_the_docs_stay_in_sync(tree, capsys):
    assert cli(["bump", "--to", "1.6.1", "--recipes-dir", str(tree), "--recipe", "qwen3-32b", "--no-conformance"]) == 0
    capsys.readouterr()
    recipe = yaml.safe_load((tree / "qwen3-32b/vllm/disagg-kv-router/recipe.yaml").read_text())
    assert recipe["versions"] == {"dynamo": "1.6.1", "backend": "0.31.0", "aiperf": "0.13.0"}
    assert "vllm-runtime:1.4.0" not in (tree / "qwen3-32b/vllm/disagg-kv-router/deploy.yaml").read_text()
    assert "vllm-runtime:1.4.0" in (tree / "llama-3-70b/vllm/agg/deploy.yaml").read_text()  # not selected
    snapshot = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert cli(["bump", "--to", "1.6.1", "--recipes-dir", str(tree), "--recipe", "qwen3-32b", "--no-conformance"]) == 0
    out = capsys.readouterr().out
    assert "nothing to change" in out and "(no edits: already on it)" in out
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == snapshot
    assert cli(["docs", "--check", "--recipes-dir", str(tree)]) == 0


def _outcome(recipe, service: str, result: ParseResult, findings=()) -> JobOutcome:
    job = Job(recipe, service, "x", "vllm", "vllm", None, [])
    return JobOutcome(job, result, list(findings))


def test_a_flag_the_new_release_rejects_is_reported_as_removed_or_renamed(tmp_path):
    rb = bump_cmd.RecipeBump("m/vllm/agg", "1.4.0")
    finding = Finding(
        "conformance",
        Severity.ERROR,
        str(tmp_path / "work/m/vllm/agg/deploy.yaml"),
        40,
        15,
        "--is-prefill-worker: unrecognized arguments: --is-prefill-worker",
        "",
    )
    before = [
        _outcome(None, "Prefill", ParseResult(ok=True, env="1.4.0-vllm (vllm 0.26.0)")),
        _outcome(None, "Decode", ParseResult(ok=True, env="1.4.0-vllm")),
    ]
    after = [
        _outcome(
            None,
            "Prefill",
            ParseResult(
                ok=False, kind="argparse", unrecognized=["--is-prefill-worker"], env="1.6.1-vllm (vllm 0.31.0)"
            ),
            [finding],
        ),
        _outcome(
            None,
            "Decode",
            ParseResult(ok=True, env="1.6.1-vllm", warnings=["vllm: --foo is deprecated and will be removed"]),
        ),
    ]
    bump_cmd._compare_conformance(rb, before, after, tmp_path / "work", tmp_path / "recipes", FACTS)
    text = "\n".join(rb.conformance)
    assert rb.broken
    assert "Prefill: now fails (was ok with 1.4.0) with 1.6.1 [1.6.1-vllm (vllm 0.31.0)]" in text
    assert str(tmp_path / "recipes/m/vllm/agg/deploy.yaml") + ":40:15" in text  # the real tree's path, not the copy's
    assert (
        "flag --is-prefill-worker: accepted by Dynamo 1.4.0 (1.4.0-vllm (vllm 0.26.0)), unknown to 1.6.1: "
        "removed or renamed"
    ) in text
    assert "Decode: deprecation warning new in 1.6.1: vllm: --foo is deprecated" in text
