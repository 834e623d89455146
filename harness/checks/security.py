"""Security checks: no credentials in the tree, no host access without a declared reason,
no hard-coded namespaces, no RBAC on the `default` ServiceAccount."""

from __future__ import annotations

import re
from typing import Any, Iterator

from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import METADATA_FILE, Recipe, dig, mapping, sequence
from harness.recipe.yamlsrc import LoadedFile, SrcMap
from harness.checks import CheckContext, check
from harness.recipe.secrets import (
    CREDENTIAL_KEY, CREDENTIAL_PATTERNS, LITERAL_ASSIGNMENT, TOKEN_FLAG, redact, secret_like,
)
from harness.recipe.workloads import all_strings, line_in_scalar

def _literal(value: Any) -> str:
    """A credential-looking literal, or "" (numbers, booleans, empty, references are not)."""
    if not isinstance(value, str):
        return ""
    v = value.strip()
    if not v or v.lower() in ("true", "false", "none", "null", "changeme") or re.fullmatch(r"[0-9.]+", v) or v.startswith("<"):
        return ""
    if re.fullmatch(r"\$(\([A-Za-z_]\w*\)|\{[A-Za-z_]\w*\}|[A-Za-z_]\w*)", v):
        return ""
    return v


def _plaintext(node: Any) -> Iterator[tuple[Loc, str]]:
    """(where, message) for every env-style `{name: *TOKEN*, value: literal}` under a node."""
    if isinstance(node, SrcMap):
        name = node.get("name")
        if isinstance(name, str) and "value" in node and secret_like(name) and _literal(node.get("value")):
            yield node.loc_of("value"), f"{name} has a literal value {redact(_literal(node['value']))!r}"
        for v in node.values():
            yield from _plaintext(v)
    elif isinstance(node, list):
        for v in node:
            yield from _plaintext(v)


