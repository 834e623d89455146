"""Defect 4 of issue 24: a cancelled CI job (SIGTERM; SIGHUP when its terminal goes) must clean up as Ctrl-C does.

A real `pytest -m gpu` runs against the session's control plane, is signalled while it waits for the deployment to
get ready, and afterwards nothing of the run may be left in its namespace: no DGD, Job, Secret or Pod (the model
cache PVC may stay, as after every run)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from .conftest import AGG, RECIPES, wait_for

ROOT = RECIPES.parents[3]
# The kinds a run creates and teardown must remove (Services, ReplicaSets follow their owners).
RUN_KINDS = ("dynamographdeployments/", "jobs/", "secrets/", "pods/", "deployments/")


class RunLeftovers(AssertionError):
    """The run left objects behind (the defect); any other failure of the test is a failure of the test."""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signalled_gpu_run_leaves_nothing(k8s, tmp_path, signum):
    ns = k8s.namespace()
    k8s.runtime.never_ready(ns, [k8s.runtime.select("nvidia.com/dynamo-component-type", "worker")])
    tree = tmp_path / "recipes"
    shutil.copytree(RECIPES, tree)  # baselines and history go beside the tree: keep them out of the repository
    log = tmp_path / "pytest.log"
    argv = [
        sys.executable, "-m", "pytest", "-m", "gpu", "--recipes-dir", str(tree), "--recipe", AGG,
        "--kubeconfig", str(k8s.kubeconfig), "--namespace", ns, "--report-dir", str(tmp_path / "report"),
        "--gpu-option", "poll_interval=0.2", "--gpu-option", "progress_every=0",
        "--gpu-option", "ready_timeout=600", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: k8s.dgd(ns, "tiny-agg") is not None or proc.poll() is not None,
            180,
            "the run's DGD",
        )
        assert proc.poll() is None, f"the run ended before it was signalled:\n{log.read_text()[-3000:]}"
        wait_for(lambda: any(p["status"].get("phase") == "Running" for p in k8s.pods(ns)), 60, "the run's pods")
        proc.send_signal(signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = [x for x in k8s.leftovers(ns, settle=30) if x.startswith(RUN_KINDS)]
    if left:
        raise RunLeftovers(
            f"after {signal.Signals(signum).name} the run left {left}; its output:\n{log.read_text()[-2000:]}"
        )
