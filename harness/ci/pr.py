"""Pull-request helpers: kubeconform over the manifests a change touches, and the static
findings as a GitHub step summary.

    python -m harness.ci.pr kubeconform --changed-since BASE   # kubeconform with our schemas
    python -m harness.ci.pr manifests --changed-since BASE     # just the paths, one per line
    python -m harness.ci.pr summary reports/findings.json      # Markdown for $GITHUB_STEP_SUMMARY
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.recipe.changes import ChangeError
from harness.recipe.discovery import SelectionError
from harness.recipe.findings import display_path
from harness.recipe.kubernetes_openapi import KUBERNETES_VERSION
from harness.recipe.model import METADATA_FILE
from harness.recipe.schemas import SCHEMAS_DIR, kubeconform_locations
from harness.run.static import make_selection

MAX_SUMMARY_ROWS = 200  # a step summary is capped at 1 MiB; the annotations and the artifact carry the rest


def changed_manifests(
    recipes_dir: str | None, changed_since: str | None, selectors: list[str] | None = None
) -> list[Path]:
    """Every Kubernetes manifest of the selected recipes (their own, model cache, gaie), once each.

    Raises ChangeError / SelectionError like the rest of the harness."""
    selection = make_selection(recipes_dir, selectors or [], changed_since)
    seen: dict[Path, None] = {}
    for recipe in selection.chosen:
        for loaded in recipe.files():
            if loaded.path.name != METADATA_FILE:
                seen.setdefault(loaded.path, None)
    return list(seen)


def kubeconform_command(binary: str, paths: list[Path], schemas_dir: Path = SCHEMAS_DIR) -> list[str]:
    """The same invocation as the harness's `kubeconform` check, with a human-readable summary."""
    return [
        binary,
        "-strict",
        "-summary",
        "-output",
        "text",
        "-kubernetes-version",
        KUBERNETES_VERSION,
        "-schema-location",
        "default",
        *kubeconform_locations(base=schemas_dir),
        *[str(p) for p in paths],
    ]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def findings_markdown(report: dict[str, Any], title: str = "Static checks") -> str:
    """The JSON of `--findings-json` as a step summary: counts, then one row per finding."""
    recipes = report.get("recipes") or []
    findings = report.get("findings") or []
    summary = report.get("summary") or {}
    errors, warnings = summary.get("errors", 0), summary.get("warnings", 0)
    if not recipes and not findings:
        return f"### {title}\n\nNo recipe is touched by this change.\n"
    verdict = "failed" if errors else "passed"
    lines = [f"### {title} {verdict}: {len(recipes)} recipe(s), {errors} error(s), {warnings} warning(s)", ""]
    if findings:
        lines += ["| where | check | severity | message |", "|---|---|---|---|"]
        for f in findings[:MAX_SUMMARY_ROWS]:
            message = f.get("message", "") + (f" (hint: {f['hint']})" if f.get("hint") else "")
            lines.append(
                f"| `{_cell(f.get('file', '?'))}:{f.get('line', 0)}:{f.get('column', 0)}` "
                f"| {_cell(f.get('check_id', '?'))} | "
                f"{_cell(f.get('severity', '?'))} | {_cell(message)} |"
            )
        if len(findings) > MAX_SUMMARY_ROWS:
            lines.append(f"\n{len(findings) - MAX_SUMMARY_ROWS} more in the findings.json artifact.")
    else:
        lines.append("Recipes checked: " + ", ".join(f"`{r}`" for r in recipes))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.ci.pr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("manifests", "kubeconform"):
        s = sub.add_parser(name)
        s.add_argument("--changed-since", metavar="REF", help="only recipes touched since the merge base with REF")
        s.add_argument("--recipes-dir", metavar="PATH")
        s.add_argument("--recipe", action="append", default=[], metavar="SEL")
    s = sub.add_parser("summary")
    s.add_argument("findings_json", type=Path)
    args = p.parse_args(argv)

    if args.what == "summary":
        try:
            report = json.loads(args.findings_json.read_text())
        except (OSError, ValueError) as exc:
            print(f"### Static checks\n\nNo findings report ({exc}): see the job log.")
            return 0
        print(findings_markdown(report))
        return 0

    try:
        paths = changed_manifests(args.recipes_dir, args.changed_since, args.recipe)
    except (ChangeError, SelectionError) as exc:
        print(f"ci_pr: {exc}", file=sys.stderr)
        return 2
    shown = [display_path(path) for path in paths]
    if args.what == "manifests":
        print("\n".join(shown))
        return 0
    if not paths:
        print("kubeconform: no manifest touched by this change")
        return 0
    binary = shutil.which("kubeconform")
    if binary is None:
        print("ci_pr: kubeconform is not on PATH", file=sys.stderr)
        return 2
    return subprocess.run(kubeconform_command(binary, [Path(s) for s in shown])).returncode


if __name__ == "__main__":
    raise SystemExit(main())
