"""The API-server tier against a real kube-apiserver: the shipped catalogue passes, and defects only the API server's own
validation knows fail with its message at the manifest line.

Needs the control plane binaries (`recipe-harness cluster setup`, or KUBEBUILDER_ASSETS); without them every test here
skips with that reason. The expected messages are the API server's (k8s.io/kubernetes pkg/apis/core/validation,
pkg/apis/batch/validation), written out by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.run.apiserver.dryrun import RecipeDryRun, field_path, namespace_for
from harness.run.apiserver.session import ApiServerSession, Unavailable
from harness.run.static import make_selection
from harness.run.strict import STRICT_ENV, strict_from_env
from tests.conftest import copy_model

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "recipes"


@pytest.fixture(scope="module")
def api_session():
    session = ApiServerSession()
    try:
        session.client()
    except Unavailable as exc:
        session.close()
        if "apiserver" in strict_from_env():  # CI: a control plane that cannot start is a failure, not a skip
            pytest.fail(f"{STRICT_ENV} names apiserver: {exc}")
        pytest.skip(str(exc))
    yield session
    session.close()


@pytest.fixture(scope="module")
def api(api_session):
    return api_session.client()


def _tree(tmp_path: Path, model: str) -> Path:
    return copy_model(model, tmp_path / "recipes")


def _recipe(root: Path, recipe_id: str):
    (recipe,) = make_selection(str(root), [recipe_id]).chosen
    return recipe


def _findings(api, recipe):
    run = RecipeDryRun(api, recipe)
    try:
        return [f for o in run.run() for f in o.findings]
    finally:
        run.cleanup()


def _line(path: Path, pattern: str, after: int = 0) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if i > after and re.search(pattern, text))


def test_field_paths_parse_as_the_api_server_writes_them():
    assert field_path("spec.template.spec.containers[0].resources.requests") == [
        "spec",
        "template",
        "spec",
        "containers",
        0,
        "resources",
        "requests",
    ]
    assert field_path("metadata.labels[app.kubernetes.io/name]") == ["metadata", "labels", "app.kubernetes.io/name"]
    assert len(namespace_for("x" * 200)) <= 63


def test_shipped_catalogue_passes(api):
    failures = []
    for recipe in make_selection(str(CATALOGUE), []).chosen:
        failures += [f.format() for f in _findings(api, recipe)]
    assert not failures, "\n".join(failures)


def test_perf_job_cpu_limit_below_request_fails_at_the_requests_line(api, tmp_path):
    root = _tree(tmp_path, "qwen3-32b")
    perf = root / "qwen3-32b/vllm/agg-round-robin/perf.yaml"
    text = perf.read_text()
    assert '              cpu: "8"\n' in text
    perf.write_text(text.replace('              cpu: "8"\n', '              cpu: "2"\n', 1))
    findings = _findings(api, _recipe(root, "qwen3-32b/vllm/agg-round-robin"))
    assert len(findings) == 1, [f.format() for f in findings]
    f = findings[0]
    assert f.check_id == "apiserver" and f.file.endswith("agg-round-robin/perf.yaml")
    assert f.line == _line(perf, r"^\s+requests:$", after=_line(perf, r"^\s+resources:$"))
    assert 'spec.template.spec.containers[0].resources.requests: Invalid value: "4"' in f.message
    assert "must be less than or equal to cpu limit of 2" in f.message


def test_model_download_restart_policy_always_fails_at_its_line(api, tmp_path):
    root = _tree(tmp_path, "qwen3-32b")
    job = root / "qwen3-32b/model-cache/model-download.yaml"
    job.write_text(job.read_text().replace("restartPolicy: Never", "restartPolicy: Always", 1))
    findings = _findings(api, _recipe(root, "qwen3-32b/vllm/agg-round-robin"))
    assert findings, "the API server accepted a Job with restartPolicy: Always"
    f = findings[0]
    assert f.file.endswith("model-cache/model-download.yaml")
    assert f.line == _line(job, r"restartPolicy: Always")
    # Kubernetes 1.37's Job validation (pkg/apis/batch/validation) words it as a required value
    assert f.message == 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'


def test_operator_pod_error_points_into_the_pod_template(api, tmp_path):
    """A mount of an undeclared volume passes the DGD's CRD schema; the pod the operator creates from it is
    rejected (pod validation), and the finding points at the mount in the component's podTemplate."""
    root = _tree(tmp_path, "qwen3-32b")
    deploy = root / "qwen3-32b/vllm/agg-round-robin/deploy.yaml"
    text = deploy.read_text()
    first = "                - name: model-cache\n                  mountPath: /model-cache\n"
    assert first in text, "the fixture recipe changed"
    deploy.write_text(text.replace(first, first.replace("name: model-cache", "name: no-such-volume"), 1))
    findings = _findings(api, _recipe(root, "qwen3-32b/vllm/agg-round-robin"))
    assert findings
    f = findings[0]
    assert f.file.endswith("agg-round-robin/deploy.yaml")
    assert f.line == _line(deploy, r"name: no-such-volume")
    assert 'volumeMounts[0].name: Not found: "no-such-volume"' in f.message
    assert "in the pod the operator would create, as modelled by render" in f.message


