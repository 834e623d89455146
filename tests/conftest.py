"""Helpers the harness's own tests share: the shipped catalogue and a copy of it with edits, a hostile
foreign tree, synthetic AIPerf results and baselines' provenance, a recorded wheel METADATA. (Recipe
items come from harness/plugin.py, not from here; tests/k8s/conftest.py holds the real control plane's.)"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from harness.checks import REGISTRY, all_checks, run_check
from harness.recipe.model import FileCache, Recipe
from harness.results import baselines as bl
from harness.results.metrics import MetricStat, PerfResult
from harness.results.paired import RequestRecord, Round
from harness.run.defects import CATALOGUE, apply_edit
from harness.run.static import context_for, make_selection

__all__ = [
    "BILLION_LAUGHS",
    "CATALOGUE",
    "META_161",
    "check_on_copy",
    "copy_model",
    "hostile_tree",
    "needs_catalogue",
    "perf",
    "provenance",
    "runs",
]

needs_catalogue = pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")

# --- a catalogue copy with edits ------------------------------------------------------------

RECIPE = "llama-3-70b/vllm/agg"


def copy_model(model: str, root: Path) -> Path:
    """One shipped model under a new tree `root`: its directory, versions.yaml, and the kustomize Components
    its overlays use (recipes/kustomize/), so the copy builds as the catalogue does."""
    shutil.copytree(CATALOGUE / model, root / model)
    shutil.copy(CATALOGUE / "versions.yaml", root / "versions.yaml")
    if (CATALOGUE / "kustomize").is_dir():
        shutil.copytree(CATALOGUE / "kustomize", root / "kustomize")
    return root


def check_on_copy(tmp_path, check_id, edits=(), recipe=RECIPE, options=()):
    """Findings of one check on a catalogue copy with (file, old, new) edits applied, as a defect
    fixture's `replace` edits are."""
    root = copy_model(recipe.split("/")[0], tmp_path / "recipes")
    for rel, old, new in edits:  # the defect fixtures' edit (harness/run/defects.py): one way to edit a copy
        apply_edit({"file": rel, "replace": old, "with": new}, root / rel)
    all_checks()
    selection = make_selection(root, [recipe])
    return run_check(REGISTRY[check_id], selection.chosen[0], context_for(selection, options))


# --- a hostile foreign tree -------------------------------------------------------------------

BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(7)
)


