"""What the local control plane costs: build (cold, from the marker `recipe-harness cluster setup` wrote) and cached,
disk, start-up of a full cluster with the catalogue's GPU nodes, and the API-server tier over the catalogue.

    python benchmarks/control_plane.py              # needs `recipe-harness cluster setup` done (or KUBEBUILDER_ASSETS)
    python benchmarks/control_plane.py --no-full    # only the dry-run session (etcd + kube-apiserver) and the tier

It starts its own clusters under a temporary state name and stops them; a running `cluster up` is not touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.run.apiserver.dryrun import RecipeDryRun  # noqa: E402
from harness.run.cluster import build, crds  # noqa: E402
from harness.run.cluster.control_plane import ClusterOptions, ControlPlane  # noqa: E402
from harness.run.cluster.nodes import pools_for  # noqa: E402
from harness.run.static import make_selection  # noqa: E402


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-full", action="store_true", help="skip the full cluster (controllers, kwok, GPU nodes)")
    args = ap.parse_args()

    t = time.monotonic()
    binaries = build.find_binaries()
    if binaries is None:
        print(f"no binaries: {build.missing_reason()}")
        return 1
    print(f"binaries: {binaries.source}; found in {time.monotonic() - t:.2f} s (the cached `cluster setup`)")
    if binaries.marker:
        m = binaries.marker
        print(f"cold build: {m['seconds']} s with {m['go']}; binaries {m['bytes']['bin'] / 1e6:.0f} MB")
        d = build.build_dir()
        print(
            f"disk now: {_du(d) / 1e9:.2f} GB in {d} (go/mod {_du(d / 'go' / 'mod') / 1e9:.2f} GB, "
            f"go/build {_du(d / 'go' / 'build') / 1e9:.2f} GB, bin {_du(d / 'bin') / 1e6:.0f} MB)"
        )

    selection = make_selection(str(REPO / "recipes"), [])
    if not args.no_full:
        pools = tuple(pools_for(selection.all))
        plane = ControlPlane(binaries, ClusterOptions(name=f"bench-full-{os.getpid()}", pools=pools))
        t = time.monotonic()
        try:
            state = plane.start()
            up = time.monotonic() - t
            t = time.monotonic()
            crds.install(state.client())
            print(
                f"full cluster ({', '.join(plane.popens)}; {len(state.nodes)} GPU nodes Ready): "
                f"up in {up:.1f} s, CRDs in {time.monotonic() - t:.1f} s"
            )
        finally:
            t = time.monotonic()
            plane.stop()
            print(f"  stopped in {time.monotonic() - t:.1f} s")

    plane = ControlPlane(binaries, ClusterOptions(name=f"bench-dryrun-{os.getpid()}", extras=()))
    t = time.monotonic()
    try:
        state = plane.start()
        client = state.client()
        crds.install(client)
        print(f"dry-run session (etcd + kube-apiserver + CRDs): ready in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        objects = findings = 0
        for recipe in selection.chosen:
            run = RecipeDryRun(client, recipe)
            try:
                for outcome in run.run():
                    objects += 1
                    findings += len(outcome.findings)
            finally:
                run.cleanup()
        print(
            f"tier over the catalogue: {len(selection.chosen)} recipes, {objects} objects, {findings} findings "
            f"in {time.monotonic() - t:.1f} s"
        )
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
