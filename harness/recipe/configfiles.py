"""Files a container reads from ConfigMap volumes of the same manifests: a config path on the
command line (`--config`, `--extra-engine-args`) followed through volumeMounts to the ConfigMap
key that holds it. Shared by the topology reading and the conformance parse."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.recipe.findings import Loc
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import Document, dig, mapping, sequence


@dataclass(frozen=True)
class MountedFile:
    """A file the container reads from a ConfigMap volume: its content and where the content starts."""

    path: str  # the path inside the container
    content: str
    loc: Loc  # the ConfigMap data value (a block scalar starts on the next line)
    configmap: str = ""
    key: str = ""
    key_loc: Loc | None = None  # the data key's line (tells a block scalar from a one-line value)


def mounted_file(recipe: Recipe, svc: Service, path: str) -> MountedFile | None:
    """The ConfigMap content the container sees at `path` (volumeMounts -> volumes -> ConfigMap in the recipe)."""
    return mounted_file_in(recipe.documents("ConfigMap"), svc, path)


def mounted_file_in(docs: Iterable[Document], svc: Service, path: str) -> MountedFile | None:
    """As `mounted_file`, with the ConfigMaps to look in given (e.g. those of the deploy manifest)."""
    main = svc.main
    if main is None:
        return None
    mounts = [m for m in (sequence(main.data.get("volumeMounts")) or []) if mapping(m) is not None]
    volumes = (
        sequence(dig(svc.data, "extraPodSpec", "volumes"))
        or sequence(dig(svc.data, "podTemplate", "spec", "volumes"))
        or []
    )
    best = None
    for m in mounts:
        mount_path = str(m.get("mountPath") or "").rstrip("/")
        if (
            mount_path
            and (path == mount_path or path.startswith(mount_path + "/"))
            and (best is None or len(mount_path) > len(str(best.get("mountPath")).rstrip("/")))
        ):
            best = m
    if best is None:
        return None
    volume = next((mapping(v) for v in volumes if mapping(v) is not None and v.get("name") == best.get("name")), None)
    cm_name = dig(volume, "configMap", "name")
    if not isinstance(cm_name, str):
        return None
    mount_path = str(best.get("mountPath")).rstrip("/")
    rel = (
        str(best.get("subPath")) if best.get("subPath") and path == mount_path else path[len(mount_path) :].lstrip("/")
    )
    key = rel
    for item in sequence(dig(volume, "configMap", "items")) or []:
        if mapping(item) is not None and item.get("path") == rel:
            key = str(item.get("key"))
    for doc in docs:
        if doc.kind != "ConfigMap":
            continue
        data = mapping(doc.data.get("data"))
        if dig(doc.data, "metadata", "name") == cm_name and data is not None and isinstance(data.get(key), str):
            return MountedFile(path, data[key], data.loc_of(key), cm_name, key, data.key_loc(key))
    return None
