"""The model cache: the PVC and the download Job, skipped when the cache is already filled."""

from __future__ import annotations

from harness.recipe.model import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.facts import model_revision
from harness.run.k8s.readiness import job_state
from harness.run.k8s.rollout import RolloutSteps

CACHE_MARKER = "recipe-harness.dynamo.nvidia.com/populated-by"
# `<model id>@<revision>` the PVC holds, written after a download Job succeeded
CACHE_REVISION = "recipe-harness.dynamo.nvidia.com/model-revision"


class ModelCacheSteps(RolloutSteps):
    def model_cache(self) -> None:
        self.ensure_namespace()
        docs = self._cache_docs()
        pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
        jobs = [d for d in docs if d.get("kind") == "Job"]
        for pvc in pvcs:
            self._apply(self.fit_pvc(pvc), keep_existing=True)  # a PVC spec is immutable; an existing one is the cache
        if self.settings.engine == "mocker":
            self.progress("model cache: download skipped (the mocker loads only the tokenizer)")
            return
        wanted = model_revision(self.recipe)
        for pvc in pvcs:
            current = (
                self.kube.get("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace) or {}
            )
            held = (dig(current, "metadata", "annotations") or {}).get(CACHE_REVISION)
            if held and held == wanted:
                self.progress(f"model cache: PVC {dig(pvc, 'metadata', 'name')} already holds {held}; download skipped")
                return
            if held:
                self.progress(
                    f"model cache: PVC {dig(pvc, 'metadata', 'name')} holds {held}, "
                    f"the recipe pins {wanted}; downloading"
                )
        for job in jobs:
            name = str(dig(job, "metadata", "name"))
            existing = self.kube.get("batch/v1", "Job", name, self.namespace)
            if existing is not None:
                state = job_state(existing)
                if state.phase == "succeeded":
                    self.progress(f"model cache: Job {name} already succeeded; download skipped")
                    self._mark_cache(pvcs, name)
                    continue
                if state.phase == "failed":
                    self.progress(f"model cache: Job {name} failed before ({state.message}); running it again")
                    self._delete_and_wait("batch/v1", "Job", name)
                    existing = None
            if existing is None:
                self._apply(job, what="model download Job")  # dry run, then create
            self._wait_job(name, self.settings.cache_timeout, "model download")
            self._mark_cache(pvcs, name)

    def _mark_cache(self, pvcs: list[dict], job_name: str) -> None:
        for pvc in pvcs:
            try:
                marks = {
                    CACHE_MARKER: job_name,
                    **({CACHE_REVISION: model_revision(self.recipe)} if model_revision(self.recipe) else {}),
                }
                self.kube.annotate(
                    "v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace, marks
                )
            except KubeError as exc:  # the marker only saves time on a reused namespace
                self.progress(f"model cache: could not mark the PVC ({exc})")
