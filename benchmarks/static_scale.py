"""How the static gate scales: the rows of issue 14's table, for this checkout and (optionally) a baseline ref.

Usage: python benchmarks/static_scale.py [--sizes 200,1000] [--skip-xdist] [--compare-ref bb25097] [--skip-equality]

Synthetic recipes are copies of the shipped catalogue's model directories under new names
(`<model>-s<i>`), so every check does its real work on realistic manifests; `--sizes 1000` writes
1,001 recipes (whole model directories). Every measurement runs in its own process (its peak RSS is
read from wait4), with PYTHONPATH pointing at the code measured: this checkout, or with
`--compare-ref REF` an extract of REF (`git archive`), so before and after come from one run on one
machine. Both read the same trees (copies under a temporary directory, so the findings' paths agree).

Rows: the shipped catalogue through `pytest -m static`; per size, pytest serial and `-n auto`, the
in-process run (`run_static`, what `recipe-harness check` does), schema validation alone in one
process (documents/s per core), peak RSS. Equality: the findings JSON of every run of this checkout
must match its serial pytest run, and the baseline's; at the largest size also per-check items
against per-recipe items, and compiled against pure-Python schema validation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Run in a child with the measured code first on sys.path: the in-process static run, its findings JSON.
IN_PROCESS = """
import json, sys, time
start = time.perf_counter()
from harness.checks import all_checks
from harness.run.static import context_for, make_selection, run_static
selection = make_selection(sys.argv[1])
report = run_static(selection, context_for(selection), all_checks())
elapsed = time.perf_counter() - start
open(sys.argv[2], "w").write(report.to_json())
print(json.dumps({"elapsed": elapsed, "recipes": len(selection.chosen)}))
"""

# Schema validation alone: files parsed first, then one timed pass of `schema-valid` over every recipe.
SCHEMA_ONLY = """
import json, sys, time
from harness.checks.schema import schema_valid
from harness.run.static import context_for, make_selection
selection = make_selection(sys.argv[1])
ctx = context_for(selection)
docs = sum(len(f.documents) for r in selection.chosen for f in r.files() if f.path.name != "recipe.yaml")
start = time.perf_counter()
for r in selection.chosen:
    list(schema_valid(r, ctx))
elapsed = time.perf_counter() - start
print(json.dumps({"elapsed": elapsed, "docs": docs}))
"""


@dataclass
class Run:
    wall: float
    rss_mb: float
    tail: str
    findings: Path | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Code:
    """The code measured: its root (PYTHONPATH and cwd) and a label."""

    label: str
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(self.root), **extra)
        env.pop("PYTEST_ADDOPTS", None)
        return env


def synthesize(dest: Path, count: int) -> int:
    """Write `count` recipes (whole model dirs cloned round-robin); returns how many were written."""
    src = REPO / "recipes"
    models = sorted(p for p in src.iterdir() if p.is_dir())
    per_model = {m: sum(1 for _ in m.glob("*/*/recipe.yaml")) for m in models}
    written, i = 0, 0
    dest.mkdir(parents=True, exist_ok=True)
    for extra in ("versions.yaml",):
        if (src / extra).exists():
            shutil.copy(src / extra, dest / extra)
    while written < count:
        model = models[i % len(models)]
        shutil.copytree(model, dest / f"{model.name}-s{i}")
        written += per_model[model]
        i += 1
    return written


def measure(cmd: list[str], code: Code, env: dict[str, str] | None = None) -> Run:
    """Run one child; wall time, peak RSS of it and the children it reaped (wait4), last output line."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=code.root, env=env or code.env(), stdout=out, stderr=subprocess.STDOUT, text=True
        )
        _, _, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = 0
        out.seek(0)
        lines = out.read().strip().splitlines() or ["?"]
    return Run(wall, usage.ru_maxrss / 1024, lines[-1])


def pytest_run(code: Code, root: Path, findings: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "static",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-p",
        "no:dash",
        "--recipes-dir",
        str(root),
        "--findings-json",
        str(findings),
        *args,
    ]
    run = measure(cmd, code, env)
    run.findings = findings
    return run


def in_process(code: Code, root: Path, findings: Path, env: dict[str, str] | None = None) -> Run:
    run = measure([sys.executable, "-c", IN_PROCESS, str(root), str(findings)], code, env)
    run.findings = findings
    run.extra = json.loads(run.tail)
    return run


def schema_only(code: Code, root: Path) -> Run:
    run = measure([sys.executable, "-c", SCHEMA_ONLY, str(root)], code)
    run.extra = json.loads(run.tail)
    return run


def same_findings(a: Path | None, b: Path | None) -> str:
    if a is None or b is None or not a.is_file() or not b.is_file():
        return "n/a (no findings file)"
    fa, fb = json.loads(a.read_text()), json.loads(b.read_text())
    if fa == fb:
        return f"identical ({len(fa['findings'])} findings)"
    only_a = len([f for f in fa["findings"] if f not in fb["findings"]])
    only_b = len([f for f in fb["findings"] if f not in fa["findings"]])
    return f"DIFFERENT: {only_a} only in {a.name}, {only_b} only in {b.name}"


