"""Storage facts of a recipe: its PVCs (size, access modes, storage class, with lines), who mounts
them, which checkpoints the download Jobs put on them, and what each should hold."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.analysis.downloads import downloads
from harness.recipe import catalogue
from harness.recipe.catalogue import GIB, ExtraFiles, ModelFacts, StorageRules
from harness.recipe.container import pod_containers
from harness.recipe.findings import Loc
from harness.recipe.images import parse_image, release_tuple
from harness.recipe.model import MODEL_DOWNLOAD_FILE, PERF_FILE, Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import Document, SrcMap, dig, mapping, sequence

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m|[eE][+-]?\d+)?$")
_UNITS = {
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "Ei": 1 << 60,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "m": 1e-3,
}
EMPTY_CLASS_ANNOTATION = "recipe-harness/empty-storage-class-reason"


def parse_quantity(value: object) -> float | None:
    """A Kubernetes quantity ("800Gi", "1T", "5e11", 1000) in bytes; None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    number, unit = float(m.group(1)), m.group(2) or ""
    if unit[:1] in ("e", "E") and len(unit) > 1:
        return number * 10 ** int(unit[1:])
    return number * _UNITS.get(unit, 1)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.0f}Gi"


def recommended_gi(need_bytes: float, rules: StorageRules) -> int:
    """The PVC request to write: the need rounded up to the documented step (e.g. 50Gi)."""
    step = rules.round_to_gi
    return int(math.ceil(need_bytes / GIB / step) * step)


@dataclass
class Pvc:
    """A PersistentVolumeClaim manifest or a DGD `spec.pvcs` entry with `create: true`."""

    name: str
    file: str
    loc: Loc
    size: float | None
    size_text: str
    size_loc: Loc
    access_modes: list[str]
    access_loc: Loc
    storage_class: str | None  # None = absent (the cluster default)
    storage_class_loc: Loc
    annotations: dict[str, str] = field(default_factory=dict)


def pvc_of(doc: Document) -> Pvc | None:
    data = doc.data if isinstance(doc.data, SrcMap) else None
    spec = mapping(data.get("spec")) if data else None
    if data is None or doc.kind != "PersistentVolumeClaim" or spec is None:
        return None
    requests = mapping(dig(spec, "resources", "requests"))
    size_raw = requests.get("storage") if requests else None
    size_loc = requests.loc_of("storage") if requests is not None and "storage" in requests else spec.loc
    modes = sequence(spec.get("accessModes"))
    annotations = mapping(dig(data, "metadata", "annotations")) or {}
    sc = spec.get("storageClassName") if "storageClassName" in spec else None
    return Pvc(
        doc.name,
        str(doc.file),
        data.loc,
        parse_quantity(size_raw),
        str(size_raw),
        size_loc,
        [str(m) for m in modes or []],
        spec.loc_of("accessModes") if modes is not None else spec.loc,
        None if sc is None else str(sc),
        spec.loc_of("storageClassName") if "storageClassName" in spec else spec.loc,
        {str(k): str(v) for k, v in annotations.items()},
    )


def dgd_pvcs(recipe: Recipe) -> list[Pvc]:
    """PVCs a DynamoGraphDeployment creates itself (`spec.pvcs` with `create: true`)."""
    dep = recipe.deployment
    out = []
    for item in sequence(dep.spec.get("pvcs") if dep else None) or []:
        item = mapping(item)
        if item is None or item.get("create") is not True or not isinstance(item.get("name"), str):
            continue
        mode = item.get("volumeAccessMode")
        sc = item.get("storageClass") if "storageClass" in item else None
        out.append(
            Pvc(
                item["name"],
                str(dep.doc.file),
                item.loc,
                parse_quantity(item.get("size")),
                str(item.get("size")),
                item.loc_of("size"),
                [str(mode)] if mode else [],
                item.loc_of("volumeAccessMode"),
                None if sc is None else str(sc),
                item.loc_of("storageClass"),
            )
        )
    return out


