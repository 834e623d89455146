"""Recipe discovery and the --recipe selector."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.recipe.discovery import SelectionError, discover, select

IDS = [
    "qwen3-235b-a22b-fp8/trtllm/agg",
    "qwen3-235b-a22b-fp8/trtllm/disagg",
    "qwen3-32b/vllm/agg-round-robin",
    "qwen3-32b/vllm/disagg-kv-router",
    "qwen3-32b-fp8/trtllm/agg",
    "qwen3-32b-fp8/trtllm/disagg",
    "deepseek-r1/sglang/disagg-8gpu",
    "deepseek-r1/trtllm/disagg-wide-ep",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rid in IDS:
        (tmp_path / rid).mkdir(parents=True)
    (tmp_path / "qwen3-32b" / "model-cache").mkdir()
    (tmp_path / "qwen3-32b" / "vllm" / "agg-round-robin" / "gaie").mkdir()
    return tmp_path


def ids(tree: Path, *selectors: str) -> list[str]:
    return [r.id for r in select(discover(tree), list(selectors))]


def test_discovers_three_level_dirs_only(tree):
    assert sorted(r.id for r in discover(tree)) == sorted(IDS)


def test_model_prefix_selects_every_mode_of_that_model(tree):
    assert ids(tree, "qwen3-235b") == ["qwen3-235b-a22b-fp8/trtllm/agg", "qwen3-235b-a22b-fp8/trtllm/disagg"]


def test_exact_model_name_wins_over_prefix(tree):
    assert ids(tree, "qwen3-32b") == ["qwen3-32b/vllm/agg-round-robin", "qwen3-32b/vllm/disagg-kv-router"]


def test_exact_id_glob_and_segment_prefix(tree):
    assert ids(tree, "qwen3-32b-fp8/trtllm/agg") == ["qwen3-32b-fp8/trtllm/agg"]
    assert ids(tree, "*/trtllm/disagg*") == [
        "deepseek-r1/trtllm/disagg-wide-ep",
        "qwen3-235b-a22b-fp8/trtllm/disagg",
        "qwen3-32b-fp8/trtllm/disagg",
    ]
    assert ids(tree, "deepseek-r1/sglang") == ["deepseek-r1/sglang/disagg-8gpu"]


def test_prefix_respects_word_boundary(tree):
    with pytest.raises(SelectionError):
        ids(tree, "qwen3-3")


def test_unknown_selector_lists_near_matches(tree):
    with pytest.raises(SelectionError) as err:
        ids(tree, "qwen3-23b")
    assert "qwen3-235b-a22b-fp8" in str(err.value) or "qwen3-32b" in str(err.value)


def test_missing_tree_discovers_nothing(tmp_path):
    assert discover(tmp_path / "nope") == []
