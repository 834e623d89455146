"""Per-run reports in reports/runs/<run-id>/: summary.json (schema-validated), summary.md (a GitHub step summary) and a
self-contained report.html with one trend plot per recipe and metric.

Everything is rebuilt from the history (reports/history/<env>/<recipe-id>.jsonl) or from other
runs' summary.json files, so `recipe-harness report` can redo it at any time.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.results.baselines import (
    DEFAULT_POLICY,
    HISTORY_ROOT,
    SEVERITY,
    VERDICTS,
    BaselineError,
    HistoryEntry,
    Policy,
    RecipeVerdict,
    atomic_write_text,
    confirm_regressions,
    iter_history,
    read_history,
    repo_relative,
    schema_problems,
    utc_now,
)
from harness.results.rehearsals import Rehearsal, load_rehearsals, rehearsals_html, rehearsals_markdown

SUMMARY_JSON, SUMMARY_MD, REPORT_HTML = "summary.json", "summary.md", "report.html"
VERDICT_COLOURS = {
    "pass": "#2e7d32",
    "warn": "#ef6c00",
    "fail": "#c62828",
    "invalid": "#757575",
    "no-baseline": "#1565c0",
}

# (environment, recipe id) -> that recipe's history, oldest first
Histories = dict[tuple[str, str], list[HistoryEntry]]


@dataclass
class RunSummary:
    """One run (or an aggregate of several): every recipe's verdict."""

    run_id: str
    environment: str
    started_at: str
    finished_at: str
    recipes: list[RecipeVerdict] = field(default_factory=list)
    policy: dict | None = None
    rehearsals: list[Rehearsal] = field(default_factory=list)

    @property
    def experiments(self) -> list[str]:
        """The experiments this run was (e.g. `--sim-slowdown 1.15`): its failures are the point of it."""
        return sorted({r.experiment for r in self.rehearsals if r.experiment})

    @property
    def gate(self) -> str | None:
        """The verdict that gates (steps and same-run comparisons), when the run rehearsed anything."""
        if not self.rehearsals:
            return None
        return max((r.gate for r in self.rehearsals), key=["pass", "warn", "fail"].index)

    @property
    def verdict(self) -> str:
        return max((r.verdict for r in self.recipes), key=SEVERITY.__getitem__, default="no-baseline")

    @property
    def counts(self) -> dict[str, int]:
        found = [r.verdict for r in self.recipes]
        return {v: found.count(v) for v in VERDICTS if v in found}

    def confirmed_regressions(self) -> list[RecipeVerdict]:
        return [r for r in self.recipes if r.regression == "confirmed"]

    def to_dict(self) -> dict:
        out = {
            "schemaVersion": 1,
            "runId": self.run_id,
            "environment": self.environment,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "verdict": self.verdict,
            "counts": self.counts,
            "recipes": [r.to_dict() for r in self.recipes],
        }
        if self.policy:
            out["policy"] = self.policy
        if self.rehearsals:
            out["gate"] = self.gate
            out["experiments"] = self.experiments
            out["rehearsals"] = [r.to_dict() for r in self.rehearsals]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        return cls(
            d["runId"],
            d["environment"],
            d["startedAt"],
            d["finishedAt"],
            [RecipeVerdict.from_dict(r) for r in d["recipes"]],
            d.get("policy"),
            [Rehearsal.from_dict(r) for r in d.get("rehearsals") or []],
        )


def _common_environment(envs: Iterable[str]) -> str:
    found = set(envs)
    return found.pop() if len(found) == 1 else ("mixed" if found else "sim")


# --- building a summary -----------------------------------------------------------------


def load_histories(root: Path = HISTORY_ROOT, env: str | None = None) -> Histories:
    """Every history file under root; BaselineError (path:line) on a malformed line."""
    return {(e, recipe): read_history(path) for e, recipe, path in iter_history(root, env)}


def latest_run_id(histories: Histories) -> str | None:
    """The run that finished last (ties: the one appended last, since every file is in append order)."""
    entries = [(e.finished_at, i, e.run_id) for h in histories.values() for i, e in enumerate(h)]
    return max(entries)[2] if entries else None


def summary_from_history(
    histories: Histories, run_id: str | None = None, *, nightly: bool = False, policy: Policy | None = None
) -> RunSummary:
    """The summary of one run (default: the latest) from the history files. With `nightly`, every metric
    that failed is marked `suspect`, or `confirmed` after consecutive failing runs (confirm_regressions)."""
    run_id = run_id or latest_run_id(histories)
    if run_id is None:
        raise BaselineError("the history is empty: nothing to report")
    picked: list[HistoryEntry] = []
    for key in sorted(histories):
        upto = []
        for entry in histories[key]:
            upto.append(entry)
            if entry.run_id == run_id:
                entry = copy.deepcopy(entry)  # marking must not leak into the histories the caller holds
                if nightly:
                    mark_regressions(entry.result, upto, policy)
                picked.append(entry)
                break
    if not picked:
        raise BaselineError(f"run {run_id!r} is not in the history")
    return RunSummary(
        run_id,
        _common_environment(e.result.environment for e in picked),
        min(e.started_at for e in picked),
        max(e.finished_at for e in picked),
        [e.result for e in picked],
        next((e.policy for e in picked if e.policy), None),
    )


