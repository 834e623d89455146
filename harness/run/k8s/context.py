"""The world one gpu run's steps work in, passed to each step explicitly: the cluster client, the recipe
and settings, the namespace, the run id, the redactor, the clock, the progress sink, what the run created,
and what one step leaves for the next (the secret plan, the fitted PVC modes, the DGD before and after apply).

Every step of the stage is a plain function `step(ctx, ...)` in its own module (preflight, namespace,
cache, rollout, frontend, benchmark, teardown); `GpuRun` (harness/run/k8s/run.py) calls them in order.
The methods here are the plumbing every step shares: progress lines, redacted failures, applying one
manifest, the time budget.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import Kube, KubeError
from harness.run.k8s.diagnostics import Redactor
from harness.run.k8s.facts import model_namespace, plain_docs, recipe_slug
from harness.run.k8s.portforward import FrontendAccess
from harness.run.k8s.settings import DeploySettings, fmt_duration
from harness.run.stage import StepFailed

MANAGED_BY = {"app.kubernetes.io/managed-by": "recipe-harness"}
# Every object a run applies carries its run id; teardown and diagnostics go by it.
RUN_LABEL = "recipe-harness.dynamo.nvidia.com/run-id"
# Objects several runs may use at once (the HF token Secret, the model download Job) carry one annotation
# `<HOLDER_PREFIX><run id>` per run holding them (harness/run/k8s/shared.py). The last holder to leave removes
# what a run made; none removes it while another holds it.
HOLDER_PREFIX = "held-by.recipe-harness.dynamo.nvidia.com/"
# What the operator labels every pod of a DGD with (ai-dynamo/dynamo deploy/operator/internal/consts/consts.go
# KubeLabelDynamoGraphDeploymentName).
DGD_LABEL = "nvidia.com/dynamo-graph-deployment-name"


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class PreflightReport:
    """What preflight found; `hardware` is the GPU product the run will be compared on."""

    server: str = ""
    dgd_versions: list[str] = field(default_factory=list)
    hardware: str = ""
    gpus_needed: int = 0
    gpus_allocatable: int = 0
    storage_class: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # name -> present | from-env | copy


@dataclass
class GpuContext:
    """One recipe's run on one cluster: what every step reads and what the steps hand on to each other."""

    kube: Kube
    recipe: Recipe
    settings: DeploySettings
    namespace: str
    env: dict[str, str]  # the runner's environment (the HF token comes from it)
    sink: Callable[[str], None] = _stderr_progress  # where progress lines go (redacted first)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    access: FrontendAccess | None = None  # how the runner reaches the frontend (default: a port-forward)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    redactor: Redactor = field(default_factory=Redactor)
    started: float = 0.0
    # (apiVersion, kind, name) this run applied, in order: teardown removes them, except the model cache
    created: list[tuple[str, str, str]] = field(default_factory=list)
    report: PreflightReport = field(default_factory=PreflightReport)
    owns_namespace: bool = False  # this run created the namespace (it stays: it holds the model cache)
    namespace_ready: bool = False
    base_url: str | None = None  # the frontend's URL on the runner, once it listed the served model
    closed: bool = False
    secret_plan: dict[str, str] = field(default_factory=dict)  # preflight -> namespace: how each secret arrives
    pvc_modes: dict[str, list[str]] = field(default_factory=dict)  # PVC -> access modes fitted to the class (mocker)
    dgd_before: dict | None = None  # the DGD before this run applied it (None: it did not exist)
    dgd_applied: dict | None = None  # the DGD as the apply returned it
    problem_since: dict[tuple[str, str, str], float] = field(default_factory=dict)  # pod problem -> first seen
    scale_ups: dict[str, tuple] = field(default_factory=dict)  # pod -> the last scale-up event seen for it
    events_seen: dict[str, int] = field(default_factory=dict)  # event uid -> count before this run's steps
    held: list[tuple[str, str, str]] = field(default_factory=list)  # shared objects this run holds (HOLDERS)
    operator_rbac_before: set[tuple[str, str]] = field(default_factory=set)  # operator RBAC present before deploy

    @classmethod
    def create(
        cls,
        kube: Kube,
        recipe: Recipe,
        settings: DeploySettings,
        *,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        access: FrontendAccess | None = None,
        env: dict[str, str] | None = None,
    ) -> GpuContext:
        """A fresh run: the namespace from the settings (else the model's own), the HF token redacted."""
        env = dict(os.environ) if env is None else env
        ctx = cls(
            kube,
            recipe,
            settings,
            settings.namespace or model_namespace(recipe, settings.engine),
            env,
            progress or _stderr_progress,
            sleep,
            clock,
            access,
            started=clock(),
        )
        ctx.redactor.add(env.get(settings.hf_token_env))
        return ctx

    # --- facts of the recipe ------------------------------------------------------------

    @property
    def dgd_name(self) -> str:
        dep = self.recipe.deployment
        return dep.name if dep else ""

    @property
    def dgd_api_version(self) -> str:
        dep = self.recipe.deployment
        return dep.api_version if dep else ""

    @property
    def slug(self) -> str:
        return recipe_slug(self.recipe)

    @property
    def diagnostics_dir(self) -> Path:
        return self.settings.report_dir / "diagnostics" / self.slug

    def deploy_docs(self) -> list[dict]:
        f = self.recipe.deploy
        if f is None or not f.documents:
            raise self.fail(f"{self.recipe.path / 'deploy.yaml'}: missing or empty; nothing to deploy")
        return plain_docs(f.documents)

    def cache_docs(self) -> list[dict]:
        return [d for f in self.recipe.model_cache_files for d in plain_docs(f.documents)]

    def perf_docs(self) -> list[dict]:
        f = self.recipe.perf
        return plain_docs(f.documents) if f else []

    # --- plumbing -----------------------------------------------------------------------

    def progress(self, line: str) -> None:
        self.sink(self.redactor.text(f"[gpu {self.recipe.id}] {line}"))

    def fail(self, message: str) -> StepFailed:
        return StepFailed(self.redactor.text(message))

    def fit_pvc(self, doc: dict) -> dict:
        """A PVC with the access modes preflight fitted to the cluster's storage class (mocker mode only)."""
        modes = self.pvc_modes.get(str(dig(doc, "metadata", "name")))
        if not modes or doc.get("kind") != "PersistentVolumeClaim":
            return doc
        return dict(doc, spec=dict(doc.get("spec") or {}, accessModes=list(modes)))

    def labelled(self, doc: dict, annotations: dict[str, str] | None = None) -> dict:
        """A copy of `doc` with the run's id among its labels (and `annotations` added)."""
        meta = dict(doc.get("metadata") or {})
        meta["labels"] = dict(meta.get("labels") or {}, **{RUN_LABEL: self.run_id})
        if annotations:
            meta["annotations"] = dict(meta.get("annotations") or {}, **annotations)
        return dict(doc, metadata=meta)

    def apply(
        self, doc: dict, *, keep_existing: bool = False, what: str = "", annotations: dict[str, str] | None = None
    ) -> str:
        """Apply one manifest in the run's namespace (dry run first), labelled with the run id, and remember it for
        the teardown."""
        kind, name = str(doc.get("kind")), str(dig(doc, "metadata", "name"))
        try:
            action = self.kube.apply(self.labelled(doc, annotations), self.namespace, keep_existing=keep_existing)
        except KubeError as exc:
            raise self.fail(f"{what or kind} {name} rejected by the API server: {exc}") from None
        ref = (str(doc.get("apiVersion")), kind, name)
        if action in ("created", "configured") and ref not in self.created:
            self.created.append(ref)
        self.progress(f"{kind} {name} {action}")
        return action

    def budget(self, timeout: float) -> tuple[float, bool]:
        """`timeout` cut to what the run's time budget leaves after the teardown reserve; True when cut."""
        if not self.settings.time_budget:
            return timeout, False
        left = self.settings.time_budget - self.settings.teardown_reserve - (self.clock() - self.started)
        return (max(0.0, left), True) if left < timeout else (timeout, False)

    def timed_out(self, what: str, timeout: float, cut: bool) -> str:
        if cut:
            return (
                f"{what} within {fmt_duration(timeout)}, "
                f"all that the run's time budget of {fmt_duration(self.settings.time_budget)} "
                f"left after {fmt_duration(self.settings.teardown_reserve)} kept for diagnostics and teardown"
            )
        return f"{what} within {fmt_duration(timeout)}"

    def delete_and_wait(self, api_version: str, kind: str, name: str, timeout: float = 60.0) -> None:
        self.kube.delete(api_version, kind, name, self.namespace)
        start = self.clock()
        while self.kube.get(api_version, kind, name, self.namespace) is not None:
            if self.clock() - start > timeout:
                raise self.fail(f"{kind} {name} was not deleted within {fmt_duration(timeout)}")
            self.sleep(self.settings.poll_interval)

    def log_tail(self, pod: str, container: str, previous: bool = False, lines: int = 20) -> str:
        try:
            return self.kube.pod_log(self.namespace, pod, container, previous=previous, tail_lines=lines).rstrip()
        except KubeError:
            return ""
