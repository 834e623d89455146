"""Storage checks: every PVC sized from the model and the recipe, with access modes and storage
classes that work on the topology (issue: storage sizing)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.analysis.storage import (
    EMPTY_CLASS_ANNOTATION,
    compilation_cache_claims,
    default_hf_homes,
    model_cache_needs,
    perf_claims,
    recipe_pvcs,
    recommended_gi,
    service_claims,
)
from harness.analysis.topology import gpus_per_node, nodes_needed
from harness.checks import CheckContext, check
from harness.recipe import catalogue
from harness.recipe.container import Container
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.workloads import Mount, Pod, Workloads, env_value, flag, under
from harness.recipe.yamlsrc import dig, mapping, sequence


@dataclass(frozen=True)
class StorageOptions:
    """Options of `model-cache-pvc-fits-checkpoint`."""

    margin: float | None = (
        None  # PVC size / checkpoint size (--storage-margin); None: the catalogue's rule (1.2, 1.3 for estimates)
    )


@check("model-cache-pvc-fits-checkpoint", options=StorageOptions)
def model_cache_pvc_fits_checkpoint(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The model-cache PVC must hold every checkpoint its download Jobs fetch, times a margin
    (default 1.2, option `margin`; 1.3 for checkpoint sizes that are estimates) for
    partial downloads and the Hugging Face cache layout. Otherwise the download Job fails
    hours into a nightly run with "No space left on device". What a Job fetches follows its
    download call's patterns (`hf download --include/--exclude`, `huggingface-cli download`,
    `snapshot_download(allow_patterns=..., ignore_patterns=...)`): repository directories
    besides the checkpoint (models.yaml `extraFiles`, e.g. gpt-oss `original/`, `metal/`)
    count unless a pattern leaves them out.

    Fails: `storage: 100Gi` for deepseek-ai/DeepSeek-R1 (690 GB on disk), or a gpt-oss-120b
    download without `--exclude "original/*" --exclude "metal/*"` into 100Gi (65 + ~120 GB).

    Source: Checkpoint sizes from harness/recipe/data/models.yaml `checkpointGB`/`extraFiles` (the
    Hugging Face repositories' file listings) and huggingface_hub download filters
    (`--include/--exclude`, `allow_patterns/ignore_patterns`, huggingface_hub/utils/_paths.py
    `filter_repo_objects`); the PVC size is Kubernetes `resources.requests.storage`. The margin (1.2;
    1.3 for estimates) is this catalogue's rule (models.yaml `storage.modelCacheMargin`).
    """
    rules = catalogue.storage_rules()
    for need in model_cache_needs(recipe, ctx.options_for(StorageOptions).margin):
        pvc = need.pvc
        for job in need.unknown:
            yield problem(
                pvc.size_loc,
                f"PVC {pvc.name}: download Job {job} fetches a model that is not in the catalogue, "
                "so its size cannot be checked",
                "add the model to harness/recipe/data/models.yaml with its checkpoint size",
                Severity.WARNING,
            )
        if not need.models:
            continue
        if pvc.size is None:
            yield problem(
                pvc.size_loc,
                f"PVC {pvc.name} has no readable storage request ({pvc.size_text!r}); it must hold {need.describe()}",
                f"set resources.requests.storage: {recommended_gi(need.need_bytes, rules)}Gi",
            )
        elif pvc.size < need.need_bytes:
            yield problem(
                pvc.size_loc,
                f"PVC {pvc.name} requests {pvc.size_text} ({pvc.size / 1e9:.0f} GB) but must hold {need.describe()}",
                f"set storage: {recommended_gi(need.need_bytes, rules)}Gi (then `recipe-harness docs`)",
            )