def mark_regressions(result: RecipeVerdict, history: list[HistoryEntry], policy: Policy | None = None) -> None:
    """Set each metric's nightly regression status from the recipe's history up to and including this run."""
    found = confirm_regressions(history, policy or DEFAULT_POLICY)
    for key, metric in result.metrics.items():
        metric.regression = found[key].status if key in found and metric.verdict == "fail" else None


def load_summary(path: Path) -> RunSummary:
    """A summary.json, validated; BaselineError names the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read a summary: {exc}") from None
    problems = schema_problems(SUMMARY_JSON, data)
    if problems:
        raise BaselineError(f"{path}: not a valid summary (schemas/summary.json): " + "; ".join(problems[:5]))
    return RunSummary.from_dict(data)


def merge_summaries(summaries: list[RunSummary], run_id: str | None = None) -> RunSummary:
    """Several runs' summaries as one (the nightly: one run per GPU job). A recipe reported twice in one
    environment keeps its latest result."""
    if not summaries:
        raise BaselineError("no summary.json to aggregate")
    latest: dict[tuple[str, str], tuple[str, RecipeVerdict]] = {}
    for s in sorted(summaries, key=lambda s: s.finished_at):
        for r in s.recipes:
            latest[(r.environment, r.recipe)] = (s.finished_at, r)
    recipes = [r for _, r in (latest[k] for k in sorted(latest))]
    return RunSummary(
        run_id or f"aggregate-{utc_now().replace(':', '').replace('-', '')}",
        _common_environment(r.environment for r in recipes),
        min(s.started_at for s in summaries),
        max(s.finished_at for s in summaries),
        recipes,
        next((s.policy for s in summaries if s.policy), None),
    )


# --- rendering --------------------------------------------------------------------------


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if signed:
        return f"{value:+.1f}"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 100 else f"{value:.2f}" if magnitude >= 1 else f"{value:.3g}"


def _verdict_words(verdict: str, regression: str | None) -> str:
    return f"{verdict} ({regression} regression)" if regression else verdict


def _rows(summary: RunSummary) -> Iterable[tuple[RecipeVerdict, list[str]]]:
    """The table both formats share: recipe, metric, value, baseline, delta %, tolerance %, verdict."""
    for r in summary.recipes:
        if not r.metrics:
            yield r, [r.recipe, "(none)", "n/a", "n/a", "n/a", "n/a", r.verdict]
        for m in r.metrics.values():
            value = f"{_num(m.value)} {m.unit}".strip() if m.value is not None else "n/a"
            tolerance = "n/a" if m.tolerance_pct is None else f"{m.tolerance_pct:.1f}"
            yield (
                r,
                [
                    r.recipe,
                    m.key,
                    value,
                    _num(m.baseline),
                    _num(m.delta_pct, True),
                    tolerance,
                    _verdict_words(m.verdict, m.regression),
                ],
            )


HEADER = ["recipe", "metric", "value", "baseline", "delta %", "tolerance %", "verdict"]


def _tally(summary: RunSummary) -> str:
    return ", ".join(f"{n} {v}" for v, n in summary.counts.items()) or "no recipes"


def render_markdown(summary: RunSummary) -> str:
    """A GitHub step summary: headline, the table, then what to look at (plain words, no emoji)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        f"## Recipe benchmarks: {summary.verdict}",
        "",
        f"Run `{summary.run_id}` ({summary.environment}), {summary.started_at} to {summary.finished_at}: "
        f"{len(summary.recipes)} recipe(s), {_tally(summary)}.",
        "",
    ]
    lines += rehearsals_markdown(summary.rehearsals, summary.gate, summary.experiments, cell)
    confirmed = summary.confirmed_regressions()
    if confirmed:
        lines += [f"Confirmed regression (failed in consecutive runs): {', '.join(r.recipe for r in confirmed)}.", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for _, row in _rows(summary)]
    attention = [r for r in summary.recipes if r.verdict != "pass" or r.baseline_update]
    if attention:
        lines += ["", "### Details", ""]
        for r in attention:
            lines.append(f"- `{r.recipe}` ({r.environment}): **{r.verdict}**: {cell(r.reason)}")
            lines += [
                f"  - {m.verdict}: {cell(m.reason)}"
                for m in r.metrics.values()
                if m.verdict in ("warn", "fail", "invalid")
            ]
            lines += [f"  - invalid run {i.index}: {cell(i.reason)}" for i in r.invalid_runs]
            if r.baseline_update:
                lines.append("  - baseline update:")
                lines += ["    ```", *("    " + x for x in r.baseline_update.splitlines()), "    ```"]
    if summary.policy:
        lines += [
            "",
            "Policy of the stored-baseline comparison: tolerance = max(floor, k x CV), warn beyond a fraction of it.",
            "",
            "| setting | value |",
            "|---|---:|",
        ]
        lines += [f"| {cell(k)} | {cell(v)} |" for k, v in _policy_rows(summary.policy)]
    return "\n".join(lines) + "\n"


