"""Run reports (harness/report.py) and `recipe-harness report`, from a synthetic history of several runs."""

from __future__ import annotations

import json
import re

import pytest

from harness.cli import main
from harness.results import baselines as bl
from harness.results import report
from harness.results.metrics import GATED_METRICS

from .conftest import perf, provenance, runs

RECIPES = ("qwen3-32b/vllm/agg-round-robin", "deepseek-r1/sglang/disagg-8gpu")
# Night by night: a recorded baseline, a quiet run, then the second recipe slows down twice.
NIGHTS = [("n1", 1.0, True), ("n2", 1.0, False), ("n3", 1.25, False), ("n4", 1.25, False)]


def make_history(root, nights=NIGHTS):
    for i, (run_id, slowdown, update) in enumerate(nights):
        for recipe in RECIPES:
            bl.evaluate_recipe(
                runs(slowdown if recipe.startswith("deepseek") else 1.0, start=i),
                recipe=recipe,
                environment="sim",
                provenance=provenance(),
                run_id=run_id,
                started_at=f"2025-11-2{i}T01:00:00Z",
                update=update,
                policy=bl.DEFAULT_POLICY,
                baselines_root=root / "baselines",
                history_root=root / "history",
            )
    return root / "history"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return make_history(tmp_path_factory.mktemp("h"))


def test_summary_of_a_run_from_history(history):
    summary = report.summary_from_history(report.load_histories(history))
    assert summary.run_id == "n4" and summary.environment == "sim"
    assert summary.verdict == "fail" and summary.counts == {"pass": 1, "fail": 1}
    data = summary.to_dict()
    assert bl.schema_problems("summary.json", data) == []
    failing = next(r for r in data["recipes"] if r["verdict"] == "fail")
    metric = next(m for m in failing["metrics"] if m["name"] == "output_token_throughput.avg")
    assert {"value", "baseline", "deltaPct", "tolerancePct", "cv", "verdict", "reason"} <= set(metric)
    assert metric["deltaPct"] == pytest.approx(-20.0, abs=0.1) and metric["tolerancePct"] == 5.0


def test_nightly_marks_suspect_then_confirmed(history):
    histories = report.load_histories(history)
    n3 = report.summary_from_history(histories, "n3", nightly=True)
    n4 = report.summary_from_history(histories, "n4", nightly=True)
    assert [r.recipe for r in n4.recipes] == sorted(RECIPES)
    assert [r.regression for r in n3.recipes] == ["suspect", None] and [r.regression for r in n4.recipes] == [
        "confirmed",
        None,
    ]
    assert [r.recipe for r in n4.confirmed_regressions()] == ["deepseek-r1/sglang/disagg-8gpu"]
    assert report.summary_from_history(histories, "n4").recipes[0].regression is None  # only in nightly mode
    assert report.summary_from_history(histories, "n2").verdict == "pass"


