"""Preflight: read-only checks of the cluster against the recipe (API, CRDs, GPUs, storage, secrets), cheapest first."""

from __future__ import annotations

from harness.recipe.model import DGD_GROUP, DGD_KIND
from harness.recipe.yamlsrc import dig
from harness.run.k8s.client import BUILTIN_KINDS, KubeError, transport_error
from harness.run.k8s.context import GpuContext, PreflightReport
from harness.run.k8s.facts import gpu_products, referenced_secrets
from harness.run.k8s.readiness import GPU_RESOURCE, gpu_capacity, products_on
from harness.run.k8s.settings import PROBE_TIMEOUT
from harness.run.stage import StageSkip

# Provisioners that serve ReadWriteOnce (and ReadWriteOncePod) only: a ReadWriteMany claim on them stays Pending
# (rancher/local-path-provisioner, kind's and k3s's default: "NodePath only supports ReadWriteOnce and
# ReadWriteOncePod (1.22+) access modes"; the block-storage CSI drivers of the clouds: one node attaches a disk).
RWO_ONLY_PROVISIONERS = {
    "rancher.io/local-path": "local-path-provisioner",
    "ebs.csi.aws.com": "AWS EBS CSI",
    "kubernetes.io/aws-ebs": "AWS EBS",
    "pd.csi.storage.gke.io": "GCE PD CSI",
    "kubernetes.io/gce-pd": "GCE PD",
    "disk.csi.azure.com": "Azure Disk CSI",
    "kubernetes.io/azure-disk": "Azure Disk",
    "topolvm.io": "TopoLVM",
    "kubernetes.io/no-provisioner": "local volumes",
}
SHARED_MODES = {"ReadWriteMany", "ReadOnlyMany"}
OPERATOR_HINT = (
    "install the Dynamo operator (the dynamo-platform Helm chart, see the Dynamo Kubernetes install guide) "
    "or point KUBECONFIG at a cluster that has it"
)
CRD_HINTS = {
    DGD_GROUP: OPERATOR_HINT,
    "resource.nvidia.com": "install the NVIDIA DRA driver for GPUs (it provides ComputeDomain for multi-node NVLink)",
}


def preflight(ctx: GpuContext) -> PreflightReport:
    """Step `preflight`: read-only checks, cheapest first (API, CRDs, GPUs, storage, secrets); each gap says
    what to do. Leaves the secret plan and the fitted PVC modes on the context."""
    try:
        ctx.report.server = ctx.kube.server_version(PROBE_TIMEOUT)
    except Exception as exc:
        raise ctx.fail(
            f"Kubernetes API at {ctx.kube.host} unreachable ({transport_error(exc)}): "
            "check the cluster and the KUBECONFIG context"
        ) from None
    docs = ctx.deploy_docs()
    if not any(d.get("kind") == DGD_KIND for d in docs):
        raise ctx.fail(f"{ctx.recipe.path / 'deploy.yaml'}: no {DGD_KIND}; nothing to wait for")
    _check_crds(ctx, docs)
    if ctx.settings.engine != "mocker":
        _check_gpus(ctx)
    else:
        ctx.report.hardware = "mocker"
    _check_storage(ctx)
    _check_secrets(ctx, docs + ctx.cache_docs() + ctx.perf_docs())
    ctx.progress(
        f"preflight: API {ctx.report.server}, {DGD_KIND} served as {', '.join(ctx.report.dgd_versions)}, "
        f"GPUs {ctx.report.gpus_allocatable}/{ctx.report.gpus_needed} on {ctx.report.hardware}, "
        f"storage class {ctx.report.storage_class or '-'}, namespace {ctx.namespace}"
    )
    return ctx.report


def _check_crds(ctx: GpuContext, docs: list[dict]) -> None:
    for doc in docs:
        api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
        group, _, version = api_version.rpartition("/")
        if (group, kind) in BUILTIN_KINDS or (ctx.settings.engine == "mocker" and kind == "ComputeDomain"):
            continue
        hint = CRD_HINTS.get(group, "install the operator that provides it")
        try:
            res = ctx.kube.resource(api_version, kind)
            crd = ctx.kube.crd(f"{res.plural}.{group}")
        except KubeError as exc:
            if exc.status != 403:
                raise ctx.fail(
                    f"{kind} ({api_version}) is not known to the cluster at {ctx.kube.host}: {exc}; {hint}"
                ) from None
            _served_by_discovery(ctx, api_version, kind, group, hint)
            continue
        if crd is None:
            raise ctx.fail(
                f"CustomResourceDefinition {res.plural}.{group} is not installed on the cluster "
                f"at {ctx.kube.host}: "
                f"{kind} cannot be created; {hint}"
            )
        served = [str(v.get("name")) for v in dig(crd, "spec", "versions") or [] if v.get("served")]
        if kind == DGD_KIND:
            ctx.report.dgd_versions = served
        if version not in served:
            raise ctx.fail(
                f"deploy.yaml uses {api_version} {kind}, "
                f"but the cluster serves only {', '.join(served) or 'no version'} of it: "
                f"upgrade the operator to a release that serves {version}, or use a recipe for the installed API"
            )


