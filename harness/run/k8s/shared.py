"""Objects several runs use at once in one namespace (the token Secret, the model download Job): each run that uses
one marks it with an annotation of its own, and only the last holder to leave may remove the object.

Each run writes its mark by server-side apply under a field manager of its own (`recipe-harness-<run id>`), so the
API server keeps every run's mark apart: a run adding or dropping its mark never touches another's, and two runs
doing so at once cannot lose one (kubernetes.io/docs/reference/using-api/server-side-apply: a manager that stops
applying a field it owned removes it).
"""

from __future__ import annotations

from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import FIELD_MANAGER, KubeError
from harness.run.k8s.context import HOLDER_PREFIX, GpuContext


def holders_of(obj: dict | None) -> list[str]:
    """The run ids whose mark the object carries."""
    annotations = dig(obj or {}, "metadata", "annotations") or {}
    return sorted(k[len(HOLDER_PREFIX) :] for k in annotations if str(k).startswith(HOLDER_PREFIX))


def _mark(ctx: GpuContext, ref: tuple[str, str, str], obj: dict, held: bool) -> None:
    """The mark by server-side apply, on the object as read (its uid a precondition: an apply to an object
    deleted meanwhile must not create an empty one)."""
    api_version, kind, name = ref
    metadata = {"name": name, "uid": dig(obj, "metadata", "uid")}
    metadata["annotations"] = {HOLDER_PREFIX + ctx.run_id: "held"} if held else {}
    body = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    ctx.kube.apply_as(body, ctx.namespace, f"{FIELD_MANAGER}-{ctx.run_id}")


def hold(ctx: GpuContext, ref: tuple[str, str, str]) -> bool:
    """Mark the object as held by this run (False: it is gone)."""
    obj = ctx.kube.get(ref[0], ref[1], ref[2], ctx.namespace)
    if obj is None:
        return False
    try:
        _mark(ctx, ref, obj, True)
    except KubeError as exc:
        if exc.status == 404 or ctx.kube.get(ref[0], ref[1], ref[2], ctx.namespace) is None:
            return False
        raise
    if ref not in ctx.held:
        ctx.held.append(ref)
    return True


def release(ctx: GpuContext, ref: tuple[str, str, str]) -> list[str]:
    """Drop this run's mark; the other runs that still hold the object."""
    obj = ctx.kube.get(ref[0], ref[1], ref[2], ctx.namespace)
    if obj is None:
        return []
    _mark(ctx, ref, obj, False)
    current = ctx.kube.get(ref[0], ref[1], ref[2], ctx.namespace)
    return [h for h in holders_of(current) if h != ctx.run_id]
