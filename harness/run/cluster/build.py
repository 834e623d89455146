"""Build (once, cached) the control-plane binaries from their published Go modules, or take them from
KUBEBUILDER_ASSETS.

What is built, and how (the documented "importing k8s.io/kubernetes" pattern):
- `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`: a generated module of our own that requires
  `k8s.io/kubernetes vX.Y.Z` and replaces every staging module Kubernetes' own go.mod lists
  (`k8s.io/api => ./staging/src/k8s.io/api`) by its published `v0.Y.Z`. Kubernetes requires its staging modules
  at `v0.0.0`, so a plain `go install k8s.io/kubernetes/cmd/...@vX.Y.Z` cannot resolve them.
- `etcd`: a three-line main of our own calling `go.etcd.io/etcd/server/v3/etcdmain.Main(os.Args)`.
- `kwok`: `sigs.k8s.io/kwok/cmd/kwok` from a generated module requiring `sigs.k8s.io/kwok`.

Everything lives under `$RECIPE_HARNESS_CACHE/cluster/<versions>/` (default `~/.cache/recipe-harness`):
`bin/` (the binaries), `src/<part>/` (the generated modules), `go/mod` and `go/build` (GOMODCACHE, GOCACHE),
`build.log`, and the marker `cluster-build.json`, written last: the build is ready iff the marker exists.
A `flock` on `<versions>.lock` makes concurrent setups wait for one another.

When `KUBEBUILDER_ASSETS` names a directory (the envtest convention, e.g. from `setup-envtest use -p path`), its
`etcd` and `kube-apiserver` are used and nothing is built; the controller-manager, scheduler and kwok are then
used from there if present, else from a cached build, else the cluster runs without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe.cachedir import cache_dir
from harness.run.filelock import locked

MARKER = "cluster-build.json"
SETUP_COMMAND = "recipe-harness cluster setup"
# The binaries the control plane runs. The first two are the envtest minimum.
REQUIRED = ("etcd", "kube-apiserver")
OPTIONAL = ("kube-controller-manager", "kube-scheduler", "kwok")
ALL_BINARIES = REQUIRED + OPTIONAL


@dataclass(frozen=True)
class Versions:
    """The pinned versions of the published modules the control plane is built from."""

    # k8s.io/kubernetes; its staging modules are taken at v0.<minor>.<patch>.
    kubernetes: str = "v1.37.2"
    # go.etcd.io/etcd/server/v3
    etcd: str = "v3.7.4"
    # sigs.k8s.io/kwok
    kwok: str = "v0.8.0"

    @property
    def staging(self) -> str:
        """`v1.37.2` -> `v0.37.2`: the tag the staging modules (k8s.io/api, ...) publish for that release."""
        m = re.fullmatch(r"v1\.(\d+\.\d+.*)", self.kubernetes)
        if not m:
            raise ValueError(f"not a Kubernetes v1 release: {self.kubernetes!r}")
        return f"v0.{m.group(1)}"

    @property
    def name(self) -> str:
        return f"k8s-{self.kubernetes.lstrip('v')}_etcd-{self.etcd.lstrip('v')}_kwok-{self.kwok.lstrip('v')}"


DEFAULT_VERSIONS = Versions()


class BuildError(RuntimeError):
    """The binaries could not be found or built; the message names what is missing and where the log is."""


@dataclass(frozen=True)
class Binaries:
    """Where each control-plane binary is; absent optional ones are None."""

    paths: dict[str, Path]
    source: str  # "KUBEBUILDER_ASSETS=<dir>" or "built: <dir>"
    versions: Versions | None = None
    marker: dict = field(default_factory=dict, compare=False)

    def get(self, name: str) -> Path | None:
        return self.paths.get(name)


def cache_root() -> Path:
    """`$RECIPE_HARNESS_CACHE/cluster`, default `~/.cache/recipe-harness/cluster`."""
    return cache_dir("cluster")


def build_dir(versions: Versions = DEFAULT_VERSIONS, root: Path | None = None) -> Path:
    return (root or cache_root()) / versions.name


def read_marker(directory: Path) -> dict | None:
    try:
        with open(directory / MARKER) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binaries(versions: Versions = DEFAULT_VERSIONS, root: Path | None = None) -> Binaries | None:
    """The binaries to run, never building: KUBEBUILDER_ASSETS first, else a finished cached build, else None."""
    built = build_dir(versions, root)
    marker = read_marker(built)
    cached = {n: built / "bin" / n for n in ALL_BINARIES} if marker is not None else {}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        directory = Path(assets)
        paths: dict[str, Path] = {}
        for name in ALL_BINARIES:
            if _executable(directory / name):
                paths[name] = directory / name
            elif name in OPTIONAL and name in cached and _executable(cached[name]):
                paths[name] = cached[name]
        if all(n in paths for n in REQUIRED):
            return Binaries(paths, f"KUBEBUILDER_ASSETS={directory}")
        return None
    if marker is None:
        return None
    paths = {n: p for n, p in cached.items() if _executable(p)}
    if not all(n in paths for n in REQUIRED):
        return None
    return Binaries(paths, f"built: {built}", versions, marker)


def missing_reason(versions: Versions = DEFAULT_VERSIONS, root: Path | None = None) -> str:
    """Why find_binaries() found nothing, with the command that fixes it."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        absent = [n for n in REQUIRED if not _executable(Path(assets) / n)]
        return f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(absent)} (envtest needs etcd and kube-apiserver there)"
    if shutil.which("go") is None:
        return (
            f"no control-plane binaries: not built under {build_dir(versions, root)}, no Go toolchain on PATH to "
            f"build them, and KUBEBUILDER_ASSETS is unset (install Go >= 1.26 and run `{SETUP_COMMAND}`, or point "
            "KUBEBUILDER_ASSETS at a directory with etcd and kube-apiserver)"
        )
    where = build_dir(versions, root)
    return f"no control-plane binaries under {where}: run `{SETUP_COMMAND}` (or set KUBEBUILDER_ASSETS)"