def hostile_tree(root: Path) -> Path:
    """A foreign recipes tree with one kind of breakage per recipe."""

    def recipe(rid: str, files: dict[str, bytes | str]) -> Path:
        d = root / rid
        d.mkdir(parents=True)
        for name, content in files.items():
            (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        return d

    recipe("m1/vllm/binary", {"deploy.yaml": b"\x89PNG\r\n\x1a\n\xff\xfe", "recipe.yaml": "schemaVersion: 1\n"})
    recipe("m1/vllm/bomb", {"deploy.yaml": BILLION_LAUGHS})
    recipe("m1/vllm/empty", {"deploy.yaml": ""})
    recipe("m1/vllm/dupkey", {"deploy.yaml": "apiVersion: v1\nkind: ConfigMap\nkind: ConfigMap\nmetadata: {name: a}\n"})
    recipe(
        "m1/vllm/wrong-kind",
        {"deploy.yaml": "apiVersion: nvidia.com/v1alpha1\nkind: DynamoGraphDeploymnet\nmetadata: {name: a}\n"},
    )
    recipe("m1/vllm/huge", {"deploy.yaml": "a: 1\n" + ("#" * 80 + "\n") * 20000})
    recipe("m1/vllm/not-a-mapping", {"deploy.yaml": "- just\n- a list\n", "recipe.yaml": "[1, 2]\n"})
    recipe("m1/vllm/deep", {"deploy.yaml": "[" * 3000})
    d = recipe("m1/tensorrt/agg", {})
    (root.parent / "outside.yaml").write_text("kind: Secret\n")
    (d / "deploy.yaml").symlink_to(root.parent / "outside.yaml")
    return root


# --- synthetic AIPerf results -----------------------------------------------------------------

# What one sim run of the `ci` profile measures (sim-stack.md): throughput up, latency down is better.
NOMINAL = {
    "output_token_throughput": ("tokens/sec", 550.0),
    "request_throughput": ("requests/sec", 8.6),
    "time_to_first_token": ("ms", 50.0),
    "inter_token_latency": ("ms", 6.0),
    "request_latency": ("ms", 440.0),
}
NOISE = (1.0, 1.012, 0.991, 1.006, 0.995)  # about 1% run-to-run spread


def perf(slowdown: float = 1.0, jitter: float = 1.0, **fields) -> PerfResult:
    """One run of a stack `slowdown` times slower: throughput divided, latencies multiplied."""
    metrics = {}
    for name, (unit, value) in NOMINAL.items():
        v = value / (slowdown * jitter) if name.endswith("throughput") else value * slowdown * jitter
        metrics[name] = MetricStat(name, unit, avg=v, p50=v, p90=v * 1.2, p99=v * 1.5, min=v * 0.5, max=v * 2)
    metrics["output_sequence_length"] = MetricStat("output_sequence_length", "tokens", avg=fields.pop("osl", 64.0))
    base = dict(
        metrics=metrics,
        expected_requests=50,
        completed_requests=50,
        target_output_tokens=64,
        aiperf_version="0.13.0",
        aiperf_args=["profile", "--concurrency", "4"],
    )
    return PerfResult(**{**base, **fields})


def runs(slowdown: float = 1.0, n: int = 3, start: int = 0) -> list[PerfResult]:
    return [perf(slowdown, NOISE[(start + i) % len(NOISE)]) for i in range(n)]


def provenance() -> bl.Provenance:
    return bl.Provenance(
        profile="ci",
        hardware="cpu-2",
        manifest_hash="sha256:" + "ab" * 32,
        date="2025-11-26T10:00:00Z",
        git_sha="0123456789abcdef0123456789abcdef01234567",
        dynamo_version="1.4.2",
        backend_versions={"mocker": "1.4.2"},
        images=(bl.Image("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.4.0"),),
    )


# --- a recorded wheel METADATA ------------------------------------------------------------------

META_161 = """\
Metadata-Version: 2.4
Name: ai-dynamo
Version: 1.6.1
Requires-Dist: ai-dynamo-runtime==1.6.1
Requires-Dist: aiohttp<4.0,>=3.14.3
Requires-Dist: aisimulate==0.13.0; python_version >= '3.11' and python_version < '3.14'
Requires-Dist: transformers>=4.56.0
Requires-Dist: tomli; (python_version < '3.11') and extra == 'sglang'
Requires-Dist: sglang[diffusion]==0.5.21; extra == 'sglang'
Requires-Dist: tensorrt-llm==1.3.0rc29; extra == 'trtllm'
Requires-Dist: vllm[flashinfer,otel,runai]==0.31.0; extra == 'vllm'
"""


# --- catalogue copies edited in place (engine flags, deep conformance) ----------------------------

QWEN_AGG = "qwen3-32b/vllm/agg-round-robin"
DSR1_SGL = "deepseek-r1/sglang/disagg-8gpu"


def copy_catalogue(tmp_path: Path) -> Path:
    root = tmp_path / "recipes"
    shutil.copytree(CATALOGUE, root)
    return root


def edit(root: Path, rid: str, old: str, new: str) -> Path:
    path = root / rid / "deploy.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def recipe(root: Path, rid: str) -> Recipe:
    return Recipe(root / rid, root, FileCache(root))


def exec_form_as_sh_c(root: Path, rid: str) -> Path:
    """The recipe's last exec-form `python3 -m dynamo.sglang` command rewritten as one `sh -c` script
    (`exec python3 -m dynamo.sglang ...`), the form upstream recipes use."""
    path = root / rid / "deploy.yaml"
    text = path.read_text()
    head, _, tail = text.rpartition("command: [python3, -m, dynamo.sglang]\n              args:\n")
    args, rest = [], tail.splitlines(keepends=True)
    while rest and rest[0].startswith("                - "):
        args.append(rest.pop(0).strip()[2:].strip('"'))
    script = " ".join(["exec python3 -m dynamo.sglang", *args])
    path.write_text(head + f"command: [sh, -c]\n              args:\n                - {script!r}\n" + "".join(rest))
    return path


# --- same-run timing comparisons (synthetic requests) --------------------------------------------


def paired_side(
    rng: random.Random, n: int, base_ms: float, factor: float = 1.0, noise: float = 0.03, load=None
) -> tuple:
    """Same-run comparison data (harness/results/paired.py): n requests spread over 20 s; `load(t)` multiplies every metric at time t (outside work on the machine)."""
    out = []
    for i in range(n):
        t = i * 20.0 / n + rng.uniform(0, 0.05)
        slow = load(t) if load else 1.0
        jitter = lambda: rng.lognormvariate(0, noise)  # noqa: E731
        out.append(
            RequestRecord(
                int(t * 1e9),
                {
                    "inter_token_latency": base_ms * factor * slow * jitter(),
                    "request_latency": 60 * base_ms * factor * slow * jitter(),
                    "time_to_first_token": 8 * base_ms * slow * jitter(),  # overhead: barely moved by the engine
                },
            )
        )
    return tuple(out)


def paired_rounds(factor: float, seed: int = 1, n: int = 150, count: int = 1, load=None) -> list[Round]:
    rng = random.Random(seed)
    return [
        Round(paired_side(rng, n, 6.0, factor, load=load), paired_side(rng, n, 6.0, 1.0, load=load))
        for _ in range(count)
    ]
