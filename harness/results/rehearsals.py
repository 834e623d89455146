"""What a rehearsal did besides the stored-baseline trend, from each recipe's result.json: the gate (steps and
the same-run timing comparison), the Dynamo that ran, the profile, an experiment, links to the run's files;
and how summary.md and report.html show it (harness/results/report.py puts it in the run report)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULT_JSON = "result.json"  # what a stage writes per recipe: reports/runs/<run-id>/<env>/<recipe-id>/result.json


@dataclass
class Rehearsal:
    """What one recipe's run did besides the stored-baseline trend (from its result.json): the Dynamo that
    ran, the profile, every step's outcome (smoke checks included), the same-run timing verdict, links."""

    recipe: str
    environment: str
    experiment: str | None
    dynamo: str
    profile: str
    steps: dict[str, str]  # step -> passed | failed | skipped
    comparison: dict | None  # harness.results.paired.PairedComparison.to_dict(), or {"verdict": "none", ...}
    links: dict[str, str]  # name -> path relative to the run folder

    @property
    def gate(self) -> str:
        """fail when a step failed (the same-run comparison among them), warn on a timing warning, else pass."""
        if "failed" in self.steps.values():
            return "fail"
        if (self.comparison or {}).get("verdict") in ("warn", "invalid"):
            return "warn"
        return "pass"

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "environment": self.environment,
            "experiment": self.experiment,
            "dynamo": self.dynamo,
            "profile": self.profile,
            "steps": self.steps,
            "comparison": self.comparison,
            "links": self.links,
            "gate": self.gate,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Rehearsal:
        return cls(
            d["recipe"],
            d["environment"],
            d.get("experiment"),
            d.get("dynamo", ""),
            d.get("profile", ""),
            dict(d.get("steps") or {}),
            d.get("comparison"),
            dict(d.get("links") or {}),
        )


def load_rehearsals(run_dir: Path) -> list[Rehearsal]:
    """Every <env>/<recipe-id>/result.json under a run folder; an unreadable one is left out."""
    out = []
    for path in sorted(Path(run_dir).glob(f"*/**/{RESULT_JSON}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "recipe" not in data:
            continue
        here = path.parent
        links = {
            name: here.joinpath(rel).relative_to(run_dir).as_posix()
            for name, rel in (
                ("result", RESULT_JSON),
                ("plan", "plan.json"),
                ("logs", "logs"),
                ("aiperf exports", "aiperf"),
                ("same-run comparison", "compare"),
            )
            if here.joinpath(rel).exists()
        }
        dynamo = data.get("dynamo") or {}
        out.append(
            Rehearsal(
                data["recipe"],
                str(data.get("stage") or path.relative_to(run_dir).parts[0]),
                data.get("experiment"),
                f"Dynamo {dynamo.get('release')} ({dynamo.get('source')})" if dynamo else "",
                str(data.get("profile") or ""),
                {k: str(v.get("outcome")) for k, v in (data.get("steps") or {}).items() if isinstance(v, dict)},
                data.get("comparison"),
                links,
            )
        )
    return out


def _comparison_rows(comparison: dict) -> list[list[str]]:
    """phase, metric, ratio, interval, verdict for each metric of a same-run comparison."""
    out = []
    for phase in ("first", "confirmation"):
        for m in comparison.get(phase) or []:
            interval = "n/a" if m.get("low") is None else f"[{m['low']:.3f}, {m['high']:.3f}]"
            ratio = "n/a" if m.get("ratio") is None else f"{m['ratio']:.3f}"
            out.append([phase, m["metric"], ratio, interval, m["verdict"]])
    return out


def _step_class(outcome: str) -> str:
    return {"passed": "pass", "failed": "fail", "skipped": "invalid"}.get(outcome, "invalid")


def rehearsals_markdown(
    rehearsals: list[Rehearsal], gate: str | None, experiments: list[str], cell: Callable[[str], str]
) -> list[str]:
    """The rehearsal part of summary.md: the experiment note, the gate, one row per recipe, its comparison."""
    if not rehearsals:
        return []
    lines = []
    if experiments:
        lines += [
            f"**Experiment run** ({', '.join(experiments)}): a planted slowdown the gate is expected to "
            "catch; its failures are the experiment's result, not a defect of the recipes.",
            "",
        ]
    lines += [
        f"Gate (steps and same-run timing comparisons): **{gate}**. The stored-baseline table below is a "
        "trend: the baselines were measured on another machine at another load.",
        "",
        "| recipe | Dynamo | profile | steps | same-run comparison | files |",
        "|---|---|---|---|---|---|",
    ]
    for r in rehearsals:
        steps = ", ".join(f"{name} {outcome}" for name, outcome in r.steps.items())
        comp = r.comparison or {}
        compared = comp.get("verdict", "n/a")
        if compared == "none":
            compared = f"none: {comp.get('reason', '')}"
        elif comp.get("reference"):
            compared = f"{compared} against {comp['reference']}"
        files = ", ".join(f"[{name}]({path})" for name, path in r.links.items())
        name = r.recipe + (f" (experiment: {r.experiment})" if r.experiment else "")
        lines.append(
            f"| {cell(name)} | {cell(r.dynamo)} | {cell(r.profile)} | {cell(steps)} | {cell(compared)} | {files} |"
        )
    for r in rehearsals:
        rows = _comparison_rows(r.comparison or {})
        if rows:
            lines += ["", f"Same-run comparison of `{r.recipe}` (candidate / reference; lower is better):", ""]
            lines += ["| phase | metric | ratio | interval | verdict |", "|---|---|---:|---|---|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def rehearsals_html(rehearsals: list[Rehearsal], gate: str | None, experiments: list[str]) -> list[str]:
    """The rehearsal part of report.html (same content as the markdown)."""
    e = html.escape
    out: list[str] = []
    if experiments:
        out.append(
            f"<p><strong>Experiment run</strong> ({e(', '.join(experiments))}): a planted slowdown the gate "
            "is expected to catch; its failures are the experiment's result, not a defect of the recipes.</p>"
        )
    if rehearsals:
        out.append(
            f"<p>Gate (steps and same-run timing comparisons): <span class='v-{gate}'>{e(str(gate))}"
            "</span>. The stored-baseline table is a trend: the baselines were measured on another machine.</p>"
        )
        out.append(
            "<table><tr><th>recipe</th><th>Dynamo</th><th>profile</th><th>steps</th><th>same-run comparison</th>"
            "<th>files</th></tr>"
        )
        for r in rehearsals:
            steps = "<br>".join(f"{e(n)}: <span class='v-{_step_class(o)}'>{e(o)}</span>" for n, o in r.steps.items())
            comp = r.comparison or {}
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _comparison_rows(comp)
            )
            compared = e(str(comp.get("verdict", "n/a"))) + (
                f" against {e(comp['reference'])}" if comp.get("reference") else f": {e(comp.get('reason', ''))}"
            )
            if rows:
                compared += (
                    "<table><tr><th>phase</th><th>metric</th><th>ratio</th><th>interval</th><th>verdict</th></tr>"
                    + rows
                    + "</table>"
                )
            files = "<br>".join(f"<a href='{e(path)}'>{e(name)}</a>" for name, path in r.links.items())
            name = e(r.recipe) + (f"<br><em>experiment: {e(r.experiment)}</em>" if r.experiment else "")
            out.append(
                f"<tr><td>{name}</td><td>{e(r.dynamo)}</td><td>{e(r.profile)}</td><td>{steps}</td>"
                f"<td>{compared}</td><td>{files}</td></tr>"
            )
        out.append("</table>")
    return out
