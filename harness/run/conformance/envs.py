"""Isolated virtualenvs holding a Dynamo release and one engine, for running their real argument parsers.

One env per (Dynamo release, engine), e.g. `ai-dynamo==1.4.0 vllm==0.26.0`, lives under
`$RECIPE_HARNESS_CACHE/conformance/<release>-<engine>/` (cache root `~/.cache/recipe-harness` by
default), never in the repository: the engines conflict with each other and with the sim's
ai-dynamo, and an env weighs ~9 GB.

Env kinds:
- `vllm`, `sglang`: ai-dynamo plus the engine at the version `recipes/versions.yaml` pins for the
  release (else the pin of ai-dynamo's `[vllm]`/`[sglang]` extra, read from the wheel's METADATA).
- `dynamo`: ai-dynamo alone. Enough for the frontend and for Dynamo's TRT-LLM argument parser
  (TensorRT-LLM itself is not on the package index: the driver stubs the one import it needs).
  Any env of the release can serve these jobs, so `dynamo` is only built when asked for.

ai-dynamo >= 1.5 requires `aisimulate`, whose build downloads at install time and fails offline
(the mocker's default timing model and the parsers never import it). Such a requirement is left
out: the env installs the release's other requirements (its wheel METADATA `Requires-Dist`, no
extras) plus the engine, then `ai-dynamo==R` with `--no-deps`; the marker records both lists and
what was left out, and the run header repeats it.

Build protocol (idempotent, atomic, safe across processes): an exclusive `flock` on
`<root>/<name>.lock`; the venv is built in `<root>/.<name>.tmp-<pid>` and renamed into place only
after the install succeeded and the marker `conformance-env.json` was written inside it. An env is
ready iff its marker exists. Installer: `uv` when found (PATH, beside this interpreter, or the `uv`
package of the `conformance` extra), else pip; `RECIPE_HARNESS_INSTALLER=uv|pip` overrides.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.recipe.cachedir import cache_dir
from harness.run.filelock import locked

MARKER = "conformance-env.json"
MARKER_SCHEMA = 1
ENV_KINDS = ("vllm", "sglang", "dynamo")
# The recipe framework -> the env kind whose parser checks it. TRT-LLM runs Dynamo's own parser
# with a stub tensorrt_llm, so ai-dynamo alone is enough.
FRAMEWORK_ENV = {"vllm": "vllm", "sglang": "sglang", "trtllm": "dynamo"}
# The engine's distribution name on the package index.
ENGINE_DIST = {"vllm": "vllm", "sglang": "sglang"}
# Packages whose installed versions go into the marker.
REPORTED = ("ai-dynamo", "ai-dynamo-runtime", "vllm", "sglang", "torch", "transformers", "huggingface-hub", "pydantic")
SETUP_COMMAND = "recipe-harness conformance setup"
# Requirements of ai-dynamo that cannot be installed offline, and why; an env is built without them.
OFFLINE_UNINSTALLABLE = {
    "aisimulate": "its build downloads at install time and fails offline (required by ai-dynamo >= 1.5); "
    "neither the parsers nor the mocker's default timing model import it",
    "cuda-tile": "a placeholder whose build downloads the real wheel from pypi.nvidia.com and fails offline "
    "(required by sglang 0.5.21); the argument parser does not import it",
}


class EnvBuildError(RuntimeError):
    """The environment could not be built; the message says which step failed and where the log is."""


@dataclass(frozen=True)
class Env:
    """A ready conformance environment."""

    release: str
    kind: str
    path: Path
    marker: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def versions(self) -> dict[str, str]:
        return dict(self.marker.get("installed") or {})


def cache_root() -> Path:
    """`$RECIPE_HARNESS_CACHE/conformance`, default `~/.cache/recipe-harness/conformance`."""
    return cache_dir("conformance")


def env_name(release: str, kind: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z.+_-]+", release or ""):
        raise ValueError(f"bad Dynamo release {release!r}")
    if kind not in ENV_KINDS:
        raise ValueError(f"env kind must be one of {', '.join(ENV_KINDS)}, not {kind!r}")
    return f"{release}-{kind}"


def setup_command(release: str, framework: str | None = None) -> str:
    """The command that builds what a (release, framework) needs, for skip reasons."""
    engine = f" --engine {framework}" if framework else ""
    return f"{SETUP_COMMAND} --release {release}{engine}"


def read_marker(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / MARKER) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_env(release: str, kind: str, root: Path | None = None) -> Env | None:
    """The ready env of exactly this kind, or None. Never builds."""
    path = (root or cache_root()) / env_name(release, kind)
    marker = read_marker(path)
    return Env(release, kind, path, marker) if marker is not None else None


def locate(release: str, framework: str, root: Path | None = None) -> Env | None:
    """The env that can parse a `framework` worker of `release` (or the frontend: framework "frontend").

    vLLM and SGLang need their own env; the frontend and TRT-LLM only need ai-dynamo, which every
    env of the release holds, so the lightest ready one is used."""
    kind = FRAMEWORK_ENV.get(framework, "dynamo")
    if kind != "dynamo":
        return find_env(release, kind, root)
    for candidate in ("dynamo", "vllm", "sglang"):
        env = find_env(release, candidate, root)
        if env is not None:
            return env
    return None


def list_envs(root: Path | None = None) -> list[Env]:
    root = root or cache_root()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        marker = read_marker(p) if p.is_dir() and not p.name.startswith(".") else None
        if marker is not None:
            out.append(Env(str(marker.get("release", "")), str(marker.get("engine", "")), p, marker))
    return out


# ---- what to install ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallPlan:
    """What an env installs: `resolved` in one resolver run, then `no_deps` with `--no-deps`."""

    resolved: list[str]
    no_deps: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # requirement -> why it is not installed

    @property
    def all(self) -> list[str]:
        return [*self.resolved, *(f"{r} (--no-deps)" for r in self.no_deps)]


def requirement_name(req: str) -> str:
    """`aisimulate==0.13.0; python_version >= '3.11'` -> `aisimulate` (PEP 503 normalised)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else ""


