"""Image, security and consistency rules on small cases, and on a catalogue copy with one edit."""

from __future__ import annotations

import pytest

from harness.checks.images import RegistryOptions, parse_image, placeholder_reason
from harness.recipe.secrets import redact, secret_like
from harness.recipe.versions import parse_versions
from harness.recipe.yamlsrc import parse_yaml_bytes

from .conftest import CATALOGUE, needs_catalogue
from .conftest import check_on_copy as run

RECIPE = "llama-3-70b/vllm/agg"
FAKE_TOKEN = "hf_" + "ZyXwVuTsRqPoNmLkJiHgFeDcBa987654"
DIGEST = "sha256:" + "0123456789abcdef" * 4


pytestmark = needs_catalogue


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0", "nvcr.io", "nvidia/ai-dynamo/vllm-runtime", "1.4.0", ""),
        ("localhost:5000/x:1", "localhost:5000", "x", "1", ""),
        ("python:3.12", "", "python", "3.12", ""),
        ("library/python", "", "library/python", "", ""),
        (f"nvcr.io/a/b@{DIGEST}", "nvcr.io", "a/b", "", DIGEST),
    ],
)
def test_parse_image(text, registry, repository, tag, digest):
    ref = parse_image(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("tag", ["my-tag", "${VERSION}", "$(TAG)", "x.y.z", "X.Y.Z", "<tag>", "TAG", "VERSION", "tag"])
def test_placeholder_tags(tag):
    assert placeholder_reason(tag)


@pytest.mark.parametrize("tag", ["1.4.0", "1.3.0rc22", "3.12.11-slim", "0.5.10.post1", "v1.2.3"])
def test_real_tags(tag):
    assert placeholder_reason(tag) == ""


@pytest.mark.parametrize(
    "tag, release",
    [
        ("1.4.0", "1.4.0"),
        ("1.3.0rc22", "1.3.0rc22"),
        ("1.4.0-cuda13", "1.4.0"),
        ("0.5.10.post1", "0.5.10.post1"),
        ("latest", ""),
    ],
)
def test_release_of_a_tag(tag, release):
    assert parse_image(f"nvcr.io/nvidia/ai-dynamo/vllm-runtime:{tag}").release == release


def test_digest_pinned_image_passes(tmp_path):
    edits = [(f"{RECIPE}/deploy.yaml", "vllm-runtime:1.6.1", f"vllm-runtime@{DIGEST}")]
    for check_id in (
        "image-reference-pinned",
        "image-release-consistent",
        "image-release-in-matrix",
        "image-repository-matches-backend",
        "image-registry-allowed",
    ):
        assert run(tmp_path / check_id, check_id, edits) == [], check_id


def test_registry_allow_list_is_configurable(tmp_path):
    findings = run(tmp_path, "image-registry-allowed", options=[RegistryOptions(("nvcr.io",))])
    assert findings and all(
        "docker.io/library/python" in f.message and "registries option" in f.message for f in findings
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("HF_TOKEN", True),
        ("NGC_API_KEY", True),
        ("DB_PASSWORD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("hfToken", True),
        ("MAX_TOKENS", False),
        ("TOKENIZER", False),
        ("HF_TOKEN_PATH", False),
        ("SECRET_NAME", False),
        ("DYN_KV_BLOCK_SIZE", False),
    ],
)
def test_secret_like_names(name, expected):
    assert secret_like(name) is expected


def test_findings_never_print_the_token(tmp_path):
    assert redact(FAKE_TOKEN) == "hf_***"
    edits = [
        (
            f"{RECIPE}/perf.yaml",
            "value: /model-cache/perf/llama-3-70b-vllm-agg",
            f"value: /model-cache/perf/llama-3-70b-vllm-agg\n            - name: NGC_API_KEY\n              value: {FAKE_TOKEN}",
        )
    ]
    findings = run(tmp_path, "no-plaintext-secrets", edits)
    assert findings
    assert all(FAKE_TOKEN not in f.message + f.hint and FAKE_TOKEN[3:10] not in f.message for f in findings)


def test_security_exception_allows_a_declared_rule(tmp_path):
    privileged = (f"{RECIPE}/perf.yaml", "allowPrivilegeEscalation: false", "privileged: true")
    assert run(tmp_path / "a", "no-privileged", [privileged])
    declared = (
        f"{RECIPE}/recipe.yaml",
        "knownLimits:",
        "securityExceptions:\n  - rule: privileged\n    reason: the benchmark reads GPU clocks through nvidia-smi\nknownLimits:",
    )
    assert run(tmp_path / "b", "no-privileged", [privileged, declared]) == []


@pytest.mark.parametrize(
    "url, ok",
    [
        ("http://llama-3-70b-vllm-agg-frontend:8000/", True),
        ("llama-3-70b-vllm-agg-frontend:8000", True),
        ("http://llama-3-70b-vllm-agg-frontend", False),
        ("https://llama-3-70b-vllm-agg-frontend:8000", False),
        ("http://llama-3-70b-vllm-agg-frontend.dynamo.svc.cluster.local:8000", False),
    ],
)
def test_perf_endpoint_forms(tmp_path, url, ok):
    edits = [(f"{RECIPE}/perf.yaml", '"http://llama-3-70b-vllm-agg-frontend:8000"', f'"{url}"')]
    assert (run(tmp_path, "perf-endpoint-is-frontend", edits) == []) is ok


def test_version_matrix_forms(tmp_path):
    text = b"""registries: [nvcr.io/nvidia, {prefix: docker.io/library}]
releases:
  - {dynamo: 1.4.0, vllm: 0.26.0, tensorrt-llm: 1.3.0rc22, cuda: 13.0}
tools: {aiperf: 0.13.0}
"""
    m = parse_versions(parse_yaml_bytes(text, tmp_path / "versions.yaml"))
    assert m.registries == ["nvcr.io/nvidia", "docker.io/library"]
    assert m.release("1.4.0").backends == {"vllm": "0.26.0", "trtllm": "1.3.0rc22"}
    assert m.release("1.4.0").cuda_for("vllm") == m.release("1.4.0").cuda_for("tensorrt-llm") == "13.0"
    assert m.aiperf == "0.13.0" and m.aiperf_loc.line == 4


def test_version_matrix_cuda_per_backend(tmp_path):
    text = b"""releases:
  "1.4.0": {vllm: 0.26.0, trtllm: 1.3.0rc22, cuda: {vllm: "13.0", tensorrt-llm: "13.1"}}
"""
    rel = parse_versions(parse_yaml_bytes(text, tmp_path / "versions.yaml")).release("1.4.0")
    assert rel.cuda_for("vllm") == "13.0" and rel.cuda_for("trtllm") == "13.1" and rel.cuda_for("sglang") == ""


V1BETA1 = """apiVersion: nvidia.com/v1beta1
kind: DynamoGraphDeployment
metadata:
  name: llama-3-70b-vllm-agg
spec:
  backendFramework: vllm
  components:
    - name: Frontend
      type: frontend
      podTemplate:
        spec:
          containers:
            - name: main
              image: nvcr.io/nvidia/ai-dynamo/dynamo-frontend:1.4.0
    - name: Worker
      type: worker
      podTemplate:
        spec:
          containers:
            - name: main
              image: nvcr.io/nvidia/ai-dynamo/sglang-runtime:1.4.0
              command: [python3, -m, dynamo.vllm]
              args: [--model, RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --served-model-name, llama]
              volumeMounts: [{name: cache, mountPath: /cache}]
          volumes:
            - name: cache
              persistentVolumeClaim: {claimName: cache-pvc}
"""


def test_v1beta1_components(tmp_path):
    deploy = CATALOGUE / RECIPE / "deploy.yaml"
    edits = [(f"{RECIPE}/deploy.yaml", deploy.read_text(), V1BETA1)]
    repo = run(tmp_path / "a", "image-repository-matches-backend", edits)
    assert [(f.line, "sglang-runtime" in f.message) for f in repo] == [(21, True)]
    served = run(tmp_path / "b", "served-name-consistent", edits)
    assert [f.line for f in served] == [23]
    pvc = run(tmp_path / "c", "pvc-defined", edits)
    assert [(f.line, "cache-pvc" in f.message) for f in pvc] == [(27, True)]
