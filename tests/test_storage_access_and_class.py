"""Storage checks no stricter than Kubernetes where the case needs the catalogue's metadata (the node
count comes from recipe.yaml `hardware`, which a foreign fixture pair lacks): a catalogue copy with edits."""

from __future__ import annotations

from .conftest import CATALOGUE, needs_catalogue
from .conftest import check_on_copy as run

pytestmark = needs_catalogue

RECIPE = "qwen3-32b/vllm/disagg-kv-router"  # prefill and decode workers on 2 nodes of 8 H200
DEPLOY = f"{RECIPE}/deploy.yaml"
CACHE = "qwen3-32b/model-cache/model-cache.yaml"
ROX = (CACHE, "- ReadWriteMany", "- ReadOnlyMany")
PVC_SOURCE = "              persistentVolumeClaim:\n                claimName: model-cache\n"
PVC_READ_ONLY = PVC_SOURCE + "                readOnly: true\n"


def access(tmp_path, *edits):
    return [f.message for f in run(tmp_path, "pvc-access-mode-fits-topology", edits, recipe=RECIPE)]


def test_read_only_many_cache_the_workers_only_read_passes(tmp_path):
    # The frontend's volume (the first) keeps read-write: only the workers count for the topology.
    deploy = CATALOGUE / DEPLOY
    text = deploy.read_text()
    first = text.index(PVC_SOURCE) + len(PVC_SOURCE)
    head, tail = text[:first], text[first:]
    edited = head + tail.replace(PVC_SOURCE, PVC_READ_ONLY)
    assert edited.count("readOnly: true") == 2
    assert access(tmp_path, ROX, (DEPLOY, text, edited)) == []


def test_read_only_many_cache_a_worker_mounts_read_write_fails(tmp_path):
    found = access(tmp_path, ROX)
    assert found and "PVC model-cache is ReadOnlyMany" in found[0] and "span 2 nodes" in found[0]


def test_read_only_container_mounts_pass(tmp_path):
    deploy = CATALOGUE / DEPLOY
    text = deploy.read_text()
    mount = "                - name: model-cache\n                  mountPath: /model-cache\n"
    edited = text.replace(mount, mount + "                  readOnly: true\n")
    assert access(tmp_path, ROX, (DEPLOY, text, edited)) == []


def test_read_write_once_still_fails(tmp_path):
    found = access(tmp_path, (CACHE, "- ReadWriteMany", "- ReadWriteOnce"))
    assert found and "ReadWriteOnce" in found[0]


EMPTY_CLASS = (CACHE, "  # storageClassName: <rwx-class>", '  storageClassName: ""')


def _with_pv(storage_class: str) -> tuple[str, str, str]:
    pv = (
        "---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: model-cache-nfs\nspec:\n"
        f"  capacity: {{storage: 100Gi}}\n  accessModes: [ReadWriteMany]\n  storageClassName: {storage_class}\n"
        "  claimRef: {name: model-cache, namespace: dynamo}\n"
        "  nfs: {server: nfs.example.internal, path: /exports/model-cache}\n"
    )
    return (CACHE, "      storage: 100Gi\n", "      storage: 100Gi\n" + pv)


def empty_class(tmp_path, *edits):
    return [f.message for f in run(tmp_path, "storage-class-not-empty", edits, recipe=RECIPE)]


def test_empty_class_without_a_volume_fails(tmp_path):
    found = empty_class(tmp_path, EMPTY_CLASS)
    assert found and 'PVC model-cache sets storageClassName: ""' in found[0]


def test_empty_class_with_a_reserved_classless_pv_passes(tmp_path):
    assert empty_class(tmp_path, EMPTY_CLASS, _with_pv('""')) == []


def test_empty_class_with_a_pv_of_another_class_fails(tmp_path):
    # a PV with a class never binds a claim of class ""
    assert empty_class(tmp_path, EMPTY_CLASS, _with_pv("nfs-client"))


def test_empty_class_naming_its_volume_passes(tmp_path):
    assert (
        empty_class(tmp_path, EMPTY_CLASS, (CACHE, "  accessModes:", "  volumeName: model-cache-nfs\n  accessModes:"))
        == []
    )
