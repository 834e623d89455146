"""Apply the manifests and watch them come up: the DGD's readiness, Jobs, and the pod problems that will not clear on their own."""

from __future__ import annotations

from harness.recipe.model import DGD_KIND, dig
from harness.run.k8s.base import DeployerBase
from harness.run.k8s.client import KubeError
from harness.run.k8s.facts import (
    apply_order,
    dynamo_release,
    model_id,
    served_model_name,
)
from harness.run.k8s.mocker import MockerModel, to_mocker
from harness.run.k8s.readiness import (
    Blocker,
    dgd_readiness,
    is_unschedulable,
    job_state,
    pod_blocker,
    pod_summary,
)
from harness.run.k8s.settings import fmt_duration


class RolloutSteps(DeployerBase):
    def _blocker(self, pods: list[dict]) -> Blocker | None:
        now = self.clock()
        for pod in pods:
            name = str(dig(pod, "metadata", "name"))
            if is_unschedulable(pod):
                self._unschedulable_since.setdefault(name, now)
            else:
                self._unschedulable_since.pop(name, None)
            since = self._unschedulable_since.get(name)
            blocker = pod_blocker(pod, crashloop_restarts=self.settings.crashloop_restarts,
                                  unschedulable_for=None if since is None else now - since,
                                  unschedulable_grace=self.settings.unschedulable_grace)
            if blocker:
                return blocker
        return None

    def _blocker_message(self, blocker: Blocker) -> str:
        msg = blocker.message
        if blocker.kind == "crash" and blocker.container:
            tail = self._log_tail(blocker.pod, blocker.container, previous=True)
            if tail:
                msg += "\nlast log lines:\n" + tail
        return msg

    def _job_pods(self, name: str) -> list[dict]:
        return self.kube.list("v1", "Pod", self.namespace, f"job-name={name}")

    def _wait_job(self, name: str, timeout: float, what: str) -> dict:
        start = self.clock()
        last_progress = None
        while True:
            job = self.kube.get("batch/v1", "Job", name, self.namespace)
            if job is None:
                raise self.fail(f"{what} Job {name} disappeared from namespace {self.namespace}")
            state = job_state(job)
            elapsed = self.clock() - start
            if state.phase == "succeeded":
                self.progress(f"{what}: Job {name} succeeded after {fmt_duration(elapsed)}")
                return job
            pods = self._job_pods(name)
            if state.phase == "failed":
                tail = ""
                for pod in pods:
                    for c in dig(pod, "spec", "containers") or []:
                        tail = tail or self._log_tail(str(dig(pod, "metadata", "name")), str(c.get("name")))
                raise self.fail(f"{what} Job {name} failed: {state.message or 'no reason given'}" + (f"\nlast log lines:\n{tail}" if tail else ""))
            blocker = self._blocker([p for p in pods if dig(p, "status", "phase") not in ("Succeeded", "Failed")])
            if blocker:
                raise self.fail(f"{what} Job {name}: {self._blocker_message(blocker)}")
            if elapsed >= timeout:
                raise self.fail(f"{what} Job {name} did not finish within {fmt_duration(timeout)} ({state.message}); {pod_summary(pods)}")
            if last_progress is None or self.clock() - last_progress >= self.settings.progress_every:
                last_progress = self.clock()
                line = ""
                for pod in pods:
                    if dig(pod, "status", "phase") == "Running":
                        c = (dig(pod, "spec", "containers") or [{}])[0].get("name", "")
                        line = self._log_tail(str(dig(pod, "metadata", "name")), str(c), lines=1)[-160:]
                        break
                self.progress(f"{what}: Job {name} running {fmt_duration(elapsed)}/{fmt_duration(timeout)} ({state.message})"
                              + (f": {line}" if line else ""))
            self.sleep(self.settings.poll_interval)

    def manifests(self) -> list[dict]:
        """deploy.yaml as it will be applied: ordered, and rewritten for the mocker when asked."""
        docs = apply_order(self._deploy_docs())
        if self.settings.engine != "mocker":
            return docs
        release = self.settings.dynamo_release or dynamo_release(self.recipe)
        if not release:
            raise self.fail("--engine mocker needs the Dynamo release (recipe.yaml versions.dynamo or a worker image tag) to pick the mocker image")
        model = MockerModel(model_id(self.recipe), served_model_name(self.recipe), release, self.settings.mocker_speedup)
        assert self.recipe.deployment is not None
        out = []
        for doc in docs:
            if doc.get("kind") == "ComputeDomain":
                continue  # the mocker claims no GPUs, so no NVLink domain either
            out.append(to_mocker(doc, self.recipe.deployment, model) if doc.get("kind") == DGD_KIND else doc)
        return out

    def deploy(self) -> None:
        self.ensure_namespace()
        docs = self.manifests()
        # every manifest passes the dry run before any is created: no half-applied recipe
        for doc in docs:
            try:
                self.kube.apply(doc, self.namespace, dry_run_only=True)
            except KubeError as exc:
                raise self.fail(f"deploy.yaml: the server-side dry run rejected {exc}") from None
        for doc in docs:
            self._apply(doc)

    def wait_ready(self) -> None:
        start = self.clock()
        last_line, last_progress = "", None
        timeout = self.settings.ready_timeout
        while True:
            try:
                dgd = self.kube.get(self.dgd_api_version, DGD_KIND, self.dgd_name, self.namespace)
            except KubeError as exc:
                raise self.fail(f"cannot read {DGD_KIND} {self.dgd_name}: {exc}") from None
            readiness = dgd_readiness(dgd)
            elapsed = self.clock() - start
            if readiness.ready:
                self.progress(f"ready: {self.dgd_name} {readiness.state or 'Ready'} after {fmt_duration(elapsed)}")
                return
            if readiness.failed:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} failed: {readiness.message or 'the operator gives no reason'}")
            pods = [p for p in self.kube.list("v1", "Pod", self.namespace) if dig(p, "status", "phase") != "Succeeded"]
            blocker = self._blocker(pods)
            if blocker:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} cannot become ready: {self._blocker_message(blocker)}")
            line = f"{readiness.describe()}; {pod_summary(pods)}"
            if elapsed >= timeout:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} not ready after {fmt_duration(timeout)}: {line}")
            if line != last_line or last_progress is None or self.clock() - last_progress >= self.settings.progress_every:
                self.progress(f"waiting for {self.dgd_name} {fmt_duration(elapsed)}/{fmt_duration(timeout)}: {line}")
                last_line, last_progress = line, self.clock()
            self.sleep(self.settings.poll_interval)

