"""`recipe-harness cluster`: build, start, inspect and stop the local control plane (etcd, kube-apiserver,
controller-manager, scheduler, kwok with simulated GPU nodes) the API-server tier runs against."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="a local Kubernetes control plane of real binaries (setup, up, down, status, env)"
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")

    s = csub.add_parser(
        "setup", help="build etcd, kube-apiserver, controller-manager, scheduler, kwok and kustomize (cached)"
    )
    s.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel Go compile jobs (default 2)")
    s.set_defaults(func=run_setup)

    u = csub.add_parser("up", help="start the control plane with simulated GPU nodes (detached unless --foreground)")
    u.add_argument("--name", default="default", help="the cluster's name (its state directory)")
    u.add_argument("--port", type=int, default=0, help="kube-apiserver port on 127.0.0.1 (default: a free one)")
    u.add_argument(
        "--nodes",
        action="append",
        default=[],
        metavar="GPU=N",
        help="simulated GPU nodes, e.g. H100=2 (repeatable; default: what the selected recipes need)",
    )
    u.add_argument("--recipes-dir", metavar="PATH", help="recipes tree whose hardware sizes the default nodes")
    u.add_argument("--foreground", action="store_true", help="stay in the foreground; Ctrl-C stops and removes it")
    u.add_argument("--no-crds", action="store_true", help="do not install the recipes' CRDs")
    u.set_defaults(func=run_up)

    d = csub.add_parser("down", help="stop the control plane and remove its state")
    d.add_argument("--name", default="default")
    d.set_defaults(func=run_down)

    st = csub.add_parser("status", help="what runs, where, and whether the API server is ready")
    st.add_argument("--name", default="default")
    st.add_argument("--format", choices=("text", "json"), default="text")
    st.set_defaults(func=run_status)

    e = csub.add_parser("env", help="print the kubeconfig path of the running cluster")
    e.add_argument("--name", default="default")
    e.set_defaults(func=run_env)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _say(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def setup_kustomize() -> int:
    """The kustomize the static checks build kustomizations with (harness.recipe.kustomize): one found
    (PATH, RECIPE_HARNESS_KUSTOMIZE, the cache) is kept, else kustomize is built into the cache with Go."""
    from harness.recipe import kustomize

    found = kustomize.locate()
    if found is not None and found.source != "kubectl":
        print(f"kustomize ready: {found.describe()}")
        return 0
    try:
        path = kustomize.setup(progress=_say)
    except kustomize.SetupError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 1
    print(f"kustomize ready: {path}")
    return 0


def run_setup(args: argparse.Namespace) -> int:
    return max(setup_kustomize(), _setup_control_plane(args))


def _setup_control_plane(args: argparse.Namespace) -> int:
    from harness.run.cluster import build

    found = build.find_binaries()
    if found is not None:
        m = found.marker
        extra = f"; built in {m['seconds']['total']} s, {m['bytes']['total'] / 1e9:.1f} GB" if m else ""
        print(f"control plane binaries ready ({found.source}{extra})")
        return 0
    v = build.DEFAULT_VERSIONS
    if shutil.which("go") is None:
        print(f"recipe-harness: {build.missing_reason()}", file=sys.stderr)
        return 1
    print(
        f"building Kubernetes {v.kubernetes} (staging {v.staging}), etcd {v.etcd}, kwok {v.kwok} into "
        f"{build.build_dir(v)} with -p={args.jobs} (measured cold: 77 min on a busy 2-core machine, 6 GB; "
        "cached: instant)",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        found = build.build(v, build.BuildOptions(jobs=args.jobs), progress=_say)
    except build.BuildError as exc:
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 1
    m = found.marker
    print(
        f"control plane binaries ready in {time.monotonic() - t0:.0f} s ({found.source}; binaries "
        f"{m['bytes']['bin'] / 1e6:.0f} MB, with caches {m['bytes']['total'] / 1e9:.1f} GB)"
    )
    return 0


def _pools(args: argparse.Namespace):
    from harness.run.cluster.nodes import parse_pool, pools_for
    from harness.run.static import make_selection

    if args.nodes:
        return tuple(parse_pool(n) for n in args.nodes)
    try:
        recipes = make_selection(args.recipes_dir, []).all
    except Exception as exc:  # no recipes tree here: no default nodes, say why
        _say(f"no default GPU nodes ({exc}); choose them with --nodes GPU=N")
        return ()
    return tuple(pools_for(recipes))


def run_up(args: argparse.Namespace) -> int:
    from harness.run.cluster import build, crds
    from harness.run.cluster.control_plane import ClusterError, ClusterOptions, ControlPlane, find_running

    running = find_running(args.name)
    if running is not None:
        _say(f"already running at {running.server}")
        print(running.kubeconfig)
        return 0
    binaries = build.find_binaries()
    if binaries is None:
        print(f"recipe-harness: {build.missing_reason()}", file=sys.stderr)
        return 1
    try:
        pools = _pools(args)
    except ValueError as exc:
        print(f"recipe-harness: --nodes: {exc}", file=sys.stderr)
        return 2
    plane = ControlPlane(
        binaries, ClusterOptions(name=args.name, api_port=args.port, pools=pools, detached=not args.foreground)
    )
    try:
        state = plane.start(progress=_say)
        if not args.no_crds:
            installed = crds.install(state.client())
            _say(f"CRDs: {', '.join(installed)}")
    except (ClusterError, crds.CrdError) as exc:
        plane.stop()
        print(f"recipe-harness: {exc}", file=sys.stderr)
        return 1
    _say(f"{state.server} ({binaries.source}); nodes: {', '.join(state.nodes) or 'none'}")
    print(state.kubeconfig)
    if not args.foreground:
        _say(f"running detached; stop it with `recipe-harness cluster down{_name_arg(args)}`")
        return 0
    _say("running in the foreground; Ctrl-C stops it")
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in plane.popens.values()):
            time.sleep(1)
        dead = [n for n, p in plane.popens.items() if p.poll() is not None]
        print(f"recipe-harness: {', '.join(dead)} exited; see {plane.directory / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        plane.stop()
        _say("stopped")


def _name_arg(args: argparse.Namespace) -> str:
    return "" if args.name == "default" else f" --name {args.name}"


def run_down(args: argparse.Namespace) -> int:
    from harness.run.cluster.control_plane import state_dir, stop_recorded

    existed = state_dir(args.name).exists()
    stopped = stop_recorded(args.name)
    if stopped:
        print(f"stopped {', '.join(stopped)}; removed {state_dir(args.name)}")
    elif existed:
        print(f"nothing was running; removed {state_dir(args.name)}")
    else:
        print("no cluster to stop")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from harness.run.cluster import build
    from harness.run.cluster.control_plane import status

    info = status(args.name)
    binaries = build.find_binaries()
    info["binaries_available"] = binaries.source if binaries else build.missing_reason()
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0 if info["running"] else 1
    print(f"binaries: {info['binaries_available']}")
    if "components" not in info:
        print(f"cluster {args.name}: not running")
        return 1
    print(f"cluster {args.name}: {'ready' if info['running'] else 'NOT READY'} at {info['server']}")
    for name, alive in info["components"].items():
        print(f"  {name}: {'running' if alive else 'NOT RUNNING (crashed or killed; see logs/)'}")
    print(f"  nodes: {', '.join(info['nodes']) or 'none'}")
    print(f"  kubeconfig: {info['kubeconfig']}")
    return 0 if info["running"] else 1


def run_env(args: argparse.Namespace) -> int:
    from harness.run.cluster.control_plane import find_running

    state = find_running(args.name)
    if state is None:
        print(
            f"recipe-harness: no running cluster {args.name!r}: start one with `recipe-harness cluster up`",
            file=sys.stderr,
        )
        return 1
    print(state.kubeconfig)
    return 0
