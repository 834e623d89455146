"""Issue 24, defects 1 and 13 on the real control plane: one run owns what it touches.

Several DGDs share a namespace (the nightly runs both qwen3-32b recipes in `rh-qwen3-32b` at once): another DGD's
crash-looping pod is not this run's problem, a Secret or download Job another run still holds outlives the
teardown of the run that made it, and the operator's planner RBAC goes with the run that made it appear."""

from __future__ import annotations

import dataclasses
import threading

from harness.run.k8s.context import HOLDER_PREFIX
from harness.run.stage import StepFailed

from .conftest import AGG, SETUP, make_run, run_steps, wait_for
from .simulations import LABEL_COMPONENT_TYPE, LABEL_DGD, q

DISAGG = "tiny/vllm/disagg"


def test_another_dgds_crash_looping_pod_does_not_fail_this_run(k8s, recipes, settings):
    """Readiness reads only this DGD's pods (the operator's nvidia.com/dynamo-graph-deployment-name label): a
    worker of another DGD in the namespace crash-looping is not this recipe's defect."""
    ns = k8s.namespace()
    settings.namespace = ns
    other = {LABEL_DGD: "someone-elses-dgd", LABEL_COMPONENT_TYPE: "worker"}
    k8s.runtime.crash_loop(ns, [k8s.runtime.select(LABEL_DGD, "someone-elses-dgd")])
    k8s.api.create(
        f"/api/v1/namespaces/{q(ns)}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "someone-elses-dgd-worker-0", "labels": other},
            "spec": {"containers": [{"name": "main", "image": "example.com/other:1"}]},
        },
    )
    wait_for(
        lambda: any(
            (cs.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for p in k8s.pods(ns)
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        ),
        60,
        "the other DGD's pod crash-looping",
    )
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
    finally:
        run.close()
    assert "someone-elses-dgd-worker-0" in k8s.names(ns, "pods"), "the other DGD's pod is not this run's to delete"


def test_a_secret_and_download_job_another_run_holds_survive_the_first_runs_teardown(k8s, recipes, settings, tmp_path):
    """Run A copies the token Secret and starts the download Job, then ends (here: its cache wait runs out) while
    run B, in the same namespace, is waiting on that Job. A's teardown leaves both; B's takes them."""
    ns = k8s.namespace()
    settings.namespace = ns
    k8s.runtime.job_takes(ns, "model-download", 12)
    first = dataclasses.replace(settings, cache_timeout=2.0)
    second = dataclasses.replace(settings, report_dir=tmp_path / "report-b", cache_timeout=60.0)
    a = make_run(recipes[AGG], first, k8s)
    b = make_run(recipes[DISAGG], second, k8s)
    job_path = f"/apis/batch/v1/namespaces/{q(ns)}/jobs/model-download"
    secret_path = f"/api/v1/namespaces/{q(ns)}/secrets/hf-token-secret"
    outcome: dict[str, BaseException | None] = {}
    try:
        a.run_step("preflight")
        try:
            a.run_step("model-cache")
        except StepFailed as exc:
            assert "did not finish" in str(exc), exc
        b.run_step("preflight")
        assert b.context.secret_plan["hf-token-secret"] == "present"

        def wait_in_b() -> None:
            try:
                b.run_step("model-cache")
                outcome["b"] = None
            except BaseException as exc:  # reported below, with the step's message
                outcome["b"] = exc

        waiter = threading.Thread(target=wait_in_b, daemon=True)
        waiter.start()
        holder = HOLDER_PREFIX + b.context.run_id
        wait_for(
            lambda: holder in ((k8s.get(job_path) or {}).get("metadata", {}).get("annotations") or {}),
            30,
            "run B holding the download Job",
        )
        a.close()
        assert k8s.get(job_path) is not None, "A's teardown deleted the download Job B waits on"
        assert k8s.get(secret_path) is not None, "A's teardown deleted the Secret B found"
        waiter.join(60)
        assert outcome.get("b") is None, f"B's model-cache: {outcome.get('b')}"
    finally:
        a.close()
        b.close()
    assert k8s.get(job_path) is None and k8s.get(secret_path) is None, "the last holder removes them"
    assert k8s.leftovers(ns) == []


PLANNER_RBAC = [
    ("/api/v1/namespaces/{ns}/serviceaccounts", "planner-serviceaccount", "v1", "ServiceAccount"),
    (
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        "planner-serviceaccount-binding",
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
    ),
]


def _operator_makes_planner_rbac(k8s, ns: str) -> None:
    """What the Dynamo operator does for every DGD in cluster-wide mode (the DGD stand-in does not): a ServiceAccount
    `planner-serviceaccount` and its RoleBinding `<sa>-binding` to the planner ClusterRole (deploy/operator/internal/
    rbac/manager.go EnsureServiceAccountWithRBAC, labels app.kubernetes.io/managed-by: dynamo-operator)."""
    labels = {"app.kubernetes.io/managed-by": "dynamo-operator", "app.kubernetes.io/component": "rbac"}
    for path, name, api_version, kind in PLANNER_RBAC:
        body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "labels": labels}}
        if kind == "RoleBinding":
            body["subjects"] = [{"kind": "ServiceAccount", "name": "planner-serviceaccount", "namespace": ns}]
            body["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
        k8s.api.create(path.format(ns=q(ns)), body, exist_ok=True)


def _planner_rbac_left(k8s, ns: str) -> list[str]:
    return [name for path, name, _, _ in PLANNER_RBAC if k8s.get(f"{path.format(ns=q(ns))}/{name}") is not None]


def test_teardown_removes_the_planner_rbac_this_runs_dgd_made_appear(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, SETUP)
        _operator_makes_planner_rbac(k8s, ns)
        run.run_step("ready")
    finally:
        run.close()
    assert _planner_rbac_left(k8s, ns) == []


def test_teardown_keeps_planner_rbac_that_was_there_before_the_run(k8s, recipes, settings):
    ns = k8s.namespace()
    settings.namespace = ns
    _operator_makes_planner_rbac(k8s, ns)  # another DGD's, or a person's
    run = make_run(recipes[AGG], settings, k8s)
    try:
        run_steps(run, [*SETUP, "ready"])
    finally:
        run.close()
    assert _planner_rbac_left(k8s, ns) == ["planner-serviceaccount", "planner-serviceaccount-binding"]
