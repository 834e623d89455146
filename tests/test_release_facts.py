"""The facts the release-truth checks rest on: flag pairs recorded from the installed parsers,
download patterns as huggingface_hub applies them, compute capabilities as NVIDIA lists them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.analysis.downloads import Download, _cli_call
from harness.recipe import catalogue
from harness.recipe.commandline import Token
from harness.recipe.findings import Loc
from harness.recipe.flag_pairs import data_file, flag_pairs
from harness.run.conformance import envs

RELEASE = "1.4.0"
VLLM_ENV = envs.find_env(RELEASE, "vllm")
needs_vllm_env = pytest.mark.skipif(
    VLLM_ENV is None, reason=f"no conformance env: run `{envs.setup_command(RELEASE, 'vllm')}`"
)


def _words(*values: str) -> list[Token]:
    return [Token(v, Loc(Path("job.yaml"), i + 1)) for i, v in enumerate(values)]


def test_vllm_prefill_pair_is_recorded_and_verified():
    pair = next(p for p in flag_pairs(RELEASE) if p.engine == "vllm" and p.when == "--disaggregation-mode")
    assert (pair.when_value, pair.requires, pair.accepted_values) == ("prefill", "--kv-transfer-config", None)
    assert "dynamo/vllm/args.py:update_dynamo_config_with_engine" in pair.source


def test_unverified_pairs_are_not_applied():
    data = json.loads(data_file(RELEASE).read_text())
    unverified = [(p["when"], p["requires"]) for p in data["pairs"] if not p["verified"]]
    applied = {(p.when, p.requires) for p in flag_pairs(RELEASE)}
    assert unverified and not applied & set(unverified)


@needs_vllm_env
def test_recorded_sources_are_the_installed_release():
    """The pairs were derived from the files this env installs (re-derive when this fails)."""
    data = json.loads(data_file(RELEASE).read_text())
    site = next(VLLM_ENV.path.glob("lib/python*/site-packages"))
    for rel, digest in data["sources"]["vllm"]["files"].items():
        assert hashlib.sha256((site / rel).read_bytes()).hexdigest() == digest, rel


@needs_vllm_env
def test_candidates_come_from_the_parser_source():
    from harness.run.conformance.pairs import candidates

    found, _ = candidates("vllm", next(VLLM_ENV.path.glob("lib/python*/site-packages")))
    assert any(c.when == "--disaggregation-mode" and c.requires == "--kv-transfer-config" for c in found)


def test_hf_download_patterns_follow_filter_repo_objects():
    call = _cli_call(
        None, _words("hf", "download", "openai/gpt-oss-120b", "--revision", "abc", "--exclude", "original/*", "metal/")
    )
    assert call.repo.value == "openai/gpt-oss-120b" and call.revision.value == "abc"
    assert [p.value for p in call.exclude] == ["original/*", "metal/"]
    assert not call.fetches("original/model.safetensors") and not call.fetches("metal/model.bin")
    assert call.fetches("model-00001-of-00014.safetensors")
    include = Download(None, None, None, _words("hf")[0], include=_words("*.safetensors"))
    assert include.fetches("original/model.safetensors")  # fnmatch's * crosses "/", as in huggingface_hub
    assert not include.fetches("metal/model.bin")


def test_compute_capabilities_read_as_versions():
    gpus = catalogue.gpus()
    assert gpus["A100"].compute_capability == (8, 0)
    assert gpus["GB200"].compute_capability == (10, 0) > gpus["H200"].compute_capability == (9, 0)
