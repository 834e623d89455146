"""Checks no stricter than their source, where the case needs the catalogue's metadata (a fixture
pair under tests/fixtures/pairs/ is a foreign tree without it): a catalogue copy with one edit."""

from __future__ import annotations

from .conftest import check_on_copy as run
from .conftest import needs_catalogue

pytestmark = needs_catalogue

DEPLOY = "qwen3-32b/vllm/agg-round-robin/deploy.yaml"
RECIPE = "qwen3-32b/vllm/agg-round-robin"  # recipe.yaml model.servedName: Qwen/Qwen3-32B
SERVED_FLAG = '                - --served-model-name\n                - "$(SERVED_MODEL_NAME)"\n'
MODEL_ARG = '                - "$(MODEL_PATH)"\n'


def served(tmp_path, *edits):
    return [f.message for f in run(tmp_path, "served-name-consistent", [(DEPLOY, *e) for e in edits], recipe=RECIPE)]


def test_worker_without_served_name_serves_its_model_value(tmp_path):
    # dynamo/vllm/main.py: served_model_name unset -> config.model, which here is the served name
    assert served(tmp_path, (SERVED_FLAG, ""), (MODEL_ARG, "                - Qwen/Qwen3-32B\n")) == []


def test_worker_without_served_name_serving_a_path_fails(tmp_path):
    found = served(tmp_path, (SERVED_FLAG, ""), (MODEL_ARG, "                - /model-cache/qwen3-32b\n"))
    assert found and "has no --served-model-name" in found[0] and "/model-cache/qwen3-32b" in found[0]


def test_served_name_among_a_list_of_names(tmp_path):
    # split_served_model_names: the first name is primary, the rest are registered as aliases
    assert served(tmp_path, ('"$(SERVED_MODEL_NAME)"', '"qwen3-32b,Qwen/Qwen3-32B"')) == []


def test_served_name_in_no_name_of_the_list_fails(tmp_path):
    found = served(tmp_path, ('"$(SERVED_MODEL_NAME)"', '"qwen3-32b,qwen"'))
    assert found and "model.servedName is 'Qwen/Qwen3-32B'" in found[0]