def recipe_pvcs(recipe: Recipe) -> dict[str, Pvc]:
    """Every PVC the recipe (with its model cache) defines, by name."""
    out: dict[str, Pvc] = {}
    for doc in recipe.documents("PersistentVolumeClaim"):
        pvc = pvc_of(doc)
        if pvc is not None and pvc.name:
            out.setdefault(pvc.name, pvc)
    for pvc in dgd_pvcs(recipe):
        out.setdefault(pvc.name, pvc)
    return out


def pod_claims(pod_spec: SrcMap | None) -> list[str]:
    """PVC names a pod spec mounts through `volumes[].persistentVolumeClaim`."""
    out = []
    for v in sequence(pod_spec.get("volumes") if pod_spec else None) or []:
        claim = dig(v, "persistentVolumeClaim", "claimName")
        if isinstance(claim, str):
            out.append(claim)
    return out


def service_claims(svc: Service) -> list[str]:
    """PVCs a DGD service mounts: its `volumeMounts` (by PVC name) and pod volumes."""
    names = [
        str(dig(vm, "name")) for vm in sequence(svc.data.get("volumeMounts")) or [] if isinstance(dig(vm, "name"), str)
    ]
    pod = mapping(svc.data.get("extraPodSpec")) or mapping(dig(svc.data, "podTemplate", "spec"))
    return names + [c for c in pod_claims(pod) if c not in names]


def compilation_cache_claims(recipe: Recipe) -> list[tuple[str, Loc]]:
    """PVCs mounted with `useAsCompilationCache: true` by any service."""
    out = []
    dep = recipe.deployment
    for svc in dep.services if dep else []:
        for vm in sequence(svc.data.get("volumeMounts")) or []:
            vm = mapping(vm)
            if vm is not None and vm.get("useAsCompilationCache") is True and isinstance(vm.get("name"), str):
                out.append((vm["name"], vm.loc_of("useAsCompilationCache")))
    return out


def _job_pod(doc: Document) -> SrcMap | None:
    return mapping(dig(doc.data, "spec", "template", "spec"))


def job_claims(doc: Document) -> list[str]:
    return pod_claims(_job_pod(doc))


def downloaded_models(doc: Document, known: Iterable[str]) -> list[str]:
    """Catalogue model ids a download Job names in its command line or env (word-bounded, so
    `Qwen/Qwen3-32B` is not found inside `Qwen/Qwen3-32B-FP8`)."""
    texts: list[str] = []
    for c in pod_containers(doc):
        texts.extend(t.value for cmd in c.script.commands for t in cmd.words)
        texts.extend(c.expand(v) for v in c.env.values())
    blob = "\n".join(texts)
    found = []
    for mid in sorted(known, key=len, reverse=True):
        if re.search(rf"(?<![\w./-]){re.escape(mid)}(?![\w.-])", blob) and mid not in found:
            found.append(mid)
    return sorted(found)


@dataclass
class CacheNeed:
    """What one model-cache PVC must hold: the checkpoints its download Jobs fetch."""

    pvc: Pvc
    models: list[ModelFacts]
    unknown: list[str]  # download Jobs whose model is not in the catalogue
    margin: float
    extra_gb: float = 0.0  # e.g. perf results written to the same PVC
    # repository directories besides the checkpoint that the download calls' include/exclude
    # patterns let through (models.yaml extraFiles), with the model they belong to
    extra_files: list[tuple[str, ExtraFiles]] = field(default_factory=list)

    @property
    def checkpoints_gb(self) -> float:
        return sum(m.on_disk_gb for m in self.models) + sum(f.gb for _, f in self.extra_files)

    @property
    def need_bytes(self) -> float:
        return (self.checkpoints_gb * self.margin + self.extra_gb) * 1e9

    def describe(self) -> str:
        parts = " + ".join(
            f"{m.id} {m.checkpoint_gb:g} GB{' (estimate)' if m.checkpoint_estimate else ''}" for m in self.models
        )
        for mid, f in self.extra_files:
            parts += f" + {f.path} {f.gb:g} GB (the download fetches {mid} {f.path}: no --exclude matches it)"
        text = f"{parts} x {self.margin:g} margin"
        if self.extra_gb:
            text += f" + {self.extra_gb:g} GB perf results"
        return f"{text} = {self.need_bytes / 1e9:.0f} GB ({gib(self.need_bytes)})"


