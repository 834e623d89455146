"""Real `config.json` files of the models the recipes serve, recorded with provenance (data/model-configs/).

Recorded by `python -m harness.run.conformance.modelconfigs --from SITE_PACKAGES` from the files a
published package ships (AIConfigurator's `aiconfigurator_core/model_configs/`), never typed by
hand. `index.json` maps a Hugging Face model id to its file with the package, version, path inside
the package and sha256; a model served with another checkpoint's architecture (a re-quantized
repository) says so in `substitute`. The conformance tier puts them in its stub HF cache, so the
engines build their model config from the real shapes (heads, layers, context length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "data" / "model-configs"
INDEX = "index.json"


@dataclass(frozen=True)
class ModelConfig:
    model: str
    config: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def label(self) -> str:
        p = self.provenance
        text = f"{p['package']} {p['version']} {p['path']} (sha256 {p['sha256'][:12]})"
        return f"{text}; {p['substitute']}" if p.get("substitute") else text


@cache
def _index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def model_config(model: str, directory: Path | None = None) -> ModelConfig | None:
    """The recorded config.json of a Hugging Face model id, or None when none is recorded."""
    directory = directory or CONFIG_DIR
    entry = _index(directory).get("models", {}).get(model)
    if entry is None:
        return None
    config = json.loads((directory / entry["file"]).read_text())
    return ModelConfig(model, config, entry)


def recorded_models(directory: Path | None = None) -> list[str]:
    return sorted(_index(directory or CONFIG_DIR).get("models", {}))
