"""How well the baseline verdicts catch a slowdown on the sim stack, and how rarely they cry wolf.

A trial deploys the recipe once at normal speed (its baseline) and once per injected slowdown
(the mocker runs F times slower, as `--sim-slowdown F`), and measures each deployment with
--repeats AIPerf runs on the live stack. Every level is judged against the trial's own baseline
with harness.results.baselines.compare; "flagged" means the recipe verdict is `fail`. Targets (issue 7):
a 10% slowdown flagged in >= 95% of trials, no change flagged in <= 5%.

    python benchmarks/regression_detection.py   # 3 trials x (1 warmup + 3) runs: ~25 min on 2 cores
    python benchmarks/regression_detection.py --trials 20 --save runs.json
    python benchmarks/regression_detection.py --from-runs runs.json --k 2.5 --floor-latency 8   # rescore, no runs

Runs are saved as they finish (--save), so a long collection can be stopped, and rescored under
another policy without running anything again (--from-runs, --grid).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.results import baselines as bl  # noqa: E402
from harness.results.metrics import GATED_METRICS, MetricStat, PerfResult  # noqa: E402

BASELINE = "baseline"
THROUGHPUT = "output_token_throughput.avg"


# --- collecting runs (the only part that needs the sim stack) -------------------------------


def load_recipe(recipes_dir: Path | None, recipe_id: str):
    from harness.run.static import make_selection

    chosen = [r for r in make_selection(recipes_dir, [recipe_id]).chosen if r.id == recipe_id]
    if not chosen:
        raise SystemExit(f"regression_detection: no recipe {recipe_id!r}")
    return chosen[0]


def measure(recipe, profile, slowdown: float, repeats: int, warmup: int, say) -> list[PerfResult]:
    """One deployment at `slowdown`, `warmup` discarded AIPerf runs, `repeats` measured ones, then teardown.
    The warmup matters: the first run against a fresh stack is slower (TTFT p50 +37%, throughput -5% in the
    median over 40 deployments), and one such run in three inflates the CV, hence the tolerance, threefold."""
    from harness.analysis.benchmark import find_invocation
    from harness.run.perf import Scale, parse_profile_export, run_aiperf, scaled_args
    from harness.run.sim.local import LocalDeployment, tail
    from harness.run.sim.modeldir import ensure_model_dir
    from harness.run.sim.plan import build_plan
    from harness.run.sim.stage import portable_args

    plan = build_plan(
        recipe, speedup_ratio=profile.speedup_ratio / slowdown, max_data_parallel=profile.max_data_parallel
    )
    model_dir = ensure_model_dir(plan.model_id)
    invocation = find_invocation(recipe)
    scale = Scale(profile.max_concurrency, profile.request_count, profile.max_input_tokens, profile.max_output_tokens)
    results = []
    with tempfile.TemporaryDirectory(prefix="regression-detection-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        with LocalDeployment(plan, model_dir, work / "logs", profile.startup_timeout_s) as dep:
            say(f"deployed in {time.monotonic() - t0:.1f} s")
            for i in range(-warmup, repeats):
                artifacts = work / f"aiperf-{i + warmup}"
                args = scaled_args(
                    invocation,
                    model=plan.served_model_name,
                    url=dep.base_url,
                    tokenizer=model_dir,
                    artifact_dir=artifacts,
                    scale=scale,
                )
                log = work / f"aiperf-{i + warmup}.log"
                run = run_aiperf(args.args, log, profile.perf_timeout_s, cwd=work)
                result = parse_profile_export(
                    artifacts,
                    args.expected_requests,
                    args.output_tokens,
                    aiperf_args=portable_args(args.args, dep.base_url, model_dir, artifacts),
                )
                if run.timed_out or (run.returncode and result.valid):
                    result.invalid_reason = f"AIPerf {'timed out' if run.timed_out else f'exited {run.returncode}'}"
                problem = bl.run_problem(result)
                value = result.value(THROUGHPUT)
                say(
                    f"{'warmup' if i < 0 else f'run {i + 1}/{repeats}'}: {run.wall_s:.1f} s, "
                    + (f"invalid: {problem}\n{tail(log)}" if problem else f"{value:.1f} output tokens/s")
                )
                result.artifact_dir = ""
                if i >= 0:
                    results.append(result)
    return results


def collect(args, saved: dict) -> dict:
    from harness.run.sim.profiles import get_profile

    recipe = load_recipe(args.recipes_dir, args.recipe)
    profile = get_profile(args.profile)
    levels = [BASELINE, *args.slowdowns]
    started = time.monotonic()
    for t in range(len(saved["trials"]), args.trials):
        trial: dict = {}
        # rotate the order so slow drifts of the machine do not always hit the same level
        order = levels[t % len(levels) :] + levels[: t % len(levels)]
        for level in order:
            slowdown = 1.0 if level == BASELINE else float(level)

            def say(msg: str, level=level, t=t) -> None:
                print(
                    f"[{time.monotonic() - started:6.0f} s] trial {t + 1}/{args.trials} {level:>8}: {msg}", flush=True
                )

            trial[level] = [to_dict(r) for r in measure(recipe, profile, slowdown, args.repeats, args.warmup_runs, say)]
        saved["trials"].append(trial)
        if args.save:
            bl.atomic_write_text(args.save, json.dumps(saved) + "\n")
    return saved


def to_dict(result: PerfResult) -> dict:
    return dataclasses.asdict(result)


def from_dict(data: dict) -> PerfResult:
    metrics = {k: MetricStat(**m) for k, m in data["metrics"].items()}
    return PerfResult(**{**data, "metrics": metrics})


# --- scoring (pure: works on saved runs) ------------------------------------------------------


@dataclasses.dataclass
class LevelScore:
    level: str
    trials: int = 0
    flagged: int = 0
    warned: int = 0
    invalid: int = 0
    throughput_deltas: list[float] = dataclasses.field(default_factory=list)
    failing_metrics: dict[str, int] = dataclasses.field(default_factory=dict)


def judgements(saved: dict, policy: bl.Policy, pairs: bool = False) -> dict[str, list[bl.RecipeVerdict]]:
    """Per slowdown level, the verdicts of its deployments against a baseline deployment: the same trial's
    (one comparison per trial), or with `pairs` every trial's (T x T comparisons of independent deployments:
    a tighter estimate of the rate from the same runs, though the comparisons share deployments)."""
    trials = saved["trials"]
    levels = sorted((k for k in trials[0] if k != BASELINE), key=float) if trials else []
    baselines = []
    for trial in trials:
        stats = bl.aggregate([from_dict(r) for r in trial[BASELINE]], policy)
        ok = not bl.refusal_reason(stats)  # an unusable baseline says nothing about detection
        baselines.append(
            bl.Baseline.from_stats(
                stats, bl.Provenance(profile="x", hardware="x"), recipe=saved["recipe"], environment="sim"
            )
            if ok
            else None
        )
    out: dict[str, list[bl.RecipeVerdict]] = {level: [] for level in levels}
    for j, trial in enumerate(trials):
        for level in levels:
            stats = bl.aggregate([from_dict(r) for r in trial[level]], policy)
            for i, baseline in enumerate(baselines):
                if baseline is not None and (pairs or i == j):
                    out[level].append(bl.compare(stats, baseline, policy))
    return out


def score(saved: dict, policy: bl.Policy, pairs: bool = False) -> list[LevelScore]:
    rows = []
    for level, verdicts in judgements(saved, policy, pairs).items():
        row = LevelScore(level)
        for verdict in verdicts:
            row.trials += 1
            row.flagged += verdict.verdict == "fail"
            row.warned += verdict.verdict == "warn"
            row.invalid += verdict.verdict == "invalid"
            if (m := verdict.metrics.get(THROUGHPUT)) and m.delta_pct is not None:
                row.throughput_deltas.append(m.delta_pct)
            for key, m in verdict.metrics.items():
                if m.verdict == "fail":
                    row.failing_metrics[key] = row.failing_metrics.get(key, 0) + 1
        rows.append(row)
    return rows


def per_metric(saved: dict, policy: bl.Policy) -> str:
    """How often each metric alone fails, per level (all pairs), with its median delta and median CV:
    which metrics carry the detection and which only add false alarms."""
    found = judgements(saved, policy, pairs=True)
    lines = [
        f"{'metric':<28}"
        + "".join(f"{f'{(float(lv) - 1) * 100:.0f}%: fail  delta':>20}" for lv in found)
        + f"{'cv':>7}"
    ]
    for key in GATED_METRICS:
        cells, cvs = "", []
        for verdicts in found.values():
            ms = [v.metrics[key] for v in verdicts if key in v.metrics and v.metrics[key].delta_pct is not None]
            cvs += [m.cv for m in ms if m.cv is not None]
            fails = sum(m.verdict == "fail" for m in ms)
            delta = statistics.median(m.delta_pct for m in ms) if ms else float("nan")
            cells += f"{f'{fails / len(ms) if ms else 0:.0%}':>13} {delta:>+6.1f}%"
        lines.append(f"{key:<28}{cells}{statistics.median(cvs) if cvs else float('nan'):>7.1%}")
    return "\n".join(lines)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion; honest at 0/n and n/n, unlike the normal approximation."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def table(rows: list[LevelScore]) -> str:
    lines = [
        f"{'slowdown':>8}  {'throughput':>10}  {'trials':>6}  {'flagged':>7}  {'fraction':>8}  "
        f"{'95% interval':>12}  {'warn':>4}  {'invalid':>7}  metrics that failed (trials)"
    ]
    for r in rows:
        n = r.trials - r.invalid
        low, high = wilson(r.flagged, n)
        change = f"{statistics.median(r.throughput_deltas):+.1f}%" if r.throughput_deltas else "n/a"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(r.failing_metrics.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(
            f"{(float(r.level) - 1) * 100:>7.0f}%  {change:>10}  {n:>6}  {r.flagged:>7}  "
            f"{r.flagged / n if n else 0:>8.0%}  {f'{low:.0%}-{high:.0%}':>12}  {r.warned:>4}  {r.invalid:>7}  {fails}"
        )
    return "\n".join(lines)


def verdict_on_targets(rows: list[LevelScore]) -> str:
    by_level = {round(float(r.level), 4): r for r in rows}
    out = []
    for level, want, op in ((1.10, 0.95, ">="), (1.0, 0.05, "<=")):
        r = by_level.get(level)
        if r is None or r.trials - r.invalid == 0:
            out.append(f"{(level - 1) * 100:.0f}% slowdown: not measured")
            continue
        n = r.trials - r.invalid
        got = r.flagged / n
        met = got >= want if op == ">=" else got <= want
        out.append(
            f"{(level - 1) * 100:.0f}% slowdown flagged {r.flagged}/{n} = {got:.0%} "
            f"(target {op} {want:.0%}): {'met' if met else 'NOT met'}"
        )
    return "\n".join(out)


def policy_from_args(args) -> bl.Policy:
    policy = bl.load_policy(REPO / "pyproject.toml")
    floors = dict(policy.floors_pct)
    if args.floor_throughput is not None:
        floors["throughput"] = args.floor_throughput
    if args.floor_latency is not None:
        floors["latency"] = args.floor_latency
    return dataclasses.replace(policy, k=args.k if args.k is not None else policy.k, floors_pct=floors)


P99 = ("time_to_first_token.p99", "inter_token_latency.p99", "request_latency.p99")
# (throughput floor, latency floor, floor of the p99 latencies or None for the latency one)
FLOOR_GRID = (
    (3.0, 5.0, None),
    (5.0, 5.0, None),
    (5.0, 5.0, 10.0),
    (5.0, 8.0, None),
    (5.0, 8.0, 15.0),
    (5.0, 10.0, None),
    (8.0, 10.0, None),
)


def grid(saved: dict, base: bl.Policy) -> str:
    """The fraction flagged per level under other policies: what the defaults were chosen from."""
    head = "  ".join(f"{'flag@' + f'{(float(r.level) - 1) * 100:.0f}%':>8}" for r in score(saved, base, True))
    lines = [f"{'k':>4}  {'thr':>4}  {'lat':>4}  {'p99':>4}  {head}"]
    for k in (2.0, 2.5, 3.0, 4.0):
        for thr, lat, p99 in FLOOR_GRID:
            floors = {"throughput": thr, "latency": lat, **({key: p99 for key in P99} if p99 else {})}
            rows = score(saved, dataclasses.replace(base, k=k, floors_pct=floors), True)
            cells = "  ".join(f"{r.flagged / max(1, r.trials - r.invalid):>8.0%}" for r in rows)
            lines.append(f"{k:>4g}  {thr:>3g}%  {lat:>3g}%  {f'{p99:g}%' if p99 else '-':>4}  {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--recipe", default="llama-3-70b/vllm/agg", help="recipe id (default: a one-worker recipe, the quietest)"
    )
    p.add_argument("--recipes-dir", type=Path, default=None)
    p.add_argument("--profile", default="ci", help="sim profile (default: ci, what CI gates with)")
    p.add_argument(
        "--trials", type=int, default=3, help="trials (default 3: about 25 min on 2 cores; 8+ for a usable interval)"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="AIPerf runs per deployment (default 3, like --repeats in CI)"
    )
    p.add_argument("--warmup-runs", type=int, default=1, help="discarded AIPerf runs after each deployment (default 1)")
    p.add_argument("--slowdowns", default="1.0,1.05,1.10,1.20", help="comma-separated --sim-slowdown factors")
    p.add_argument("--save", type=Path, help="write the runs here as they finish (and resume from it)")
    p.add_argument("--from-runs", type=Path, help="score saved runs instead of running anything")
    p.add_argument("--k", type=float, help="policy k (default: pyproject / harness default)")
    p.add_argument("--floor-throughput", type=float, help="policy floor for throughput metrics, percent")
    p.add_argument("--floor-latency", type=float, help="policy floor for latency metrics, percent")
    p.add_argument(
        "--grid", action="store_true", help="also print detection rates per metric and for a grid of policies"
    )
    p.add_argument(
        "--only-trials", metavar="A-B", help="with --from-runs: score trials A to B (1-based), e.g. a quiet stretch"
    )
    args = p.parse_args(argv)
    args.slowdowns = [f"{float(s):.2f}" for s in args.slowdowns.split(",")]
    policy = policy_from_args(args)

    if args.from_runs:
        saved = json.loads(args.from_runs.read_text())
        if args.only_trials:
            first, _, last = args.only_trials.partition("-")
            saved["trials"] = saved["trials"][int(first) - 1 : int(last or first)]
    else:
        saved = {
            "recipe": args.recipe,
            "profile": args.profile,
            "repeats": args.repeats,
            "warmupRuns": args.warmup_runs,
            "trials": [],
        }
        if args.save and args.save.exists():
            saved = json.loads(args.save.read_text())
            print(f"resuming {args.save}: {len(saved['trials'])} trial(s) done")
        saved = collect(args, saved)

    rows = score(saved, policy)
    paired = score(saved, policy, pairs=True)
    print(
        f"\nrecipe {saved['recipe']}, sim profile {saved['profile']}, {len(saved['trials'])} trial(s) x "
        f"{saved['repeats']} AIPerf run(s) per deployment; policy k={policy.k:g}, floors "
        + ", ".join(f"{k} {v:g}%" for k, v in policy.floors_pct.items())
        + "\n"
    )
    print(table(rows))
    print("\n" + verdict_on_targets(rows))
    print(f"\nevery trial's deployments against every trial's baseline ({len(saved['trials'])}^2 comparisons):\n")
    print(table(paired))
    print("\n" + verdict_on_targets(paired))
    if args.grid:
        print("\nper metric (all pairs):\n" + per_metric(saved, policy))
        print("\nfraction flagged under other policies (all pairs):\n" + grid(saved, policy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