def _policy_rows(policy: dict) -> list[tuple[str, str]]:
    rows = [("k (x CV)", f"{policy['k']:g}")]
    rows += [(f"floor: {k}", f"{v:g}%") for k, v in policy["floorsPct"].items()]
    rows.append(("warn fraction", f"{policy['warnFraction']:g}"))
    if "confirmAfter" in policy:
        rows.append(("confirm after (nightly runs)", str(policy["confirmAfter"])))
    return rows


@dataclass(frozen=True)
class TrendPoint:
    """One run on a trend plot (hashable, so identical plots are drawn once per process)."""

    label: str
    value: float | None
    verdict: str
    baseline: float | None
    tolerance_pct: float | None
    current: bool


def trend_points(key: str, history: list[HistoryEntry], current_run: str | None = None) -> tuple[TrendPoint, ...]:
    """One point per measured run; experiments (--sim-slowdown) are left out, except the run being reported."""
    return tuple(
        TrendPoint(
            e.finished_at[5:16].replace("T", " "),
            m.value,
            m.verdict,
            m.baseline,
            m.tolerance_pct,
            e.run_id == current_run,
        )
        for e in history
        if (m := e.result.metrics.get(key)) is not None and (not e.experiment or e.run_id == current_run)
    )


def trend_plot(recipe: str, key: str, history: list[HistoryEntry], current_run: str | None = None) -> bytes:
    """PNG: the metric's median per run, the baseline median and its tolerance band, points coloured by verdict
    (the key is in the HTML), the current run circled."""
    m = next((e.result.metrics[key] for e in history if key in e.result.metrics), None)
    title = f"{key} ({m.direction if m else 'higher'} is better)"  # the recipe heads the HTML section
    return _draw(title, m.unit if m else "", trend_points(key, history, current_run))