# --- generated modules -------------------------------------------------------------------------------------------

_STAGING_REPLACE = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/k8s\.io/[\w.-]+\s*$")


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The staging modules k8s.io/kubernetes' go.mod replaces with `./staging/...`, in file order."""
    out = []
    for line in kubernetes_go_mod.splitlines():
        m = _STAGING_REPLACE.match(line)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def kubernetes_module(versions: Versions, staging: list[str]) -> dict[str, str]:
    """The files of the module that builds kube-apiserver, -controller-manager and -scheduler."""
    replaces = "\n".join(f"\t{mod} => {mod} {versions.staging}" for mod in staging)
    go_mod = (
        "// Generated by recipe-harness (harness/run/cluster/build.py): builds the Kubernetes control plane from the\n"
        "// published k8s.io/kubernetes module, whose staging modules are replaced by their published versions.\n"
        "module recipe-harness.local/cluster/kubernetes\n\n"
        "go 1.26.0\n\n"
        f"require k8s.io/kubernetes {versions.kubernetes}\n\n"
        f"replace (\n{replaces}\n)\n"
    )
    return {"go.mod": go_mod}


def etcd_module(versions: Versions) -> dict[str, str]:
    go_mod = (
        "// Generated by recipe-harness (harness/run/cluster/build.py): etcd from go.etcd.io/etcd/server/v3.\n"
        "module recipe-harness.local/cluster/etcd\n\n"
        "go 1.26.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {versions.etcd}\n"
    )
    main = (
        "// Command etcd runs the etcd server: the same entry point as etcd's own main package.\n"
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    return {"go.mod": go_mod, "main.go": main}


def kwok_module(versions: Versions) -> dict[str, str]:
    go_mod = (
        "// Generated by recipe-harness (harness/run/cluster/build.py): kwok (fake kubelets) from sigs.k8s.io/kwok.\n"
        "module recipe-harness.local/cluster/kwok\n\n"
        "go 1.26.0\n\n"
        f"require sigs.k8s.io/kwok {versions.kwok}\n"
    )
    return {"go.mod": go_mod}


# kwok's own default stages, the ones kwokctl configures (pkg/kwokctl/runtime/cluster.go getDefaultNodeStages /
# getDefaultPodStages): nodes become Ready and heartbeat, pods become Ready, complete, and go on deletion. The
# standalone kwok binary starts only with stages in its config, so setup copies them out of the module it built.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
KWOK_STAGES_FILE = "kwok-stages.yaml"
# kwok's CRDs for the kinds the control plane serves as objects (`kwok --enable-crds`): Stage (the pod and node
# lifecycles, so a test can add its own), Logs and ClusterLogs (what `kubectl logs` of a kwok pod returns).
KWOK_CRDS = (
    "kustomize/crd/bases/kwok.x-k8s.io_stages.yaml",
    "kustomize/crd/bases/kwok.x-k8s.io_logs.yaml",
    "kustomize/crd/bases/kwok.x-k8s.io_clusterlogs.yaml",
)
KWOK_CRDS_FILE = "kwok-crds.yaml"
KWOK_CRD_KINDS = ("Stage", "Logs", "ClusterLogs")


def write_kwok_stages(directory: Path, env: dict[str, str], go: str) -> Path:
    """Write bin/kwok-stages.yaml from the sigs.k8s.io/kwok module the kwok binary was built from."""
    info = subprocess.run(
        [go, "list", "-m", "-json", "sigs.k8s.io/kwok"],
        cwd=directory / "src" / "kwok",
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        module_dir = Path(json.loads(info.stdout)["Dir"])
        texts = [(module_dir / rel).read_text() for rel in KWOK_STAGES]
    except (ValueError, KeyError, OSError) as exc:
        raise BuildError(f"could not read kwok's default stages from its module: {exc}") from exc
    out = directory / "bin" / KWOK_STAGES_FILE
    header = "# kwok's default stages, copied from the sigs.k8s.io/kwok module by `recipe-harness cluster setup`.\n"
    out.write_text(header + "\n---\n".join(t.strip() + "\n" for t in texts))
    crds = kwok_crds_text(module_dir)
    if crds:
        header = "# kwok's CRDs (Stage, Logs, ClusterLogs), copied from the sigs.k8s.io/kwok module.\n"
        (directory / "bin" / KWOK_CRDS_FILE).write_text(header + crds)
    return out


def kwok_crds_text(module_dir: Path) -> str | None:
    """The CRDs of KWOK_CRDS as one YAML stream, read from the sigs.k8s.io/kwok module; None when absent."""
    try:
        return "\n---\n".join((module_dir / rel).read_text().strip() + "\n" for rel in KWOK_CRDS)
    except OSError:
        return None


def find_kwok_crds(kwok: Path) -> str | None:
    """kwok's CRDs for the kwok binary at `kwok`: `kwok-crds.yaml` beside it, else the sigs.k8s.io/kwok module in
    the build's module cache (a build made before setup copied the file). None: kwok runs with its config file's
    stages only."""
    beside = kwok.parent / KWOK_CRDS_FILE
    if beside.is_file():
        return beside.read_text()
    for module_dir in sorted((kwok.parent.parent / "go" / "mod" / "sigs.k8s.io").glob("kwok@v*")):
        text = kwok_crds_text(module_dir)
        if text:
            return text
    return None


# --- the build ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    """How to run the Go builds."""

    # Parallel compile jobs (`go build -p`); the machine is shared, so low by default.
    jobs: int = 2
    # Extra environment for the go command (e.g. GOTOOLCHAIN, GOPROXY); the caller's environment is the base.
    env: dict[str, str] = field(default_factory=dict)


def _go_env(directory: Path, options: BuildOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(directory / "go" / "mod"),
        GOCACHE=str(directory / "go" / "build"),
        GOFLAGS=f"-mod=mod -buildvcs=false -p={options.jobs}",
        CGO_ENABLED="0",
    )
    env.update(options.env)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log, step: str) -> None:
    log.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n")
    log.flush()
    rc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    ).returncode
    if rc != 0:
        raise BuildError(f"{step} failed (exit {rc}); see {log.name}")


