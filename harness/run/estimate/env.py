"""The AIConfigurator env: PyPI `aiconfigurator` in a venv of its own, outside the repository.

`$RECIPE_HARNESS_CACHE/aiconfigurator/<version>/` (default `~/.cache/recipe-harness`), built by
`recipe-harness estimate --setup` with uv when available (the `conformance` extra), else pip. It is
kept apart from the harness env because it pins its own numpy/pandas/pydantic and weighs ~0.7 GB
(measured: 675 MB, 12 s with uv on 2 cores); `pip install -e '.[all]'` never pulls it.

Source: https://pypi.org/project/aiconfigurator/ 0.12.0 (NVIDIA's offline performance model for
Dynamo deployments); it depends on `aiconfigurator-core` 0.12.0, which ships the model configs, system
specs, performance databases and support matrix, and runs offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.recipe.cachedir import cache_dir
from harness.run.conformance.envs import choose_installer
from harness.run.filelock import locked

AICONFIGURATOR_VERSION = "0.12.0"
MARKER = "recipe-harness-env.json"


class EstimatorEnvError(RuntimeError):
    """The AIConfigurator env could not be built."""


@dataclass(frozen=True)
class EstimatorEnv:
    path: Path
    marker: dict

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def versions(self) -> dict[str, str]:
        return dict(self.marker.get("installed") or {})


def cache_root() -> Path:
    """`$RECIPE_HARNESS_CACHE/aiconfigurator`, default `~/.cache/recipe-harness/aiconfigurator`."""
    return cache_dir("aiconfigurator")


def setup_command() -> str:
    return "recipe-harness estimate --setup"


def find_env(version: str = AICONFIGURATOR_VERSION, root: Path | None = None) -> EstimatorEnv | None:
    path = (root or cache_root()) / version
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return EstimatorEnv(path, marker) if (path / "bin" / "python").exists() else None


def _run(cmd: list[str], step: str, log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
        raise EstimatorEnvError(f"{step} failed (exit {proc.returncode}); log: {log}\n{tail}")


def _installed(python: str) -> dict[str, str]:
    code = (
        "import json,sys,importlib.metadata as m\n"
        "print(json.dumps({d: m.version(d) for d in ('aiconfigurator','aiconfigurator-core')}"
        " | {'python': sys.version.split()[0]}))"
    )
    res = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise EstimatorEnvError(f"the built env's python does not run: {res.stderr[-2000:]}")
    return json.loads(res.stdout)


def ensure_env(version: str = AICONFIGURATOR_VERSION, *, root: Path | None = None, say=None) -> EstimatorEnv:
    """The ready env, built first when missing. Raises EstimatorEnvError with the log's last lines."""
    root = root or cache_root()
    ready = find_env(version, root)
    if ready:
        return ready
    say = say or (lambda msg: print(msg, file=sys.stderr))
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f"{version}.lock"):
        ready = find_env(version, root)
        if ready:
            return ready
        final, tmp, log = root / version, root / f".{version}.tmp-{os.getpid()}", root / f"{version}.log"
        shutil.rmtree(final, ignore_errors=True)
        installer, uv = choose_installer()
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        requirement = f"aiconfigurator=={version}"
        log.write_text(f"# building {final}: {requirement} with {installer}\n")
        say(f"estimate: building {final}: {requirement} with {installer} (log {log})")
        t0 = time.time()
        try:
            if installer == "uv" and uv:
                _run([uv, "venv", "-q", "--relocatable", "--python", base_python, str(tmp)], "uv venv", log)
                _run([uv, "pip", "install", "--python", str(tmp / "bin" / "python"), requirement], "uv pip", log)
            else:
                _run([base_python, "-m", "venv", str(tmp)], "python -m venv", log)
                _run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", requirement], "pip install", log)
            marker = {
                "requirement": requirement,
                "installer": installer,
                "installed": _installed(str(tmp / "bin" / "python")),
                "install_seconds": round(time.time() - t0, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        say(f"estimate: ready {final} in {marker['install_seconds']} s")
        return EstimatorEnv(final, marker)
