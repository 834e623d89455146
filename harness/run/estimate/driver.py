"""Runs AIConfigurator's single-point estimate (`aiconfigurator.cli.api.cli_estimate`, the programmatic
form of `aiconfigurator cli estimate`) for one or more requests.

Executed with the AIConfigurator env's python (harness/run/estimate/env.py), as a script: it imports
only the standard library and the env's own packages, never the harness. Offline: the package ships
its model configs, system specs and performance databases.

stdin:  {"requests": [{"id", "model", "system", "backend", "mode": "agg"|"disagg",
                       "kwargs": {...cli_estimate keyword arguments...}}]}
stdout: one JSON line per request, in order:
        {"id", "ok", "coverage": {...}, "result": {...} | null, "error": str | null, "seconds"}
        then one line {"meta": {"versions": {...}, "python": ...}}.
coverage: what the package's own support matrix (aiconfigurator_core/systems/support_matrix/<system>.csv,
          AIConfigurator's record of which model/system/backend/version/mode combinations its CLI ran)
          says, and the database versions it holds for the system and backend
          (aiconfigurator_core/systems/data/<system>/gemm/<backend>/<version>/).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata as metadata
import io
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path


def _core_dir() -> Path:
    import aiconfigurator_core

    return Path(aiconfigurator_core.__file__).resolve().parent


def _version_key(v: str) -> tuple:
    out: list = []
    for part in v.replace("rc", ".rc.").split("."):
        out.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return tuple(out)


def coverage(model: str, system: str, backend: str, mode: str) -> dict:
    core = _core_dir()
    systems = sorted(p.stem for p in (core / "systems").glob("*.yaml") if (core / "systems" / "data" / p.stem).is_dir())
    out: dict = {"systems": systems, "databases": [], "matrix": None}
    if system not in systems:
        return out
    gemm = core / "systems" / "data" / system / "gemm" / backend
    out["databases"] = sorted((p.name for p in gemm.iterdir() if p.is_dir()), key=_version_key) if gemm.is_dir() else []
    matrix = core / "systems" / "support_matrix" / f"{system}.csv"
    if matrix.is_file():
        rows = []
        with open(matrix, newline="") as f:
            for row in csv.DictReader(f):
                same = row.get("HuggingFaceID", "").lower() == model.lower()
                if same and row.get("Backend") == backend and row.get("Mode") == mode:
                    rows.append(
                        {"version": row.get("Version"), "status": row.get("Status"), "error": row.get("ErrMsg")}
                    )
        out["matrix"] = {"file": f"aiconfigurator_core/systems/support_matrix/{system}.csv", "rows": rows}
    return out


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def run_one(req: dict) -> dict:
    t0 = time.time()
    out: dict = {"id": req.get("id"), "ok": False, "coverage": None, "result": None, "error": None}
    try:
        out["coverage"] = coverage(req["model"], req["system"], req["backend"], req["mode"])
        from aiconfigurator.cli.api import cli_estimate

        noise = io.StringIO()  # the package logs its fallbacks and a deprecation notice to stdout/stderr
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            res = cli_estimate(
                req["model"], req["system"], mode=req["mode"], backend_name=req["backend"], **req["kwargs"]
            )
        out["result"] = {
            "ttft": res.ttft,
            "tpot": res.tpot,
            "backend_version": res.backend_version,
            "raw": _plain(res.raw),
            "kv_cache_warning": res.kv_cache_warning,
        }
        out["ok"] = True
    except BaseException as exc:  # every failure is an answer for that request
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = (
            str(exc).replace(str(_core_dir().parent) + os.sep, "") if "aiconfigurator_core" in sys.modules else str(exc)
        )
        out["error"] = f"{type(exc).__name__}: {text}"[:2000]
    out["seconds"] = round(time.time() - t0, 2)
    return out


def main() -> int:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    payload = json.load(sys.stdin)
    real_stdout = sys.stdout
    for req in payload.get("requests", []):
        real_stdout.write(json.dumps(run_one(req)) + "\n")
        real_stdout.flush()
    versions = {}
    for dist in ("aiconfigurator", "aiconfigurator-core"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    real_stdout.write(json.dumps({"meta": {"versions": versions, "python": sys.version.split()[0]}}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
