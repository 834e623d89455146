"""State and plumbing shared by the deployer's steps:
the run's namespace, what it created, progress lines, applying one manifest."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.recipe.model import Recipe, dig
from harness.run.k8s.client import Kube, KubeError
from harness.run.k8s.diagnostics import Redactor
from harness.run.k8s.facts import model_namespace, plain_docs, recipe_slug
from harness.run.k8s.portforward import FrontendAccess
from harness.run.k8s.settings import DeploySettings, fmt_duration
from harness.run.stage import StepFailed

MANAGED_BY = {"app.kubernetes.io/managed-by": "recipe-harness"}


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


class DeployerBase:
    """One recipe's life on the cluster. Every method is a step the stage calls in order;
    `teardown()` undoes what the run created, whatever happened before."""

    def __init__(
        self,
        kube: Kube,
        recipe: Recipe,
        settings: DeploySettings,
        *,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        access: FrontendAccess | None = None,
        env: dict[str, str] | None = None,
    ):
        self.kube = kube
        self.recipe = recipe
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.env = dict(os.environ) if env is None else env
        self._progress = progress or _stderr_progress
        self.access = access
        self.run_id = uuid.uuid4().hex[:6]
        self.namespace = settings.namespace or model_namespace(recipe, settings.engine)
        self.owns_namespace = False  # True once this run created the namespace (it stays: it holds the model cache)
        self.namespace_ready = False
        # (apiVersion, kind, name) this run applied, in order: teardown removes them, except the model cache
        self.created: list[tuple[str, str, str]] = []
        self.started = clock()
        self.redactor = Redactor()
        self.redactor.add(self.env.get(settings.hf_token_env))
        self.report = PreflightReport()
        self.base_url: str | None = None
        self.closed = False
        self._unschedulable_since: dict[str, float] = {}
        self._problem_since: dict[tuple[str, str, str], float] = {}
        self._scale_ups: dict[str, tuple] = {}  # pod -> the last scale-up event seen for it
        self._secret_plan: dict[str, str] = {}
        self._pvc_modes: dict[str, list[str]] = {}  # PVC name -> access modes fitted to the cluster's class (mocker)
        dep = recipe.deployment
        self.dgd_name = dep.name if dep else ""
        self.dgd_api_version = dep.api_version if dep else ""

    # --- plumbing ----------------------------------------------------------------------

    def progress(self, line: str) -> None:
        self._progress(self.redactor.text(f"[gpu {self.recipe.id}] {line}"))

    def fail(self, message: str) -> StepFailed:
        return StepFailed(self.redactor.text(message))

    @property
    def slug(self) -> str:
        return recipe_slug(self.recipe)

    @property
    def diagnostics_dir(self) -> Path:
        return self.settings.report_dir / "diagnostics" / self.slug

    def _deploy_docs(self) -> list[dict]:
        f = self.recipe.deploy
        if f is None or not f.documents:
            raise self.fail(f"{self.recipe.path / 'deploy.yaml'}: missing or empty; nothing to deploy")
        return plain_docs(f.documents)

    def _cache_docs(self) -> list[dict]:
        return [d for f in self.recipe.model_cache_files for d in plain_docs(f.documents)]

    def _perf_docs(self) -> list[dict]:
        f = self.recipe.perf
        return plain_docs(f.documents) if f else []

    def fit_pvc(self, doc: dict) -> dict:
        """A PVC with the access modes preflight fitted to the cluster's storage class (mocker mode only)."""
        modes = self._pvc_modes.get(str(dig(doc, "metadata", "name")))
        if not modes or doc.get("kind") != "PersistentVolumeClaim":
            return doc
        return dict(doc, spec=dict(doc.get("spec") or {}, accessModes=list(modes)))

    def _apply(self, doc: dict, *, keep_existing: bool = False, what: str = "") -> str:
        kind, name = str(doc.get("kind")), str(dig(doc, "metadata", "name"))
        try:
            action = self.kube.apply(doc, self.namespace, keep_existing=keep_existing)
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

    def _delete_and_wait(self, api_version: str, kind: str, name: str, timeout: float = 60.0) -> None:
        self.kube.delete(api_version, kind, name, self.namespace)
        start = self.clock()
        while self.kube.get(api_version, kind, name, self.namespace) is not None:
            if self.clock() - start > timeout:
                raise self.fail(f"{kind} {name} was not deleted within {fmt_duration(timeout)}")
            self.sleep(self.settings.poll_interval)

    def _log_tail(self, pod: str, container: str, previous: bool = False, lines: int = 20) -> str:
        try:
            return self.kube.pod_log(self.namespace, pod, container, previous=previous, tail_lines=lines).rstrip()
        except KubeError:
            return ""
