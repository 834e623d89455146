"""Issue 13 rules that follow the real system, on a catalogue copy with one edit: a failing
benchmark still fails the Job when its status is re-raised, warmup calls are not the benchmark,
and only credential-looking values are secrets."""

from __future__ import annotations

import pytest

from harness.recipe.secrets import looks_like_credential

from .conftest import check_on_copy as run
from .conftest import needs_catalogue

pytestmark = needs_catalogue

PERF = "llama-3-70b/vllm/agg/perf.yaml"
AIPERF = '              aiperf profile --model "$TARGET_MODEL"'
AFTER = '              echo "results in $ARTIFACT_DIR"'


def test_or_exit_does_not_mask_aiperf(tmp_path):
    edits = [(PERF, '--artifact-dir "$ARTIFACT_DIR"\n', '--artifact-dir "$ARTIFACT_DIR" || exit 1\n')]
    assert run(tmp_path, "perf-fails-on-error", edits) == []


def test_or_true_still_masks_aiperf(tmp_path):
    edits = [(PERF, '--artifact-dir "$ARTIFACT_DIR"\n', '--artifact-dir "$ARTIFACT_DIR" || true\n')]
    assert [f.message for f in run(tmp_path, "perf-fails-on-error", edits)] == [
        "aiperf's failure is masked by `|| ...`"
    ]


def test_set_plus_e_with_reraised_status_passes(tmp_path):
    edits = [
        (PERF, AIPERF, "              set +e\n" + AIPERF),
        (PERF, AFTER, "              rc=$?\n" + AFTER + "\n              exit $rc"),
    ]
    assert run(tmp_path, "perf-fails-on-error", edits) == []


def test_set_plus_e_without_reraise_fails(tmp_path):
    found = run(tmp_path, "perf-fails-on-error", [(PERF, AIPERF, "              set +e\n" + AIPERF)])
    assert [f.message.split(":")[0] for f in found] == ["`set +e` turns off errexit before aiperf runs"]


def test_warmup_call_is_not_the_benchmark(tmp_path):
    warmup = '              aiperf profile --model "$TARGET_MODEL" --url "$ENDPOINT_URL" --request-count 4 --artifact-dir /model-cache/perf/warmup\n'
    edits = [(PERF, AIPERF, warmup + AIPERF)]
    for check_id in ("perf-seed-fixed", "perf-output-length-fixed", "perf-streaming"):
        assert run(tmp_path / check_id, check_id, edits) == [], check_id


@pytest.mark.parametrize(
    "value, credential",
    [
        ("concurrency_16", False),
        ("revision_main", False),
        ("/var/run/secret", False),
        ("${TOKEN}", False),
        ("short1", False),
        ("a8F3kP0qLw2Zx9Vb", True),
        ("s3cr3t-Passw0rd", True),
    ],
)
def test_looks_like_credential(value, credential):
    assert looks_like_credential(value) is credential
