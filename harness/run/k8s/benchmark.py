"""The benchmark: perf.yaml's Job in the cluster (its export fetched from the PVC),
or AIPerf on the runner through the port-forward."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.analysis.benchmark import AiperfInvocation, PerfConfigError, find_invocation
from harness.recipe.yamlsrc import dig, to_plain
from harness.run.k8s.context import MANAGED_BY, GpuContext
from harness.run.k8s.facts import local_aiperf_args, model_id
from harness.run.k8s.frontend import frontend_url
from harness.run.k8s.mocker import to_mocker_job
from harness.run.k8s.rollout import first_blocker, mark_events, wait_job
from harness.run.k8s.settings import fmt_duration

EXPORT_FILE = "profile_export_aiperf.json"
ENV_REF = re.compile(r"\$(?:\{(\w+)\}|\((\w+)\)|(\w+))")
EXPORT_CLOCK_SLACK = 5  # seconds the PVC's file server may lag the API server's clock
# The fetch pod only runs `find` and `cat`: it must fit beside everything else, even on a kind node.
FETCH_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}


def _perf_job_doc(ctx: GpuContext) -> dict:
    """perf.yaml's Job as it is applied (rewritten for the mocker when asked)."""
    doc = ctx.recipe.perf_job()
    if doc is None:
        raise ctx.fail(f"{ctx.recipe.path / 'perf.yaml'}: no benchmark Job")
    job = to_plain(doc.data)
    return to_mocker_job(job) if ctx.settings.engine == "mocker" else job


def aiperf(ctx: GpuContext) -> AiperfInvocation:
    """The perf Job's `aiperf profile` call as the static checks and the sim read it (analysis.benchmark)."""
    try:
        return find_invocation(ctx.recipe)
    except PerfConfigError as exc:
        raise ctx.fail(str(exc)) from None


def perf_job(ctx: GpuContext, run: int = 1, runs: int = 1) -> Path:
    """Run perf.yaml's Job in the cluster, wait for it, copy its AIPerf export to the report folder
    (`run-<n>/` when the benchmark runs several times on the same deployment)."""
    job = _perf_job_doc(ctx)
    name = str(dig(job, "metadata", "name"))
    if ctx.kube.get("batch/v1", "Job", name, ctx.namespace) is not None:
        ctx.delete_and_wait("batch/v1", "Job", name)  # a Job's template is immutable; a rerun needs a fresh one
    mark_events(ctx)  # the previous run's events about this Job name are not this run's
    ctx.apply(job, what="benchmark Job")  # dry run, then create
    done = wait_job(ctx, name, ctx.settings.perf_timeout, "benchmark")
    data = _fetch_export(ctx, job, _epoch(dig(done, "status", "startTime")))
    out = ctx.settings.report_dir / "perf" / ctx.slug / (f"run-{run}" if runs > 1 else "") / EXPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(data)
    ctx.progress(f"benchmark{f' run {run}/{runs}' if runs > 1 else ''}: {EXPORT_FILE} saved to {out}")
    return out


def expand_env(value: str, env: list) -> str:
    """`$ARTIFACT_DIR`, `${ARTIFACT_DIR}` or `$(ARTIFACT_DIR)` with the container's own plain env values, so the
    export is looked for in this recipe's artifact folder, not anywhere on a PVC other recipes share."""
    plain = {e.get("name"): str(e.get("value")) for e in env if isinstance(e, dict) and "value" in e}
    return ENV_REF.sub(lambda m: plain.get(m.group(1) or m.group(2) or m.group(3), m.group(0)), value)