@check("cache-pvcs-meet-minimums", convention=True)
def cache_pvcs_meet_minimums(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A compilation-cache PVC (`useAsCompilationCache`) and a PVC the perf Job writes results
    to must meet the documented minimums (harness/recipe/data/models.yaml `storage:`): a full JIT cache
    makes every restart recompile for many minutes, a full results volume fails the benchmark
    after it ran. A recipe whose metadata declares them must actually mount them.

    Fails: a compilation cache PVC of `5Gi` (minimum 50 GB).

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    minimums are this catalogue's sizing guidance, harness/recipe/data/models.yaml
    `storage:` (compilationCacheMinGB 50, perfResultsMinGB 5), not a Dynamo or Kubernetes limit;
    `useAsCompilationCache` is the DGD CRD volumeMount field (schemas/dynamo/1.4.0). The metadata half
    (`storage.compilationCache`, `storage.perfResults`) is recipe.yaml (ours).
    """
    rules = catalogue.storage_rules()
    pvcs = recipe_pvcs(recipe)
    model_cache = {n.pvc.name for n in model_cache_needs(recipe)}
    wanted = [
        (name, rules.compilation_cache_min_gb, "compilation cache") for name, _ in compilation_cache_claims(recipe)
    ]
    wanted += [
        (name, rules.perf_results_min_gb, "perf results") for name in perf_claims(recipe) if name not in model_cache
    ]
    for name, min_gb, what in wanted:
        pvc = pvcs.get(name)
        if pvc is None or pvc.size is None or pvc.size >= min_gb * 1e9:
            continue
        yield problem(
            pvc.size_loc,
            f"PVC {name} ({what}) requests {pvc.size_text} but the documented minimum is {min_gb:g} GB",
            f"set storage: {recommended_gi(min_gb * 1e9, rules)}Gi",
        )
    declared = recipe.metadata.get("storage")
    if isinstance(declared, dict):
        if declared.get("compilationCache") is True and not compilation_cache_claims(recipe):
            yield problem(
                declared.loc_of("compilationCache"),
                "metadata declares a compilation cache but no service mounts a PVC with useAsCompilationCache: true",
                "mount the cache PVC in the workers' volumeMounts, or set compilationCache: false",
            )
        if declared.get("perfResults") is True and not perf_claims(recipe):
            yield problem(
                declared.loc_of("perfResults"),
                "metadata declares perf results on a PVC but the perf Job mounts none",
                "mount the results PVC in perf.yaml, or set perfResults: false",
            )


@check("pvc-access-mode-fits-topology")
def pvc_access_mode_fits_topology(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When a recipe's workers span several nodes (multinode workers, or replicas that do not fit
    one node), every node mounts the same model cache: the PVC must be ReadWriteMany, or
    ReadOnlyMany when every worker only reads it (a pre-filled cache, mounted `readOnly: true`
    through the pod volume or every container's volumeMount). A ReadWriteOnce volume attaches
    to one node, and the pods elsewhere stay ContainerCreating; a ReadOnlyMany volume is for
    readers, so a worker mounting it read-write (a DGD-level `volumeMounts` entry, which has no
    readOnly field, or a container mount without `readOnly: true`) is still reported.

    Fails: `accessModes: [ReadWriteOnce]` on the model cache of deepseek-r1/sglang/disagg-16gpu (4 nodes).

    Source: Kubernetes PersistentVolume access modes
    (kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes): ReadWriteOnce mounts on a
    single node, ReadOnlyMany read-only on many nodes, ReadWriteMany read-write on many; node count from
    harness/analysis/topology.py `nodes_needed` (nodeCount pods per replica, graph.go
    `expandRolesForService`). Read-only mounts: core/v1 `PersistentVolumeClaimVolumeSource.readOnly`
    and `VolumeMount.readOnly`; a CSI driver gets ReadOnlyMany as `MULTI_NODE_READER_ONLY`
    (container-storage-interface spec, `VolumeCapability.AccessMode`): readers only.
    """
    dep = recipe.deployment
    gpn = gpus_per_node(recipe)
    if dep is None or not gpn:
        return
    nodes = nodes_needed(dep.workers, gpn)
    if nodes <= 1:
        return
    pvcs = recipe_pvcs(recipe)
    mounted = sorted({c for svc in dep.workers for c in service_claims(svc)})
    for name in mounted:
        pvc = pvcs.get(name)
        if pvc is None or "ReadWriteMany" in pvc.access_modes:
            continue
        if "ReadOnlyMany" in pvc.access_modes and all(_reads_only(svc, name) for svc in dep.workers):
            continue
        yield problem(
            pvc.access_loc,
            f"PVC {name} is {', '.join(pvc.access_modes) or 'without accessModes'} but the workers of "
            f"{recipe.id} span {nodes} nodes and all mount it",
            "set accessModes: [ReadWriteMany] (on a storage class that supports it, e.g. NFS or a CSI file system), "
            "or ReadOnlyMany for a pre-filled cache the workers mount readOnly: true",
        )


def _statically_bound(recipe: Recipe) -> set[str]:
    """PVC names a static PersistentVolume serves: the claim's own `spec.volumeName`, or a PV in the
    recipe's manifests with no class whose `claimRef` names the claim (or that has no claimRef)."""
    bound = {doc.name for doc in recipe.documents("PersistentVolumeClaim") if dig(doc.data, "spec", "volumeName")}
    for doc in recipe.documents("PersistentVolume"):
        spec = mapping(doc.data.get("spec"))
        if spec is None or str(spec.get("storageClassName") or "").strip():
            continue  # a PV with a class never binds a claim of class ""
        reserved = dig(spec, "claimRef", "name")
        if isinstance(reserved, str):
            bound.add(reserved)
        else:
            bound.update(d.name for d in recipe.documents("PersistentVolumeClaim"))
    return bound


def _reads_only(svc: Service, claim: str) -> bool:
    """Whether a worker mounts `claim` read-only (or not at all): every container mount of its pod
    volume is `readOnly: true`, or the volume's `persistentVolumeClaim.readOnly` is."""
    for vm in sequence(svc.data.get("volumeMounts")) or []:
        if dig(vm, "name") == claim:
            return False  # the operator mounts a DGD-level volumeMount read-write
    pod = mapping(svc.data.get("extraPodSpec")) or mapping(dig(svc.data, "podTemplate", "spec"))
    if pod is None:
        return True
    volumes = [v for v in sequence(pod.get("volumes")) or [] if dig(v, "persistentVolumeClaim", "claimName") == claim]
    containers = [
        c for key in ("initContainers", "containers") for c in sequence(pod.get(key)) or [] if mapping(c) is not None
    ]
    main = mapping(pod.get("mainContainer"))  # v1alpha1 extraPodSpec
    if main is not None:
        containers.append(main)
    for v in volumes:
        if dig(v, "persistentVolumeClaim", "readOnly") is True:
            continue
        for c in containers:
            for vm in sequence(c.get("volumeMounts")) or []:
                if dig(vm, "name") == dig(v, "name") and dig(vm, "readOnly") is not True:
                    return False
    return True


@check("storage-class-not-empty")
def storage_class_not_empty(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Leave `storageClassName` out so the cluster's default class (or the user's choice) applies;
    an empty string means "no dynamic provisioning" and the PVC stays Pending unless someone
    pre-created a matching PersistentVolume. Allowed for the static binding form: the PVC names
    its volume (`spec.volumeName`), or the recipe's manifests ship a PersistentVolume without a
    class that is free or reserved for it (`spec.claimRef.name`); and when the PVC carries the
    annotation `recipe-harness/empty-storage-class-reason`.

    Fails: `storageClassName: ""` in model-cache.yaml, with no PersistentVolume for it.

    Source: Kubernetes PVC `storageClassName`: unset -> the default StorageClass (DefaultStorageClass
    admission); `""` -> no dynamic provisioning, binds only to a PV with no class
    (kubernetes.io/docs/concepts/storage/persistent-volumes#class-1); a PVC with `volumeName`, or a PV
    with `claimRef`, is pre-bound (persistent-volumes#reserving-a-persistentvolume).
    """
    static = _statically_bound(recipe)
    for pvc in recipe_pvcs(recipe).values():
        if (
            pvc.storage_class is not None
            and not pvc.storage_class.strip()
            and EMPTY_CLASS_ANNOTATION not in pvc.annotations
            and pvc.name not in static
        ):
            yield problem(
                pvc.storage_class_loc,
                f'PVC {pvc.name} sets storageClassName: "" (no dynamic provisioning: it stays Pending '
                "without a pre-created PersistentVolume)",
                "remove storageClassName to use the cluster default, name the PersistentVolume in spec.volumeName, "
                f"or annotate {EMPTY_CLASS_ANNOTATION}: <why>",
            )


MODEL_FLAGS = ("--model", "--model-path")
CACHE_ENV = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "MODEL_PATH", "MODEL_DIR")


# --- claims and model paths (the pods find their PVC and read the model from it) ------------


def claim_refs(w: Workloads) -> Iterator[tuple[str, Loc, str]]:
    """Every PVC name a recipe uses: DGD spec.pvcs, service volumeMounts, pod volumes."""
    dep = w.recipe.deployment
    for item in sequence(dep.spec.get("pvcs") if dep else None) or []:
        if mapping(item) is not None and isinstance(item.get("name"), str) and item.get("create") is not True:
            yield item["name"], item.loc_of("name"), "spec.pvcs"
    for pod in w.pods:
        for name, loc in pod.claims:
            yield name, loc, pod.label


@check("pvc-defined")
def pvc_defined(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every PVC a recipe mounts or lists (DGD `spec.pvcs`, `volumeMounts`, Job volumes'
    `claimName`) is defined by a manifest of the model's tree: the catalogue's
    `model-cache/model-cache.yaml`, any other manifest under the model directory (upstream keeps
    some in `model-cache/cache.yaml`), or the DGD itself with `create: true`. A wrong name leaves
    pods Pending forever. Upstream shipped PVC names that did not match.

    Fails: `claimName: model-cache-pvc` while model-cache.yaml defines `model-cache`.

    Source: the operator creates only `spec.pvcs` entries with `create: true`
    (ai-dynamo/dynamo deploy/operator api/v1alpha1 `PVC.Create`); every other claim must exist.
    """
    w = recipe.workloads
    conventional = w.pvc_docs()
    defined = w.model_tree_pvcs()
    names = ", ".join(sorted(conventional)) or "none"
    seen: set[tuple] = set()
    for name, loc, where in claim_refs(w):
        key = (name, loc)
        if name not in defined and key not in seen:
            seen.add(key)
            yield problem(
                loc,
                f"PVC {name!r} ({where}) is not defined in {recipe.model}/model-cache/model-cache.yaml "
                f"(defines: {names})",
                f"use one of: {', '.join(sorted(defined))}"
                if defined
                else "define the PVC in model-cache/model-cache.yaml",
            )


def _on_claim(path: str, mounts: list[Mount]) -> tuple[str, str] | None:
    """(claim, path inside the claim) of an absolute path under one of the mounts."""
    m = under(path, mounts)
    if m is None:
        return None
    rel = path[len(m.path.rstrip("/")) :].strip("/")
    claim, _, sub = m.claim.partition("/")
    return claim, "/".join(p for p in (sub, rel) if p)


def _cache_home(pod: Pod, c: Container) -> tuple[tuple[str, str] | None, Loc, str] | None:
    for name in ("HF_HUB_CACHE", "HF_HOME"):
        env = env_value(c, name)
        if env is not None and env[0].startswith("/"):
            path = env[0] if name == "HF_HUB_CACHE" else env[0].rstrip("/") + "/hub"
            return _on_claim(path, pod.mounts_of(c)), env[1], name
    return None


def _default_cache_home(pod: Pod, c: Container) -> tuple[tuple[str, str] | None, Loc, str] | None:
    """With neither HF_HOME nor HF_HUB_CACHE set, the hub cache is under the default HF_HOME of the image's
    user (harness/analysis/storage.py `default_hf_homes`): a PVC mounted there is the worker's cache."""
    mounts = pod.mounts_of(c)
    for home in default_hf_homes(c.image):
        if under(home, mounts) is not None:
            return _on_claim(home + "/hub", mounts), c.image_loc, f"default HF_HOME {home}"
    return None


def _host_path_mounts(pod: Pod, c: Container) -> list[Mount]:
    """hostPath volumes mounted into the container: weights staged on the node are a model source too."""
    if pod.spec is None:
        return []
    host = {
        v["name"]: str(dig(v, "hostPath", "path"))
        for v in sequence(pod.spec.get("volumes")) or []
        if mapping(v) is not None and isinstance(v.get("name"), str) and mapping(v.get("hostPath")) is not None
    }
    out = []
    for vm in sequence(c.data.get("volumeMounts")) or []:
        if mapping(vm) is not None and vm.get("name") in host and isinstance(vm.get("mountPath"), str):
            out.append(Mount(f"hostPath:{host[vm['name']]}", vm["mountPath"], vm.loc_of("mountPath"), id(c.data)))
    return out


def _loads_from_disk(w: Workloads, pod: Pod) -> bool:
    """The worker reads its weights from a directory, not the hub cache: an absolute `--model`
    path (a `--local-dir` download or staged weights), or HF_HUB_OFFLINE=1 (an offline load)."""
    found = w.dynamo_call(pod)
    f = flag(found[1], *MODEL_FLAGS) if found else None
    if f is not None and f.value.value.startswith("/"):
        return True
    offline = env_value(pod.main, "HF_HUB_OFFLINE") if pod.main else None
    return offline is not None and offline[0].strip().lower() in ("1", "true", "yes", "on")


@check("model-path-on-pvc")
def model_path_on_pvc(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Cache and model paths (`HF_HOME`, `HF_HUB_CACHE`, `MODEL_PATH`, an absolute
    `--model`) lie under a mounted PVC, and the workers read the cache where the download Job
    wrote it (same claim, same path inside it): otherwise every pod downloads the model again
    into its own disk at start, or cannot find it offline.

    Not held to it: the frontend (it loads no weights: workers publish the model card and
    tokenizer files when they register, ai-dynamo/dynamo lib/llm/src/discovery/watcher.rs and
    model_card.rs), paths on a hostPath mount (weights staged on the node), and a worker that
    loads from a directory (`--model /abs/path`, e.g. after `hf download --local-dir`) or
    offline (`HF_HUB_OFFLINE=1`) needs no HF_HOME matching the download Job. A worker that sets no
    HF_HOME reads the default one of its image's user (`/root/.cache/huggingface` on Dynamo images
    before 0.7.0, `/home/dynamo/.cache/huggingface` from 0.7.0, either on an image of unknown release):
    a PVC mounted there is its cache.

    Fails: `HF_HOME: /root/.cache/huggingface` on a worker whose PVC is mounted at /model-cache.

    Source: huggingface_hub cache layout (HF_HOME, HF_HUB_CACHE = $HF_HOME/hub;
    huggingface_hub/constants.py) and Kubernetes volumes: only a PersistentVolumeClaim (or a hostPath)
    outlives the pod and is shared with the download Job; the frontend needs no weights (ai-dynamo
    lib/llm/src/discovery/watcher.rs, model_card.rs).
    """
    w = recipe.workloads
    for pod in w.pods:
        if pod.service is not None and pod.service.role == "frontend":
            continue  # the frontend loads no weights: it takes the model card from the workers' registration
        for c in pod.containers:
            mounts = pod.mounts_of(c)
            staged = _host_path_mounts(pod, c)
            for name in CACHE_ENV:
                env = env_value(c, name)
                if (
                    env is not None
                    and env[0].startswith("/")
                    and under(env[0], mounts) is None
                    and under(env[0], staged) is None
                ):
                    yield problem(
                        env[1],
                        f"{name}={env[0]} in {pod.label} is not on a mounted PVC "
                        f"({', '.join(m.path for m in mounts) or 'no PVC mounted'})",
                        "mount the model-cache PVC and point it under the mount path",
                    )
    for pod, _at, flags in w.engine_calls():
        f = flag(flags, *MODEL_FLAGS)
        if (
            f is not None
            and f.value.value.startswith("/")
            and pod.main
            and under(f.value.value, pod.mounts_of(pod.main)) is None
            and under(f.value.value, _host_path_mounts(pod, pod.main)) is None
        ):
            yield problem(
                f.value.loc,
                f"worker {pod.name} loads {f.value.value}, which is not on a mounted PVC",
                "mount the model-cache PVC and load the model from under it",
            )
    # the workers' cache is where the download Job put it
    written = {home[0] for pod in w.downloads for c in pod.containers if (home := _cache_home(pod, c)) and home[0]}
    if not written:
        return
    for pod in w.workers:
        if pod.main is None:
            continue
        home = _cache_home(pod, pod.main) or _default_cache_home(pod, pod.main)
        if home is None and _loads_from_disk(w, pod):
            continue
        if home is None:
            yield problem(
                pod.main.loc,
                f"worker {pod.name} sets no HF_HOME: it downloads the model again instead of reading the cache",
                f"set HF_HOME so that the hub cache is {sorted(written)[0][0]}:/{sorted(written)[0][1]}",
            )
        elif home[0] is not None and home[0] not in written:
            claim, rel = home[0]
            want = ", ".join(f"{c}:/{r}" for c, r in sorted(written))
            yield problem(
                home[1],
                f"worker {pod.name} reads the hub cache at {claim}:/{rel} but the download Job writes {want}",
                "point HF_HOME at the same directory of the same PVC as the download Job",
            )