def _write_module(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def _disk_usage(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def build(
    versions: Versions = DEFAULT_VERSIONS,
    options: BuildOptions = BuildOptions(),
    root: Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> Binaries:
    """Build every binary of `versions` into the cache (a no-op when the marker exists). Raises BuildError."""
    directory = build_dir(versions, root)
    with locked(directory.parent / f"{versions.name}.lock"):
        found = read_marker(directory)
        if found is not None:
            return Binaries({n: directory / "bin" / n for n in ALL_BINARIES}, f"built: {directory}", versions, found)
        go = shutil.which("go", path=options.env.get("PATH"))
        if go is None:
            raise BuildError(
                "no Go toolchain on PATH: building the control plane needs Go >= 1.26 with access to a module proxy "
                "(or set KUBEBUILDER_ASSETS to a directory with etcd and kube-apiserver)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        env = _go_env(directory, options)
        bin_dir = directory / "bin"
        bin_dir.mkdir(exist_ok=True)
        ldflags = "-s -w"
        started = time.monotonic()
        timings: dict[str, float] = {}
        with open(directory / "build.log", "a") as log:
            go_version = subprocess.run([go, "version"], env=env, capture_output=True, text=True).stdout.strip()
            log.write(f"# {go_version}; {versions}\n")

            progress(f"etcd {versions.etcd}")
            t = time.monotonic()
            src = directory / "src" / "etcd"
            _write_module(src, etcd_module(versions))
            _run(
                [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(bin_dir / "etcd"), "."],
                src,
                env,
                log,
                "etcd build",
            )
            timings["etcd"] = round(time.monotonic() - t, 1)

            progress(f"kube-apiserver, kube-controller-manager, kube-scheduler {versions.kubernetes}")
            t = time.monotonic()
            src = directory / "src" / "kubernetes"
            _write_module(src, {"go.mod": "module recipe-harness.local/cluster/probe\n\ngo 1.26.0\n"})
            # Kubernetes' own go.mod names the staging modules to replace; read it from the module proxy.
            _run(
                [go, "mod", "download", f"k8s.io/kubernetes@{versions.kubernetes}"],
                src,
                env,
                log,
                "download k8s.io/kubernetes",
            )
            info = subprocess.run(
                [go, "mod", "download", "-json", f"k8s.io/kubernetes@{versions.kubernetes}"],
                cwd=src,
                env=env,
                capture_output=True,
                text=True,
            )
            try:
                k8s_mod = Path(json.loads(info.stdout)["GoMod"]).read_text()
            except (ValueError, KeyError, OSError) as e:
                raise BuildError(f"could not read k8s.io/kubernetes {versions.kubernetes}'s go.mod: {e}") from e
            staging = staging_modules(k8s_mod)
            if not staging:
                raise BuildError(f"k8s.io/kubernetes {versions.kubernetes}'s go.mod lists no staging modules")
            _write_module(src, kubernetes_module(versions, staging))
            version_flags = " ".join(
                f"-X k8s.io/component-base/version.{k}={v}"
                for k, v in (
                    ("gitVersion", versions.kubernetes),
                    ("gitMajor", "1"),
                    ("gitMinor", versions.kubernetes.split(".")[1]),
                    ("gitTreeState", "clean"),
                )
            )
            _run(
                [
                    go,
                    "build",
                    "-trimpath",
                    f"-ldflags={ldflags} {version_flags}",
                    "-o",
                    str(bin_dir) + "/",
                    "k8s.io/kubernetes/cmd/kube-apiserver",
                    "k8s.io/kubernetes/cmd/kube-controller-manager",
                    "k8s.io/kubernetes/cmd/kube-scheduler",
                ],
                src,
                env,
                log,
                "Kubernetes build",
            )
            timings["kubernetes"] = round(time.monotonic() - t, 1)

            progress(f"kwok {versions.kwok}")
            t = time.monotonic()
            src = directory / "src" / "kwok"
            _write_module(src, kwok_module(versions))
            _run(
                [
                    go,
                    "build",
                    "-trimpath",
                    f"-ldflags={ldflags}",
                    "-o",
                    str(bin_dir / "kwok"),
                    "sigs.k8s.io/kwok/cmd/kwok",
                ],
                src,
                env,
                log,
                "kwok build",
            )
            write_kwok_stages(directory, env, go)
            timings["kwok"] = round(time.monotonic() - t, 1)

            missing = [n for n in ALL_BINARIES if not _executable(bin_dir / n)]
            if missing:
                raise BuildError(f"the build left no {', '.join(missing)} in {bin_dir}; see {log.name}")
            marker = {
                "schema": 1,
                "versions": {
                    "kubernetes": versions.kubernetes,
                    "staging": versions.staging,
                    "etcd": versions.etcd,
                    "kwok": versions.kwok,
                },
                "go": go_version,
                "seconds": {**timings, "total": round(time.monotonic() - started, 1)},
                "bytes": {"bin": _disk_usage(bin_dir), "total": _disk_usage(directory)},
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (directory / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        return Binaries({n: bin_dir / n for n in ALL_BINARIES}, f"built: {directory}", versions, marker)