def _epoch(timestamp: Any) -> int:
    """An RFC 3339 time of the API server (`2026-12-07T01:02:03Z`) as seconds since the epoch; 0 when absent."""
    try:
        return int(datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def export_script(roots: list[str], since: int) -> str:
    """Print the newest export under `roots` written at or after `since` (epoch seconds, the benchmark Job's
    start; a few seconds' slack for the file server's clock): an export of an earlier run, or of another
    recipe's Job on the same PVC, is never this run's. `stat -c %Y` works in GNU coreutils and busybox."""
    where = " ".join(f"'{r}'" for r in roots)
    return (
        f"since={max(0, since - EXPORT_CLOCK_SLACK)}; best=; bestm=0; "
        f"for f in $(find {where} -name {EXPORT_FILE} -type f 2>/dev/null); do "
        f'm=$(stat -c %Y "$f"); if [ "$m" -ge "$since" ] && [ "$m" -ge "$bestm" ]; then best=$f; bestm=$m; fi; '
        f"done; "
        f'if [ -z "$best" ]; then echo "no {EXPORT_FILE} under {" ".join(roots)} written since the Job started" >&2; '
        f'exit 3; fi; cat "$best"'
    )


def _fetch_export(ctx: GpuContext, job: dict, since: int = 0) -> str:
    """A short-lived pod with the Job's image and PVC mounts prints this run's export file (export_script)."""
    pod_spec = dig(job, "spec", "template", "spec") or {}
    container = (pod_spec.get("containers") or [{}])[0]
    pvc_volumes = {
        v["name"]: v for v in pod_spec.get("volumes") or [] if isinstance(v, dict) and v.get("persistentVolumeClaim")
    }
    mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") in pvc_volumes]
    if not mounts:
        raise ctx.fail(
            f"benchmark Job {dig(job, 'metadata', 'name')} mounts no PVC, "
            f"so its {EXPORT_FILE} cannot be collected: "
            "write the AIPerf artifacts to the model-cache PVC"
        )
    artifact_dir = expand_env(aiperf(ctx).get("--artifact-dir") or "", container.get("env") or [])
    roots = [str(m["mountPath"]) for m in mounts]
    if artifact_dir and "$" not in artifact_dir and any(artifact_dir.startswith(r) for r in roots):
        roots = [artifact_dir]
    script = export_script(roots, since)
    pod_name = f"{str(dig(job, 'metadata', 'name'))[:40]}-fetch-{uuid.uuid4().hex[:5]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "labels": dict(MANAGED_BY, **{"recipe-harness/role": "fetch-export"})},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "fetch",
                    "image": container.get("image"),
                    "command": ["sh", "-c", script],
                    "resources": FETCH_RESOURCES,
                    "volumeMounts": [dict(m, readOnly=True) for m in mounts],
                }
            ],
            "volumes": [pvc_volumes[m["name"]] for m in mounts],
        },
    }
    if pod_spec.get("imagePullSecrets"):
        pod["spec"]["imagePullSecrets"] = pod_spec["imagePullSecrets"]
    ctx.apply(pod, what="export fetch pod")
    start = ctx.clock()
    timeout, cut = ctx.budget(ctx.settings.fetch_timeout)
    while True:
        current = ctx.kube.get("v1", "Pod", pod_name, ctx.namespace) or {}
        phase = dig(current, "status", "phase")
        if phase in ("Succeeded", "Failed"):
            break
        blocker = first_blocker(ctx, [current]) if current else None
        if blocker:
            raise ctx.fail(f"cannot fetch {EXPORT_FILE}: {blocker.message}")
        if ctx.clock() - start >= timeout:
            raise ctx.fail(f"export fetch pod {pod_name} did not finish {ctx.timed_out('', timeout, cut).strip()}")
        ctx.sleep(ctx.settings.poll_interval)
    log = ctx.kube.pod_log(ctx.namespace, pod_name, "fetch")
    ctx.kube.delete("v1", "Pod", pod_name, ctx.namespace)
    if phase == "Failed":
        raise ctx.fail(f"cannot fetch {EXPORT_FILE} from the PVC: {log.strip()[-500:]}")
    try:
        json.loads(log)
    except ValueError:
        raise ctx.fail(f"{EXPORT_FILE} fetched from the PVC is not JSON (first bytes: {log[:120]!r})") from None
    return log


def perf_local(
    ctx: GpuContext, run: Callable[[list[str], Path, float], Any] | None = None, repeat: int = 1, repeats: int = 1
) -> Path:
    """AIPerf from the runner through the port-forward, with the Job's own options. Returns the artifact folder,
    a fresh one per repeat (`aiperf/run-<n>/`, emptied first): a run that writes nothing is never read as the
    previous run's export, and a non-zero exit fails whatever files exist."""
    from harness.run.perf import run_aiperf

    inv = aiperf(ctx)
    url = frontend_url(ctx)
    artifacts = ctx.settings.report_dir / "perf" / ctx.slug / "aiperf" / (f"run-{repeat}" if repeats > 1 else "")
    if artifacts.is_dir():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    tokenizer = inv.get("--tokenizer")
    # a tokenizer path inside the PVC does not exist on the runner: load it by model id instead
    local_tokenizer = (
        model_id(ctx.recipe) if tokenizer and tokenizer.startswith("/") and not Path(tokenizer).exists() else None
    )
    args = local_aiperf_args(inv.options, url, artifacts, local_tokenizer)
    log = artifacts.parent / (f"aiperf-run-{repeat}.log" if repeats > 1 else "aiperf.log")
    ctx.progress(f"benchmark: aiperf {' '.join(args[:1])} locally against {url} (log {log})")
    outcome = (run or run_aiperf)(args, log, ctx.settings.perf_timeout)
    if getattr(outcome, "timed_out", False):
        raise ctx.fail(f"local aiperf did not finish within {fmt_duration(ctx.settings.perf_timeout)} (log {log})")
    if outcome.returncode not in (0, None):
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise ctx.fail(f"local aiperf exited {outcome.returncode} (run {repeat} of {repeats}, log {log}): {tail}")
    if not (artifacts / EXPORT_FILE).exists():
        raise ctx.fail(f"local aiperf exited 0 without writing {EXPORT_FILE} in {artifacts} (log {log})")
    return artifacts
