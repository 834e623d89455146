"""The shipped kustomize variants (recipes/kustomize/README.md): every kustomization builds with the real
kustomize, the RDMA overlays give the cross-node workers their fabric and keep the base, a base of another
shape fails to build, and discovery and the layout checks accept the layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.analysis.docs import catalogue_md
from harness.checks import REGISTRY, all_checks, run_check
from harness.recipe.discovery import RecipeTree, discover, is_overlay_dir, recipe_dirs
from harness.recipe.images import parse_image
from harness.recipe.kustomize import locate, missing_reason
from harness.recipe.model import FileCache
from harness.run.static import context_for, make_selection
from tests.conftest import CATALOGUE, check_on_copy, copy_catalogue, copy_model, needs_catalogue

CROSS_NODE = (
    "deepseek-r1/sglang/disagg-16gpu",
    "deepseek-r1/sglang/disagg-8gpu",
    "qwen3-32b/vllm/disagg-kv-router",
    "llama-3-70b/vllm/disagg-multi-node",
)
RDMA_PREFIXES = ("rdma/", "networking.gke.io.networks/rdma-", "vpc.amazonaws.com/efa")


def _kustomize() -> list[str] | None:
    """The kustomize the harness runs (harness.recipe.kustomize.locate: $RECIPE_HARNESS_KUSTOMIZE, PATH, the cached
    build `recipe-harness cluster setup` makes, else `kubectl kustomize`)."""
    found = locate()
    return list(found.argv) if found else None


KUSTOMIZE = _kustomize()
needs_kustomize = pytest.mark.skipif(KUSTOMIZE is None, reason=f"no kustomize: {missing_reason()}")


def build(directory: Path) -> subprocess.CompletedProcess:
    assert KUSTOMIZE is not None
    return subprocess.run([*KUSTOMIZE, str(directory)], capture_output=True, text=True, timeout=120)


def objects(directory: Path) -> list[dict]:
    res = build(directory)
    assert res.returncode == 0, f"{directory}: {res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in CATALOGUE.rglob("kustomization.yaml"))


def overlays_of(rid: str) -> list[Path]:
    model, framework, mode = rid.split("/")
    return sorted(p for p in (CATALOGUE / model / framework).glob(f"{mode}-*") if is_overlay_dir(p))


def dgd(objs: list[dict]) -> dict:
    return next(o for o in objs if o["kind"] == "DynamoGraphDeployment")


def main_container(component: dict) -> dict:
    return component["podTemplate"]["spec"]["containers"][0]


@needs_catalogue
@needs_kustomize
@pytest.mark.parametrize("directory", kustomizations(), ids=lambda p: str(p.relative_to(CATALOGUE)))
def test_every_kustomization_builds(directory):
    res = build(directory)
    assert res.returncode == 0, res.stderr


@needs_catalogue
@needs_kustomize
@pytest.mark.parametrize("rid", CROSS_NODE)
def test_cross_node_deployments_have_rdma_variants(rid):
    variants = overlays_of(rid)
    assert {p.name.removeprefix(rid.split("/")[-1] + "-") for p in variants} >= {"rdma-infiniband", "rdma-efa"}
    base = dgd(objects(CATALOGUE / rid))
    for overlay in variants:
        rendered = dgd(objects(overlay))
        for before, after in zip(base["spec"]["components"], rendered["spec"]["components"], strict=True):
            b, a = main_container(before), main_container(after)
            fabric = [
                k
                for part in ("limits", "requests")
                for k in a["resources"].get(part, {})
                if k.startswith(RDMA_PREFIXES)
            ]
            if before["type"] in ("prefill", "decode"):
                assert fabric, f"{overlay.name}: {before['name']} requests no RDMA device"
                limits, requests = a["resources"]["limits"], a["resources"]["requests"]
                assert all(limits[k] == requests[k] for k in fabric)  # extended resources: requests = limits
                assert "IPC_LOCK" in a["securityContext"]["capabilities"]["add"]
                assert a["env"][: len(b["env"])] == b["env"]  # the base's env kept, the fabric's appended
                assert limits["nvidia.com/gpu"] == b["resources"]["limits"]["nvidia.com/gpu"]
            else:
                assert a == b and not fabric  # the frontend is untouched


@needs_catalogue
@needs_kustomize
def test_efa_count_follows_the_gpus_of_each_pod():
    for rid, per_pod in (("qwen3-32b/vllm/disagg-kv-router", "8"), ("llama-3-70b/vllm/disagg-multi-node", "32")):
        rendered = dgd(objects(CATALOGUE / f"{rid}-rdma-efa"))
        for c in rendered["spec"]["components"][1:]:
            res = main_container(c)["resources"]
            assert res["limits"]["vpc.amazonaws.com/efa"] == per_pod
            assert int(per_pod) == 4 * int(res["limits"]["nvidia.com/gpu"])  # P5/P5e: 32 EFA for 8 GPUs


@needs_catalogue
@needs_kustomize
def test_a_base_of_another_shape_does_not_build(tmp_path):
    """The RDMA components test the component types first: on an aggregated recipe (components[1] is the
    worker) kustomize refuses instead of patching the wrong component."""
    root = tmp_path / "recipes"
    shutil.copytree(CATALOGUE / "kustomize", root / "kustomize")
    shutil.copytree(CATALOGUE / "qwen3-32b/vllm/agg-round-robin", root / "qwen3-32b/vllm/agg-round-robin")
    overlay = root / "qwen3-32b/vllm/agg-round-robin-rdma-infiniband"
    overlay.mkdir()
    text = (CATALOGUE / "qwen3-32b/vllm/disagg-kv-router-rdma-infiniband/kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(text.replace("../disagg-kv-router", "../agg-round-robin"))
    res = build(overlay)
    assert res.returncode != 0 and "test" in res.stderr.lower(), res.stderr


@needs_catalogue
@needs_kustomize
def test_cluster_variants_move_namespace_storage_and_images():
    for provider, storage in (("gke", "standard-rwx"), ("eks", "efs-sc"), ("aks", "azurefile-csi")):
        objs = objects(CATALOGUE / f"qwen3-32b/vllm/agg-round-robin-cluster-{provider}")
        assert {o["kind"] for o in objs} == {"PersistentVolumeClaim", "Job", "DynamoGraphDeployment"}
        assert {o["metadata"].get("namespace") for o in objs} == {"dynamo-recipes"}
        pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")
        assert pvc["spec"]["storageClassName"] == storage
        pods = [o["spec"]["template"]["spec"] for o in objs if o["kind"] == "Job"]
        pods += [c["podTemplate"]["spec"] for c in dgd(objs)["spec"]["components"]]
        for pod in pods:
            assert pod["imagePullSecrets"] == [{"name": "registry-mirror-pull"}]
            assert all(c["image"].startswith("registry.example.com/") for c in pod["containers"])


@needs_catalogue
def test_overlays_and_components_are_no_plain_recipes():
    dirs = {str(p.relative_to(CATALOGUE)) for p in recipe_dirs(CATALOGUE)}
    assert "qwen3-32b/vllm/disagg-kv-router" in dirs
    assert not any(d.startswith("kustomize/") or "-rdma-" in d or "-cluster-" in d for d in dirs)
    assert len(discover(CATALOGUE)) >= 13


@needs_catalogue
def test_layout_accepts_bases_overlays_and_components(tmp_path):
    assert check_on_copy(tmp_path / "a", "layout-stray-files", recipe="qwen3-32b/vllm/disagg-kv-router") == []
    assert check_on_copy(tmp_path / "b", "layout-stray-files", recipe="llama-3-70b/vllm/disagg-multi-node") == []


@needs_catalogue
@pytest.mark.parametrize("rid", CROSS_NODE)
def test_known_limits_say_what_runs_without_rdma(rid):
    meta = yaml.safe_load((CATALOGUE / rid / "recipe.yaml").read_text())
    text = " ".join(meta["knownLimits"])
    assert "TCP" in text and "rdma-infiniband" in text


@needs_catalogue
def test_the_catalogue_lists_the_overlays_from_their_files(tmp_path, monkeypatch):
    """recipes/README.md names every overlay with its bases and components, read from the kustomization
    files, so the generated docs do not depend on a kustomize being installed."""
    monkeypatch.setenv("RECIPE_HARNESS_KUSTOMIZE", str(tmp_path / "no-kustomize"))
    monkeypatch.setenv("PATH", str(tmp_path))
    cache = FileCache(CATALOGUE)
    text = catalogue_md(RecipeTree(CATALOGUE, discover(CATALOGUE, cache), cache))
    row = (
        "| `qwen3-32b/vllm/agg-round-robin-cluster-gke` | `qwen3-32b/vllm/agg-round-robin`, `qwen3-32b/model-cache` | "
        "`kustomize/components/namespace`, `kustomize/components/storage-gke-filestore`, "
        "`kustomize/components/registry-mirror` |"
    )
    assert row in text
    assert text == (CATALOGUE / "README.md").read_text()


@needs_catalogue
def test_a_recipe_that_lost_its_deploy_file_is_still_a_recipe(tmp_path):
    """A recipe directory with a kustomization (a base) and recipe.yaml but no deploy.yaml is a broken recipe,
    not an overlay: layout-required-files reports it."""
    root = tmp_path / "recipes"
    shutil.copytree(CATALOGUE / "qwen3-32b", root / "qwen3-32b")
    (root / "qwen3-32b/vllm/agg-round-robin/deploy.yaml").unlink()
    assert not is_overlay_dir(root / "qwen3-32b/vllm/agg-round-robin")
    assert is_overlay_dir(root / "qwen3-32b/vllm/agg-round-robin-cluster-gke")


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1", "vllm-runtime"),
        ("registry.example.com/nvidia/ai-dynamo/vllm-runtime:1.6.1", "vllm-runtime"),  # the registry-mirror Component
        ("harbor.example.com/nvcr/nvidia/ai-dynamo/sglang-runtime:1.6.1", "sglang-runtime"),  # a proxy-cache project
        ("registry.example.com/library/python:3.12.11-slim", ""),
        ("nvidia/ai-dynamo/vllm-runtime:1.6.1", ""),  # Docker Hub: NVIDIA does not publish Dynamo there
    ],
)
def test_a_mirrored_dynamo_image_keeps_its_release(image, repository):
    """The release checks and the conformance tier read a mirrored Dynamo image as the NGC one it copies."""
    ref = parse_image(image)
    assert ref.dynamo_repository == repository and ref.is_dynamo == bool(repository)
    if repository:
        assert ref.release == "1.6.1"


@needs_catalogue
@needs_kustomize
def test_a_namespace_set_by_kustomize_for_every_object_is_no_finding(tmp_path):
    """`kubectl apply -k` sends every rendered object to the namespace the kustomization gave it: the cluster
    overlays' `namespace` Component is no hard-coded namespace. A build that splits objects across
    namespaces still is."""
    overlay = "qwen3-32b/vllm/agg-round-robin-cluster-gke"
    assert _check(copy_catalogue(tmp_path / "a"), "no-hard-coded-namespace", overlay) == []
    root = copy_catalogue(tmp_path / "b")
    path = root / overlay / "kustomization.yaml"
    split = (
        "patches:\n  - target: {kind: PersistentVolumeClaim}\n    patch: |-\n"
        "      - op: replace\n        path: /metadata/namespace\n        value: elsewhere\n"
    )
    path.write_text(path.read_text().replace("patches:\n", split, 1))
    findings = _check(root, "no-hard-coded-namespace", overlay)
    assert any("'elsewhere'" in f.message for f in findings) and any("'dynamo-recipes'" in f.message for f in findings)


def _check(root: Path, check_id: str, rid: str):
    all_checks()
    selection = make_selection(root, [rid])
    return run_check(REGISTRY[check_id], selection.chosen[0], context_for(selection, ()))


@needs_catalogue
@needs_kustomize
def test_sim_rehearses_an_overlay_once_unless_it_changes_what_runs(tmp_path):
    """An overlay that changes only cluster settings is the same sim run as its base (not run twice); one that
    changes a worker's engine arguments is rehearsed on its own."""
    pytest.importorskip(
        "dynamo.frontend", reason="the sim plan reads the installed Dynamo frontend: pip install -e '.[sim]'"
    )
    from harness.run.sim.stage import SimStage

    root = copy_model("qwen3-32b", tmp_path / "recipes")
    changed = root / "qwen3-32b/vllm/agg-round-robin-bigger-blocks"
    changed.mkdir()
    (changed / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../agg-round-robin\n"
        "patches:\n  - target: {group: nvidia.com, kind: DynamoGraphDeployment}\n    patch: |-\n"
        "      - op: test\n        path: /spec/components/1/type\n        value: worker\n"
        "      - op: replace\n        path: /spec/components/1/podTemplate/spec/containers/0/args/7\n"
        '        value: "32"\n'
    )
    recipes = {r.id: r for r in discover(root)}
    chosen = list(recipes.values())
    stage = SimStage()
    base = recipes["qwen3-32b/vllm/agg-round-robin"]
    assert stage.rehearsed_by(base, chosen) is None
    same = stage.rehearsed_by(recipes["qwen3-32b/vllm/agg-round-robin-cluster-gke"], chosen)
    assert same is not None and same.id == base.id
    assert stage.rehearsed_by(recipes["qwen3-32b/vllm/agg-round-robin-bigger-blocks"], chosen) is None