def _in_strings(node: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    for text, at, key in all_strings(node, loc):
        for what, pattern in CREDENTIAL_PATTERNS:
            for m in pattern.finditer(text):
                yield line_in_scalar(text, at, m.start()), f"{what} {redact(m.group(0))!r} is written in plain text"
        if CREDENTIAL_KEY.match(key) and _literal(text):
            yield at, f"{key} has a literal value {redact(_literal(text))!r}"
        for m in LITERAL_ASSIGNMENT.finditer(text):
            if secret_like(m.group(1)) and _literal(m.group(2).strip("'\"")):
                yield line_in_scalar(text, at, m.start()), f"{m.group(1)} is set to a literal {redact(m.group(2).strip(chr(39) + chr(34)))!r}"
        for m in TOKEN_FLAG.finditer(text):
            yield line_in_scalar(text, at, m.start()), f"a token is passed on the command line ({redact(m.group(1).strip(chr(39) + chr(34)))!r})"


@check("no-plaintext-secrets")
def no_plaintext_secrets(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """No credential is written into a recipe: HF_TOKEN and any *TOKEN*, *KEY*, *PASSWORD* or
    *SECRET* variable comes from a Secret (`valueFrom.secretKeyRef` / `envFromSecret`), and no
    string anywhere holds something that looks like a token (`hf_...`, `nvapi-...`, AWS keys).
    A token in git is leaked for good. Findings show only the first three characters.

    Fails: `env: [{name: HF_TOKEN, value: hf_aBcD...}]` in model-download.yaml.
    """
    hint = "delete it (and revoke the token); read it from the Secret: valueFrom.secretKeyRef {name: hf-token-secret, key: HF_TOKEN}"
    for f in recipe.files():
        for loc, message in _file_secrets(f):
            yield problem(loc, message, hint)


_SCANNED: dict[int, tuple[LoadedFile, list[tuple[Loc, str]]]] = {}


def _file_secrets(f: LoadedFile) -> list[tuple[Loc, str]]:
    """(where, message) for every credential in one file, scanned once per loaded file
    (a model's cache files belong to all its recipes)."""
    hit = _SCANNED.get(id(f))
    if hit is not None and hit[0] is f:
        return hit[1]
    out: list[tuple[Loc, str]] = []
    for doc in f.documents:
        if doc.data is None:
            continue
        seen: set[tuple[int, int]] = set()
        found = list(_plaintext(doc.data)) + list(_in_strings(doc.data, doc.loc))
        if doc.kind == "Secret" and f.path.name != METADATA_FILE:
            for key in ("data", "stringData"):
                if mapping(doc.data.get(key)):
                    found.append((doc.data.loc_of(key), f"Secret {doc.name} carries its {key} in the repository (base64 is not encryption)"))
        for loc, message in found:
            if (loc.line, loc.column) not in seen:
                seen.add((loc.line, loc.column))
                out.append((loc, message))
    if len(_SCANNED) > 256:
        _SCANNED.clear()
    _SCANNED[id(f)] = (f, out)
    return out


def _exceptions(recipe: Recipe) -> set[str]:
    """Rules the metadata's `securityExceptions` declares (with a reason), lower-cased."""
    out = set()
    for item in sequence(recipe.metadata.get("securityExceptions")) or []:
        rule, reason = dig(item, "rule"), dig(item, "reason")
        if isinstance(rule, str) and isinstance(reason, str) and reason.strip():
            out.add(rule.strip().lower())
    return out


@check("no-privileged")
def no_privileged(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Containers are not privileged and add no Linux capabilities, and pods use no hostPath
    volumes, host network, PID or IPC namespace: each hands the node to the pod. Where a
    recipe truly needs one (e.g. RDMA wants IPC_LOCK), the metadata declares it:
    `securityExceptions: [{rule: capabilities, reason: ...}]` (rule = privileged, capabilities,
    a capability name, hostPath, hostNetwork, hostPID, hostIPC, or no-privileged for all).

    Fails: `securityContext: {privileged: true}` on a worker with no securityExceptions entry.
    """
    allowed = _exceptions(recipe)
    if "no-privileged" in allowed:
        return
    hint = "remove it, or declare it in recipe.yaml: securityExceptions: [{rule: <rule>, reason: <why>}]"
    for pod in recipe.workloads.pods:
        spec = pod.spec
        if spec is not None:
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(key) is True and key.lower() not in allowed:
                    yield problem(spec.loc_of(key), f"{pod.label} sets {key}: true", hint)
            for v in sequence(spec.get("volumes")) or []:
                if mapping(v) is not None and "hostPath" in v and "hostpath" not in allowed:
                    yield problem(v.loc_of("hostPath"), f"{pod.label} mounts hostPath volume {v.get('name')!r}", hint)
        for c in pod.containers:
            sc = mapping(c.data.get("securityContext"))
            if sc is None:
                continue
            if sc.get("privileged") is True and "privileged" not in allowed:
                yield problem(sc.loc_of("privileged"), f"{pod.label} runs a privileged container", hint)
            add = sequence(dig(sc, "capabilities", "add"))
            for i, cap in enumerate(add or []):
                name = str(cap).upper().removeprefix("CAP_")
                if not ({"capabilities", name.lower(), f"capabilities:{name.lower()}"} & allowed):
                    yield problem(add.loc_of(i), f"{pod.label} adds capability {name}", hint)


@check("no-hard-coded-namespace")
def no_hard_coded_namespace(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Manifests name no namespace: the harness (and users) apply a recipe into a namespace of
    their choice (`kubectl -n`); a hard-coded one lands objects elsewhere, splits the PVC from
    the pods that mount it, or fails without rights there. RBAC subjects are the same.

    Fails: `metadata: {name: model-cache, namespace: dynamo-system}`.
    """
    hint = "delete the namespace field; pass the namespace with kubectl -n"
    for doc in recipe.documents():
        meta = mapping(doc.data.get("metadata"))
        if meta is not None and "namespace" in meta:
            yield problem(meta.loc_of("namespace"), f"{doc.kind} {doc.name} hard-codes namespace {meta['namespace']!r}", hint)
        if doc.kind in ("RoleBinding", "ClusterRoleBinding"):
            for s in sequence(doc.data.get("subjects")) or []:
                if mapping(s) is not None and "namespace" in s:
                    yield problem(s.loc_of("namespace"), f"{doc.kind} {doc.name} subject {s.get('name')!r} hard-codes namespace {s['namespace']!r}", hint)


@check("rbac-not-default-sa")
def rbac_not_default_sa(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """RoleBindings and ClusterRoleBindings bind a ServiceAccount the recipe creates, never
    `default`: every pod in the namespace that names no account runs as `default`, so the
    grant reaches all of them.

    Fails: `subjects: [{kind: ServiceAccount, name: default}]`.
    """
    for doc in recipe.documents():
        if doc.kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for s in sequence(doc.data.get("subjects")) or []:
            if mapping(s) is not None and s.get("kind") == "ServiceAccount" and s.get("name") == "default":
                yield problem(s.loc_of("name"), f"{doc.kind} {doc.name} grants its role to the default ServiceAccount",
                              "create a ServiceAccount for the recipe, bind that, and set serviceAccountName on its pods")