def lacking(ctx: GpuContext, verb: str, resource: str, group: str = "", namespace: str | None = None) -> str:
    """`may not list nodes (cluster-wide): <the review's reason>`, from the API server's SelfSubjectAccessReview;
    "" when the credentials may."""
    allowed, reason = ctx.kube.can_i(verb, resource, group, namespace)
    if allowed:
        return ""
    what = f"{resource}.{group}" if group else resource
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    return f"may not {verb} {what} ({where}; SelfSubjectAccessReview: denied{f', {reason}' if reason else ''})"


def _served_by_discovery(ctx: GpuContext, api_version: str, kind: str, group: str, hint: str) -> None:
    """The credentials may not read CustomResourceDefinitions (RBAC limited to a namespace): the API's own
    discovery says whether the kind is served, and a run needs no more than that."""
    denied = lacking(ctx, "get", "customresourcedefinitions", "apiextensions.k8s.io")
    try:
        kinds = ctx.kube.served_kinds(api_version)
    except KubeError as exc:
        raise ctx.fail(f"cannot tell whether the cluster serves {kind} ({api_version}): {denied}; {exc}") from None
    if kinds is None or kind not in kinds:
        raise ctx.fail(
            f"the cluster at {ctx.kube.host} does not serve {kind} ({api_version}) (API discovery; the "
            f"credentials {denied or 'could not read its CustomResourceDefinition'}): {hint}"
        )
    if kind == DGD_KIND:
        ctx.report.dgd_versions = [api_version.rpartition("/")[2]]
    ctx.progress(f"{kind} {api_version} is served (API discovery; the credentials {denied})")


def _check_gpus(ctx: GpuContext) -> None:
    dep = ctx.recipe.deployment
    needed = dep.total_gpus if dep else 0
    needed = needed or int(ctx.recipe.metadata.get("gpus") or 0)
    per_pod = max((w.gpu_limit for w in dep.workers), default=0) if dep else 0
    ctx.report.gpus_needed = needed
    products = gpu_products(ctx.recipe)
    if not products:
        raise ctx.fail(f"{ctx.recipe.path / 'recipe.yaml'}: hardware.gpu is missing, so no node can be matched")
    try:
        nodes = ctx.kube.list("v1", "Node")
    except KubeError as exc:
        if exc.status == 403:
            denied = lacking(ctx, "list", "nodes")
            if ctx.settings.missing_gpus == "wait":
                ctx.report.hardware = products[0]
                ctx.progress(f"preflight: GPUs not counted, the credentials {denied}; deploying (--missing-gpus wait)")
                return
            raise ctx.fail(
                f"cannot count the cluster's GPUs: the credentials {denied}. Grant list on nodes (a ClusterRole), "
                "or run with --missing-gpus wait to deploy without counting"
            ) from None
        raise ctx.fail(f"cannot list nodes: {exc}") from None
    seen = []
    for product in products:
        cap = gpu_capacity(nodes, product)
        seen.append(cap)
        if cap.total >= needed and cap.largest_node >= per_pod:
            ctx.report.hardware, ctx.report.gpus_allocatable = product, cap.total
            return
    best = max(seen, key=lambda c: c.total)
    ctx.report.gpus_allocatable = best.total
    here = products_on(nodes)
    gap = (
        f"needs {needed} {GPU_RESOURCE} ({per_pod} in the largest pod) on {' or '.join(products)} nodes; "
        + "; ".join(c.describe() for c in seen)
        + f". GPU products on this cluster: {', '.join(here) or 'none'}"
    )
    if ctx.settings.missing_gpus == "wait":
        # a node pool scaled to zero: the pods go Pending and the autoscaler adds nodes (rollout awaits its scale-up)
        ctx.report.hardware = products[0]
        ctx.progress(f"preflight: {gap}; deploying anyway (--missing-gpus wait): the autoscaler must add them")
        return
    if ctx.settings.missing_gpus == "fail":
        raise ctx.fail(f"{gap} (--missing-gpus fail)")
    raise StageSkip(
        ctx.redactor.text(
            f"{gap}. Run on a cluster with enough {products[0]} GPUs, or use --engine mocker "
            "(--missing-gpus wait deploys anyway for an autoscaled pool)"
        )
    )


