"""After the run: diagnostics of a failure, and undoing what the run created."""

from __future__ import annotations

from pathlib import Path

from harness.recipe.model import DGD_KIND
from harness.recipe.yamlsrc import dig
from harness.run.k8s.context import MANAGED_BY, RUN_LABEL, GpuContext
from harness.run.k8s.diagnostics import Diagnostics
from harness.run.k8s.rollout import OPERATOR_RBAC, RBAC_API, dgd_pods, owned_by
from harness.run.k8s.shared import release


def _made_by_a_run(obj: dict | None) -> bool:
    labels = dig(obj or {}, "metadata", "labels") or {}
    return RUN_LABEL in labels or MANAGED_BY.items() <= labels.items()


def _operator_rbac(ctx: GpuContext, left: list[str]) -> int:
    """The operator's planner (and EPP) ServiceAccount and RoleBinding, when this run's DGD made them appear and no
    other DGD is left in the namespace to use them; only in a namespace given with --namespace (the model's own
    namespace is the harness's). Returns how many went."""
    if not ctx.settings.namespace or ctx.dgd_applied is None:
        return 0
    try:
        others = [
            d
            for d in ctx.kube.list(ctx.dgd_api_version, DGD_KIND, ctx.namespace)
            if dig(d, "metadata", "name") != ctx.dgd_name and not dig(d, "metadata", "deletionTimestamp")
        ]
    except Exception:
        return 0
    if others:
        return 0
    removed = 0
    for kind, name in OPERATOR_RBAC:
        if (kind, name) in ctx.operator_rbac_before:
            continue
        try:
            removed += bool(ctx.kube.delete(RBAC_API[kind], kind, name, ctx.namespace))
        except Exception as exc:
            left.append(f"{kind.lower()}/{name} ({type(exc).__name__}: {str(exc)[:120]})")
    return removed


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
            run_objects(ctx),
        )
        path = diag.collect(step, reason)
    except Exception as exc:
        ctx.progress(f"diagnostics incomplete: {type(exc).__name__}: {exc}")
        return None
    ctx.progress(f"diagnostics written to {path}")
    return path


def run_objects(ctx: GpuContext):
    """(kind, name) -> whether it is this run's: its DGD and what the operator made of it (the DGD's pods by
    the operator's label), what it applied or holds, and those Jobs' pods."""
    try:
        pods = dgd_pods(ctx)
        jobs = tuple(n for _, k, n in [*ctx.created, *ctx.held] if k == "Job")
        pods += [p for j in jobs for p in ctx.kube.list("v1", "Pod", ctx.namespace, f"job-name={j}")]
        pods += ctx.kube.list("v1", "Pod", ctx.namespace, f"{RUN_LABEL}={ctx.run_id}")
    except Exception:
        pods, jobs = [], ()
    return owned_by(ctx, pods, jobs)


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
    # the deployment, its Jobs, helper pods and copied secrets go; the namespace and the filled model cache stay;
    # a shared object goes with its last holder
    left: list[str] = []
    shared_kept: list[str] = []
    removed = 0
    created = list(ctx.created)
    for ref in ctx.held:
        if ref not in created:
            created.append(ref)
    for ref in reversed(created):
        api_version, kind, name = ref
        if (kind, name) in cache:
            continue
        try:
            if ref in ctx.held:
                others = release(ctx, ref)
                if others:
                    shared_kept.append(f"{kind.lower()}/{name} (held by run {', '.join(others)})")
                    continue
                current = ctx.kube.get(api_version, kind, name, ctx.namespace)
                if ref not in ctx.created and not _made_by_a_run(current):
                    continue
            ctx.kube.delete(api_version, kind, name, ctx.namespace)
            removed += 1
        except Exception as exc:
            left.append(f"{kind.lower()}/{name} ({type(exc).__name__}: {str(exc)[:120]})")
    removed += _operator_rbac(ctx, left)
    if shared_kept:
        ctx.progress(f"left {', '.join(shared_kept)} in namespace {ctx.namespace}")
    kept = ", ".join(f"PVC {n}" for _, n in sorted(cache)) or "nothing"
    ctx.progress(
        f"removed {removed} object(s) this run applied in namespace {ctx.namespace}; kept {kept} for the next run"
    )
    if left:
        ctx.progress(
            f"teardown incomplete: could not delete {', '.join(left)}; delete them with kubectl -n {ctx.namespace}"
        )
    ctx.kube.close()
