"""Rewrites a DynamoGraphDeployment from `nvidia.com/v1alpha1` (a `services` map) to `nvidia.com/v1beta1`
(a `components` list with a `podTemplate`), keeping comments and the order of the fields.

The mapping is the operator's own conversion webhook (ai-dynamo/dynamo, deploy/operator/api/v1alpha1/:
`dynamographdeployment_conversion.go` `ConvertTo`, `shared_spec_conversion.go`
`ConvertFromDynamoComponentDeploymentSharedSpec`, `buildMainContainerFromDedicated`,
`mergeExtraPodSpecMainContainer`, `buildBasePodTemplate`, `resourcesToNative`; read at commit
0d531a94) and the v1beta1 schema of the release's CRD (schemas/dynamo/<release>/):

v1alpha1 (per service) => v1beta1 (per component):

- the `services` map key => `name`
- `componentType` (+ `subComponentType` prefill/decode under worker) => `type` (prefill/decode promoted to first-class
  types)
- `replicas`, `multinode`, `minAvailable`, `globalDynamoNamespace`, `modelRef`, `topologyConstraint`, `eppConfig`,
  `runtimeVersionOverride`, `providerOverride` => same name
- `sharedMemory: {size: S}` / `{disabled: true}` => `sharedMemorySize: S` / `"0"`
- `scalingAdapter: {enabled: true, ...}` => `scalingAdapter: {...}` (presence means enabled)
- `gpuMemoryService`, `failover`, `checkpoint` => `experimental.{gpuMemoryService,failover,checkpoint}`
- `envs` => `podTemplate.spec.containers[main].env` (mainContainer `env` is added)
- `envFromSecret: S` => `...containers[main].envFrom: [{secretRef: {name: S}}]`
- `resources.{requests,limits}.{cpu,memory,gpu}` => `...containers[main].resources` (`gpu` -> `nvidia.com/gpu`, or
  `gpuType`)
- `livenessProbe`, `readinessProbe` => `...containers[main].livenessProbe`, `readinessProbe`
- `volumeMounts: [{name, mountPoint}]` => `...containers[main].volumeMounts: [{name, mountPath}]`
- `extraPodSpec.mainContainer` => merged into `containers[main]`, its fields win (mergo WithOverride)
- `extraPodSpec.<pod spec field>` => `podTemplate.spec.<field>`
- `extraPodMetadata.{annotations,labels}` => `podTemplate.metadata.{annotations,labels}`
- spec `envs` => spec `env`
- spec `pvcs` => none: "users now declare PVC volumes directly on podTemplate"; an existing claim (`create: false`)
  becomes `podTemplate.spec.volumes: [{name, persistentVolumeClaim: {claimName}}]` in every component that mounts it

What the webhook keeps only in an annotation (no v1beta1 field: `dynamoNamespace`, `autoscaling`,
`ingress`, service `annotations`/`labels`, other `subComponentType` values) is dropped with a note;
what this tool does not convert (a `frontendSidecar` struct, `pvcs` with `create: true`) is an error.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

ALPHA = "nvidia.com/v1alpha1"
BETA = "nvidia.com/v1beta1"
KIND = "DynamoGraphDeployment"
MAIN = "main"
# Fields with the same name and meaning in both versions.
SAME_NAME = (
    "replicas",
    "multinode",
    "minAvailable",
    "globalDynamoNamespace",
    "modelRef",
    "topologyConstraint",
    "eppConfig",
    "runtimeVersionOverride",
    "providerOverride",
    "compilationCache",
)
# Fields that become part of the main container or the pod template.
POD_FIELDS = (
    "envFromSecret",
    "envs",
    "volumeMounts",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "extraPodSpec",
    "extraPodMetadata",
)
EXPERIMENTAL = ("gpuMemoryService", "failover", "checkpoint")
# v1alpha1-only: the webhook stores them in an annotation; a v1beta1 manifest cannot express them.
ALPHA_ONLY = ("dynamoNamespace", "autoscaling", "ingress", "annotations", "labels", "serviceName")
_DOC_SPLIT = re.compile(r"^---[ \t]*(?:#.*)?$", re.M)


class ConvertError(ValueError):
    """The manifest uses a v1alpha1 form this tool does not convert; the message says which and where."""


@dataclass
class Conversion:
    """The converted text of one file and what the conversion dropped or decided."""

    path: Path
    text: str
    changed: bool
    notes: list[str] = field(default_factory=list)


def _yaml() -> YAML:
    y = YAML()  # round-trip: comments, key order and quoting survive
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def split_documents(text: str) -> list[str]:
    """The file's YAML documents as text, each with its own `---` line (kept verbatim)."""
    parts: list[str] = []
    start = 0
    for m in _DOC_SPLIT.finditer(text):
        parts.append(text[start : m.start()])
        start = m.start()
    parts.append(text[start:])
    return [p for p in parts if p]


