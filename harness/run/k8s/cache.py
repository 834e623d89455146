"""The model cache: the PVC and the download Job, skipped when the cache is already filled."""

from __future__ import annotations

from harness.recipe.model import dig
from harness.run.k8s.client import KubeError
from harness.run.k8s.readiness import job_state
from harness.run.k8s.rollout import RolloutSteps

CACHE_MARKER = "recipe-harness.dynamo.nvidia.com/populated-by"


class ModelCacheSteps(RolloutSteps):
    def model_cache(self) -> None:
        self.ensure_namespace()
        docs = self._cache_docs()
        pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
        jobs = [d for d in docs if d.get("kind") == "Job"]
        for pvc in pvcs:
            self._apply(pvc, keep_existing=True)  # a PVC spec is immutable; an existing one is the cache
        if self.settings.engine == "mocker":
            self.progress("model cache: download skipped (the mocker loads only the tokenizer)")
            return
        for pvc in pvcs:
            current = self.kube.get("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace) or {}
            marker = (dig(current, "metadata", "annotations") or {}).get(CACHE_MARKER)
            if marker:
                self.progress(f"model cache: PVC {dig(pvc, 'metadata', 'name')} already populated by {marker}; download skipped")
                return
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
                self.kube.annotate("v1", "PersistentVolumeClaim", str(dig(pvc, "metadata", "name")), self.namespace, {CACHE_MARKER: job_name})
            except KubeError as exc:  # the marker only saves time on a reused namespace
                self.progress(f"model cache: could not mark the PVC ({exc})")