def test_write_report_files(history, tmp_path):
    histories = report.load_histories(history)
    summary = report.summary_from_history(histories, nightly=True)
    paths = report.write_report(summary, tmp_path / "out", histories)
    assert [p.name for p in paths] == ["summary.json", "summary.md", "report.html"]
    assert bl.schema_problems("summary.json", json.loads(paths[0].read_text())) == []

    md = paths[1].read_text()
    assert md.startswith("## Recipe benchmarks: fail\n")
    assert "| recipe | metric | value | baseline | delta % | tolerance % | verdict |" in md
    assert (
        "| deepseek-r1/sglang/disagg-8gpu | output_token_throughput.avg | 440.0 tokens/sec | 550.0 | -20.0 | 5.0 | "
        "fail (confirmed regression) |"
    ) in md
    assert re.search(
        r"\| qwen3-32b/vllm/agg-round-robin \| request_throughput\.avg \| 8\.\d+ requests/sec \| 8\.\d+ \| [+-]\d\.\d \| 5\.0 \| pass \|",
        md,
    )
    table = md[md.index("| recipe | metric |") :].split("\n\n")[0].splitlines()
    assert len(table) == 2 + 2 * len(GATED_METRICS)  # header, rule, a row per recipe metric
    assert "| floor: throughput | 5% |" in md  # the policy as a table, not raw JSON
    assert not re.search(r"[\u2600-\u27ff\U0001f300-\U0001faff]", md)  # plain words, no emoji

    page = paths[2].read_text()
    images = re.findall(r"<img alt='([^']+) trend' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)
    assert len(images) == len(RECIPES) * len(GATED_METRICS)
    assert {name for name, _ in images} == {f"{r} {k}" for r in RECIPES for k in GATED_METRICS}
    assert not re.search(r"<script|<link|src=['\"]http|url\(", page)  # self-contained


def test_trend_plot_is_a_png(history):
    entries = report.load_histories(history)[("sim", RECIPES[1])]
    png = report.trend_plot(RECIPES[1], "time_to_first_token.p99", entries, "n4")
    assert png.startswith(b"\x89PNG") and len(png) > 2000


def test_cli_report_end_to_end(history, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["report", "--history", str(history), "--env", "sim", "--nightly", "--out", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "summary.json", "summary.md"]
    printed = capsys.readouterr().out
    assert "run n4 (sim): fail: 2 recipe(s), 1 pass, 1 fail" in printed
    assert "confirmed regression: deepseek-r1/sglang/disagg-8gpu [sim]: fail" in printed
    assert json.loads((out / "summary.json").read_text())["recipes"][0]["regression"] == "confirmed"
    assert main(["report", "--history", str(tmp_path / "nothing")]) == 2
    assert main(["report", "--history", str(history), "--run-id", "n9", "--out", str(out)]) == 2
    assert "run 'n9' is not in the history" in capsys.readouterr().err


def test_cli_aggregate_merges_runs(history, tmp_path, capsys):
    histories = report.load_histories(history)
    for run_id in ("n2", "n4"):  # the nightly: one run folder per job
        job = report.summary_from_history(
            {k: v for k, v in histories.items() if k[1] == RECIPES[run_id == "n4"]}, run_id
        )
        (tmp_path / "jobs" / run_id).mkdir(parents=True)
        (tmp_path / "jobs" / run_id / "summary.json").write_text(json.dumps(job.to_dict()))
    (tmp_path / "jobs" / "broken").mkdir()
    out = tmp_path / "nightly"
    assert (
        main(
            [
                "report",
                "--aggregate",
                str(tmp_path / "jobs"),
                "--history",
                str(tmp_path / "none"),
                "--run-id",
                "nightly-7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    merged = json.loads((out / "summary.json").read_text())
    assert merged["runId"] == "nightly-7" and [r["recipe"] for r in merged["recipes"]] == sorted(RECIPES)
    assert [r["runs"] for r in merged["recipes"]] == [3, 3] and merged["startedAt"] < merged["finishedAt"]
    assert merged["counts"] == {"pass": 1, "fail": 1}
    assert len(re.findall(r"<img ", (out / "report.html").read_text())) == len(RECIPES) * len(GATED_METRICS)
    (tmp_path / "jobs" / "broken" / "summary.json").write_text('{"runId": 1}')
    assert main(["report", "--aggregate", str(tmp_path / "jobs"), "--out", str(out)]) == 2
    assert "broken/summary.json: not a valid summary" in capsys.readouterr().err


def test_invalid_runs_and_updates_are_explained(tmp_path):
    root = tmp_path
    kw = dict(
        recipe=RECIPES[0],
        environment="sim",
        provenance=provenance(),
        policy=bl.DEFAULT_POLICY,
        baselines_root=root / "b",
        history_root=root / "h",
    )
    bl.evaluate_recipe(runs(), run_id="a", update=True, **kw)
    bl.evaluate_recipe([perf(), perf(completed_requests=7)], run_id="b", **kw)
    histories = report.load_histories(root / "h")
    md_a = report.render_markdown(report.summary_from_history(histories, "a"))
    assert "no-baseline" in md_a and "baseline update:" in md_a and "new baseline from 3 run(s)" in md_a
    md_b = report.render_markdown(report.summary_from_history(histories, "b"))
    assert "**invalid**: 1 of 2 runs invalid: run 2: incomplete: 7 of 50 requests completed" in md_b


def test_a_rehearsal_report_shows_the_gate_the_experiment_and_links_to_its_files(tmp_path):
    """The run folder's result.json files join the summary: the gate verdict (steps and the same-run
    comparison), the experiment marked as one, the Dynamo that ran, smoke results and links."""
    from harness.results.paired import PairedComparison, PairedPolicy, judge

    from .conftest import paired_rounds as rounds

    history = make_history(tmp_path, NIGHTS[:2])
    run_dir = tmp_path / "runs" / "n2"
    recipe_dir = run_dir / "sim" / RECIPES[0]
    (recipe_dir / "logs").mkdir(parents=True)
    (recipe_dir / "aiperf").mkdir()
    (recipe_dir / "plan.json").write_text("{}")
    crossed = judge(rounds(1.2, seed=1), PairedPolicy())
    comparison = PairedComparison("the same recipe at normal speed, run beside it", crossed, crossed).to_dict()
    result = {
        "recipe": RECIPES[0],
        "stage": "sim",
        "profile": "ci",
        "experiment": "--sim-slowdown 1.2",
        "dynamo": {"release": "1.6.1", "source": "/cache/1.6.1-vllm"},
        "steps": {
            "deploy": {"outcome": "passed"},
            "smoke-chat": {"outcome": "passed"},
            "compare": {"outcome": "failed"},
        },
        "comparison": comparison,
    }
    (recipe_dir / "result.json").write_text(json.dumps(result))
    written = report.write_run_report(run_dir, history, run_id="n2")
    data = json.loads((run_dir / "summary.json").read_text())
    assert bl.schema_problems("summary.json", data) == []
    assert data["gate"] == "fail" and data["experiments"] == ["--sim-slowdown 1.2"]
    rehearsal = data["rehearsals"][0]
    assert rehearsal["links"] == {
        "result": f"sim/{RECIPES[0]}/result.json",
        "plan": f"sim/{RECIPES[0]}/plan.json",
        "logs": f"sim/{RECIPES[0]}/logs",
        "aiperf exports": f"sim/{RECIPES[0]}/aiperf",
    }
    assert rehearsal["dynamo"] == "Dynamo 1.6.1 (/cache/1.6.1-vllm)"
    md = (run_dir / "summary.md").read_text()
    assert "**Experiment run** (--sim-slowdown 1.2)" in md
    assert "Gate (steps and same-run timing comparisons): **fail**" in md
    assert f"| {RECIPES[0]} (experiment: --sim-slowdown 1.2) | Dynamo 1.6.1" in md
    assert "smoke-chat passed" in md and f"[plan](sim/{RECIPES[0]}/plan.json)" in md
    assert re.search(r"\| confirmation \| inter_token_latency \| 1\.\d+ \| \[1\.\d+, 1\.\d+\] \| crossed \|", md)
    html = (run_dir / "report.html").read_text()
    assert f"<a href='sim/{RECIPES[0]}/logs'>logs</a>" in html and "<em>experiment: --sim-slowdown 1.2</em>" in html
    assert "Policy:" not in html and "<td>floor: throughput</td>" in html  # a table, not raw JSON
    assert len(written) == 3
