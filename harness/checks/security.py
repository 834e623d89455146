"""Security checks: no credentials in the tree, no host access without a declared reason,
no hard-coded namespaces, no RBAC on the `default` ServiceAccount."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from harness.checks import CheckContext, check
from harness.recipe.container import Container
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import METADATA_FILE, Recipe
from harness.recipe.secrets import (
    CREDENTIAL_KEY,
    CREDENTIAL_PATTERNS,
    LITERAL_ASSIGNMENT,
    TOKEN_FLAG,
    looks_like_credential,
    redact,
    secret_like,
)
from harness.recipe.workloads import Pod, all_strings, line_in_scalar
from harness.recipe.yamlsrc import LoadedFile, SrcMap, dig, mapping, sequence


def _literal(value: Any) -> str:
    """A credential-looking literal, or "" (numbers, booleans, empty, references are not)."""
    if not isinstance(value, str):
        return ""
    v = value.strip()
    if (
        not v
        or v.lower() in ("true", "false", "none", "null", "changeme")
        or re.fullmatch(r"[0-9.]+", v)
        or v.startswith("<")
    ):
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
            value = m.group(2).strip("'\"")
            # `key=concurrency_${n}` is a shell variable built from others, not a credential:
            # a script assignment counts when its value is a literal that looks like one.
            if "$" in value or (m.group(1).islower() and not looks_like_credential(value)):
                continue
            if secret_like(m.group(1)) and _literal(value):
                yield (
                    line_in_scalar(text, at, m.start()),
                    f"{m.group(1)} is set to a literal {redact(m.group(2).strip(chr(39) + chr(34)))!r}",
                )
        for m in TOKEN_FLAG.finditer(text):
            yield (
                line_in_scalar(text, at, m.start()),
                f"a token is passed on the command line ({redact(m.group(1).strip(chr(39) + chr(34)))!r})",
            )


@check("no-plaintext-secrets")
def no_plaintext_secrets(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """No credential is written into a recipe: HF_TOKEN and any *TOKEN*, *KEY*, *PASSWORD* or
    *SECRET* variable comes from a Secret (`valueFrom.secretKeyRef` / `envFromSecret`), and no
    string anywhere holds something that looks like a token (`hf_...`, `nvapi-...`, AWS keys).
    A token in git is leaked for good. Findings show only the first three characters.

    Fails: `env: [{name: HF_TOKEN, value: hf_aBcD...}]` in model-download.yaml.

    Source: Kubernetes Secrets good practice
    (kubernetes.io/docs/concepts/security/secrets-good-practices; env from `valueFrom.secretKeyRef` /
    `envFrom.secretRef`; Secret `data` is base64, not encryption) and the published token formats:
    Hugging Face user access tokens `hf_...`, NGC API keys `nvapi-...`, AWS access keys `AKIA...`
    (harness/recipe/secrets.py CREDENTIAL_PATTERNS).
    """
    hint = (
        "delete it (and revoke the token); "
        "read it from the Secret: valueFrom.secretKeyRef {name: hf-token-secret, key: HF_TOKEN}"
    )
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
                    found.append(
                        (
                            doc.data.loc_of(key),
                            f"Secret {doc.name} carries its {key} in the repository (base64 is not encryption)",
                        )
                    )
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


# RDMA memory registration pins pages (RLIMIT_MEMLOCK): IPC_LOCK to lock them, SYS_RESOURCE to
# raise the limit (`ulimit -l unlimited`), NET_RAW for RoCE raw-packet queue pairs.
# Sources: NVIDIA Network Operator, "RDMA shared device plugin" (the test pod adds IPC_LOCK);
# rdma-core libibverbs `ibv_reg_mr` (man page: locked memory, RLIMIT_MEMLOCK); UCX FAQ
# "ulimit -l unlimited" for the ib/rc/dc transports; Kubernetes DRA ComputeDomains (IMEX
# channels for multi-node NVLink, NVIDIA k8s-dra-driver-gpu), whose pods register memory the same way.
RDMA_CAPABILITIES = {"IPC_LOCK", "SYS_RESOURCE", "NET_RAW"}
_RDMA_TEXT = re.compile(
    r"\bulimit\s+(?:-[A-Za-z]*l|-l)\b|\bUCX_[A-Z_]+|nixl|mooncake|\bMC_[A-Z_]+=|NCCL_IB_HCA", re.IGNORECASE
)
_ENGINE = re.compile(r"-m\s+dynamo\.(?:vllm|sglang|trtllm)\b")
_LOOP = re.compile(
    r"\b(?:for|while|until)\b[^\n]*?(?:;\s*|\n\s*)do\b(?:(?!\bdone\b).)*?-m\s+dynamo\.(?:vllm|sglang|trtllm)\b", re.S
)
# Sysctls Kubernetes lets any pod set through `securityContext.sysctls` (namespaced, "safe"):
# kubernetes.io/docs/tasks/administer-cluster/sysctl-cluster/ (Safe sysctls, Kubernetes 1.29+).
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SYSCTL_W = re.compile(r"\bsysctl\s+(?:-\w+\s+)*-w\s+['\"]?([a-z0-9_.]+)\s*=")
# GKE GPUDirect-RDMA (A3 Ultra, A4, A4X): the pod attaches the RDMA networks as extended resources
# `networking.gke.io.networks/rdma-<n>` and mounts the node's gIB NCCL plugin and NVIDIA libraries,
# which GKE installs under /home/kubernetes/bin, as hostPath volumes (mounted at /usr/local/gib and
# /usr/local/nvidia). Sources: GKE "Maximize GPU network bandwidth with GPUDirect and multi-networking",
# GPUDirect-RDMA workload manifest (cloud.google.com/kubernetes-engine/docs/how-to/gpu-bandwidth-gpudirect-rdma);
# NVIDIA AI Cluster Runtime "GKE GB200 (A4X) Networking Prerequisites" (gIB host mounts).
GKE_RDMA_RESOURCE = "networking.gke.io.networks/rdma-"
GKE_RDMA_HOST_PATHS = {"/home/kubernetes/bin/gib", "/home/kubernetes/bin/nvidia"}


def _container_text(pod: Pod, c: Container) -> str:
    """The container's script, args and env values, and its service's env (one string to search)."""
    parts = [t.value for t in c.command + c.args] + [f"{k}={v}" for k, v in c.env.items()]
    for item in sequence(c.data.get("env")) or []:  # names of env vars set from refs count too
        if isinstance(dig(item, "name"), str):
            parts.append(f"{item['name']}=")
    if pod.service is not None:
        parts += list(_strings(pod.service.data.get("envs")))
    return "\n".join(parts)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _rdma_evidence(pod: Pod, c: Container) -> str:
    """Why this container does RDMA memory registration ("" when nothing shows it): an rdma/*
    device, a DRA resource claim, UCX/NIXL/Mooncake transports or `ulimit -l` in its script."""
    resources = [c.data.get("resources")] + ([pod.service.data.get("resources")] if pod.service is not None else [])
    for res in resources:
        for part in ("limits", "requests"):
            for key in _keys(dig(res, part)):
                if key.startswith(("rdma/", GKE_RDMA_RESOURCE)):
                    return f"it requests {key}"
        if sequence(dig(res, "claims")):
            return "it uses a DRA resource claim"
    if pod.spec is not None and sequence(pod.spec.get("resourceClaims")):
        return "the pod uses a DRA resource claim"
    m = _RDMA_TEXT.search(_container_text(pod, c))
    return f"it uses {m.group(0).strip()}" if m else ""


def _keys(node: Any) -> Iterator[str]:
    """Resource names of a limits/requests map (DGD v1alpha1 nests extended resources under `custom`)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            if k == "custom":
                yield from _keys(v)


def _gke_rdma_host_path(pod: Pod, volume: Any) -> bool:
    """A hostPath volume GKE's GPUDirect-RDMA setup requires (the node's gIB plugin or NVIDIA
    libraries) in a pod that attaches GKE RDMA networks."""
    path = str(dig(volume, "hostPath", "path") or "").rstrip("/")
    if path not in GKE_RDMA_HOST_PATHS:
        return False
    resources = [c.data.get("resources") for c in pod.containers]
    if pod.service is not None:
        resources.append(pod.service.data.get("resources"))
    return any(
        key.startswith(GKE_RDMA_RESOURCE)
        for res in resources
        for part in ("limits", "requests")
        for key in _keys(dig(res, part))
    )


def _runs_engines_side_by_side(pod: Pod, c: Container) -> bool:
    """More than one engine process in this container (two `python -m dynamo.X` calls, or one in a loop)."""
    text = "\n".join(t.value for t in c.command + c.args)
    return len(_ENGINE.findall(text)) > 1 or bool(_LOOP.search(text))


def _sysctl_hint(c: Container) -> str:
    """The securityContext.sysctls hint when `privileged` only serves safe namespaced sysctls."""
    text = "\n".join(t.value for t in c.command + c.args)
    names = _SYSCTL_W.findall(text)
    if names and all(n in SAFE_SYSCTLS for n in names):
        listed = ", ".join(f"{{name: {n}, value: ...}}" for n in dict.fromkeys(names))
        return (
            f"drop privileged: {', '.join(dict.fromkeys(names))} is a namespaced safe sysctl; "
            f"set it in the pod's securityContext.sysctls: [{listed}] and remove the `sysctl -w` call"
        )
    return ""


@check("no-privileged")
def no_privileged(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Containers are not privileged and add no Linux capabilities, and pods use no hostPath
    volumes, host network, PID or IPC namespace: each hands the node to the pod. Where a
    recipe truly needs one, the metadata declares it:
    `securityExceptions: [{rule: capabilities, reason: ...}]` (rule = privileged, capabilities,
    a capability name, hostPath, hostNetwork, hostPID, hostIPC, or no-privileged for all).

    What the real system needs is allowed without a declaration:
    - IPC_LOCK, SYS_RESOURCE and NET_RAW in a container that does RDMA memory registration
      (an `rdma/*` resource, a DRA resource claim, UCX/NIXL/Mooncake transports, `ulimit -l`):
      `ibv_reg_mr` pins pages against RLIMIT_MEMLOCK.
    - hostPath `/home/kubernetes/bin/gib` and `/home/kubernetes/bin/nvidia` in a pod that attaches
      GKE RDMA networks (`networking.gke.io.networks/rdma-*`): GKE's GPUDirect-RDMA setup mounts
      the node's gIB NCCL plugin and NVIDIA libraries that way (any other hostPath stays an error).
    - SYS_PTRACE in a container that runs several engine processes exchanging KV through
      NIXL/UCX `cuda_ipc`: UCX imports the sibling's VMM buffers with `pidfd_getfd`, which
      Yama ptrace_scope=1 refuses without it (openucx/ucx#11183; pytorch/pytorch#165685).
    `privileged: true` stays an error; where it only serves a namespaced sysctl the hint
    says `securityContext.sysctls` (Kubernetes "Using sysctls in a Kubernetes Cluster").

    Fails: `securityContext: {privileged: true}` on a worker with no securityExceptions entry;
    `capabilities: {add: [IPC_LOCK]}` on a CPU-only frontend with no RDMA device or transport.

    Source: Kubernetes Pod Security Standards, Baseline profile
    (kubernetes.io/docs/concepts/security/pod-security-standards: privileged containers, added
    capabilities beyond the default set, hostPath volumes, hostNetwork/hostPID/hostIPC are disallowed);
    the RDMA allowance rests on libibverbs `ibv_reg_mr` pinning pages against RLIMIT_MEMLOCK (rdma-core
    man ibv_reg_mr), the SYS_PTRACE allowance on UCX `cuda_ipc` using `pidfd_getfd` under Yama
    ptrace_scope=1 (openucx/ucx#11183). `securityExceptions` is this catalogue's metadata.
    """
    allowed = _exceptions(recipe)
    if "no-privileged" in allowed:
        return
    hint = (
        "remove it, or declare it in recipe.yaml: securityExceptions: [{rule: <rule>, reason: <why>}]"
        if ctx.catalogue
        else "remove it, or ignore no-privileged for this recipe with a reason in .recipe-harness.yaml"
    )  # a foreign tree has no recipe.yaml to declare an exception in
    for pod in recipe.workloads.pods:
        spec = pod.spec
        if spec is not None:
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(key) is True and key.lower() not in allowed:
                    yield problem(spec.loc_of(key), f"{pod.label} sets {key}: true", hint)
            for v in sequence(spec.get("volumes")) or []:
                if mapping(v) is not None and "hostPath" in v and "hostpath" not in allowed:
                    if _gke_rdma_host_path(pod, v):
                        continue  # GKE GPUDirect-RDMA: the node's gIB NCCL plugin and NVIDIA libraries
                    yield problem(v.loc_of("hostPath"), f"{pod.label} mounts hostPath volume {v.get('name')!r}", hint)
        for c in pod.containers:
            sc = mapping(c.data.get("securityContext"))
            if sc is None:
                continue
            if sc.get("privileged") is True and "privileged" not in allowed:
                yield problem(
                    sc.loc_of("privileged"), f"{pod.label} runs a privileged container", _sysctl_hint(c) or hint
                )
            add = sequence(dig(sc, "capabilities", "add"))
            if not add:
                continue
            rdma = _rdma_evidence(pod, c)
            for i, cap in enumerate(add):
                name = str(cap).upper().removeprefix("CAP_")
                if {"capabilities", name.lower(), f"capabilities:{name.lower()}"} & allowed:
                    continue
                if name in RDMA_CAPABILITIES and rdma:
                    continue  # RDMA memory registration needs it
                if name == "SYS_PTRACE" and rdma and _runs_engines_side_by_side(pod, c):
                    continue  # in-pod CUDA IPC between sibling engine processes
                why = (
                    " (it uses no RDMA device, DRA claim or UCX/NIXL transport that would need it)"
                    if name in RDMA_CAPABILITIES
                    else ""
                )
                yield problem(add.loc_of(i), f"{pod.label} adds capability {name}{why}", hint)


@check("no-hard-coded-namespace")
def no_hard_coded_namespace(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Manifests name no namespace: the harness (and users) apply a recipe into a namespace of
    their choice (`kubectl -n`); a hard-coded one lands objects elsewhere, splits the PVC from
    the pods that mount it, or fails without rights there. RoleBinding subjects are the same
    (a ServiceAccount subject without a namespace is the binding's own). A ServiceAccount subject
    of a ClusterRoleBinding is not reported: the API server requires its namespace.

    Fails: `metadata: {name: model-cache, namespace: dynamo-system}`.

    A kustomize overlay whose build puts every object in one namespace (the `namespace:` field of a
    kustomization or Component) is applied with `kubectl apply -k`, which sends each object to its own
    namespace: nothing is split, so its rendered objects are not reported (a base's own files still are).

    Source: kubectl: applying an object whose `metadata.namespace` differs from `-n` fails ('the
    namespace from the provided object ... does not match the namespace sent on the request'); without
    it the object goes where the user applies it
    (kubernetes.io/docs/concepts/overview/working-with-objects/namespaces). Subjects: Kubernetes
    pkg/apis/rbac/validation/validation.go `ValidateRoleBindingSubject` requires `namespace` on a
    ServiceAccount subject only when the binding is cluster-scoped (`!isNamespaced`); for a RoleBinding
    the authorizer takes the binding's namespace when it is empty (pkg/registry/rbac/validation/rule.go
    `appliesToUser`).
    """
    hint = "delete the namespace field; pass the namespace with kubectl -n"
    rendered = {id(d) for d in recipe.kustomize_build.documents} if _one_kustomize_namespace(recipe) else set()
    for doc in recipe.documents():
        meta = mapping(doc.data.get("metadata"))
        if meta is not None and "namespace" in meta and id(doc) not in rendered:
            yield problem(
                meta.loc_of("namespace"), f"{doc.kind} {doc.name} hard-codes namespace {meta['namespace']!r}", hint
            )
        if doc.kind in ("RoleBinding", "ClusterRoleBinding"):
            for s in sequence(doc.data.get("subjects")) or []:
                if mapping(s) is None or "namespace" not in s:
                    continue
                if doc.kind == "ClusterRoleBinding" and s.get("kind") == "ServiceAccount":
                    continue  # required here: a cluster-scoped binding has no namespace to default to
                yield problem(
                    s.loc_of("namespace"),
                    f"{doc.kind} {doc.name} subject {s.get('name')!r} hard-codes namespace {s['namespace']!r}",
                    hint,
                )


# Kinds kustomize's namespace transformer leaves alone: they live outside namespaces (Kubernetes API
# reference, `namespaced: false` in `kubectl api-resources`).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PersistentVolume",
    "PriorityClass",
    "DeviceClass",
    "IngressClass",
    "GatewayClass",
}


def _one_kustomize_namespace(recipe: Recipe) -> bool:
    """A kustomization's build that puts every object it renders in one namespace (kustomize's `namespace:`
    transformer): `kubectl apply -k` applies them there together, so nothing is split or lands elsewhere."""
    if recipe.kustomize_build is None:
        return False
    docs = recipe.kustomize_build.documents
    spaces = {str(dig(d.data, "metadata", "namespace") or "") for d in docs if d.kind not in CLUSTER_SCOPED}
    return len(spaces) == 1 and "" not in spaces


@check("rbac-not-default-sa")
def rbac_not_default_sa(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """RoleBindings and ClusterRoleBindings bind a ServiceAccount the recipe creates, never
    `default`: every pod in the namespace that names no account runs as `default`, so the
    grant reaches all of them.

    Fails: `subjects: [{kind: ServiceAccount, name: default}]`.

    Source: Kubernetes RBAC good practices (kubernetes.io/docs/concepts/security/rbac-good-practices;
    every pod that sets no `serviceAccountName` runs as `default`,
    kubernetes.io/docs/concepts/security/service-accounts). The Dynamo operator itself gives pods their
    own account (k8s discovery: `discovery.GetK8sDiscoveryServiceAccountName(dgdName)`).
    Policy: a working recipe is reported on purpose.
    """
    for doc in recipe.documents():
        if doc.kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for s in sequence(doc.data.get("subjects")) or []:
            if mapping(s) is not None and s.get("kind") == "ServiceAccount" and s.get("name") == "default":
                yield problem(
                    s.loc_of("name"),
                    f"{doc.kind} {doc.name} grants its role to the default ServiceAccount",
                    "create a ServiceAccount for the recipe, bind that, and set serviceAccountName on its pods",
                )
