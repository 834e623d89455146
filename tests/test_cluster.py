"""The control plane's pieces that need no binaries: the generated Go modules, credentials, GPU nodes, state handling
and the errors a user sees (busy port, stale state, no Go, no binaries)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.run.cluster import build, pki
from harness.run.cluster.api import Resource
from harness.run.cluster.control_plane import ClusterError, ClusterOptions, ControlPlane, status, stop_recorded
from harness.run.cluster.nodes import NodePool, node_manifest, parse_pool, pools_for
from harness.run.static import make_selection

ROOT = Path(__file__).resolve().parents[1]

# An excerpt in the form of k8s.io/kubernetes v1.37.2's go.mod (its replace block names the staging modules).
KUBERNETES_GO_MOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-aggregator => ./staging/src/k8s.io/kube-aggregator
)

replace github.com/foo/bar => github.com/foo/bar v1.2.3
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    return tmp_path / "cache"


def test_staging_modules_are_read_from_kubernetes_go_mod():
    assert build.staging_modules(KUBERNETES_GO_MOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kube-aggregator"]


def test_generated_kubernetes_module_replaces_each_staging_module_by_its_published_version():
    v = build.Versions(kubernetes="v1.37.2")
    assert v.staging == "v0.37.2"
    go_mod = build.kubernetes_module(v, ["k8s.io/api", "k8s.io/client-go"])["go.mod"]
    assert "require k8s.io/kubernetes v1.37.2" in go_mod
    assert "\tk8s.io/api => k8s.io/api v0.37.2\n" in go_mod
    assert "\tk8s.io/client-go => k8s.io/client-go v0.37.2\n" in go_mod


def test_generated_etcd_main_calls_etcdmain():
    files = build.etcd_module(build.Versions(etcd="v3.7.4"))
    assert "require go.etcd.io/etcd/server/v3 v3.7.4" in files["go.mod"]
    assert "etcdmain.Main(os.Args)" in files["main.go"]


def test_not_a_kubernetes_release_is_refused():
    with pytest.raises(ValueError):
        _ = build.Versions(kubernetes="v2.0.0").staging


def test_no_binaries_and_no_go_names_both_fixes(cache, monkeypatch):
    monkeypatch.setenv("PATH", str(cache))  # no `go` on it
    assert build.find_binaries() is None
    reason = build.missing_reason()
    assert "no Go toolchain" in reason and "recipe-harness cluster setup" in reason and "KUBEBUILDER_ASSETS" in reason


def test_build_without_go_is_one_clear_error(cache):
    with pytest.raises(build.BuildError, match="no Go toolchain"):
        build.build(options=build.BuildOptions(env={"PATH": str(cache)}))


def test_kubebuilder_assets_win_and_must_hold_etcd_and_apiserver(cache, tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert build.find_binaries() is None
    assert "lacks etcd, kube-apiserver" in build.missing_reason()
    for name in ("etcd", "kube-apiserver"):
        (assets / name).write_text("#!/bin/sh\n")
        (assets / name).chmod(0o755)
    found = build.find_binaries()
    assert found is not None and found.source == f"KUBEBUILDER_ASSETS={assets}"
    assert found.get("kube-apiserver") == assets / "kube-apiserver"
    assert found.get("kwok") is None  # optional: the cluster runs without it


def test_credentials_and_kubeconfig(tmp_path):
    from cryptography import x509

    creds = pki.generate(tmp_path / "pki")
    cert = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert oct(creds.sa_key.stat().st_mode & 0o777) == "0o600"
    rows = creds.token_file.read_text().splitlines()
    assert rows[0].endswith(',admin,admin,"system:masters"')
    assert pki.load(tmp_path / "pki").tokens == creds.tokens
    cfg = yaml.safe_load(pki.kubeconfig("https://127.0.0.1:1234", creds.ca_cert, "admin", creds.tokens["admin"]))
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1234"
    assert cfg["users"][0]["user"]["token"] == creds.tokens["admin"]


def test_gpu_nodes_carry_capacity_and_gfd_labels():
    node = node_manifest(NodePool("GB200", 1), "gpu-gb200-0")
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"  # one GB200 NVL72 compute tray
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-GB200"
    assert labels["nvidia.com/gpu.family"] == "blackwell"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_default_pools_cover_the_largest_recipe_per_gpu():
    pools = {p.gpu: p.count for p in pools_for(make_selection(str(ROOT / "recipes"), []).all)}
    assert pools["GB200"] == 9  # deepseek-r1/trtllm/disagg-wide-ep spans 9 nodes
    assert set(pools) <= {"A100", "H100", "H200", "B200", "GB200"}


def test_node_pool_syntax():
    assert parse_pool("H100=3") == NodePool("H100", 3)
    with pytest.raises(ValueError, match="unknown GPU"):
        parse_pool("T4=1")


def test_resource_paths():
    pods = Resource("v1", "Pod", "pods", True)
    assert pods.path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    crd = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)
    assert crd.path("ignored") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _fake_binaries(tmp_path: Path) -> build.Binaries:
    return build.Binaries({n: tmp_path / n for n in build.REQUIRED}, "test")


def test_a_busy_port_is_a_clear_error_and_nothing_is_left(cache, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        plane = ControlPlane(_fake_binaries(tmp_path), ClusterOptions(name="busy", api_port=port))
        with pytest.raises(ClusterError, match=f"port {port} on 127.0.0.1 is in use"):
            plane.start()
    assert not (cache / "cluster" / "state" / "busy").exists()


def test_a_stale_state_dir_is_refused_and_down_removes_it(cache, tmp_path):
    d = cache / "cluster" / "state" / "default"
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"pids": {"kube-apiserver": 2**22 + 7}, "server": "https://x"}))
    with pytest.raises(ClusterError, match="stale state"):
        ControlPlane(_fake_binaries(tmp_path)).start()
    assert status("default")["running"] is False
    assert stop_recorded("default") == []
    assert not d.exists()


def test_a_crashed_component_is_reported_with_its_log_and_cleaned_up(cache, tmp_path):
    bad = tmp_path / "etcd"
    bad.write_text("#!/bin/sh\necho 'etcd: listen tcp 127.0.0.1:1: bind: address already in use' >&2\nexit 3\n")
    bad.chmod(0o755)
    plane = ControlPlane(build.Binaries({"etcd": bad, "kube-apiserver": bad}, "test"), ClusterOptions(name="crash"))
    with pytest.raises(ClusterError, match=r"etcd exited with code 3(.|\n)*address already in use"):
        plane.start()
    assert not (cache / "cluster" / "state" / "crash").exists()


def test_cluster_env_without_a_cluster_says_how_to_start_one(cache):
    env = {**os.environ, "RECIPE_HARNESS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "harness", "cluster", "env"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert "recipe-harness cluster up" in out.stderr