def test_the_tier_reports_items_and_findings_through_pytest(
    api, api_session, pytester: pytest.Pytester, tmp_path, monkeypatch
):
    # the inner session uses this module's cluster (RECIPE_HARNESS_CLUSTER) instead of starting its own
    # (pytester moves HOME, so the cache root, <root>/cluster/state/<name>, is named explicitly)
    monkeypatch.setenv("RECIPE_HARNESS_CLUSTER", api_session.cluster_name)
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(api_session.cache_base))
    root = _tree(tmp_path, "qwen3-32b")
    perf = root / "qwen3-32b/vllm/agg-round-robin/perf.yaml"
    perf.write_text(perf.read_text().replace('              cpu: "8"\n', '              cpu: "2"\n', 1))
    res = pytester.runpytest_subprocess(
        "-m",
        "apiserver",
        "--recipes-dir",
        str(root),
        "--recipe",
        "qwen3-32b/vllm/agg-round-robin",
        "-p",
        "no:cacheprovider",
        "-rfs",
    )
    text = res.stdout.str()
    assert res.ret == 1, text
    assert "1 failed" in text, text
    assert re.search(
        r"perf\.yaml:\d+:\d+: \[apiserver\] spec\.template\.spec\.containers\[0\]\.resources\.requests", text
    )
    ids = pytester.runpytest_subprocess(
        "-m", "apiserver", "--recipes-dir", str(root), "--collect-only", "-q", "-p", "no:cacheprovider"
    ).stdout.str()
    assert "apiserver::qwen3-32b/vllm/agg-round-robin::perf.yaml/Job/qwen3-32b-vllm-agg-round-robin-perf" in ids
    assert (
        "apiserver::qwen3-32b/vllm/agg-round-robin::deploy.yaml/qwen3-32b-vllm-agg-round-robin/Frontend/Pod(single)"
        in ids
    )


# --- SubjectAccessReview of the RBAC the recipes ship (harness.run.apiserver.rbac) ---------------------------------

EPP_RULES_OPERATOR = """\
rules:
  - apiGroups: [inference.networking.k8s.io]
    resources: [inferencepools, inferencepools/status]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: [nvidia.com]
    resources: [dynamoworkermetadatas]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding"""


def _rbac(api, root: Path, recipe_id: str):
    from harness.run.apiserver.rbac import review_recipe

    recipe = _recipe(root, recipe_id)
    run = RecipeDryRun(api, recipe)
    try:
        run._ensure_namespace()
        return review_recipe(api, recipe, run.namespace)
    finally:
        run.cleanup()


def _gaie_role_with(tmp_path: Path, rules: str) -> Path:
    root = _tree(tmp_path, "llama-3-70b")
    epp = root / "llama-3-70b/vllm/agg/gaie/epp.yaml"
    text = epp.read_text()
    start = text.index("rules:\n", text.index("kind: Role\n"))
    end = text.index("kind: RoleBinding", start) + len("kind: RoleBinding")
    epp.write_text(text[:start] + rules + text[end:])
    return root


def test_a_role_with_the_operators_epp_rules_passes_subject_access_review(api, tmp_path):
    root = _gaie_role_with(tmp_path, EPP_RULES_OPERATOR)
    assert _rbac(api, root, "llama-3-70b/vllm/agg") == []


def test_a_role_without_pods_fails_subject_access_review_at_the_service_account(api, tmp_path):
    rules = EPP_RULES_OPERATOR.replace(
        '  - apiGroups: [""]\n    resources: [pods]\n    verbs: [get, list, watch]\n', ""
    )
    root = _gaie_role_with(tmp_path, rules)
    (f,) = _rbac(api, root, "llama-3-70b/vllm/agg")
    epp = root / "llama-3-70b/vllm/agg/gaie/epp.yaml"
    assert f.check_id == "apiserver-rbac" and f.line == _line(epp, r"serviceAccountName:")
    assert "may not get pods, list pods, watch pods" in f.message
    assert "dynamoworkermetadatas" not in f.message


def test_shipped_gaie_role_grants_what_the_epp_needs(api):
    assert _rbac(api, CATALOGUE, "llama-3-70b/vllm/agg") == []
