"""Values Dynamo or the engine interprets at start-up, held to what the recipe's release knows, where
neither the CRD schema nor an argument parser rejects them first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from harness.checks import CheckContext, check
from harness.recipe.findings import Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.service import ROUTER_MODE_ENV

# `python -m dynamo.frontend --router-mode` choices, per ai-dynamo release (read from the installed
# wheels: dynamo/common/configuration/groups/router_args.py, RouterArgGroup.add_arguments). argparse
# checks choices only for values given on the command line, never for a default taken from the
# environment (`env_or_default`), so DYN_ROUTER_MODE=<anything> parses. 1.4.0 frontend/main.py then
# falls through its if/elif chain to RouterMode.RoundRobin; 1.6.1 router_args.py
# `build_router_config` raises "unknown router mode". A flag value is left to argparse
# (`pytest -m conformance`).
ROUTER_MODES: dict[str, tuple[str, ...]] = {
    "1.4.0": ("round-robin", "random", "power-of-two", "kv", "direct", "least-loaded", "device-aware-weighted"),
    "1.6.1": ("round-robin", "random", "power-of-two", "kv", "direct", "least-loaded", "device-aware-weighted"),
}

# vLLM's built-in KV connectors (`KVConnectorFactory.register_connector` calls in
# vllm/distributed/kv_transfer/kv_connector/factory.py) of the vLLM each release pins: vLLM 0.26.0
# (ai-dynamo 1.4.0) and 0.31.0 (ai-dynamo 1.6.1). `get_connector_class` raises "Unsupported connector
# type" for any other name unless `kv_connector_module_path` names the module that defines it. The
# parser does not check the name: `--kv-transfer-config` is a JSON string until the engine starts.
_VLLM_0_26 = (
    "ExampleConnector",
    "ExampleHiddenStatesConnector",
    "LMCacheConnectorV1",
    "LMCacheMPConnector",
    "NixlConnector",
    "NixlPullConnector",
    "NixlPushConnector",
    "MultiConnector",
    "MoRIIOConnector",
    "OffloadingConnector",
    "DecodeBenchConnector",
    "MooncakeConnector",
    "MooncakeStoreConnector",
    "FlexKVConnectorV1",
    "SimpleCPUOffloadConnector",
    "HF3FSKVConnector",
)
VLLM_CONNECTORS: dict[str, tuple[str, ...]] = {
    "1.4.0": _VLLM_0_26,
    "1.6.1": _VLLM_0_26 + ("HiSparseConnector",),
}
KV_TRANSFER_FLAG = "--kv-transfer-config"


def _connectors(cfg: Any) -> Iterator[str]:
    """The built-in connector names a KV transfer config asks vLLM's factory for: the top-level one
    and MultiConnector's children, each unless it names its own module."""
    if not isinstance(cfg, dict) or cfg.get("kv_connector_module_path"):
        return
    name = cfg.get("kv_connector")
    if isinstance(name, str):
        yield name
    if name == "MultiConnector":
        extra = cfg.get("kv_connector_extra_config")
        for child in (extra.get("connectors") if isinstance(extra, dict) else None) or []:
            yield from _connectors(child)


@check("interpreted-values-known")
def interpreted_values_known(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Values that Dynamo or the engine interprets at start-up are ones the recipe's release knows,
    where no earlier tier rejects them (the DGD `type` of v1beta1 components is an enum in the CRD,
    so `schema-valid` reports it; flag values with argparse choices are checked by the parser in
    `pytest -m conformance`):

    - the frontend's router mode set through `DYN_ROUTER_MODE`: argparse does not check an
      environment default against `--router-mode`'s choices, and Dynamo 1.4.0 then routes
      round-robin without a word (1.6.1 refuses to start). A `kv-router` recipe with
      `DYN_ROUTER_MODE=KV` benchmarks round-robin.
    - vLLM's `kv_connector` in `--kv-transfer-config` (and MultiConnector's children) without a
      `kv_connector_module_path`: vLLM raises "Unsupported connector type" when the engine starts,
      after the image pull and weight load.

    Judged only for releases whose parsers were read (ROUTER_MODES, VLLM_CONNECTORS); the release
    is the recipe's Dynamo image tag. A connector registered by a vLLM plugin baked into a custom
    image would need `kv_connector_module_path` to be found here.

    Fails: `env: [{name: DYN_ROUTER_MODE, value: kv-aware}]` on a 1.4.0 frontend;
    `--kv-transfer-config '{"kv_connector":"NIXLConnector","kv_role":"kv_both"}'` on vLLM 0.26.0.
    Fix: `kv`; `NixlConnector`.

    Source: ai-dynamo 1.4.0 and 1.6.1 dynamo/common/configuration/groups/router_args.py
    (`--router-mode` choices, env DYN_ROUTER_MODE), dynamo/common/configuration/utils.py
    (`add_argument` -> `env_or_default`), 1.4.0 dynamo/frontend/main.py (router mode if/elif, else
    RoundRobin), 1.6.1 router_args.py `build_router_config` (ValueError); vLLM 0.26.0 / 0.31.0
    vllm/distributed/kv_transfer/kv_connector/factory.py (`register_connector`, `get_connector_class`).
    """
    dep = recipe.deployment
    if dep is None:
        return
    release = recipe.release
    modes = ROUTER_MODES.get(release)
    if modes is not None:
        for fe in dep.frontends:
            mode = fe.router_mode
            if mode.source == ROUTER_MODE_ENV and mode.value not in modes:
                at = mode.loc or fe.loc
                yield problem(
                    at,
                    f"frontend {fe.name}: {ROUTER_MODE_ENV}={mode.value!r} is not a router mode Dynamo {release} "
                    f"knows ({', '.join(modes)}); argparse does not check the environment, so the frontend "
                    + ("routes round-robin" if release == "1.4.0" else "fails at start"),
                    f"use one of: {', '.join(modes)}",
                )
    known = VLLM_CONNECTORS.get(release)
    if known is None:
        return
    for svc in dep.workers:
        if svc.engine != "vllm":
            continue
        found = svc.flags.get(KV_TRANSFER_FLAG)
        if found is None:
            continue
        try:
            cfg = json.loads(found.value.value)
        except ValueError:
            continue  # `$(VAR)` from a ConfigMap, or not JSON: the parser reports malformed JSON
        for name in _connectors(cfg):
            if name not in known:
                close = [k for k in known if k.lower() == name.lower()]
                yield problem(
                    found.value.loc,
                    f"worker {svc.name}: kv_connector {name!r} is not a connector of the vLLM that "
                    f'Dynamo {release} ships; vLLM raises "Unsupported connector type" at start',
                    f"use {close[0]!r}"
                    if close
                    else f"use one of {', '.join(known)}, "
                    "or set kv_connector_module_path to the module that defines it",
                )
