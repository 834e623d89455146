"""The gpu stage's parts on their own: availability probe, mocker rewrite, redaction, port-forward, and the real API
server's answers through the harness's client."""

from __future__ import annotations

import json
import socket
import stat
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from harness.recipe.yamlsrc import to_plain
from harness.run.k8s.client import KubeError, find_config
from harness.run.k8s.context import GpuContext
from harness.run.k8s.diagnostics import REDACTED, Redactor
from harness.run.k8s.facts import router_mode
from harness.run.k8s.mocker import MOCKER_REPO, MockerModel, to_mocker
from harness.run.k8s.portforward import KubectlPortForward, PortForwardError
from harness.run.k8s.settings import DeploySettings, add_options
from harness.run.k8s.stage import GpuStage
from harness.run.stage import StageOptions

from .conftest import FAKE_TOKEN, wait_for

# --- available(): one clear line, well under 5 s ------------------------------------------


@pytest.fixture
def no_cluster_env(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def options(tmp_path: Path, **gpu) -> StageOptions:
    return StageOptions(
        report_dir=tmp_path / "report",
        baselines_root=tmp_path / "baselines",
        history_root=tmp_path / "history",
        gpu=DeploySettings(report_dir=tmp_path / "report", **gpu),
    )


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "kube-token-never-printed"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
            }
        )
    )
    return path


def test_available_without_any_config_says_what_to_do(no_cluster_env):
    start = time.monotonic()
    reason = GpuStage(smoke=None).available(options(no_cluster_env))
    assert time.monotonic() - start < 5
    assert (
        reason
        == "no Kubernetes cluster reachable (KUBECONFIG unset, ~/.kube/config missing): set KUBECONFIG or use -m sim"
    )


def test_available_with_a_dead_api_answers_fast(no_cluster_env, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(no_cluster_env / "kc", f"http://127.0.0.1:{port}")))
    start = time.monotonic()
    reason = GpuStage(smoke=None).available(options(no_cluster_env))
    assert time.monotonic() - start < 5
    assert (
        reason
        and reason.startswith(f"no Kubernetes cluster reachable at http://127.0.0.1:{port}")
        and "kube-token" not in reason
    )


def test_available_with_a_silent_api_times_out_in_about_two_seconds(no_cluster_env):
    with socket.socket() as s:  # accepts connections (backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        path = kubeconfig(no_cluster_env / "kc", f"http://127.0.0.1:{s.getsockname()[1]}")
        start = time.monotonic()
        reason = GpuStage(smoke=None).available(options(no_cluster_env, kubeconfig=str(path)))
        elapsed = time.monotonic() - start
    assert reason and "ReadTimeoutError" in reason
    assert elapsed < 4.5


def test_find_config_order(tmp_path):
    assert find_config("/nope/kc", env={}).startswith(
        "no Kubernetes cluster reachable (--kubeconfig /nope/kc does not exist)"
    )
    assert "KUBECONFIG=/a:/b does not exist" in find_config(None, env={"KUBECONFIG": "/a:/b"})
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert find_config(None, env={"HOME": str(tmp_path)}).path == str(tmp_path / ".kube" / "config")


def test_settings_come_from_the_options_they_declare(tmp_path):
    """The pytest options are generated from DeploySettings and read back into it: one declaration."""
    import argparse

    parser = argparse.ArgumentParser()
    add_options(parser.add_argument)
    given = [
        "--engine", "mocker", "--keep", "--namespace", "ns1", "--perf-mode", "local", "--kubeconfig", "/kc",
        "--time-budget", "30", "--gpu-option", "ready_timeout=60", "--gpu-option", "hf_secret=tok",
    ]  # fmt: skip
    s = DeploySettings.from_pytest(parser.parse_args(given), tmp_path / "report", repeats=3)
    assert (s.engine, s.keep, s.namespace, s.perf_mode, s.kubeconfig) == ("mocker", True, "ns1", "local", "/kc")
    assert (s.time_budget, s.ready_timeout, s.hf_secret, s.repeats) == (1800.0, 60.0, "tok", 3)
    defaults = DeploySettings.from_pytest(parser.parse_args([]), tmp_path / "report")
    assert defaults == DeploySettings(report_dir=tmp_path / "report")
    with pytest.raises(ValueError, match="not a gpu setting"):
        DeploySettings.from_pytest(parser.parse_args(["--gpu-option", "no_such=1"]), tmp_path)
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        DeploySettings.from_pytest(parser.parse_args(["--gpu-option", "novalue"]), tmp_path)


# --- the mocker rewrite --------------------------------------------------------------------


def mocked(recipe):
    doc = to_plain(recipe.dgd_doc.data)
    return doc, to_mocker(doc, recipe.deployment, MockerModel("Qwen/Qwen3-0.6B", "qwen3-0.6b", "1.4.0"))


