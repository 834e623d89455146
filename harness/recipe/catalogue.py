"""The model and GPU catalogues (harness/recipe/data/*.yaml): the facts sizing and storage checks rest on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import yaml

try:  # the C loader: the catalogue is read at the start of every static run
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

DATA_DIR = Path(__file__).resolve().parent / "data"
GB = 1e9  # catalogue sizes are decimal GB, as model cards and GPU spec sheets state them
GIB = 1 << 30


@dataclass(frozen=True)
class ModelFacts:
    """One checkpoint (a Hugging Face model id) as sizing and storage see it."""

    id: str
    name: str
    params_b: float  # billions of parameters
    bytes_per_param: float  # average over the checkpoint
    layers: int
    kv_bytes_per_token: int  # 16-bit KV cache, all layers
    max_context: int
    checkpoint_gb: float
    checkpoint_source: str
    checkpoint_estimate: bool = False
    overhead_gb: float = 0.1
    expert_params_b: float = 0.0
    expert_bytes_per_param: float = 0.0
    attention_params_b: float = 0.0
    kv_heads: int = 0
    head_dim: int = 0
    mla: bool = False
    precision: str = ""  # the checkpoint's weight format (bf16, fp8, mxfp4, nvfp4)
    extra_files: tuple[ExtraFiles, ...] = ()  # what an unfiltered download fetches besides the checkpoint

    @property
    def weights_gb(self) -> float:
        return self.params_b * self.bytes_per_param

    @property
    def expert_gb(self) -> float:
        return self.expert_params_b * self.expert_bytes_per_param

    @property
    def dense_bytes_per_param(self) -> float:
        """Bytes per non-expert parameter, so that dense + experts = the whole checkpoint."""
        dense_params = self.params_b - self.expert_params_b
        return (self.weights_gb - self.expert_gb) / dense_params if dense_params > 0 else self.bytes_per_param

    @property
    def attention_gb(self) -> float:
        return self.attention_params_b * self.dense_bytes_per_param

    @property
    def on_disk_gb(self) -> float:
        return self.checkpoint_gb + self.overhead_gb


@dataclass(frozen=True)
class ExtraFiles:
    """A directory of a model repository that is not the checkpoint (e.g. gpt-oss `original/`)."""

    path: str  # "original/"
    gb: float
    sample: str  # one file inside it, to match download patterns against


@dataclass(frozen=True)
class GpuFacts:
    name: str
    memory_gb: float
    gpus_per_node: int
    compute_capability: tuple[int, int] | None = None  # NVIDIA's CUDA GPUs table, e.g. (9, 0)
    # GPU Feature Discovery's node labels for this GPU: nvidia.com/gpu.product and nvidia.com/gpu.family
    product: str = ""
    family: str = ""


@dataclass(frozen=True)
class StorageRules:
    """Documented storage minimums and margins (models.yaml `storage:`)."""

    model_cache_margin: float
    estimate_margin: float
    compilation_cache_min_gb: float
    perf_results_min_gb: float
    round_to_gi: int

    def margin_for(self, model: ModelFacts, override: float | None = None) -> float:
        if override is not None:
            return max(override, self.estimate_margin) if model.checkpoint_estimate else override
        return self.estimate_margin if model.checkpoint_estimate else self.model_cache_margin


@cache
def _load(name: str) -> dict:
    return yaml.load((DATA_DIR / name).read_text(), Loader=_Loader)


@lru_cache(maxsize=1)
def models() -> dict[str, ModelFacts]:
    out = {}
    for mid, m in _load("models.yaml")["models"].items():
        experts = m.get("experts") or {}
        out[mid] = ModelFacts(
            id=mid,
            name=m["name"],
            params_b=float(m["params"]),
            bytes_per_param=float(m["bytesPerParam"]),
            layers=int(m["layers"]),
            kv_bytes_per_token=int(m["kvBytesPerToken"]),
            max_context=int(m["maxContext"]),
            checkpoint_gb=float(m["checkpointGB"]),
            checkpoint_source=str(m["checkpointSource"]),
            checkpoint_estimate=bool(m.get("checkpointEstimate", False)),
            overhead_gb=float(m.get("overheadGB", 0.1)),
            expert_params_b=float(experts.get("params", 0.0)),
            expert_bytes_per_param=float(experts.get("bytesPerParam", 0.0)),
            attention_params_b=float(m.get("attentionParams", 0.0)),
            kv_heads=int(m.get("kvHeads", 0)),
            head_dim=int(m.get("headDim", 0)),
            mla=bool(m.get("mla", False)),
            precision=str(m.get("precision", "")),
            extra_files=tuple(
                ExtraFiles(str(k), float(v["gb"]), str(v["sample"])) for k, v in (m.get("extraFiles") or {}).items()
            ),
        )
    return out


@lru_cache(maxsize=1)
def gpus() -> dict[str, GpuFacts]:
    return {
        n: GpuFacts(
            n,
            float(g["memoryGB"]),
            int(g["gpusPerNode"]),
            _capability(g.get("computeCapability")),
            str(g.get("product") or ""),
            str(g.get("family") or ""),
        )
        for n, g in _load("gpus.yaml")["gpus"].items()
    }


def _capability(value: object) -> tuple[int, int] | None:
    """A compute capability written "9.0" (a string, so 10.0 is not read as 10)."""
    major, _, minor = str(value or "").partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else None


@lru_cache(maxsize=1)
def storage_rules() -> StorageRules:
    s = _load("models.yaml")["storage"]
    return StorageRules(
        float(s["modelCacheMargin"]),
        float(s["estimateMargin"]),
        float(s["compilationCacheMinGB"]),
        float(s["perfResultsMinGB"]),
        int(s["roundToGi"]),
    )


def model(model_id: str) -> ModelFacts | None:
    return models().get(model_id)


def gpu(name: str) -> GpuFacts | None:
    return gpus().get(name)


def matches_hardware(e: dict, wanted: list[str]) -> bool:
    """Whether a catalogue entry (`recipe-harness list --json`: its `labels` and `gpu`) runs on
    any of the wanted hardware names (case-insensitive); everything matches when none is wanted."""
    if not wanted:
        return True
    have = {x.lower() for x in e["labels"]} | ({e["gpu"].lower()} if e["gpu"] else set())
    return any(w.lower() in have for w in wanted)
