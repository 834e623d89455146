"""The same-run comparison (harness/results/paired.py) and the reference it is made against
(harness/run/sim/paired.py): what fails a rehearsal on timing, and what never does."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.recipe.discovery import discover, select
from harness.results.paired import (
    PAIRED_METRICS,
    PairedComparison,
    PairedPolicy,
    RequestRecord,
    Round,
    block_log_ratios,
    judge,
    judge_metric,
    read_records,
)
from harness.run.sim.paired import _with_option, reference_for

from .conftest import paired_rounds as rounds
from .conftest import paired_side as side

SIM_RECIPES = Path(__file__).parent / "fixtures" / "sim" / "recipes"
POLICY = PairedPolicy()


def by_metric(verdicts):
    return {m.metric: m for m in verdicts}


def test_no_change_passes_and_a_ten_percent_slowdown_crosses_on_the_metrics_it_moves():
    same = by_metric(judge(rounds(1.0), POLICY))
    assert {m.verdict for m in same.values()} == {"pass"}
    assert 0.97 < same["inter_token_latency"].ratio < 1.03
    slow = by_metric(judge(rounds(1.10, seed=2), POLICY))
    assert slow["inter_token_latency"].verdict == "crossed"
    assert slow["inter_token_latency"].low > 1.05 and 1.07 < slow["inter_token_latency"].ratio < 1.13
    assert slow["request_latency"].verdict == "crossed"
    assert slow["time_to_first_token"].verdict == "pass"  # TTFT did not move
    assert "inter_token_latency median" in slow["inter_token_latency"].reason
    assert "slower by more than the 5% margin" in slow["inter_token_latency"].reason


def test_outside_load_that_hits_both_sides_at_once_does_not_look_like_a_regression():
    """A burst doubles every latency for a third of the run, on both stacks (they run at the same time)."""
    burst = lambda t: 2.0 if 5 <= t < 12 else 1.0  # noqa: E731
    verdicts = by_metric(judge(rounds(1.0, seed=3, load=burst), POLICY))
    assert verdicts["inter_token_latency"].verdict == "pass", verdicts["inter_token_latency"].reason
    # while a stored baseline from a quiet machine would see the burst: the median of the candidate moved
    quiet = by_metric(
        judge([Round(rounds(1.0, seed=3, load=burst)[0].candidate, rounds(1.0, seed=4)[0].reference)], POLICY)
    )
    assert quiet["inter_token_latency"].ratio > 1.1


def test_a_slowdown_inside_the_margin_never_fails_and_a_noisy_estimate_is_inconclusive():
    small = by_metric(judge(rounds(1.02, seed=5), POLICY))
    assert small["inter_token_latency"].verdict == "pass"
    rng = random.Random(6)
    noisy = [Round(side(rng, 150, 6.0, 1.07, noise=0.6), side(rng, 150, 6.0, 1.0, noise=0.6))]
    verdict = judge_metric(noisy, "inter_token_latency", POLICY)
    assert verdict.verdict in ("inconclusive", "pass")
    assert verdict.high - verdict.low > 0.1  # the interval carries the noise


def test_too_few_requests_is_invalid_not_a_pass():
    verdict = judge_metric(rounds(1.0, n=10), "inter_token_latency", POLICY)
    assert verdict.verdict == "invalid" and "time blocks" in verdict.reason


def test_the_same_measurements_always_give_the_same_verdict():
    data = rounds(1.06, seed=7)
    first = [m.to_dict() for m in judge(data, POLICY)]
    assert first == [m.to_dict() for m in judge(data, POLICY)]


def test_blocks_pair_only_the_time_both_runs_were_live():
    rng = random.Random(8)
    cand = side(rng, 150, 6.0)
    late = tuple(RequestRecord(r.start_ns + int(15e9), r.metrics) for r in side(rng, 150, 6.0))
    assert len(block_log_ratios(Round(cand, late), "inter_token_latency", 8)) <= 8
    assert block_log_ratios(Round(cand, ()), "inter_token_latency", 8) == []


def test_only_a_crossing_confirmed_on_fresh_stacks_fails():
    crossed = judge(rounds(1.2, seed=9), POLICY)
    same = judge(rounds(1.0, seed=10), POLICY)
    once = PairedComparison("the same recipe at normal speed", crossed, same)
    assert once.verdict == "warn" and once.regressions == []
    assert "not a confirmed regression" in once.message()
    twice = PairedComparison("the same recipe at normal speed", crossed, judge(rounds(1.2, seed=11), POLICY))
    assert twice.verdict == "fail"
    assert [m.metric for m in twice.regressions] == ["inter_token_latency", "request_latency"]
    message = twice.message()
    assert message.startswith("same-run comparison against the same recipe at normal speed: fail")
    assert "confirmation: inter_token_latency median" in message
    assert PairedComparison("x", same).verdict == "pass"
    assert json.loads(json.dumps(twice.to_dict()))["verdict"] == "fail"


def test_read_records_takes_successful_requests_from_the_aiperf_export(tmp_path):
    rows = [
        {"metadata": {"request_start_ns": 1}, "metrics": {"inter_token_latency": {"value": 5.5, "unit": "ms"}}},
        {"metadata": {"request_start_ns": 2}, "metrics": {}, "error": {"code": 500}},
        {
            "metadata": {"request_start_ns": 3},
            "metrics": {"request_latency": {"value": 400}, "time_to_first_token": 50},
        },
    ]
    (tmp_path / "profile_export.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    records = read_records(tmp_path)
    assert [r.start_ns for r in records] == [1, 3]
    assert records[1].metrics == {"request_latency": 400.0, "time_to_first_token": 50.0}
    assert read_records(tmp_path / "missing") == []
    assert set(PAIRED_METRICS) == {"inter_token_latency", "request_latency", "time_to_first_token"}


def test_each_round_gets_its_own_seed():
    assert _with_option(["profile", "--random-seed", "42", "--concurrency", "4"], "--random-seed", 1001) == [
        "profile",
        "--concurrency",
        "4",
        "--random-seed",
        "1001",
    ]


# ---- the reference -----------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository holding the sim fixture tree under recipes/, committed on main."""
    repo = tmp_path / "repo"
    shutil.copytree(SIM_RECIPES, repo / "recipes")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def recipe_in(repo: Path, recipe_id: str = "tiny/vllm/agg-two-workers"):
    return select(discover(repo / "recipes"), [recipe_id])[0]