def is_alpha_dgd(doc_text: str) -> bool:
    return bool(
        re.search(rf"^apiVersion:\s*['\"]?{re.escape(ALPHA)}['\"]?\s*(#.*)?$", doc_text, re.M)
        and re.search(rf"^kind:\s*['\"]?{KIND}['\"]?\s*(#.*)?$", doc_text, re.M)
    )


def convert_text(text: str, path: Path) -> Conversion:
    """Convert every v1alpha1 DynamoGraphDeployment of a file; other documents stay byte for byte."""
    out: list[str] = []
    notes: list[str] = []
    for doc in split_documents(text):
        if not is_alpha_dgd(doc):
            out.append(doc)
            continue
        out.append(_convert_document(doc, path, notes))
    new = "".join(out)
    return Conversion(path, new, new != text, notes)


def _convert_document(doc: str, path: Path, notes: list[str]) -> str:
    marker = ""
    body = doc
    m = _DOC_SPLIT.match(doc)
    if m:  # keep the separator line as written
        marker, body = doc[: m.end() + 1], doc[m.end() + 1 :]
    y = _yaml()
    data = y.load(body)
    if not isinstance(data, CommentedMap):
        return doc
    data["apiVersion"] = BETA
    spec = data.get("spec")
    if isinstance(spec, CommentedMap):
        data["spec"] = _convert_spec(spec, path, notes)
    buf = io.StringIO()
    y.dump(data, buf)
    return marker + align_comments(buf.getvalue())


def _line(node: Any) -> str:
    lc = getattr(node, "lc", None)
    return f":{lc.line + 1}" if lc is not None and lc.line is not None else ""


def _convert_spec(spec: CommentedMap, path: Path, notes: list[str]) -> CommentedMap:
    claims = _existing_claims(spec.get("pvcs"), path)
    out = CommentedMap()
    for key in spec:
        value = spec[key]
        if key == "pvcs":
            continue  # no v1beta1 field: each mounting component declares the volume itself
        if key == "envs":
            _put(out, "env", value, spec, key)
        elif key == "services" and isinstance(value, CommentedMap):
            comps = CommentedSeq()
            for name in value:
                svc = value[name]
                if not isinstance(svc, CommentedMap):
                    continue
                comps.append(_convert_service(str(name), svc, claims, path, notes))
                _copy_comment(value, name, comps, len(comps) - 1)
            _put(out, "components", comps, spec, key)
        else:
            _put(out, key, value, spec, key)
    _copy_start_comment(spec, out)
    return out


def _existing_claims(pvcs: Any, path: Path) -> dict[str, str]:
    """volume name -> claim name for the spec's `pvcs` (v1alpha1 mounted them by name)."""
    claims: dict[str, str] = {}
    for pvc in pvcs or []:
        if not isinstance(pvc, dict) or not pvc.get("name"):
            continue
        if pvc.get("create") is True:
            raise ConvertError(
                f"{path}{_line(pvc)}: spec.pvcs[{pvc.get('name')}] has create: true; v1beta1 has no "
                f"pvcs: write the PersistentVolumeClaim as its own manifest, set create: false, and convert again"
            )
        claims[str(pvc["name"])] = str(pvc["name"])
    return claims