@lru_cache(maxsize=256)
def _draw(title: str, unit: str, points: tuple[TrendPoint, ...]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 2.5), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Each run's baseline and band span its own slot [i - 0.5, i + 0.5]: drawn for a single run too
    # (a step line through one x draws nothing), and a run without a baseline leaves a gap.
    for i, p in enumerate(points):
        if p.baseline is None:
            continue
        tol = (p.tolerance_pct or 0) / 100
        ax.fill_between(
            [i - 0.5, i + 0.5], p.baseline * (1 - tol), p.baseline * (1 + tol), color="#90a4ae", alpha=0.3, linewidth=0
        )
        ax.hlines(p.baseline, i - 0.5, i + 0.5, color="#455a64", linewidth=1.2)
    for verdict in VERDICTS:
        group = [(i, p.value) for i, p in enumerate(points) if p.verdict == verdict and p.value is not None]
        if group:
            ax.scatter(*zip(*group), s=22, color=VERDICT_COLOURS[verdict], zorder=3)
    now = [(i, p.value) for i, p in enumerate(points) if p.current and p.value is not None]
    if now:
        ax.scatter(*zip(*now), s=90, facecolors="none", edgecolors="black", zorder=4)
    ax.set_title(title, fontsize=8)
    ax.set_ylabel(unit, fontsize=8)
    if points:
        ticks = list(range(0, len(points), max(1, len(points) // 6)))
        ax.set_xticks(ticks, [points[i].label for i in ticks], fontsize=6)
    ax.tick_params(axis="y", labelsize=7)
    fig.subplots_adjust(left=0.15, right=0.98, top=0.9, bottom=0.12)  # fixed: tight_layout triples the cost
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#212121}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}
.v-pass{color:#2e7d32}.v-warn{color:#ef6c00}.v-fail{color:#c62828;font-weight:bold}.v-invalid{color:#757575}.v-no-baseline{color:#1565c0}
.plots{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figcaption{font-size:11px;color:#555;max-width:384px}
pre{background:#f5f5f5;padding:6px;font-size:12px}
"""


def render_html(summary: RunSummary, histories: Histories | None = None) -> str:
    """One HTML file, no external resources: the table, then per recipe its reason and one trend plot per metric."""
    e = html.escape
    histories = histories or {}
    try:
        import matplotlib  # noqa: F401 - optional: the `report` extra

        can_plot = True
    except ImportError:
        can_plot = False
    out = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>Recipe benchmarks {e(summary.run_id)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Recipe benchmarks: <span class='v-{summary.verdict}'>{e(summary.verdict)}</span></h1>",
        f"<p>Run <code>{e(summary.run_id)}</code> ({e(summary.environment)}), {e(summary.started_at)} to "
        f"{e(summary.finished_at)}: {len(summary.recipes)} recipe(s), {e(_tally(summary))}.</p>",
    ]
    out += rehearsals_html(summary.rehearsals, summary.gate, summary.experiments)
    if summary.policy:
        out.append("<p>Policy of the stored-baseline comparison:</p><table>")
        out += [f"<tr><td>{e(k)}</td><td class='n'>{e(v)}</td></tr>" for k, v in _policy_rows(summary.policy)]
        out.append("</table>")
    numeric = {2, 3, 4, 5}
    out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
    for _, row in _rows(summary):
        verdict_cls = row[-1].split(" ")[0]
        cells = [f"<td class='n'>{e(c)}</td>" if i in numeric else f"<td>{e(c)}</td>" for i, c in enumerate(row[:-1])]
        out.append("<tr>" + "".join(cells) + f"<td class='v-{e(verdict_cls)}'>{e(row[-1])}</td></tr>")
    out.append("</table>")
    if can_plot:
        key = ", ".join(f"<span style='color:{c}'>&#9679; {v}</span>" for v, c in VERDICT_COLOURS.items())
        out.append(
            f"<p>Trend plots: the median of each run ({key}; this run circled), the baseline median (line) "
            "and its tolerance band (grey).</p>"
        )
    else:
        out.append("<p>matplotlib is not installed (pip install -e '.[report]'): no trend plots.</p>")
    for r in summary.recipes:
        out.append(
            f"<h2 id='{e(r.recipe)}'>{e(r.recipe)} <small>({e(r.environment)})</small>: "
            f"<span class='v-{r.verdict}'>{e(r.verdict)}</span></h2><p>{e(r.reason)}</p>"
        )
        if r.invalid_runs:
            out.append(
                "<ul>" + "".join(f"<li>invalid run {i.index}: {e(i.reason)}</li>" for i in r.invalid_runs) + "</ul>"
            )
        if r.baseline_ref:
            ref = r.baseline_ref
            out.append(
                f"<p>Baseline <code>{e(repo_relative(ref['path']))}</code> from {e(str(ref.get('date')))}, commit "
                f"<code>{e(str(ref.get('gitSha') or '?')[:12])}</code>.</p>"
            )
        if r.baseline_update:
            out.append(f"<pre>{e(r.baseline_update)}</pre>")
        if not can_plot:
            continue
        history = histories.get((r.environment, r.recipe)) or [
            HistoryEntry(summary.run_id, summary.started_at, summary.finished_at, None, r)
        ]
        out.append("<div class='plots'>")
        for key, m in r.metrics.items():
            png = base64.b64encode(trend_plot(r.recipe, key, history, summary.run_id)).decode()
            out.append(
                f"<figure><img alt='{e(r.recipe)} {e(key)} trend' src='data:image/png;base64,{png}'>"
                f"<figcaption>{e(m.reason)}</figcaption></figure>"
            )
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(summary: RunSummary, out_dir: Path, histories: Histories | None = None) -> list[Path]:
    """summary.json (validated first: a report the nightly cannot read is a bug), summary.md, report.html."""
    data = summary.to_dict()
    problems = schema_problems(SUMMARY_JSON, data)
    if problems:
        raise BaselineError(f"summary of run {summary.run_id} would not validate: " + "; ".join(problems[:5]))
    out_dir = Path(out_dir)
    files = {
        SUMMARY_JSON: json.dumps(data, indent=2) + "\n",
        SUMMARY_MD: render_markdown(summary),
        REPORT_HTML: render_html(summary, histories),
    }
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
    return [out_dir / name for name in files]


def write_run_report(
    run_dir: Path,
    history_root: Path = HISTORY_ROOT,
    *,
    run_id: str | None = None,
    env: str | None = None,
    nightly: bool = False,
) -> list[Path]:
    """What a session calls when it ends: the run's three files from the history (run id = the folder name)."""
    histories = load_histories(history_root, env)
    summary = summary_from_history(histories, run_id or Path(run_dir).name, nightly=nightly)
    summary.rehearsals = [r for r in load_rehearsals(run_dir) if env is None or r.environment == env]
    return write_report(summary, run_dir, histories)
