"""The sim timing gate's power and false-alarm rate, measured the way the gate runs, under load.

One trial = the gate's own same-run comparison (harness/run/sim/paired.py: both arms on fresh
local stacks, simultaneous AIPerf runs, a crossing measured again on fresh stacks) of one recipe
against itself at normal speed, with the candidate's mockers slowed by F (`--sim-slowdown F`).
F = 1 is "no change": any `fail` is a false failure. F > 1 is a planted regression: `fail` is a
detection. Trials are appended to a JSONL file as they finish, so a long collection can stop and
resume; `--report` prints the figures from what was collected.

    # 10 catalogue-wide runs with no change, two busy processes on both cores:
    python benchmarks/sim_gate.py --runs 10 --slowdown 1.0 --load 2 --out gate.jsonl
    # a planted 10% slowdown on one recipe, 10 runs:
    python benchmarks/sim_gate.py --runs 10 --slowdown 1.10 --recipe qwen3-32b/vllm/agg-round-robin \
        --load 2 --out gate.jsonl
    python benchmarks/sim_gate.py --report gate.jsonl

The smallest slowdown flagged 95% of the time is the lowest planted F with >= 95% detection among
the slowdowns collected.

"Before": the gate this replaced compared a rehearsal's benchmark with the stored baseline
(reports/baselines/sim/<recipe>.json, another machine, another load) under the sim policy's
tolerances. `--report` scores the same trials that way too, from the candidate's own AIPerf export
of each trial's first round, so both gates are judged on identical measurements.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.analysis.benchmark import find_invocation  # noqa: E402
from harness.recipe.discovery import discover, select  # noqa: E402
from harness.results.paired import PAIRED_METRICS, PairedPolicy, classify  # noqa: E402
from harness.run.perf import Scale  # noqa: E402
from harness.run.sim import runtime  # noqa: E402
from harness.run.sim.paired import Arm, PairedBench, PairedError, Reference  # noqa: E402
from harness.run.sim.plan import frontend_cli_from  # noqa: E402
from harness.run.sim.profiles import get_profile  # noqa: E402


def _busy() -> None:
    while True:
        pass


def trial(recipe, slowdown: float, out_dir: Path, policy: PairedPolicy) -> dict:
    """One gate decision on `recipe` slowed by `slowdown` against itself at normal speed."""
    profile = get_profile("ci")
    rt = runtime.resolve(recipe.release)
    cli = frontend_cli_from(runtime.frontend_cli_data(rt.python))
    label = "the same recipe at normal speed, run beside it"
    bench = PairedBench(
        candidate=Arm("candidate", recipe, profile.speedup_ratio / slowdown, rt.python, cli),
        reference=Reference(Arm("reference", recipe, profile.speedup_ratio, rt.python, cli), label),
        invocation=find_invocation(recipe),
        scale=Scale(
            profile.max_concurrency, profile.request_count, profile.max_input_tokens, profile.max_output_tokens
        ),
        model_cache=None,
        out_dir=out_dir,
        max_data_parallel=profile.max_data_parallel,
        startup_timeout_s=profile.startup_timeout_s,
        perf_timeout_s=profile.perf_timeout_s,
        policy=policy,
    )
    t0 = time.monotonic()
    try:
        result = bench.compare()
    except PairedError as exc:
        return {"error": str(exc), "seconds": round(time.monotonic() - t0, 1)}
    return {**result.to_dict(), "seconds": round(time.monotonic() - t0, 1)}


def collect(args: argparse.Namespace) -> None:
    recipes = discover(REPO / "recipes")
    chosen = select(recipes, args.recipe) if args.recipe else recipes
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for p in busy:
        p.start()
    out = Path(args.out)
    work = Path(args.work_dir)
    policy = PairedPolicy()
    try:
        for run in range(1, args.runs + 1):
            for recipe in chosen:
                load_before = os.getloadavg()[0]
                row = trial(recipe, args.slowdown, work / f"run-{run}" / recipe.id.replace("/", "_"), policy)
                row.update(
                    recipe=recipe.id,
                    slowdown=args.slowdown,
                    run=run,
                    busyProcesses=args.load,
                    load1Before=round(load_before, 2),
                    load1After=round(os.getloadavg()[0], 2),
                    at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"run {run} {recipe.id} F={args.slowdown:g}: {row.get('verdict', 'error')} "
                    f"{_itl(row)} ({row['seconds']} s, load {row['load1After']})",
                    flush=True,
                )
    finally:
        for p in busy:
            p.terminate()


def _itl(row: dict) -> str:
    for m in row.get("first", []):
        if m["metric"] == "inter_token_latency" and m["ratio"]:
            return f"ITL ratio {m['ratio']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
    return row.get("error", "")[:120]


def old_gate(row: dict, work_dirs: dict[float | None, Path]) -> str | None:
    """The stored-baseline gate's verdict (pass/warn/fail/...) on the trial's first candidate benchmark, read
    from the work dir of the row's slowdown (`F=DIR`), else from the one given for every slowdown (`DIR`)."""
    from harness.results import baselines
    from harness.run.perf import parse_profile_export
    from harness.run.sim.compare import sim_policy

    work = work_dirs.get(row["slowdown"], work_dirs.get(None))
    if work is None:
        return None
    export = work / f"run-{row['run']}" / row["recipe"].replace("/", "_") / "first" / "candidate" / "round-1"
    if not export.is_dir():
        return None
    result = parse_profile_export(export)
    if not result.valid:
        return "invalid"
    path = baselines.baseline_path("sim", row["recipe"], REPO / "reports" / "baselines")
    baseline = baselines.load_baseline(path) if path.exists() else None
    policy = sim_policy()
    verdict = baselines.compare(
        baselines.aggregate([result], policy), baseline, policy, recipe=row["recipe"], environment="sim"
    )
    return verdict.verdict