def test_mocker_keeps_roles_replicas_and_served_name(recipes):
    before, after = mocked(recipes["tiny/vllm/disagg"])
    services = after["spec"]["services"]
    frontend = services["Frontend"]
    assert frontend["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}, (
        "fits a kind node"
    )
    assert {"name": "HF_HUB_OFFLINE", "value": "0"} in frontend["envs"], (
        "the tokenizer comes from the Hub: no cache was filled"
    )
    assert {k: v for k, v in frontend.items() if k not in ("resources", "envs")} == before["spec"]["services"][
        "Frontend"
    ]
    for name, mode, replicas in (("VllmPrefillWorker", "prefill", 2), ("VllmDecodeWorker", "decode", 1)):
        svc = services[name]
        main = svc["extraPodSpec"]["mainContainer"]
        assert main["image"] == f"{MOCKER_REPO}:1.4.0" and main["command"] == ["python3", "-m", "dynamo.mocker"]
        args = main["args"]
        assert (
            args[args.index("--disaggregation-mode") + 1] == mode
            and args[args.index("--model-name") + 1] == "qwen3-0.6b"
        )
        assert args[args.index("--block-size") + 1] == "16" and args[args.index("--engine-type") + 1] == "vllm"
        assert svc["replicas"] == replicas and svc["subComponentType"] == mode
        assert "gpu" not in json.dumps(svc["resources"]) and "claims" not in svc["resources"]
    prefill_pod = services["VllmPrefillWorker"]["extraPodSpec"]
    assert "nodeSelector" not in prefill_pod and "resourceClaims" not in prefill_pod
    assert before["spec"]["services"]["VllmPrefillWorker"]["resources"]["limits"]["gpu"] == "1", (
        "the input is not modified"
    )


def test_mocker_rewrites_v1beta1_components(recipes):
    _, after = mocked(recipes["tiny/sglang/agg-v1beta1"])
    decode = next(c for c in after["spec"]["components"] if c["name"] == "decode")
    main = decode["podTemplate"]["spec"]["containers"][0]
    assert main["image"].startswith(MOCKER_REPO) and "nvidia.com/gpu" not in json.dumps(main["resources"])
    assert main["args"][main["args"].index("--block-size") + 1] == "32", (
        "sglang --page-size becomes the mocker block size"
    )
    assert "tolerations" not in decode["podTemplate"]["spec"] and decode["replicas"] == 2


def test_router_mode_of_the_frontend(recipes):
    assert router_mode(recipes["tiny/vllm/disagg"]) == "round-robin"


# --- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"HF_TOKEN={FAKE_TOKEN}",
        f"token was {FAKE_TOKEN}",
        f"Authorization: Bearer {FAKE_TOKEN}",
        '"HF_TOKEN": "abcdEFGH12345678"',
        "--hf-token AbCdEf1234567890",
        "API_KEY=0123456789abcdef0123456789abcdef01",
    ],
)
def test_token_like_values_are_redacted(text):
    out = Redactor().text(text)
    assert REDACTED in out and FAKE_TOKEN not in out and "abcdEFGH12345678" not in out and "AbCdEf1234567890" not in out


@pytest.mark.parametrize(
    "text",
    [
        "secret hf-token-secret (key HF_TOKEN) not found",
        "envFromSecret: hf-token-secret",
        "--tokenizer Qwen/Qwen3-0.6B",
        "max_tokens=32",
    ],
)
def test_names_of_secrets_are_not_mistaken_for_values(text):
    assert Redactor().text(text) == text


def test_known_values_and_env_entries_are_redacted():
    r = Redactor()
    r.add("plain-but-secret-value")
    assert r.text("x plain-but-secret-value y") == f"x {REDACTED} y"
    assert r.obj({"env": [{"name": "HF_TOKEN", "value": "short"}], "secretName": "hf-token-secret"}) == {
        "env": [{"name": "HF_TOKEN", "value": REDACTED}],
        "secretName": "hf-token-secret",
    }


# --- port-forward --------------------------------------------------------------------------


def fake_kubectl(tmp_path: Path, body: str) -> str:
    path = tmp_path / "kubectl"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_kubectl_port_forward_reads_the_local_port(tmp_path, openai_url):
    port = openai_url.rsplit(":", 1)[1]
    kubectl = fake_kubectl(
        tmp_path, f"import sys, time\nprint('Forwarding from 127.0.0.1:{port} -> 8000', flush=True)\ntime.sleep(30)"
    )
    pf = KubectlPortForward(None, kubectl, start_timeout=5)
    url = pf.open("ns", "tiny-agg-frontend", 8000)
    try:
        assert url == openai_url
        with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "qwen3-0.6b"
    finally:
        pf.close()
    assert pf.proc is None
    pf.close()  # idempotent


def test_kubectl_port_forward_failure_is_explained(tmp_path):
    kubectl = fake_kubectl(
        tmp_path, "import sys\nprint('error: services \"x-frontend\" not found', flush=True)\nsys.exit(1)"
    )
    with pytest.raises(PortForwardError, match='services "x-frontend" not found'):
        KubectlPortForward(None, kubectl, start_timeout=5).open("ns", "x-frontend", 8000)


