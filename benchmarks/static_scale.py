"""How the static suite scales: the shipped catalogue, then N synthetic recipes, serial and -n auto.

Usage: python benchmarks/static_scale.py [--sizes 100,1000] [--skip-xdist]

Synthetic recipes are copies of the shipped catalogue's recipes under new model names
(`<model>-s<i>`), so every check does its real work on realistic manifests. Prints wall
time per run, recipes/second, and raw schema-validation throughput (documents/second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.checks import all_checks  # noqa: E402
from harness.run.static import context_for, make_selection, run_static  # noqa: E402


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


def run_pytest(root: Path, workers: str | None) -> float:
    cmd = [sys.executable, "-m", "pytest", "-m", "static", "-q", "-p", "no:cacheprovider", "--recipes-dir", str(root),
           "-o", "addopts=", "-p", "no:dash"]
    if workers:
        cmd += ["-n", workers]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    last = (out.stdout.strip().splitlines() or ["?"])[-1]
    print(f"    pytest {'-n ' + workers if workers else 'serial':<10} {elapsed:7.2f} s   ({last})")
    return elapsed


def in_process(root: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    selection = make_selection(root)
    report = run_static(selection, context_for(selection), all_checks())
    elapsed = time.perf_counter() - start
    docs = sum(len(f.documents) for r in selection.chosen for f in r.files())
    return elapsed, len(selection.chosen), docs


def schema_throughput(root: Path) -> float:
    from harness.checks.schema import schema_valid

    selection = make_selection(root)
    ctx = context_for(selection)
    for r in selection.chosen:  # load first: measure validation, not parsing
        r.files()
    docs = sum(len(f.documents) for r in selection.chosen for f in r.files() if f.path.name != "recipe.yaml")
    start = time.perf_counter()
    for r in selection.chosen:
        list(schema_valid(r, ctx))
    return docs / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="synthetic recipe counts (comma-separated)")
    ap.add_argument("--skip-xdist", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print("shipped catalogue:")
    run_pytest(REPO / "recipes", None)
    t, n, docs = in_process(REPO / "recipes")
    print(f"    in-process {n} recipes, {docs} documents: {t:.2f} s")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "recipes"
            n = synthesize(root, size)
            print(f"{n} synthetic recipes:")
            t_serial = run_pytest(root, None)
            if not args.skip_xdist:
                run_pytest(root, "auto")
            t, n2, docs = in_process(root)
            print(f"    in-process {n2} recipes, {docs} documents: {t:.2f} s ({n2 / t:.0f} recipes/s, "
                  f"{t / n2 * 1000:.1f} ms/recipe); pytest serial {t_serial / n2 * 1000:.1f} ms/recipe")
            print(f"    schema validation alone: {schema_throughput(root):.0f} documents/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
