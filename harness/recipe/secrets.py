"""What a secret looks like: credential shapes, secret-like env and key names, and how to show
one without leaking it. One list for the security check (which reports a credential written in
a recipe) and for the k8s diagnostics (which redact them from logs and objects they save)."""

from __future__ import annotations

import re

# Credentials that look like themselves wherever they are written: (what it is, pattern).
CREDENTIAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{20,}")),
    ("an NVIDIA API key", re.compile(r"\bnvapi-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret key", re.compile(r"(?i:aws_secret_access_key)\s*[=:]\s*['\"]?(?!\$)([A-Za-z0-9/+=]{40})")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}")),
    ("an OpenAI-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{32,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)

# --- names (the security check: precise, a false finding is a defect) --------------------

SECRET_PARTS = {"TOKEN", "KEY", "APIKEY", "PASSWORD", "PASSWD", "SECRET", "CREDENTIALS"}
POINTER_PARTS = {"NAME", "FILE", "PATH", "REF", "DIR", "ENV", "ID_FILE", "SECRET_NAME"}
# VAR=literal in a script (a `$` value is a reference, not a literal)
LITERAL_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"$]+\"|'[^']+'|[^\s\"'$;&|][^\s;&|]*)")
CREDENTIAL_KEY = re.compile(r"(?i)^(hf_?token|token|api_?key|password|secret_?key|access_?key|secret_?access_?key)$")
TOKEN_FLAG = re.compile(r"--(?:hf-)?token[= ]+(\"[^\"$]+\"|'[^']+'|[^\s\"'$;&|-][^\s;&|]*)")


def secret_like(name: str) -> bool:
    """HF_TOKEN, NGC_API_KEY, DB_PASSWORD, AWS_SECRET_ACCESS_KEY: yes; MAX_TOKENS,
    TOKENIZER, HF_TOKEN_PATH, SECRET_NAME: no (counts, names and pointers, not credentials)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name.upper()) if p]
    if not parts or parts[-1] in POINTER_PARTS:
        return False
    return any(p in SECRET_PARTS or p.endswith(("TOKEN", "APIKEY", "PASSWORD", "SECRET")) for p in parts)


_IDENTIFIER_LIKE = re.compile(r"^[a-z]+(?:[_.-][a-z0-9]+)*$")


def looks_like_credential(value: str) -> bool:
    """A literal that could be a key or token: no shell expansion, at least 8 characters, not a
    path or URL, and not a lower-case word list (`concurrency_16`, `my-model`)."""
    v = value.strip().strip("'\"")
    if "$" in v or len(v) < 8 or v.startswith(("/", ".", "<")) or "://" in v or " " in v:
        return False
    return not _IDENTIFIER_LIKE.match(v)


def redact(value: str) -> str:
    """Never print a credential: its first three characters and stars."""
    return value[:3] + "***"


# --- redaction (diagnostics: errs on the side of hiding, a lost log word costs nothing) ------

SECRET_NAME = re.compile(r"(?i)(token(?!izer)|secret|password|passwd|api[_-]?key|credential)")
# every credential shape above, and hf_ values shorter than a real token
TOKEN_VALUE = re.compile("|".join([r"\bhf_[A-Za-z0-9]{8,}"] + [f"(?:{p.pattern})" for _, p in CREDENTIAL_PATTERNS]))
BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# FOO_TOKEN=value, "api_key": "value", --hf-token value: the value goes, the name stays.
SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z0-9_.-]*(?:token(?!izer)|secret|password|api[_-]?key)[A-Za-z0-9_.-]*)([\"']?\s*[=:]\s*[\"']?)([^\s\"',;}]{8,})"
)
SECRET_FLAG = re.compile(
    r"(?i)(--[A-Za-z0-9-]*(?:token(?!izer)|secret|password|api-key)[A-Za-z0-9-]*)(\s+|=)([^\s\"']{8,})"
)
# A Kubernetes object name (hf-token-secret) is not a credential; a long value is suspect anyway.
K8S_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
