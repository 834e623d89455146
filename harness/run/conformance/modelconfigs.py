"""Records the real config.json of each model the catalogue serves, from a published package, with provenance.

AIConfigurator (PyPI `aiconfigurator-core`) ships the `config.json` of the models it models under
`aiconfigurator_core/model_configs/<org>--<name>_config.json`. This copies the ones the recipes
(and the harness's tests) name to harness/recipe/data/model-configs/ and writes index.json with
package, version, path and sha256 per model. Install the package anywhere (a throwaway venv) and
point at its site-packages:

    python -m venv /tmp/aic && /tmp/aic/bin/pip install --no-deps aiconfigurator-core==0.12.0
    python -m harness.run.conformance.modelconfigs --from /tmp/aic/lib/python3.11/site-packages
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

from harness.recipe.model_configs import CONFIG_DIR, INDEX

PACKAGE = "aiconfigurator-core"
PACKAGE_DIR = "aiconfigurator_core/model_configs"
# Model id -> the packaged file, when the id's own file is not shipped: a re-quantized checkpoint
# of a shipped architecture. The reason is recorded next to it.
SUBSTITUTES = {
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": (
        "meta-llama--Meta-Llama-3.1-70B_config.json",
        "Llama 3.1 70B's config: Llama 3.3 70B has the same architecture (80 layers, hidden 8192, 64 attention "
        "heads, 8 KV heads, FFN 28672, vocab 128256, RoPE theta 500000, 131072 positions; "
        "https://apxml.com/models/llama-3-3-70b). The RedHatAI checkpoint's FP8 quantization_config "
        "(compressed-tensors) is not in it: the engines see a BF16 model",
    ),
    "nvidia/DeepSeek-R1-FP4": (
        "deepseek-ai--DeepSeek-R1_config.json",
        "DeepSeek-R1's config: nvidia/DeepSeek-R1-FP4 is an NVFP4 quantization of the same architecture; its "
        "hf_quant_config.json is not shipped, so the engines see the FP8 checkpoint's quantization_config",
    ),
}
# Models the harness's tests and flag-pair derivation parse with (BASE_ARGV in pairs.py and surface.py).
EXTRA_MODELS = ("Qwen/Qwen3-0.6B",)


def catalogue_models(root: Path) -> list[str]:
    """Model ids of recipes/*/*/*/recipe.yaml (`model.id`)."""
    import yaml

    out = set(EXTRA_MODELS)
    for path in root.glob("*/*/*/recipe.yaml"):
        data = yaml.safe_load(path.read_text()) or {}
        model = (data.get("model") or {}).get("id")
        if isinstance(model, str):
            out.add(model)
    return sorted(out)


def record(site: Path, models: list[str]) -> tuple[dict, dict[str, bytes], list[str]]:
    dists = list(metadata.distributions(path=[str(site)], name=PACKAGE))
    if not dists:
        raise SystemExit(f"{site}: no {PACKAGE} installed there")
    version = dists[0].version
    index: dict = {
        "generated_by": "python -m harness.run.conformance.modelconfigs --from SITE_PACKAGES",
        "note": "copied byte for byte from the package; never hand-edited",
        "models": {},
    }
    files: dict[str, bytes] = {}
    missing = []
    for model in models:
        own = model.replace("/", "--") + "_config.json"
        name, why = (own, None) if (site / PACKAGE_DIR / own).is_file() else SUBSTITUTES.get(model, (None, None))
        if name is None or not (site / PACKAGE_DIR / name).is_file():
            missing.append(model)
            continue
        data = (site / PACKAGE_DIR / name).read_bytes()
        json.loads(data)  # a config.json, or fail here
        files[name] = data
        index["models"][model] = {
            "file": name,
            "package": PACKAGE,
            "version": version,
            "path": f"{PACKAGE_DIR}/{name}",
            "sha256": hashlib.sha256(data).hexdigest(),
            **({"substitute": why} if why else {}),
        }
    return index, files, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.run.conformance.modelconfigs", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--from", dest="site", required=True, type=Path, help="site-packages holding aiconfigurator_core")
    ap.add_argument("--recipes", type=Path, default=Path("recipes"))
    args = ap.parse_args(argv)
    index, files, missing = record(args.site, catalogue_models(args.recipes))
    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (CONFIG_DIR / name).write_bytes(data)
    (CONFIG_DIR / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(index['models'])} model configs to {CONFIG_DIR}")
    for model in missing:
        print(f"  {model}: no config.json in {PACKAGE} (the conformance driver falls back to its named preset)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