def rejudged(row: dict, margin_pct: float) -> dict:
    """The row with its verdicts from the stored estimates under the current rules (harness.results.paired
    classify): trials collected under an earlier rule are reported as the gate would decide them now."""
    if "verdict" not in row:
        return row
    for phase in ("first", "confirmation"):
        for m in row.get(phase) or []:
            if m.get("ratio") is not None:
                m["verdict"] = classify(m["ratio"], m["low"], m["high"], m["direction"], margin_pct)[0]
    first = {m["metric"] for m in row["first"] if m["verdict"] == "crossed"}
    if any(m["verdict"] == "crossed" and m["metric"] in first for m in row.get("confirmation") or []):
        row["verdict"] = "fail"
    elif any(m["verdict"] in ("crossed", "inconclusive") for m in row["first"] + (row.get("confirmation") or [])):
        row["verdict"] = "warn"
    else:
        row["verdict"] = "pass"
    return row


def report(paths: list[str], margin_pct: float, work_dirs: dict[float | None, Path] | None = None) -> None:
    rows = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    rows = [rejudged(r, margin_pct) for r in rows]
    by_f: dict[float, list[dict]] = {}
    for r in rows:
        by_f.setdefault(r["slowdown"], []).append(r)
    print(f"{len(rows)} trials from {', '.join(paths)}")
    loads = [r["load1After"] for r in rows]
    if loads:
        busy = sorted({r["busyProcesses"] for r in rows})
        print(
            f"load: busy processes {busy}, 1-min load average after each trial "
            f"min {min(loads):.1f} median {statistics.median(loads):.1f} max {max(loads):.1f} (2 cores)"
        )
    print("\nslowdown  trials  errors  fail  warn  pass  | ITL ratio median  interval half-width median  s/trial")
    for f in sorted(by_f):
        rs = by_f[f]
        ok = [r for r in rs if "verdict" in r]
        count = {v: sum(1 for r in ok if r["verdict"] == v) for v in ("fail", "warn", "pass", "invalid")}
        itl = [m for r in ok for m in r["first"] if m["metric"] == "inter_token_latency" and m["ratio"]]
        half = [(m["high"] - m["low"]) / 2 for m in itl]
        print(
            f"{f:8.2f}  {len(rs):6d}  {len(rs) - len(ok):6d}  {count['fail']:4d}  {count['warn']:4d}  "
            f"{count['pass'] + count['invalid']:4d}  | "
            f"{statistics.median(m['ratio'] for m in itl) if itl else 0:16.3f}  "
            f"{statistics.median(half) if half else 0:26.3f}  {statistics.median(r['seconds'] for r in rs):7.0f}"
        )
    aa = [r for r in by_f.get(1.0, []) if "verdict" in r]
    if aa:
        false_fail = sum(1 for r in aa if r["verdict"] == "fail")
        recipes = {r["recipe"] for r in aa}
        complete = sum(1 for run in {r["run"] for r in aa} if {r["recipe"] for r in aa if r["run"] == run} == recipes)
        print(
            f"\nno change: {false_fail} false failures in {len(aa)} recipe comparisons "
            f"({complete} complete runs over all {len(recipes)} recipes); "
            f"{sum(1 for r in aa if r['verdict'] == 'warn')} warnings"
        )
        per_metric = {m: [] for m in PAIRED_METRICS}
        for r in aa:
            for m in r["first"]:
                if m["ratio"]:
                    per_metric[m["metric"]].append(m["ratio"])
        for m, ratios in per_metric.items():
            if ratios:
                print(
                    f"  {m}: A/A ratio min {min(ratios):.3f} median {statistics.median(ratios):.3f} "
                    f"max {max(ratios):.3f}"
                )
    for f in sorted(x for x in by_f if x > 1.0):
        ok = [r for r in by_f[f] if "verdict" in r]
        hits = sum(1 for r in ok if r["verdict"] == "fail")
        named = sorted(
            {m["metric"] for r in ok if r["verdict"] == "fail" for m in r["confirmation"] if m["verdict"] == "crossed"}
        )
        print(f"planted --sim-slowdown {f:g}: flagged in {hits} of {len(ok)} runs (metrics: {', '.join(named) or '-'})")
    if work_dirs:
        print("\nbefore (the stored-baseline gate on the same measurements; fail = the run fails):")
        for f in sorted(by_f):
            verdicts = [v for v in (old_gate(r, work_dirs) for r in by_f[f] if "verdict" in r) if v]
            fails = sum(1 for v in verdicts if v == "fail")
            what = "false failures" if f == 1.0 else "flagged"
            print(f"  F={f:g}: {what} {fails} of {len(verdicts)} ({', '.join(sorted(set(verdicts)))})")
    measured = [f for f in sorted(by_f) if f > 1.0 and _rate(by_f[f]) >= 0.95]
    print(
        "smallest planted slowdown flagged >= 95% (measured): "
        + (f"{measured[0]:g} (of {', '.join(f'{f:g}' for f in sorted(by_f) if f > 1.0)})" if measured else "none tried")
    )


