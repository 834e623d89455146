"""AIPerf: derive its arguments from a recipe's perf Job, run it, and parse its export into a PerfResult."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.benchmark import AiperfInvocation
from harness.results.metrics import MetricStat, PerfResult

SUMMARY_FILE = "profile_export_aiperf.json"
RECORDS_FILE = "profile_export.jsonl"

# Taken from the Job (some scaled); everything else in the Job is dropped and listed.
KEPT = {
    "--model",
    "--endpoint-type",
    "--streaming",
    "--synthetic-input-tokens-mean",
    "--synthetic-input-tokens-stddev",
    "--output-tokens-mean",
    "--output-tokens-stddev",
    "--extra-inputs",
    "--concurrency",
    "--request-count",
    "--random-seed",
    "--warmup-request-count",
}
# Set by the runner for the local stack, never taken from the Job.
RUNNER_OWNED = {
    "--url",
    "--tokenizer",
    "--artifact-dir",
    "--ui-type",
    "--ui",
    "--no-gpu-telemetry",
    "--use-server-token-count",
    "--gpu-telemetry",
    "--server-metrics",
    "--no-server-metrics",
}


@dataclass(frozen=True)
class Scale:
    """How far a benchmark is scaled down (a sim profile's limits)."""

    max_concurrency: int
    request_count: int
    max_input_tokens: int
    max_output_tokens: int


@dataclass
class AiperfPlan:
    """The argument list to run and what was changed from the Job, for the report."""

    args: list[str]
    expected_requests: int
    output_tokens: int | None
    changes: list[str] = field(default_factory=list)


# ---- finding the invocation -----------------------------------------------------------------


# ---- scaling for a small machine --------------------------------------------------------------


def scaled_args(
    inv: AiperfInvocation, *, model: str, url: str, tokenizer: Path, artifact_dir: Path, scale: Scale
) -> AiperfPlan:
    """AIPerf args that keep the Job's workload shape (ISL/OSL, seed, streaming, endpoint, extra inputs)
    but scale concurrency, request count and sequence lengths to `scale`; every change is listed."""
    changes: list[str] = []
    isl = _capped(inv, "--synthetic-input-tokens-mean", scale.max_input_tokens, changes)
    osl = _capped(inv, "--output-tokens-mean", scale.max_output_tokens, changes)
    concurrency = _capped(inv, "--concurrency", scale.max_concurrency, changes) or scale.max_concurrency
    requests = _capped(inv, "--request-count", scale.request_count, changes) or scale.request_count
    args = ["profile", "--model", model, "--url", url, "--endpoint-type", inv.get("--endpoint-type") or "chat"]
    if inv.has("--streaming"):
        args.append("--streaming")
    if isl:
        args += [
            "--synthetic-input-tokens-mean",
            str(isl),
            "--synthetic-input-tokens-stddev",
            inv.get("--synthetic-input-tokens-stddev") or "0",
        ]
    if osl:
        args += ["--output-tokens-mean", str(osl), "--output-tokens-stddev", inv.get("--output-tokens-stddev") or "0"]
    for key, value in inv.extra_inputs.items():
        # min_tokens/max_tokens pin the output length to the Job's OSL: follow the scaled OSL.
        if key in ("min_tokens", "max_tokens") and osl and _int(value) and _int(value) >= osl and _int(value) != osl:
            changes.append(f"--extra-inputs {key}:{value} -> {key}:{osl} (follows the scaled OSL)")
            value = str(osl)
        args += ["--extra-inputs", f"{key}:{value}"]
    args += ["--concurrency", str(concurrency), "--request-count", str(requests)]
    seed = inv.get("--random-seed")
    if seed is not None:
        args += ["--random-seed", seed]
    warmup = _int(inv.get("--warmup-request-count"))
    if warmup:
        args += ["--warmup-request-count", str(min(warmup, concurrency))]
    for flag, value in inv.options:
        if flag not in KEPT and flag not in RUNNER_OWNED:
            changes.append(f"{flag}{' ' + value if value is not None else ''} dropped (not part of the sim workload)")
    args += [
        "--tokenizer",
        str(tokenizer),
        "--use-server-token-count",
        "--ui-type",
        "none",
        "--no-gpu-telemetry",
        "--artifact-dir",
        str(artifact_dir),
    ]
    # Only a pinned output length is a target the result can be held to.
    pinned = inv.extra_inputs.get("ignore_eos", "").lower() == "true" or "min_tokens" in inv.extra_inputs
    return AiperfPlan(args, requests, osl if osl and pinned else None, changes)


def _capped(inv: AiperfInvocation, flag: str, cap: int, changes: list[str]) -> int | None:
    raw = inv.get(flag)
    if raw is None:
        return None
    value = _int(raw)
    if value is None:
        changes.append(f"{flag} {raw!r} is not a number after expanding the Job's env; using {cap}")
        return cap
    if value > cap:
        changes.append(f"{flag} {value} -> {cap} (sim profile)")
        return cap
    return value


def _int(raw: str | None) -> int | None:
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


# ---- running ------------------------------------------------------------------------------------


@dataclass
class AiperfRun:
    returncode: int | None
    wall_s: float
    log_path: Path
    timed_out: bool = False


def aiperf_env(base: dict[str, str]) -> dict[str, str]:
    """AIPerf fails to load a local tokenizer path while HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE are set."""
    return {k: v for k, v in base.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}


def run_aiperf(args: list[str], log_path: Path, timeout_s: float, cwd: Path | None = None) -> AiperfRun:
    """Run `aiperf <args>` in its own process group; on timeout or interruption the whole group is killed."""
    from harness.run.processes import spawn_logged, terminate_groups

    argv = [str(Path(sys.executable).with_name("aiperf")), *args]
    if not Path(argv[0]).exists():
        argv = [sys.executable, "-m", "aiperf", *args]
    t0 = time.monotonic()
    popen = spawn_logged(argv, aiperf_env(dict(os.environ)), log_path, cwd)
    try:
        code = popen.wait(timeout=timeout_s)
        return AiperfRun(code, time.monotonic() - t0, log_path)
    except subprocess.TimeoutExpired:
        return AiperfRun(None, time.monotonic() - t0, log_path, timed_out=True)
    finally:
        terminate_groups([popen], grace_s=5.0)


# ---- parsing ------------------------------------------------------------------------------------


def parse_profile_export(
    path: Path,
    expected_requests: int | None = None,
    target_output_tokens: int | None = None,
    aiperf_args: list[str] | None = None,
) -> PerfResult:
    """A PerfResult from `profile_export_aiperf.json` or the artifact dir holding it (local, or fetched from
    a cluster). Any request error, a cancelled or short run, or output lengths off target make it invalid:
    never a measurement. Expected requests and the output-length target default to the run's own input_config."""
    path = Path(path)
    artifact_dir = path if path.is_dir() or path.suffix != ".json" else path.parent
    summary_path = artifact_dir / SUMMARY_FILE if artifact_dir == path else path
    result = PerfResult(
        expected_requests=expected_requests or 0,
        target_output_tokens=target_output_tokens,
        aiperf_args=list(aiperf_args or []),
        artifact_dir=str(artifact_dir),
    )
    if not summary_path.exists():
        result.errors, result.error_count = record_errors(artifact_dir / RECORDS_FILE)
        detail = f": {result.errors[0]}" if result.errors else ""
        result.invalid_reason = f"AIPerf wrote no {SUMMARY_FILE}{detail}"
        return result
    try:
        data = json.loads(summary_path.read_text())
    except (OSError, ValueError) as e:
        result.invalid_reason = f"{summary_path} is unreadable: {e}"
        return result
    if not isinstance(data, dict):
        result.invalid_reason = f"{summary_path} is not a JSON object"
        return result
    planned_requests, planned_osl = planned_workload(data.get("input_config"))
    result.expected_requests = expected_requests or planned_requests
    if target_output_tokens is None:
        result.target_output_tokens = planned_osl
    return summarise(data, result)


def planned_workload(input_config: object) -> tuple[int, int | None]:
    """(requests of the profiling phase, pinned output length or None) from AIPerf's echoed input_config."""
    if not isinstance(input_config, dict):
        return 0, None
    phases = [p for p in input_config.get("phases") or [] if isinstance(p, dict) and p.get("kind") == "profiling"]
    requests = _int(phases[0].get("requests")) if phases else None
    extra = (input_config.get("endpoint") or {}).get("extra") or {}
    pinned = extra.get("ignore_eos") is True or "min_tokens" in extra
    datasets = [d for d in input_config.get("datasets") or [] if isinstance(d, dict)]
    osl = ((datasets[0].get("prompts") or {}).get("osl") or {}).get("mean") if datasets else None
    target = int(osl) if pinned and isinstance(osl, (int, float)) and osl > 0 else None
    return requests or 0, target


def summarise(data: dict, result: PerfResult) -> PerfResult:
    """Fill a PerfResult from the parsed summary JSON and decide whether it is a valid measurement."""
    result.aiperf_version = str(data.get("aiperf_version") or "")
    result.metrics = {
        name: metric_stat(name, value) for name, value in data.items() if isinstance(value, dict) and "unit" in value
    }
    completed = _avg(data, "completed_request_count")
    if completed is None:
        completed = _avg(data, "request_count")
    result.completed_requests = int(completed or 0)
    summary = [e for e in data.get("error_summary") or [] if isinstance(e, dict)]
    result.errors = [_describe_error(e.get("error_details") or {}, int(e.get("count") or 0)) for e in summary]
    result.error_count = max(
        sum(int(e.get("count") or 0) for e in summary), int(_avg(data, "error_request_count") or 0)
    )
    result.invalid_reason = invalid_reason(data, result)
    return result


def invalid_reason(data: dict, result: PerfResult) -> str:
    if data.get("was_cancelled"):
        return f"the run was cancelled after {result.completed_requests} of {result.expected_requests} requests"
    if data.get("is_complete") is False:
        return f"the run is incomplete: {result.completed_requests} of {result.expected_requests} requests"
    if result.error_count:
        first = f" (first: {result.errors[0]})" if result.errors else ""
        return f"{result.error_count} request(s) failed{first}"
    if result.expected_requests and result.completed_requests < result.expected_requests:
        return f"only {result.completed_requests} of {result.expected_requests} requests completed"
    if not result.metrics.get("request_throughput"):
        return "no request_throughput in the export"
    osl = result.metrics.get("output_sequence_length")
    target = result.target_output_tokens
    if target and osl and (osl.min != target or osl.max != target):
        return f"output length off target: {osl.min:g}-{osl.max:g} tokens, target {target}"
    return ""


def metric_stat(name: str, value: dict) -> MetricStat:
    def num(key: str) -> float | None:
        v = value.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return MetricStat(
        name,
        str(value.get("unit") or ""),
        num("avg"),
        num("p50"),
        num("p90"),
        num("p99"),
        num("min"),
        num("max"),
        num("std"),
    )


def record_errors(records_path: Path, limit: int = 5) -> tuple[list[str], int]:
    """(distinct request errors, how many requests failed) from the per-request export.

    AIPerf writes no summary when every request fails; the records still say why."""
    counts: dict[str, int] = {}
    try:
        lines = records_path.read_text(errors="replace").splitlines()
    except OSError:
        return [], 0
    for line in lines:
        try:
            err = json.loads(line).get("error")
        except (ValueError, AttributeError):
            continue
        if isinstance(err, dict):
            key = _describe_error(err)
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [f"{k} (x{n})" for k, n in ranked], sum(counts.values())


def _describe_error(details: dict, count: int = 0) -> str:
    code = details.get("code")
    message = str(details.get("message") or details.get("type") or "error")
    try:  # servers often put a JSON body in the message
        inner = json.loads(message)
        if isinstance(inner, dict) and inner.get("message"):
            message = str(inner["message"])
    except ValueError:
        pass
    text = f"HTTP {code}: {message}" if code else message
    return f"{text[:200]} (x{count})" if count else text[:200]


def _avg(data: dict, key: str) -> float | None:
    v = data.get(key)
    if isinstance(v, dict) and isinstance(v.get("avg"), (int, float)):
        return float(v["avg"])
    return None
