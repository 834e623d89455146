"""The run's namespace and the secrets the recipe reads, created before anything else."""

from __future__ import annotations

import base64
import re

from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.context import MANAGED_BY, RUN_LABEL, GpuContext
from harness.run.k8s.settings import fmt_duration
from harness.run.k8s.shared import hold


def _wait_terminated(ctx: GpuContext) -> None:
    """A namespace being deleted (by a person, or a run before the cache moved) refuses new content with 403
    until the namespace controller has emptied it: wait for it to go, then create it afresh."""
    start = ctx.clock()
    timeout, _ = ctx.budget(ctx.settings.fetch_timeout)
    while True:
        ns = ctx.kube.get("v1", "Namespace", ctx.namespace)
        if ns is None or not dig(ns, "metadata", "deletionTimestamp"):
            return
        if ctx.clock() - start >= timeout:
            raise ctx.fail(
                f"namespace {ctx.namespace} is still Terminating after {fmt_duration(timeout)}: "
                f"see `kubectl get namespace {ctx.namespace} -o yaml` (status.conditions name what blocks it)"
            )
        ctx.progress(f"namespace {ctx.namespace} is Terminating; waiting for it to go")
        ctx.sleep(ctx.settings.poll_interval)


def ensure_namespace(ctx: GpuContext) -> None:
    """The run's namespace (waiting out a Terminating one) and the secrets preflight planned, once per run."""
    if ctx.namespace_ready:
        return
    _wait_terminated(ctx)
    if ctx.kube.get("v1", "Namespace", ctx.namespace) is None:
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", ctx.recipe.model)[:63].strip("_-.")
        labels = dict(MANAGED_BY, **({"recipe-harness/model": model} if model else {}))
        try:
            ctx.kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.namespace, "labels": labels}},
                None,
            )
        except KubeError as exc:
            raise ctx.fail(f"cannot create namespace {ctx.namespace}: {exc}") from None
        ctx.owns_namespace = True
        ctx.progress(f"namespace {ctx.namespace} created (it stays: it holds the model cache for the next run)")
    ctx.namespace_ready = True
    for name, plan in ctx.secret_plan.items():
        ref = ("v1", "Secret", name)
        if plan == "present":
            # a Secret another run made: hold it, so that run's teardown leaves it while this one needs it
            found = ctx.kube.get("v1", "Secret", name, ctx.namespace) or {}
            if (dig(found, "metadata", "labels") or {}).get("app.kubernetes.io/managed-by") == MANAGED_BY[
                "app.kubernetes.io/managed-by"
            ]:
                hold(ctx, ref)
            continue
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "labels": dict(MANAGED_BY, **{RUN_LABEL: ctx.run_id}),
            },
        }
        if plan == "from-env":
            token = ctx.env.get(ctx.settings.hf_token_env, "")
            secret.update(type="Opaque", data={ctx.settings.hf_secret_key: base64.b64encode(token.encode()).decode()})
            source = f"${ctx.settings.hf_token_env}"
        elif plan == "placeholder":
            # the mocker loads a public tokenizer: an empty token is "no token" to huggingface_hub, and the
            # workers' envFromSecret finds its Secret (a missing one is CreateContainerConfigError)
            secret.update(type="Opaque", data={ctx.settings.hf_secret_key: ""})
            source = "nothing (an empty token: --engine mocker needs none)"
        else:
            found = ctx.kube.secret(ctx.settings.secret_source_namespace, name)
            if found is None:
                raise ctx.fail(f"secret {name} disappeared from namespace {ctx.settings.secret_source_namespace}")
            # type and bytes as they are: a docker config stays a docker config, binary values stay binary
            secret.update(type=found[0], data=found[1])
            source = f"namespace {ctx.settings.secret_source_namespace} ({found[0]})"
        try:
            action = ctx.kube.apply(secret, ctx.namespace, keep_existing=True)
        except KubeError as exc:
            raise ctx.fail(f"cannot create secret {name}: {exc}") from None
        if action == "unchanged":  # another run created it since preflight looked
            hold(ctx, ref)
            ctx.progress(f"secret {name} found (created by another run meanwhile)")
            continue
        ctx.created.append(ref)
        hold(ctx, ref)
        ctx.progress(f"secret {name} created from {source}")