# --- the real API server through the harness's client ------------------------------------


def test_available_with_the_real_cluster(no_cluster_env, k8s):
    assert GpuStage(smoke=None).available(options(no_cluster_env, kubeconfig=str(k8s.kubeconfig))) is None


def test_api_semantics_through_the_harness_client(k8s):
    """What the harness relies on, as the real API server answers it: messages, dry run, server-side apply
    outcomes, strict field validation, deletes, and an unknown kind."""
    kube = k8s.kube
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    with pytest.raises(KubeError, match='namespaces "nope-' + k8s.slug[:8]) as missing_ns:
        kube.apply(cm, f"nope-{k8s.slug[:8]}")
    assert missing_ns.value.status == 404
    ns = k8s.namespace()
    assert kube.apply(cm, ns, dry_run_only=True) == "valid"
    assert kube.get("v1", "ConfigMap", "c", ns) is None, "a dry run persists nothing"
    assert kube.apply(cm, ns) == "created"
    assert kube.apply(dict(cm, data={"a": "2"}), ns) == "configured"
    assert kube.apply(cm, ns, keep_existing=True) == "unchanged"
    assert kube.get("v1", "ConfigMap", "c", ns)["data"] == {"a": "2"}
    with pytest.raises(ApiException) as conflict:
        kube.core.create_namespaced_config_map(ns, cm)
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(KubeError, match=r"\.dta: field not declared in schema"):
        kube.apply(dict(cm, dta={}), ns)
    assert kube.delete("v1", "ConfigMap", "c", ns) is True and kube.delete("v1", "ConfigMap", "c", ns) is False
    with pytest.raises(KubeError, match="no CustomResourceDefinition for Widget"):
        kube.resource("example.com/v1", "Widget")


def test_client_port_forward_picks_a_ready_pod_behind_the_service(k8s):
    """Two pods behind a Service, scheduled by the real scheduler onto kwok nodes; kwok keeps one unready."""
    from harness.run.k8s.portforward import ClientPortForward

    ns = k8s.namespace()
    k8s.runtime.never_ready(ns, [k8s.runtime.select("sim", "unready")])
    k8s.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "d-frontend"},
            "spec": {"selector": {"app": "fe"}, "ports": [{"port": 8000, "targetPort": "http"}]},
        },
        ns,
    )
    for name, ready in (("fe-0", False), ("fe-1", True)):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "fe", **({} if ready else {"sim": "unready"})}},
            "spec": {
                "containers": [{"name": "main", "image": "img", "ports": [{"name": "http", "containerPort": 8787}]}]
            },
        }
        k8s.kube.apply(pod, ns)
    wait_for(
        lambda: (
            {p["metadata"]["name"]: p["status"].get("phase") for p in k8s.pods(ns)}
            == {"fe-0": "Running", "fe-1": "Running"}
        ),
        30,
        "both pods running",
    )
    assert ClientPortForward(k8s.kube)._target(ns, "d-frontend", 8000) == ("fe-1", 8787)
    with pytest.raises(PortForwardError, match="service nope not found"):
        ClientPortForward(k8s.kube)._target(ns, "nope", 8000)


def test_worker_pods_are_the_running_pods_of_the_dgd_workers(k8s, recipes, settings):
    """The pods the DGD controller stand-in's Deployments got from the real ReplicaSet controller, found by the
    operator's component label. (Their /metrics cannot be read here: kwok pods run no process, so the API server's
    pod proxy has nothing to reach; the counting itself is harness.run.prometheus's.)"""
    from harness.run.k8s.frontend import worker_pods

    ns = k8s.namespace()
    settings.namespace = ns
    ctx = GpuContext.create(k8s.kube, recipes["tiny/vllm/agg"], settings, progress=lambda _: None, env={})
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "model-cache"},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    k8s.kube.apply(pvc, ns)  # the worker mounts it: without it the scheduler keeps the pod Pending
    k8s.kube.apply(to_plain(recipes["tiny/vllm/agg"].dgd_doc.data), ns)
    pods = wait_for(
        lambda: (found := worker_pods(ctx)) and found,
        30,
        "a running worker pod",
    )
    assert set(pods.values()) == {"VllmDecodeWorker"}
    (name,) = pods
    assert name.startswith("tiny-agg-vllmdecodeworker-"), "Deployment -> ReplicaSet -> Pod names"


def test_steps_follow_the_shared_smoke_suite(recipes):
    from harness.run.smoke import SmokeSuite

    steps = [s.name for s in GpuStage().steps(recipes["tiny/vllm/agg"])]
    assert steps[:4] == ["preflight", "model-cache", "deploy", "ready"] and steps[-2:] == ["perf", "baseline"]
    assert steps[4:-2] == ["smoke-" + c.replace("_", "-") for c in SmokeSuite.CHECKS]
