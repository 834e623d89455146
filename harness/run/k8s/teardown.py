"""After the run: diagnostics of a failure, and undoing what the run created."""

from __future__ import annotations

from pathlib import Path

from harness.recipe.yamlsrc import dig
from harness.run.k8s.context import GpuContext
from harness.run.k8s.diagnostics import Diagnostics


def collect_diagnostics(ctx: GpuContext, step: str, reason: str) -> Path | None:
    """What the namespace shows after a failed step (events, pods, logs, the DGD), redacted; None when
    there is no namespace yet or the collection itself failed."""
    if not ctx.namespace_ready:
        return None
    try:
        diag = Diagnostics(
            ctx.kube,
            ctx.namespace,
            ctx.diagnostics_dir,
            ctx.redactor,
            (ctx.dgd_api_version, ctx.dgd_name) if ctx.dgd_name else None,
            ctx.settings.log_tail_lines,
        )
        path = diag.collect(step, reason)
    except Exception as exc:
        ctx.progress(f"diagnostics incomplete: {type(exc).__name__}: {exc}")
        return None
    ctx.progress(f"diagnostics written to {path}")
    return path


def teardown(ctx: GpuContext) -> None:
    """Undo what this run created. Idempotent; never raises."""
    if ctx.closed:
        return
    ctx.closed = True
    if ctx.access is not None:
        try:
            ctx.access.close()
        except Exception:
            pass
    if not ctx.namespace_ready:
        return
    cache = {
        ("PersistentVolumeClaim", str(dig(d, "metadata", "name")))
        for d in ctx.cache_docs()
        if d.get("kind") == "PersistentVolumeClaim"
    }
    if ctx.settings.keep:
        ctx.progress(
            f"kept what the run made in namespace {ctx.namespace} (--keep); remove it with: "
            f"kubectl delete -n {ctx.namespace} "
            + " ".join(f"{k.lower()}/{n}" for _, k, n in ctx.created if (k, n) not in cache)
        )
        ctx.kube.close()
        return
    # the deployment, its Jobs, helper pods and copied secrets go; the namespace and the filled model cache stay
    left: list[str] = []
    removed = 0
    for api_version, kind, name in reversed(ctx.created):
        if (kind, name) in cache:
            continue
        try:
            ctx.kube.delete(api_version, kind, name, ctx.namespace)
            removed += 1
        except Exception as exc:
            left.append(f"{kind.lower()}/{name} ({type(exc).__name__}: {str(exc)[:120]})")
    kept = ", ".join(f"PVC {n}" for _, n in sorted(cache)) or "nothing"
    ctx.progress(
        f"removed {removed} object(s) this run applied in namespace {ctx.namespace}; kept {kept} for the next run"
    )
    if left:
        ctx.progress(
            f"teardown incomplete: could not delete {', '.join(left)}; delete them with kubectl -n {ctx.namespace}"
        )
    ctx.kube.close()