def _work_dir(spec: str) -> tuple[float | None, Path]:
    factor, sep, path = spec.partition("=")
    return (float(factor), Path(path)) if sep else (None, Path(spec))


def _rate(rows: list[dict]) -> float:
    ok = [r for r in rows if "verdict" in r]
    return sum(1 for r in ok if r["verdict"] == "fail") / len(ok) if ok else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="catalogue-wide runs (or runs of the selection)")
    parser.add_argument("--slowdown", type=float, default=1.0, help="the candidate's --sim-slowdown (1: no change)")
    parser.add_argument("--recipe", action="append", default=[], help="recipe selector (default: the catalogue)")
    parser.add_argument("--load", type=int, default=2, help="busy processes kept running for the whole collection")
    parser.add_argument("--out", default="sim_gate.jsonl", help="JSONL file the trials are appended to")
    parser.add_argument("--work-dir", default="/tmp/sim-gate", help="where the trials' logs and exports go")
    parser.add_argument("--report", nargs="*", metavar="JSONL", help="print the figures from collected trials")
    parser.add_argument("--margin-pct", type=float, default=PairedPolicy().margin_pct)
    parser.add_argument(
        "--score-before",
        nargs="*",
        metavar="[F=]WORK_DIR",
        help="with --report: also score the stored-baseline gate on the trials' exports: the work dir of the "
        "collection at slowdown F (F=DIR), or of every slowdown (DIR)",
    )
    args = parser.parse_args()
    if args.report is not None:
        report(args.report or [args.out], args.margin_pct, dict(_work_dir(d) for d in args.score_before or []))
        return 0
    collect(args)
    report([args.out], args.margin_pct, {args.slowdown: Path(args.work_dir)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
