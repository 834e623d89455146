"""Simulated GPU nodes: Node objects kwok keeps Ready, with `nvidia.com/gpu` capacity and GPU Feature Discovery labels.

A pool is (GPU name from harness/recipe/data/gpus.yaml, node count). By default the pools are what the selected
recipes need: per GPU of their `hardware.gpu`, as many nodes as the largest recipe on it spans (`nodes:`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from harness.recipe.catalogue import gpu as gpu_facts
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import as_int, dig

KWOK_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the nodes annotated kwok.x-k8s.io/node=fake
NODE_CPU = "64"
NODE_MEMORY = "1Ti"
NODE_PODS = "110"


@dataclass(frozen=True)
class NodePool:
    """`count` nodes of one GPU type."""

    gpu: str
    count: int

    def node_names(self) -> list[str]:
        slug = re.sub(r"[^a-z0-9-]", "-", self.gpu.lower())
        return [f"gpu-{slug}-{i}" for i in range(self.count)]


def parse_pool(text: str) -> NodePool:
    """`H100=2` (or `H100`: one node) -> NodePool; ValueError names the known GPUs."""
    name, _, count = text.partition("=")
    facts = gpu_facts(name.strip())
    if facts is None:
        from harness.recipe.catalogue import gpus

        raise ValueError(f"unknown GPU {name!r} (known: {', '.join(gpus())}; harness/recipe/data/gpus.yaml)")
    n = int(count) if count.strip() else 1
    if n < 1 or n > 256:
        raise ValueError(f"node count for {name} must be 1..256, not {count!r}")
    return NodePool(facts.name, n)


def pools_for(recipes: Iterable[Recipe]) -> list[NodePool]:
    """One pool per GPU the recipes name (recipe.yaml hardware.gpu), sized for the largest recipe on it."""
    need: dict[str, int] = {}
    for recipe in recipes:
        meta = recipe.metadata
        name = dig(meta, "hardware", "gpu")
        if not isinstance(name, str) or gpu_facts(name) is None:
            continue
        need[name] = max(need.get(name, 1), as_int(meta.get("nodes")) or 1)
    return [NodePool(g, n) for g, n in sorted(need.items())]


def node_manifest(pool: NodePool, name: str) -> dict:
    """The Node object of one simulated GPU node (kwok fills in its status conditions and heartbeats)."""
    facts = gpu_facts(pool.gpu)
    assert facts is not None
    gpus = str(facts.gpus_per_node)
    resources = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS, "nvidia.com/gpu": gpus}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64" if pool.gpu.startswith("GB") else "amd64",
        "type": "kwok",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": gpus,
        "nvidia.com/gpu.memory": str(int(facts.memory_gb * 1000 * 1000 * 1000 / (1 << 20))),
    }
    if facts.product:
        labels["nvidia.com/gpu.product"] = facts.product
    if facts.family:
        labels["nvidia.com/gpu.family"] = facts.family
    if facts.compute_capability:
        labels["nvidia.com/gpu.compute.major"] = str(facts.compute_capability[0])
        labels["nvidia.com/gpu.compute.minor"] = str(facts.compute_capability[1])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }
