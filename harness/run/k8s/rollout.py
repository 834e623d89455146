"""Apply the manifests and watch them come up:
the DGD's readiness, Jobs, and the pod problems that will not clear on their own."""

from __future__ import annotations

import json

from harness.recipe.model import DGD_KIND, dig
from harness.run.k8s.base import DeployerBase
from harness.run.k8s.client import KubeError
from harness.run.k8s.facts import (
    apply_order,
    model_id,
    served_model_name,
)
from harness.run.k8s.mocker import MockerModel, to_mocker
from harness.run.k8s.readiness import (
    SCALE_UP_REASONS,
    Blocker,
    dgd_readiness,
    job_state,
    pod_problems,
    pod_ready,
    pod_summary,
)
from harness.run.k8s.settings import fmt_duration


class RolloutSteps(DeployerBase):
    _dgd_before: dict | None = None  # the DGD as it was before this run applied it (None: it did not exist)
    _dgd_applied: dict | None = None  # the DGD as the apply returned it

    # --- pod problems ---------------------------------------------------------------------

    def _grace(self, kind: str) -> float:
        return {
            "image": self.settings.image_pull_grace,
            "config": self.settings.config_grace,
            "unschedulable": self.settings.unschedulable_grace,
        }.get(kind, 0.0)

    def _scaling_up(self, pods: list[dict]) -> set[str]:
        """Pods with a new scale-up event (cluster-autoscaler TriggeredScaleUp, Karpenter Nominated) since the
        last look: a node is on its way, which is progress, so their unschedulable clock starts again."""
        try:
            events = self.kube.list("v1", "Event", self.namespace)
        except KubeError:
            return set()
        names = {str(dig(p, "metadata", "name")) for p in pods}
        fresh: set[str] = set()
        for ev in events:
            pod = str(dig(ev, "involvedObject", "name"))
            if ev.get("reason") not in SCALE_UP_REASONS or pod not in names:
                continue
            mark = (
                dig(ev, "metadata", "uid"),
                ev.get("count"),
                ev.get("lastTimestamp"),
                dig(ev, "metadata", "resourceVersion"),
            )
            if self._scale_ups.get(pod) != mark:
                self._scale_ups[pod] = mark
                fresh.add(pod)
        return fresh

    def _blocker(self, pods: list[dict]) -> Blocker | None:
        """The first problem that fails the run: a permanent one at once, the others once they outlast their grace."""
        now = self.clock()
        problems = [p for pod in pods for p in pod_problems(pod, crashloop_restarts=self.settings.crashloop_restarts)]
        current = {p.key for p in problems}
        for key in [k for k in self._problem_since if k not in current]:
            del self._problem_since[key]
        restarted = self._scaling_up(pods) if any(p.kind == "unschedulable" for p in problems) else set()
        for p in problems:
            if p.pod in restarted and p.kind == "unschedulable":
                self._problem_since[p.key] = now
            since = self._problem_since.setdefault(p.key, now)
            lasted = now - since
            if p.permanent or lasted >= self._grace(p.kind):
                message = p.message if p.permanent else f"{p.message} (for {fmt_duration(lasted)})"
                return Blocker(p.pod, p.kind, message, p.container)
        return None

    def _blocker_message(self, blocker: Blocker) -> str:
        msg = blocker.message
        if blocker.kind == "crash" and blocker.container:
            tail = self._log_tail(blocker.pod, blocker.container, previous=True)
            if tail:
                msg += "\nlast log lines:\n" + tail
        return msg

    # --- Jobs -----------------------------------------------------------------------------

    def _job_pods(self, name: str) -> list[dict]:
        return self.kube.list("v1", "Pod", self.namespace, f"job-name={name}")

    def _wait_job(self, name: str, timeout: float, what: str) -> dict:
        start = self.clock()
        timeout, cut = self.budget(timeout)
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
                raise self.fail(
                    f"{what} Job {name} failed: {state.message or 'no reason given'}"
                    + (f"\nlast log lines:\n{tail}" if tail else "")
                )
            blocker = self._blocker([p for p in pods if dig(p, "status", "phase") not in ("Succeeded", "Failed")])
            if blocker:
                raise self.fail(f"{what} Job {name}: {self._blocker_message(blocker)}")
            if elapsed >= timeout:
                raise self.fail(
                    f"{what} Job {name} did not finish {self.timed_out('', timeout, cut).strip()} "
                    f"({state.message}); {pod_summary(pods)}"
                )
            if last_progress is None or self.clock() - last_progress >= self.settings.progress_every:
                last_progress = self.clock()
                line = ""
                for pod in pods:
                    if dig(pod, "status", "phase") == "Running":
                        c = (dig(pod, "spec", "containers") or [{}])[0].get("name", "")
                        line = self._log_tail(str(dig(pod, "metadata", "name")), str(c), lines=1)[-160:]
                        break
                self.progress(
                    f"{what}: Job {name} running {fmt_duration(elapsed)}/{fmt_duration(timeout)} ({state.message})"
                    + (f": {line}" if line else "")
                )
            self.sleep(self.settings.poll_interval)

    # --- the DGD ----------------------------------------------------------------------------

    def manifests(self) -> list[dict]:
        """deploy.yaml as it will be applied: ordered, and rewritten for the mocker when asked."""
        docs = apply_order(self._deploy_docs())
        if self.settings.engine != "mocker":
            return docs
        release = self.settings.dynamo_release or self.recipe.release
        if not release:
            raise self.fail(
                "--engine mocker needs the Dynamo release (a Dynamo image tag or recipe.yaml versions.dynamo) "
                "to pick the mocker image"
            )
        model = MockerModel(
            model_id(self.recipe), served_model_name(self.recipe), release, self.settings.mocker_speedup
        )
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
        self._dgd_before = self.kube.get(self.dgd_api_version, DGD_KIND, self.dgd_name, self.namespace)
        for doc in docs:
            self._apply(doc)
        self._dgd_applied = self.kube.get(self.dgd_api_version, DGD_KIND, self.dgd_name, self.namespace)

    def _stale(self, dgd: dict, all_pods_ready_for: float) -> bool:
        """A `successful` that may predate our apply: the operator wrote no observedGeneration, our apply changed the
        spec (the generation moved), and the status is still the one we found. It counts once the operator has
        written anything since, or when every pod has been Ready for `stale_status_grace`."""
        if (
            self._dgd_before is None
            or self._dgd_applied is None
            or isinstance(dig(dgd, "status", "observedGeneration"), int)
        ):
            return False
        if dig(self._dgd_applied, "metadata", "generation") == dig(self._dgd_before, "metadata", "generation"):
            return False
        unchanged = json.dumps(dgd.get("status"), sort_keys=True) == json.dumps(
            self._dgd_before.get("status"), sort_keys=True
        )
        return unchanged and all_pods_ready_for < self.settings.stale_status_grace

    def wait_ready(self) -> None:
        start = self.clock()
        last_line, last_progress = "", None
        timeout, cut = self.budget(self.settings.ready_timeout)
        failed_since: float | None = None
        ready_since: float | None = None
        while True:
            try:
                dgd = self.kube.get(self.dgd_api_version, DGD_KIND, self.dgd_name, self.namespace)
            except KubeError as exc:
                raise self.fail(f"cannot read {DGD_KIND} {self.dgd_name}: {exc}") from None
            readiness = dgd_readiness(dgd)
            elapsed = self.clock() - start
            pods = [p for p in self.kube.list("v1", "Pod", self.namespace) if dig(p, "status", "phase") != "Succeeded"]
            ours = [
                p
                for p in pods
                if (dig(p, "metadata", "labels") or {}).get("nvidia.com/dynamo-graph-deployment-name") == self.dgd_name
            ]
            if ours and all(pod_ready(p) for p in ours):
                ready_since = self.clock() if ready_since is None else ready_since
            else:
                ready_since = None
            if readiness.ready and not self._stale(
                dgd or {}, 0.0 if ready_since is None else self.clock() - ready_since
            ):
                self.progress(f"ready: {self.dgd_name} {readiness.state or 'Ready'} after {fmt_duration(elapsed)}")
                return
            if readiness.failed:
                failed_since = self.clock() if failed_since is None else failed_since
                if readiness.final or self.clock() - failed_since >= self.settings.failed_grace:
                    lasted = "" if readiness.final else f" for {fmt_duration(self.clock() - failed_since)}"
                    raise self.fail(
                        f"{DGD_KIND} {self.dgd_name} failed{lasted}: "
                        f"{readiness.message or 'the operator gives no reason'}"
                    )
            else:
                failed_since = None
            blocker = self._blocker(pods)
            if blocker:
                raise self.fail(f"{DGD_KIND} {self.dgd_name} cannot become ready: {self._blocker_message(blocker)}")
            line = f"{readiness.describe()}; {pod_summary(pods)}"
            if elapsed >= timeout:
                raise self.fail(
                    f"{DGD_KIND} {self.dgd_name} not ready after {fmt_duration(timeout)}"
                    + (" (the run's time budget, less the teardown reserve)" if cut else "")
                    + f": {line}"
                )
            if (
                line != last_line
                or last_progress is None
                or self.clock() - last_progress >= self.settings.progress_every
            ):
                self.progress(f"waiting for {self.dgd_name} {fmt_duration(elapsed)}/{fmt_duration(timeout)}: {line}")
                last_line, last_progress = line, self.clock()
            self.sleep(self.settings.poll_interval)
