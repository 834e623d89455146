"""Report defects: baseline paths print relative to the repository; a single run still shows its baseline
line and tolerance band; experiment runs stay out of trend plots and regression confirmation."""

from __future__ import annotations

import io

import pytest

from harness.results import baselines
from harness.results.baselines import HistoryEntry, MetricVerdict, RecipeVerdict, repo_relative
from harness.results.report import TrendPoint, _draw, render_html, trend_points

BASELINE_GREY = (0x45, 0x5A, 0x64)


def test_paths_are_relative_to_the_repository_that_holds_them(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)  # a worktree has a .git file: exists() covers both
    baseline = repo / "reports" / "baselines" / "sim" / "m" / "vllm" / "agg.json"
    monkeypatch.chdir(tmp_path)
    assert repo_relative(baseline) == "reports/baselines/sim/m/vllm/agg.json"
    assert repo_relative(tmp_path / "elsewhere" / "x.json") == "elsewhere/x.json"  # no repository: the cwd
    assert repo_relative("reports/x.json") == "reports/x.json"
    assert repo_relative(None) == ""


def _verdict(baseline: float | None, value: float = 10.0, verdict: str = "pass") -> RecipeVerdict:
    m = MetricVerdict(
        "request_throughput.avg", "higher", "req/s", verdict, "reason", value, baseline, 0.0, 8.0, 1.0, 1.0
    )
    return RecipeVerdict("m/vllm/agg", "sim", verdict, "reason", 1, 1, [], {m.key: m}, None)


def _entry(run_id: str, verdict: RecipeVerdict, experiment: str | None = None) -> HistoryEntry:
    return HistoryEntry(
        run_id, "2026-11-30T20:00:00Z", f"2026-11-30T20:0{run_id[-1]}:00Z", None, verdict, None, experiment
    )


def test_the_compare_reason_and_reference_name_the_baseline_relative_to_the_repository(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spread = baselines.MetricSpread("request_throughput.avg", "higher", "req/s", (10.0,))
    stats = baselines.RunStats({spread.key: spread}, 1)
    missing = repo / "reports" / "baselines" / "sim" / "m.json"
    verdict = baselines.compare(stats, None, recipe="m/vllm/agg", environment="sim", baseline_file=missing)
    assert str(repo) not in verdict.reason and "reports/baselines/sim/m.json" in verdict.reason


def _has_colour(png: bytes, rgb: tuple[int, int, int], tol: int = 6) -> bool:
    import matplotlib.image

    img = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255
    diff = abs(img - rgb).max(axis=-1)
    return bool((diff <= tol).any())


def test_a_single_run_shows_the_baseline_line_and_band():
    pytest.importorskip("matplotlib")
    one = (TrendPoint("11-30 20:01", 10.0, "pass", 9.5, 8.0, True),)
    assert _has_colour(_draw("t", "req/s", one), BASELINE_GREY)
    without = (TrendPoint("11-30 20:01", 10.0, "no-baseline", None, None, True),)
    assert not _has_colour(_draw("t2", "req/s", without), BASELINE_GREY)  # the test can fail: no baseline, no line


def test_experiments_are_left_out_of_trends_and_regression_confirmation():
    measured = _entry("run-1", _verdict(10.0))
    slowed = _entry("run-2", _verdict(10.0, 5.0, "fail"), "--sim-slowdown 2")
    slowed_again = _entry("run-3", _verdict(10.0, 5.0, "fail"), "--sim-slowdown 2")
    history = [measured, slowed, slowed_again]
    assert [p.value for p in trend_points("request_throughput.avg", history)] == [10.0]
    # the run being reported keeps its own point, so an experiment's report still shows where it landed
    assert [p.value for p in trend_points("request_throughput.avg", history, "run-3")] == [10.0, 5.0]
    assert baselines.confirm_regressions(history) == {}
    real_fail = _entry("run-4", _verdict(10.0, 5.0, "fail"))
    assert baselines.confirm_regressions([*history, real_fail])["request_throughput.avg"].status == "suspect"
    # the marker round-trips through the validated history line
    assert HistoryEntry.from_dict(slowed.to_dict()).experiment == "--sim-slowdown 2"
    assert not baselines.schema_problems("history-entry.json", slowed.to_dict())


def test_the_html_report_prints_the_baseline_path_relative(tmp_path, monkeypatch):
    from harness.results.report import RunSummary

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    v = _verdict(10.0)
    v.baseline_ref = {
        "path": str(repo / "reports/baselines/sim/m.json"),
        "date": "2026-11-30",
        "gitSha": "abc",
        "runs": 3,
    }
    summary = RunSummary("run-1", "sim", "2026-11-30T20:00:00Z", "2026-11-30T20:01:00Z", [v], None)
    html = render_html(summary, {})
    assert "<code>reports/baselines/sim/m.json</code>" in html and str(repo) not in html
