"""Deploys one recipe to a Kubernetes cluster and watches it:
the steps of a gpu run, one module per job, assembled here."""

from __future__ import annotations

from harness.run.k8s.base import MANAGED_BY, DeployerBase, PreflightReport
from harness.run.k8s.benchmark import EXPORT_FILE, BenchmarkSteps
from harness.run.k8s.cache import CACHE_MARKER, ModelCacheSteps
from harness.run.k8s.facts import (
    apply_order,
    gpu_products,
    local_aiperf_args,
    model_id,
    new_namespace_name,
    plain_docs,
    recipe_slug,
    referenced_secrets,
    router_mode,
    served_model_name,
)
from harness.run.k8s.frontend import FRONTEND_PORT, SYSTEM_PORT
from harness.run.k8s.namespace import NamespaceSteps
from harness.run.k8s.preflight import PreflightSteps
from harness.run.k8s.settings import DeploySettings, fmt_duration
from harness.run.k8s.teardown import TeardownSteps

__all__ = [
    "CACHE_MARKER",
    "EXPORT_FILE",
    "FRONTEND_PORT",
    "MANAGED_BY",
    "SYSTEM_PORT",
    "DeploySettings",
    "Deployer",
    "DeployerBase",
    "PreflightReport",
    "apply_order",
    "fmt_duration",
    "gpu_products",
    "local_aiperf_args",
    "model_id",
    "new_namespace_name",
    "plain_docs",
    "recipe_slug",
    "referenced_secrets",
    "router_mode",
    "served_model_name",
]


class Deployer(PreflightSteps, NamespaceSteps, ModelCacheSteps, BenchmarkSteps, TeardownSteps):
    """One recipe's life on the cluster. Every public method is a step the stage calls in order
    (preflight, model_cache, deploy, wait_ready, frontend_url, perf_job / perf_local);
    `teardown()` undoes what the run created, whatever happened before."""
