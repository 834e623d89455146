"""The frontend as the runner sees it:
its Service through a port-forward, the served model listed, the workers' request counters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import DGD_LABEL, GpuContext
from harness.run.k8s.facts import frontend_service, served_model_name
from harness.run.k8s.portforward import PortForwardError, default_access

FRONTEND_PORT = 8000
SYSTEM_PORT = 9090  # the workers' metrics/health port the operator sets (DYN_SYSTEM_PORT)


def frontend_url(ctx: GpuContext) -> str:
    """A URL on the runner that reaches the frontend's Service (port 8000), once the served model is listed."""
    if ctx.base_url:
        return ctx.base_url
    if ctx.access is None:
        ctx.access = default_access(ctx.kube, ctx.settings.kubeconfig, ctx.settings.frontend_url)
    service = frontend_service(ctx.recipe)
    try:
        url = ctx.access.open(ctx.namespace, service, FRONTEND_PORT)
    except PortForwardError as exc:
        raise ctx.fail(f"cannot reach svc/{service}:{FRONTEND_PORT}: {exc}") from None
    ctx.progress(f"frontend svc/{service}:{FRONTEND_PORT} reachable at {url}")
    _wait_model_listed(ctx, url)
    ctx.base_url = url
    return url


def _wait_model_listed(ctx: GpuContext, url: str) -> None:
    # Ready pods are not enough: the model registers with the frontend after the worker starts.
    served = served_model_name(ctx.recipe)
    start = ctx.clock()
    timeout, cut = ctx.budget(ctx.settings.model_timeout)
    listed: list[str] = []
    error = ""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as resp:
                body = json.loads(resp.read().decode("utf-8", "replace"))
            listed = [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]
            error = ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if served in listed:
            return
        if ctx.clock() - start >= timeout:
            seen = f"/v1/models lists {listed}" if not error else f"last error {error}"
            raise ctx.fail(
                f"the frontend never listed model {served!r} {ctx.timed_out('', timeout, cut).strip()} ({seen})"
            )
        ctx.sleep(ctx.settings.poll_interval)


def worker_pods(ctx: GpuContext) -> dict[str, str]:
    """Running worker pods of the DGD -> their service name. The operator labels every pod of a DGD with its name
    (nvidia.com/dynamo-graph-deployment-name) and its component (nvidia.com/dynamo-component), and names them
    `<dgd>-<service lowercased>-...`: another DGD's worker of the same component name is not this run's."""
    dep = ctx.recipe.deployment
    workers = {w.name: w for w in dep.workers} if dep else {}
    out: dict[str, str] = {}
    for pod in ctx.kube.list("v1", "Pod", ctx.namespace, f"{DGD_LABEL}={ctx.dgd_name}"):
        name = str(dig(pod, "metadata", "name"))
        label = (dig(pod, "metadata", "labels") or {}).get("nvidia.com/dynamo-component")
        service = (
            label
            if label in workers
            else next((w for w in workers if name.startswith(f"{ctx.dgd_name}-{w.lower()}-")), None)
        )
        if service and dig(pod, "status", "phase") == "Running":
            out[name] = service
    return out


def worker_request_counts(ctx: GpuContext) -> dict[str, int]:
    """Requests each worker pod's `generate` endpoint has served, from its /metrics (-1: unreadable)."""
    from harness.run.prometheus import prometheus_sum

    counts: dict[str, int] = {}
    for pod in sorted(worker_pods(ctx)):
        try:
            text = ctx.kube.pod_proxy_get(ctx.namespace, pod, SYSTEM_PORT, "metrics")
            counts[pod] = int(prometheus_sum(text, "dynamo_component_requests_total", dynamo_endpoint="generate"))
        except KubeError:
            counts[pod] = -1
    return counts