def _convert_service(
    name: str, svc: CommentedMap, claims: dict[str, str], path: Path, notes: list[str]
) -> CommentedMap:
    where = f"{path}{_line(svc)}: services.{name}"
    if "frontendSidecar" in svc:
        raise ConvertError(
            f"{where}.frontendSidecar: a sidecar struct is not converted by this tool; write a "
            f"podTemplate container and set frontendSidecar to its name"
        )
    comp = CommentedMap()
    comp["name"] = name
    pod_done = False
    experimental = CommentedMap()
    sub = str(svc.get("subComponentType") or "")
    ctype = str(svc.get("componentType") or "")
    promoted = ctype == "worker" and sub in ("prefill", "decode")
    for key in svc:
        value = svc[key]
        if key == "componentType":
            _put(comp, "type", sub if promoted else value, svc, key)
        elif key == "subComponentType":
            if not promoted:
                notes.append(f"{where}.subComponentType {sub!r}: no v1beta1 field (type {ctype!r} kept); dropped")
        elif key in SAME_NAME:
            _put(comp, key, value, svc, key)
        elif key == "sharedMemory":
            size = _shared_memory_size(value)
            if size is not None:
                _put(comp, "sharedMemorySize", size, svc, key)
        elif key == "scalingAdapter":
            if isinstance(value, dict) and value.get("enabled"):
                rest = CommentedMap((k, v) for k, v in value.items() if k != "enabled")
                _put(comp, "scalingAdapter", rest, svc, key)
        elif key in EXPERIMENTAL:
            experimental[key] = value
        elif key in POD_FIELDS:
            if not pod_done:
                comp["podTemplate"] = _pod_template(svc, claims, where, notes)
                pod_done = True
        elif key in ALPHA_ONLY:
            notes.append(f"{where}.{key}: v1alpha1 only (the operator's conversion keeps it in an annotation); dropped")
        else:
            _put(comp, key, value, svc, key)  # unknown to both versions: the schema check reports it
    if experimental:
        comp["experimental"] = experimental
    return comp