def test_an_experiment_is_timed_against_the_same_recipe_at_normal_speed(repo):
    reference, why = reference_for(recipe_in(repo), slowdown=1.15, speedup_ratio=1 / 1.15, ref=None)
    assert reference is not None and why == ""
    assert reference.arm.recipe.id == "tiny/vllm/agg-two-workers" and reference.arm.speedup_ratio == pytest.approx(1.0)
    assert reference.label == "the same recipe at normal speed, run beside it (--sim-slowdown 1.15)"


def test_without_a_question_there_is_no_timing_verdict(repo):
    reference, why = reference_for(recipe_in(repo), slowdown=1.0, speedup_ratio=1.0, ref=None)
    assert reference is None and why.startswith("no same-run reference (no --sim-slowdown")


def test_a_changed_recipe_is_timed_against_its_version_at_the_ref(repo):
    git(repo, "checkout", "-qb", "change")
    deploy = repo / "recipes/tiny/vllm/agg-two-workers/deploy.yaml"
    deploy.write_text(deploy.read_text() + "\n# a change\n")
    reference, why = reference_for(recipe_in(repo), slowdown=1.0, speedup_ratio=1.0, ref="main")
    try:
        assert reference is not None, why
        old = reference.arm.recipe
        assert old.id == "tiny/vllm/agg-two-workers" and old.path != recipe_in(repo).path
        assert "# a change" not in (old.path / "deploy.yaml").read_text()
        assert reference.label == "tiny/vllm/agg-two-workers as of main, run beside it"
    finally:
        reference.cleanup() if reference else None
    assert not old.path.exists()  # the extracted tree is removed


def test_an_unchanged_or_new_recipe_needs_no_reference_and_a_bad_ref_says_so(repo):
    reference, why = reference_for(recipe_in(repo), slowdown=1.0, speedup_ratio=1.0, ref="main")
    assert (
        reference is None and why == "no same-run reference needed: tiny/vllm/agg-two-workers is unchanged since main"
    )
    shutil.copytree(repo / "recipes/tiny/vllm/agg-two-workers", repo / "recipes/tiny/vllm/agg-new")
    reference, why = reference_for(recipe_in(repo, "tiny/vllm/agg-new"), slowdown=1.0, speedup_ratio=1.0, ref="main")
    assert reference is None and "does not exist at main (a new recipe)" in why
    reference, why = reference_for(recipe_in(repo), slowdown=1.0, speedup_ratio=1.0, ref="no-such-branch")
    assert reference is None and "no such branch, tag or commit" in why


def test_classify_warns_only_on_a_slowdown_the_interval_can_tell_from_noise():
    from harness.results.paired import classify

    assert classify(1.12, 1.06, 1.18, "lower", 5.0)[0] == "crossed"
    assert classify(1.07, 1.02, 1.12, "lower", 5.0)[0] == "inconclusive"  # slower for sure, maybe past 5%
    verdict, why = classify(1.08, 0.95, 1.22, "lower", 5.0)  # a noisy estimate: no change is inside
    assert verdict == "pass" and "includes no change" in why
    assert classify(0.90, 0.85, 0.95, "lower", 5.0)[0] == "pass"  # faster
    assert classify(1.03, 1.01, 1.05, "lower", 5.0)[0] == "pass"  # within the margin