def base_requirements(metadata: str) -> list[str]:
    """The wheel's `Requires-Dist` entries that no extra gates, as written."""
    out = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            if not re.search(r"\bextra\s*==", req):
                out.append(req)
    return out


def install_plan(
    release: str, kind: str, engine_version: str | None = None, metadata: str | None = None
) -> InstallPlan:
    """`ai-dynamo==R` plus the engine pin (from the argument, else the wheel's extra); where the
    release requires something in OFFLINE_UNINSTALLABLE, its other requirements resolve normally and
    ai-dynamo itself goes in with `--no-deps`."""
    engine = []
    if kind != "dynamo":
        engine = [f"{ENGINE_DIST[kind]}=={engine_version or engine_version_from_wheel(release, kind)}"]
    metadata = metadata if metadata is not None else wheel_metadata(release)
    base = base_requirements(metadata)
    left_out = {
        r: OFFLINE_UNINSTALLABLE[requirement_name(r)] for r in base if requirement_name(r) in OFFLINE_UNINSTALLABLE
    }
    if not left_out:
        return InstallPlan([f"ai-dynamo=={release}", *engine])
    kept = [r for r in base if r not in left_out]
    return InstallPlan([*kept, *engine], [f"ai-dynamo=={release}"], left_out)


def requirements(release: str, kind: str, engine_version: str | None = None) -> list[str]:
    """Every requirement the env installs, `--no-deps` ones marked (for printing)."""
    return install_plan(release, kind, engine_version).all


def metadata_cache(release: str) -> Path:
    return cache_root() / ".metadata" / f"ai_dynamo-{release}.METADATA"