def row(what: str, *cells: str) -> None:
    print(f"  {what:<58} " + "  ".join(f"{c:>26}" for c in cells), flush=True)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def extract(ref: str, dest: Path) -> Path:
    """The tree of `ref` (git archive: no worktree registered, nothing of the repository touched)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,1000", help="synthetic recipe counts (comma-separated)")
    ap.add_argument("--skip-xdist", action="store_true")
    ap.add_argument("--skip-equality", action="store_true", help="skip the extra equality runs at the largest size")
    ap.add_argument(
        "--compare-ref", metavar="REF", help="also measure this git ref (e.g. bb25097), same trees, same run"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, {load()} (at start)")
    with tempfile.TemporaryDirectory(prefix="static-scale-") as tmp_name:
        tmp = Path(tmp_name)
        codes = [Code(f"now ({head or 'worktree'})", REPO)]
        if args.compare_ref:
            codes.insert(0, Code(f"{args.compare_ref}", extract(args.compare_ref, tmp / "ref")))
        row("what", *[c.label for c in codes])
        catalogue = tmp / "catalogue" / "recipes"
        shutil.copytree(REPO / "recipes", catalogue, symlinks=True)
        runs = [pytest_run(c, catalogue, tmp / f"cat-{i}.json") for i, c in enumerate(codes)]
        row("shipped catalogue, pytest -m static wall", *[f"{r.wall:.2f} s" for r in runs])
        if len(runs) > 1:
            row("  findings JSON vs baseline", "", same_findings(runs[0].findings, runs[-1].findings))
        for size in sizes:
            root = tmp / f"synthetic-{size}" / "recipes"
            n = synthesize(root, size)
            print(f"{n} synthetic recipes ({load()}):", flush=True)
            serial = [pytest_run(c, root, tmp / f"serial-{size}-{i}.json") for i, c in enumerate(codes)]
            row(
                f"{n} recipes, pytest -m static serial",
                *[f"{r.wall:.1f} s ({r.wall / n * 1000:.0f} ms/recipe)" for r in serial],
            )
            row("  peak RSS", *[f"{r.rss_mb:.0f} MB" for r in serial])
            row("  result", *[r.tail[-26:] for r in serial])
            inproc = [in_process(c, root, tmp / f"inproc-{size}-{i}.json") for i, c in enumerate(codes)]
            row(
                f"{n} recipes, in-process (run_static)",
                *[f"{r.wall:.1f} s ({r.extra['elapsed'] / n * 1000:.0f} ms/recipe)" for r in inproc],
            )
            row("  peak RSS", *[f"{r.rss_mb:.0f} MB" for r in inproc])
            row("  pytest serial / in-process", *[f"{s.wall / r.wall:.2f}x" for s, r in zip(serial, inproc)])
            if not args.skip_xdist:
                dist = [pytest_run(c, root, tmp / f"xdist-{size}-{i}.json", "-n", "auto") for i, c in enumerate(codes)]
                row(
                    f"{n} recipes, pytest -n auto",
                    *[f"{d.wall:.1f} s ({s.wall / d.wall:.2f}x serial)" for d, s in zip(dist, serial)],
                )
                row("  findings JSON -n auto vs serial", "", same_findings(serial[-1].findings, dist[-1].findings))
                per_check_dist = pytest_run(
                    codes[-1], root, tmp / f"xdist-per-check-{size}.json", "-n", "auto", "--static-items", "per-check"
                )
                row(
                    f"{n} recipes, pytest -n auto --static-items per-check",
                    "",
                    f"{per_check_dist.wall:.1f} s ({serial[-1].wall / per_check_dist.wall:.2f}x serial)",
                )
            schema = [schema_only(c, root) for c in codes]
            row(
                "schema validation alone (one process = one core)",
                *[f"{r.extra['docs'] / r.extra['elapsed']:.0f} documents/s" for r in schema],
            )
            row("  findings JSON in-process vs pytest", "", same_findings(serial[-1].findings, inproc[-1].findings))
            if len(codes) > 1:
                row("  findings JSON pytest vs baseline", "", same_findings(serial[0].findings, serial[-1].findings))
            if size == max(sizes) and not args.skip_equality:
                now = codes[-1]
                per_check = pytest_run(now, root, tmp / f"per-check-{size}.json", "--static-items", "per-check")
                row(
                    "  pytest --static-items per-check (equality run)",
                    "",
                    f"{per_check.wall:.1f} s, {per_check.rss_mb:.0f} MB",
                )
                row(
                    "  findings JSON per-check vs per-recipe",
                    "",
                    same_findings(per_check.findings, serial[-1].findings),
                )
                python = in_process(
                    now, root, tmp / f"python-{size}.json", env=now.env(RECIPE_HARNESS_SCHEMA_ENGINE="python")
                )
                row("  in-process, pure-Python schema validation", "", f"{python.wall:.1f} s")
                row("  findings JSON compiled vs pure-Python", "", same_findings(python.findings, inproc[-1].findings))
    print(f"done ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
