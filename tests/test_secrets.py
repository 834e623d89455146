"""One list of secret shapes: whatever the security check calls a credential, diagnostics redact."""

from __future__ import annotations

import pytest

from harness.recipe.secrets import CREDENTIAL_PATTERNS
from harness.run.k8s.diagnostics import REDACTED, Redactor

# fake credentials, assembled at run time so no credential-shaped literal sits in the tree
EXAMPLES = {
    "a Hugging Face token": "hf_" + "a1B2" * 9,
    "an NVIDIA API key": "nvapi-" + "x9Y8" * 8,
    "an AWS access key id": "AKIA" + "ABCD1234EFGH5678",
    "an AWS secret key": "aws_secret_access_key = " + "a/B+" * 10,
    "a GitHub token": "ghp_" + "Zz09" * 10,
    "an OpenAI-style API key": "sk-" + "Qw3r" * 9,
    "a private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
}


def test_every_credential_shape_has_an_example():
    assert set(EXAMPLES) == {what for what, _ in CREDENTIAL_PATTERNS}


@pytest.mark.parametrize("what,pattern", CREDENTIAL_PATTERNS, ids=[w for w, _ in CREDENTIAL_PATTERNS])
def test_what_the_check_reports_diagnostics_redact(what, pattern):
    line = f"worker log: loaded {EXAMPLES[what]} from env"
    assert pattern.search(line), "the security check would not see the example"
    out = Redactor().text(line)
    assert REDACTED in out and not pattern.search(out), out