def wheel_metadata(release: str) -> str:
    """The METADATA of the `ai-dynamo==R` wheel (downloaded once, then cached: a release never changes)."""
    env_name(release, "dynamo")  # validates the release string before it reaches pip
    cached = metadata_cache(release)
    if cached.is_file():
        return cached.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                f"ai-dynamo=={release}",
            ],
            "download the ai-dynamo wheel",
            None,
        )
        wheels = list(Path(tmp).glob("ai_dynamo-*.whl"))
        if not wheels:
            raise EnvBuildError(f"no ai-dynamo {release} wheel was downloaded")
        with zipfile.ZipFile(wheels[0]) as z:
            meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            meta = z.read(meta_name).decode()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cached.with_suffix(f".tmp-{os.getpid()}")
    tmp_file.write_text(meta)
    os.replace(tmp_file, cached)
    return meta


def engine_version_from_wheel(release: str, kind: str) -> str:
    """The engine pin of ai-dynamo's `[kind]` extra, read from the ai-dynamo wheel's METADATA."""
    version = engine_pin(wheel_metadata(release), kind)
    if version is None:
        raise EnvBuildError(
            f"ai-dynamo {release} METADATA has no {ENGINE_DIST.get(kind, kind)}==X pin for the extra {kind!r}"
        )
    return version


def engine_pin(metadata: str, kind: str) -> str | None:
    """`Requires-Dist: vllm[...]==X ; extra == "vllm"` -> X (TRT-LLM: `tensorrt-llm==X ; extra == "trtllm"`)."""
    dist = re.escape(ENGINE_DIST.get(kind, {"trtllm": "tensorrt-llm"}.get(kind, kind)))
    pat = re.compile(
        rf"^Requires-Dist:\s*{dist}(\[[^\]]*\])?\s*==\s*([^\s;,]+).*extra\s*==\s*['\"]{re.escape(kind)}['\"]",
        re.M | re.I,
    )
    m = pat.search(metadata)
    return m.group(2) if m else None


# ---- building ----------------------------------------------------------------------------------


def find_uv() -> str | None:
    cand = shutil.which("uv")
    if cand:
        return cand
    here = Path(sys.executable).parent / "uv"
    if here.exists():
        return str(here)
    try:
        import uv  # type: ignore[import-not-found]  # the `uv` package of the conformance extra

        return str(uv.find_uv_bin())
    except Exception:
        return None


def choose_installer() -> tuple[str, str | None]:
    """("uv", path) or ("pip", None)."""
    forced = os.environ.get("RECIPE_HARNESS_INSTALLER", "").strip().lower()
    if forced == "pip":
        return "pip", None
    uv = find_uv()
    if forced == "uv" and not uv:
        raise EnvBuildError("RECIPE_HARNESS_INSTALLER=uv but no uv was found (pip install uv)")
    return ("uv", uv) if uv else ("pip", None)


def _run(cmd: list[str], step: str, log: Path | None) -> None:
    if log is None:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tail = (proc.stderr or "")[-3000:]
    else:
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:]) if proc.returncode else ""
    if proc.returncode != 0:
        where = f"; log: {log}" if log else ""
        raise EnvBuildError(f"{step} failed (exit {proc.returncode}){where}\n{tail}")


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _installed_versions(python: str) -> dict[str, str]:
    code = (
        "import json,sys,importlib.metadata as m\nout={}\n"
        f"for d in {list(REPORTED)!r}:\n"
        "    try: out[d]=m.version(d)\n    except m.PackageNotFoundError: pass\n"
        "out['python']=sys.version.split()[0]\nprint(json.dumps(out))"
    )
    res = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise EnvBuildError(f"the built env's python does not run: {res.stderr[-2000:]}")
    return json.loads(res.stdout)