def fetched_extra_files(recipe: Recipe, job: Document, model: ModelFacts) -> list[ExtraFiles]:
    """The model's extra directories (models.yaml extraFiles) that the Job's download calls of it
    fetch, by their include/exclude patterns; none when the Job's call is not recognised."""
    calls = [d for d in downloads(recipe) if d.pod.doc is job and d.repo is not None and d.repo.value == model.id]
    return [f for f in model.extra_files if any(call.fetches(f.sample) for call in calls)]


def download_jobs(recipe: Recipe) -> list[Document]:
    return [d for d in recipe.documents("Job") if d.file.name == MODEL_DOWNLOAD_FILE]


def perf_claims(recipe: Recipe) -> list[str]:
    return [c for d in recipe.documents("Job") if d.file.name == PERF_FILE for c in job_claims(d)]


def model_cache_needs(recipe: Recipe, margin: float | None = None) -> list[CacheNeed]:
    """For each PVC of the model cache that download Jobs target: what it must hold (computed
    once per loaded recipe and margin)."""
    return recipe.derived(_model_cache_needs, margin)


def _model_cache_needs(recipe: Recipe, margin: float | None) -> list[CacheNeed]:
    rules = catalogue.storage_rules()
    known = catalogue.models()
    pvcs = recipe_pvcs(recipe)
    perf = set(perf_claims(recipe))
    needs: dict[str, CacheNeed] = {}
    for job in download_jobs(recipe):
        ids = downloaded_models(job, known)
        for claim in job_claims(job):
            pvc = pvcs.get(claim)
            if pvc is None:
                continue  # a PVC nobody defines: the consistency checks report it
            need = needs.setdefault(claim, CacheNeed(pvc, [], [], 0.0))
            for mid in ids:
                if all(m.id != mid for m in need.models):
                    need.models.append(known[mid])
                for extra in fetched_extra_files(recipe, job, known[mid]):
                    if (mid, extra) not in need.extra_files:
                        need.extra_files.append((mid, extra))
            if not ids:
                need.unknown.append(job.name)
    for need in needs.values():
        need.models.sort(key=lambda m: m.id)
        need.margin = max(
            (rules.margin_for(m, margin) for m in need.models), default=margin or rules.model_cache_margin
        )
        if need.pvc.name in perf:
            need.extra_gb = rules.perf_results_min_gb
    return [needs[k] for k in sorted(needs)]


# Where a worker that sets neither HF_HOME nor HF_HUB_CACHE keeps the hub cache: huggingface_hub's default
# HF_HOME is $XDG_CACHE_HOME/huggingface, i.e. ~/.cache/huggingface (huggingface_hub/constants.py), so it
# depends on the image's user. The Dynamo runtime images ran as root up to 0.6.x (ai-dynamo/dynamo v0.6.1
# container/Dockerfile.{vllm,sglang,trtllm}: no USER) and as `dynamo` (`useradd -m`, HOME /home/dynamo)
# from 0.7.0 (v0.7.0 container/Dockerfile.vllm, Dockerfile.sglang, Dockerfile.trtllm: `USER dynamo`).
ROOT_HF_HOME = "/root/.cache/huggingface"
DYNAMO_USER_HF_HOME = "/home/dynamo/.cache/huggingface"
FIRST_NON_ROOT_RELEASE = (0, 7, 0)


def default_hf_homes(image: object) -> tuple[str, ...]:
    """The default HF_HOME of the image's user: one path for a Dynamo runtime image of a known release,
    both candidates for any other image (a custom build or a placeholder tag: its user is unknown)."""
    ref = parse_image(str(image or ""))
    release = release_tuple(ref.release) if ref.is_dynamo else None
    if release is None:
        return (ROOT_HF_HOME, DYNAMO_USER_HF_HOME)
    return (DYNAMO_USER_HF_HOME,) if release >= FIRST_NON_ROOT_RELEASE else (ROOT_HF_HOME,)
