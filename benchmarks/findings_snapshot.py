"""Record the static findings of the catalogue, the frozen catalogues, every defect fixture and every
fixture pair as one JSON file each, so a refactoring can be shown to change nothing (or exactly what
it says it changes) with `diff -r BEFORE AFTER`.

    PYTHONPATH=$PWD python benchmarks/findings_snapshot.py OUTDIR [--only NAME-GLOB]

Paths are written relative to the tree checked (`<root>/...`), so two runs from different temporary
copies compare equal. It prints how many snapshots it wrote and how long they took.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.run.defects import CATALOGUE, CATALOGUES, load_defects, materialise, selectors_for  # noqa: E402
from harness.run.static import context_for, make_selection, run_static  # noqa: E402

PAIRS = REPO / "tests" / "fixtures" / "pairs"


def snapshot(root: Path, selectors: list[str] | None = None) -> str:
    """The findings JSON of a static run over root, with the root's path replaced by `<root>`."""
    selection = make_selection(root, selectors or [])
    report = run_static(selection, context_for(selection))
    text = report.to_json()
    for prefix in {str(root), str(root.resolve())}:
        text = text.replace(prefix, "<root>")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--only", default="*", help="glob over snapshot names")
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, object]] = [("catalogue", lambda tmp: snapshot(CATALOGUE))]
    for base in sorted(p for p in CATALOGUES.iterdir() if p.is_dir()):
        jobs.append((f"catalogues--{base.name}", lambda tmp, base=base: snapshot(base)))
    for defect in load_defects():
        if defect.broken:
            continue

        def run_defect(tmp: Path, defect=defect) -> str:
            root, _ = materialise(defect, tmp)
            return snapshot(root, [s for s in selectors_for(defect) if s != "*"])

        jobs.append((f"defect--{defect.name}", run_defect))
    for pair in sorted(p for p in PAIRS.iterdir() if (p / "expect.yaml").is_file()):
        for twin in ("clean", "defective"):
            jobs.append((f"pair--{pair.name}--{twin}", lambda tmp, r=pair / twin / "recipes": snapshot(r)))
    started = time.perf_counter()
    written = 0
    for name, job in jobs:
        if not fnmatch.fnmatch(name, args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            text = job(Path(tmp))  # type: ignore[operator]
            text = text.replace(tmp, "<tmp>")
        json.loads(text)
        (args.outdir / f"{name}.json").write_text(text + "\n")
        written += 1
    print(f"{written} snapshots in {time.perf_counter() - started:.1f} s -> {args.outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