def _shared_memory_size(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    if value.get("disabled"):
        return "0"
    return value.get("size")


def _pod_template(svc: CommentedMap, claims: dict[str, str], where: str, notes: list[str]) -> CommentedMap:
    """`buildSharedPodTemplateFromAlpha`: the main container from the dedicated fields, the
    mainContainer merged over it (its fields win, env is additive), the rest of extraPodSpec as the
    pod spec, extraPodMetadata as the pod metadata."""
    extra = svc.get("extraPodSpec") if isinstance(svc.get("extraPodSpec"), CommentedMap) else CommentedMap()
    main_src = extra.get("mainContainer") if isinstance(extra.get("mainContainer"), CommentedMap) else CommentedMap()
    main = CommentedMap()
    main["name"] = MAIN
    mounted: list[str] = []
    for key in svc:
        value = svc[key]
        if key == "envs":
            _put(main, "env", value, svc, key)
        elif key == "envFromSecret" and value:
            ref = CommentedSeq([CommentedMap([("secretRef", CommentedMap([("name", value)]))])])
            _put(main, "envFrom", ref, svc, key)
        elif key == "resources" and isinstance(value, CommentedMap):
            _put(main, "resources", _native_resources(value), svc, key)
        elif key in ("livenessProbe", "readinessProbe"):
            _put(main, key, value, svc, key)
        elif key == "volumeMounts" and isinstance(value, CommentedSeq):
            mounts = CommentedSeq()
            for i, vm in enumerate(value):
                if not isinstance(vm, dict):
                    continue
                if vm.get("useAsCompilationCache"):
                    notes.append(
                        f"{where}.volumeMounts[{i}].useAsCompilationCache: becomes compilationCache in the "
                        f"operator's conversion; not converted here"
                    )
                m = CommentedMap([("name", vm.get("name")), ("mountPath", vm.get("mountPoint") or vm.get("mountPath"))])
                mounts.append(m)
                _copy_comment(value, i, mounts, len(mounts) - 1)
                mounted.append(str(vm.get("name")))
            _put(main, "volumeMounts", mounts, svc, key)
        elif key == "extraPodSpec":
            for mk in main_src:
                if mk == "name":
                    continue
                if mk == "env" and "env" in main:
                    main["env"] = _merge_env(main["env"], main_src[mk])
                    continue
                if mk == "volumeMounts" and "volumeMounts" in main:
                    # The v1alpha1 controller mounts the service's PVCs next to the container's own
                    # mounts; a plain override would unmount the model cache.
                    main["volumeMounts"] = _merge_mounts(main["volumeMounts"], main_src[mk])
                    continue
                if mk in main and isinstance(main[mk], dict) and isinstance(main_src[mk], dict):
                    _deep_merge(main[mk], main_src[mk])  # mergo merges structs and maps field by field
                    continue
                if mk in main:
                    notes.append(
                        f"{where}.extraPodSpec.mainContainer.{mk} overrides the service's own field "
                        f"(the operator's merge order)"
                    )
                    del main[mk]
                _put(main, mk, main_src[mk], main_src, mk)
    spec = CommentedMap()
    containers = CommentedSeq([main])
    for key in extra:
        if key == "mainContainer":
            continue
        if key == "containers" and isinstance(extra[key], CommentedSeq):
            for c in extra[key]:
                if isinstance(c, dict) and c.get("name") != MAIN:
                    containers.append(c)
            continue
        _put(spec, key, extra[key], extra, key)
    spec.insert(0, "containers", containers)
    _copy_comment(extra, "mainContainer", spec, "containers")
    volumes = spec.get("volumes")
    known = {str(v.get("name")) for v in volumes or [] if isinstance(v, dict)}
    for name in mounted:
        if name in claims and name not in known:
            if volumes is None:
                volumes = spec["volumes"] = CommentedSeq()
            volumes.append(
                CommentedMap([("name", name), ("persistentVolumeClaim", CommentedMap([("claimName", claims[name])]))])
            )
            known.add(name)
    tpl = CommentedMap()
    meta = svc.get("extraPodMetadata")
    if isinstance(meta, dict) and (meta.get("annotations") or meta.get("labels")):
        tpl["metadata"] = CommentedMap((k, meta[k]) for k in ("annotations", "labels") if meta.get(k))
    tpl["spec"] = spec
    return tpl


def _native_resources(res: CommentedMap) -> CommentedMap:
    """`resourcesToNative`: cpu and memory by name, `gpu` as `nvidia.com/gpu` (or the `gpuType`), claims as is."""
    out = CommentedMap()
    for section in res:
        value = res[section]
        if section in ("requests", "limits") and isinstance(value, CommentedMap):
            items = CommentedMap()
            gpu_key = str(value.get("gpuType") or "nvidia.com/gpu")
            for k in value:
                if k == "gpuType":
                    continue
                _put(items, gpu_key if k == "gpu" else k, value[k], value, k)
            _put(out, section, items, res, section)
        else:
            _put(out, section, value, res, section)
    return out


def _merge_env(base: Any, extra: Any) -> CommentedSeq:
    """`mergeEnvs`: the service's envs, then the container's; a name set in both takes the container's entry."""
    out = CommentedSeq()
    extra_names = {e.get("name") for e in extra or [] if isinstance(e, dict)}
    for i, e in enumerate(base or []):
        if not (isinstance(e, dict) and e.get("name") in extra_names):
            out.append(e)
            _copy_comment(base, i, out, len(out) - 1)
    for i, e in enumerate(extra or []):
        out.append(e)
        _copy_comment(extra, i, out, len(out) - 1)
    return out


def _deep_merge(base: CommentedMap, over: Any) -> None:
    """`mergo.Merge(base, over, mergo.WithOverride)`: a set field of `over` wins, mappings merge key by key."""
    for k in over:
        if k in base and isinstance(base[k], dict) and isinstance(over[k], dict):
            _deep_merge(base[k], over[k])
        else:
            _put(base, k, over[k], over, k)


def _merge_mounts(base: Any, extra: Any) -> CommentedSeq:
    out = CommentedSeq()
    seen: set[tuple[Any, Any]] = set()
    for seq in (base or [], extra or []):
        for i, m in enumerate(seq):
            key = (m.get("name"), m.get("mountPath")) if isinstance(m, dict) else (id(m), None)
            if key not in seen:
                seen.add(key)
                out.append(m)
                _copy_comment(seq, i, out, len(out) - 1)
    return out


def align_comments(text: str) -> str:
    """Indent every full-line comment like the line it precedes: a moved field keeps its comment, and
    the comment moves to the field's new depth."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        stripped = lines[i].lstrip(" ")
        if not stripped.startswith("#"):
            continue
        nxt = next(
            (
                lines[j]
                for j in range(i + 1, len(lines))
                if lines[j].strip() and not lines[j].lstrip(" ").startswith("#")
            ),
            None,
        )
        if nxt is None:
            continue
        lines[i] = " " * (len(nxt) - len(nxt.lstrip(" "))) + stripped
    return "\n".join(lines)


# ---- comments -------------------------------------------------------------------------------------
# ruamel keeps a comment written above a key as the trailing comment of the item before it, and an
# end-of-line comment with its own item; copying an item's comment slot with the item keeps both
# next to the field they were written for whenever the relative order of fields is unchanged.


def _put(dst: CommentedMap, key: Any, value: Any, src: Any, src_key: Any) -> None:
    dst[key] = value
    _copy_comment(src, src_key, dst, key)


def _copy_comment(src: Any, src_key: Any, dst: Any, dst_key: Any) -> None:
    ca = getattr(src, "ca", None)
    if ca is None or src_key not in ca.items:
        return
    dst.ca.items[dst_key] = ca.items[src_key]


def _copy_start_comment(src: Any, dst: Any) -> None:
    if getattr(src.ca, "comment", None):
        dst.ca.comment = src.ca.comment