def ensure_env(
    release: str,
    kind: str,
    engine_version: str | None = None,
    *,
    root: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> Env:
    """The ready env for (release, kind), built first when missing.

    Raises EnvBuildError (with the installer's last lines and the log path) on failure."""
    root = root or cache_root()
    ready = find_env(release, kind, root)
    if ready:
        return ready
    name = env_name(release, kind)
    final = root / name
    say = say or (lambda msg: print(msg, file=sys.stderr))
    with locked(root / f"{name}.lock"):
        ready = find_env(release, kind, root)  # another process may have built it while we waited
        if ready:
            return ready
        for stale in root.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # no marker: an interrupted build of an older layout
            shutil.rmtree(final)
        plan = install_plan(release, kind, engine_version)
        reqs = plan.resolved
        installer, uv = choose_installer()
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        tmp = root / f".{name}.tmp-{os.getpid()}"
        log = root / f"{name}.log"
        log.write_text(f"# building {name}: {' '.join(plan.all)} with {installer}\n")
        say(f"conformance: building {final}: {' '.join(plan.all)} with {installer} (log {log})")
        for req, why in plan.left_out.items():
            say(f"conformance: {name}: not installing {req}: {why}")
        t0 = time.time()
        try:
            if installer == "uv" and uv:
                # relocatable: the venv is renamed into place after the install
                _run([uv, "venv", "-q", "--relocatable", "--python", base_python, str(tmp)], "uv venv", log)
                t1 = time.time()
                # An override with a never-true marker removes a requirement wherever it appears in the
                # tree (an engine's own placeholder dependencies); ai-dynamo's are handled by --no-deps.
                overrides = root / f".{name}.overrides-{os.getpid()}.txt"
                overrides.write_text("".join(f"{n}; sys_platform == 'never'\n" for n in OFFLINE_UNINSTALLABLE))
                uv_install = [uv, "pip", "install", "--python", str(tmp / "bin" / "python"), "--compile-bytecode"]
                try:
                    _run([*uv_install, "--override", str(overrides), *reqs], "uv pip install", log)
                finally:
                    overrides.unlink(missing_ok=True)
                if plan.no_deps:
                    _run([*uv_install, "--no-deps", *plan.no_deps], "uv pip install --no-deps", log)
                installer_version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
            else:
                _run([base_python, "-m", "venv", str(tmp)], "python -m venv", log)
                t1 = time.time()
                pip_install = [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q"]
                _run([*pip_install, *reqs], "pip install", log)
                if plan.no_deps:
                    _run([*pip_install, "--no-deps", *plan.no_deps], "pip install --no-deps", log)
                installer_version = subprocess.run(
                    [str(tmp / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, text=True
                ).stdout.split(" from ")[0]
            t2 = time.time()
            marker = {
                "schema": MARKER_SCHEMA,
                "name": name,
                "release": release,
                "engine": kind,
                "requirements": plan.all,
                "noDeps": plan.no_deps,
                "leftOut": plan.left_out,
                "excluded": sorted(OFFLINE_UNINSTALLABLE) if installer == "uv" else [],
                "installed": _installed_versions(str(tmp / "bin" / "python")),
                "installer": installer_version,
                "base_python": base_python,
                "venv_seconds": round(t1 - t0, 1),
                "install_seconds": round(t2 - t1, 1),
                "size_bytes": _dir_size(tmp),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "log": str(log),
            }
            with open(tmp / (MARKER + ".tmp"), "w") as f:
                json.dump(marker, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp / (MARKER + ".tmp"), tmp / MARKER)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        say(
            f"conformance: ready {final}: installed in {marker['install_seconds']} s, "
            f"{marker['size_bytes'] / 1e9:.1f} GB"
        )
        return Env(release, kind, final, marker)


def install_note(env: Env) -> str:
    """One line for a run header: which ai-dynamo the env holds and what was left out of it."""
    versions = env.versions
    text = f"ai-dynamo {versions.get('ai-dynamo', env.release)}"
    left = env.marker.get("leftOut") or {}
    if left:
        text += f" (installed --no-deps, without {', '.join(requirement_name(r) for r in left)})"
    missing = [n for n in env.marker.get("excluded") or [] if n not in {requirement_name(r) for r in left}]
    if missing and env.kind in ENGINE_DIST:
        text += (
            f"; {env.kind} {versions.get(env.kind, '')} resolved without {', '.join(missing)} "
            "(never installable offline)"
        )
    return text
