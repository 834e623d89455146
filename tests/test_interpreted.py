"""The release facts interpreted-values-known holds recipes to are the ones the installed release's
parsers carry (router mode choices, vLLM's registered KV connectors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.checks.interpreted import ROUTER_MODES, VLLM_CONNECTORS

ENVS = Path.home() / ".cache" / "recipe-harness" / "conformance"
SITE = "lib/python3.11/site-packages"


def _site(release: str, engine: str) -> Path | None:
    for name in (f"{release}-{engine}", f"{release}-dynamo"):
        path = ENVS / name / SITE
        if path.is_dir():
            return path
    return None


@pytest.mark.parametrize("release", sorted(ROUTER_MODES))
def test_router_modes_are_the_frontends_choices(release):
    site = _site(release, "vllm")
    if site is None:
        pytest.skip(f"no conformance env for Dynamo {release} (recipe-harness conformance setup)")
    text = (site / "dynamo/common/configuration/groups/router_args.py").read_text()
    start = text.index('flag_name="--router-mode"')
    choices = text[text.index("choices=[", start) : text.index("]", text.index("choices=[", start))]
    assert tuple(re.findall(r'"([^"]+)"', choices)) == ROUTER_MODES[release]


@pytest.mark.parametrize("release", sorted(VLLM_CONNECTORS))
def test_vllm_connectors_are_the_factorys_registry(release):
    site = _site(release, "vllm")
    factory = site / "vllm/distributed/kv_transfer/kv_connector/factory.py" if site else None
    if factory is None or not factory.is_file():
        pytest.skip(f"no vLLM conformance env for Dynamo {release} (recipe-harness conformance setup)")
    registered = re.findall(r'register_connector\(\s*"([^"]+)"', factory.read_text())
    assert sorted(registered) == sorted(VLLM_CONNECTORS[release])