def _check_storage(ctx: GpuContext) -> None:
    pvcs = [d for d in ctx.cache_docs() + ctx.deploy_docs() if d.get("kind") == "PersistentVolumeClaim"]
    if not pvcs:
        return
    try:
        classes = ctx.kube.list("storage.k8s.io/v1", "StorageClass")
    except KubeError as exc:
        if exc.status == 403:  # RBAC limited to a namespace: a claim that cannot be met shows as its events
            denied = lacking(ctx, "list", "storageclasses", "storage.k8s.io")
            ctx.progress(f"storage classes not checked: the credentials {denied}")
            return
        raise ctx.fail(f"cannot list storage classes: {exc}") from None
    names = [str(dig(c, "metadata", "name")) for c in classes]
    default = [
        n
        for c, n in zip(classes, names)
        if str((dig(c, "metadata", "annotations") or {}).get("storageclass.kubernetes.io/is-default-class")) == "true"
    ]
    provisioners = {str(dig(c, "metadata", "name")): str(c.get("provisioner") or "") for c in classes}
    for pvc in pvcs:
        wanted = dig(pvc, "spec", "storageClassName")
        name = str(dig(pvc, "metadata", "name"))
        if wanted:
            if wanted not in names:
                raise ctx.fail(
                    f"PVC {name} asks for storage class {wanted!r}, which the cluster does not have "
                    f"(it has: {', '.join(names) or 'none'}): create it or set storageClassName in model-cache.yaml"
                )
            ctx.report.storage_class = str(wanted)
        elif not default:
            raise ctx.fail(
                f"PVC {name} names no storage class and the cluster has no default one "
                f"(classes: {', '.join(names) or 'none'}): "
                "mark one default (storageclass.kubernetes.io/is-default-class=true) or set storageClassName"
            )
        else:
            ctx.report.storage_class = default[0]
        _fit_access_modes(ctx, pvc, name, ctx.report.storage_class, provisioners.get(ctx.report.storage_class, ""))


def _fit_access_modes(ctx: GpuContext, pvc: dict, name: str, cls: str, provisioner: str) -> None:
    modes = [str(m) for m in dig(pvc, "spec", "accessModes") or []]
    shared = [m for m in modes if m in SHARED_MODES]
    if not shared or provisioner not in RWO_ONLY_PROVISIONERS:
        return
    what = f"storage class {cls} ({provisioner}, {RWO_ONLY_PROVISIONERS[provisioner]}) serves ReadWriteOnce only"
    if ctx.settings.engine == "mocker":
        # one node runs every mocker pod, and a ReadWriteOnce volume is shared by the pods of its node
        ctx.pvc_modes[name] = ["ReadWriteOnce"]
        ctx.progress(f"PVC {name}: {', '.join(shared)} -> ReadWriteOnce, because {what}")
        return
    raise ctx.fail(
        f"PVC {name} asks for {', '.join(shared)}, but {what}: the claim would stay Pending and every pod "
        "that mounts it with it. Set storageClassName to a class that serves ReadWriteMany (NFS, CephFS, "
        "a cloud file store), or run --engine mocker on a one-node cluster"
    )


def _check_secrets(ctx: GpuContext, docs: list[dict]) -> None:
    ns_exists = ctx.kube.get("v1", "Namespace", ctx.namespace) is not None
    for name in referenced_secrets(docs):
        values = ctx.kube.secret_values(ctx.namespace, name) if ns_exists else None
        if values is not None:
            plan = "present"
        elif name == ctx.settings.hf_secret and ctx.env.get(ctx.settings.hf_token_env):
            plan, values = "from-env", {}
        elif (
            name == ctx.settings.hf_secret
            and ctx.settings.engine == "mocker"
            and ctx.kube.secret_values(ctx.settings.secret_source_namespace, name) is None
        ):
            plan, values = "placeholder", {}
        else:
            values = ctx.kube.secret_values(ctx.settings.secret_source_namespace, name)
            plan = "copy" if values is not None else ""
        for value in (values or {}).values():
            ctx.redactor.add(value)
        if not plan:
            how = (
                f"export {ctx.settings.hf_token_env} on the runner, "
                f"or create it: kubectl create secret generic {name} "
                f"--from-literal={ctx.settings.hf_secret_key}=<your token> "
                f"-n {ctx.settings.secret_source_namespace}"
                if name == ctx.settings.hf_secret
                else f"create secret {name} in namespace {ctx.settings.secret_source_namespace} "
                "(it is copied into each run's namespace)"
            )
            raise ctx.fail(
                f"secret {name} (used by the recipe) not found in namespace {ctx.namespace} or "
                f"{ctx.settings.secret_source_namespace}: {how}"
            )
        ctx.secret_plan[name] = plan
    ctx.report.secrets = dict(ctx.secret_plan)
