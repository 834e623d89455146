"""Engine flags read as the release reads them, on copies of the shipped catalogue: static checks, topology and sizing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.sizing import worker_sizings
from harness.analysis.topology import recipe_topologies
from harness.checks import all_checks
from harness.run.static import context_for, make_selection, run_static

from .conftest import CATALOGUE, DSR1_SGL, QWEN_AGG, copy_catalogue, edit, exec_form_as_sh_c, recipe

pytestmark = pytest.mark.skipif(not CATALOGUE.is_dir(), reason="no shipped catalogue under recipes/")


def static_findings(root: Path, rid: str):
    selection = make_selection(root, [rid])
    report = run_static(selection, context_for(selection), all_checks())
    return [f for f in report.findings if f.recipe == rid]


def test_max_model_len_16k_passes_every_static_check_and_sizing_uses_16384(tmp_path):
    root = copy_catalogue(tmp_path)
    edit(root, QWEN_AGG, '- --max-model-len\n                - "16384"', '- --max-model-len\n                - "16K"')
    errors = [f for f in static_findings(root, QWEN_AGG) if f.severity.value == "error"]
    assert errors == [], "\n".join(f.format() for f in errors)
    r = recipe(root, QWEN_AGG)
    [topo] = recipe_topologies(r).values()
    assert topo.max_seq_len == 16384 and topo.get("max_seq_len").raw == "16K"
    [(_, sizing)] = worker_sizings(r, "H200")
    assert sizing.kv_tokens == 16384 and sizing.kv_tokens_source == "--max-model-len 16384"


def test_sglang_tp_prefix_in_an_exec_shell_line_counts_as_tp_8(tmp_path):
    root = copy_catalogue(tmp_path)
    # the decode worker's exec-form command becomes an `sh -c` script with `exec python3 -m dynamo.sglang ... --tp 8`
    exec_form_as_sh_c(root, DSR1_SGL)
    r = recipe(root, DSR1_SGL)
    decode = [t for t in recipe_topologies(r).values() if t.role == "decode"]
    assert decode and all(t.tp == 8 and t.get("tp").source == "--tp" for t in decode)
    ids = {f.check_id for f in static_findings(root, DSR1_SGL) if f.severity.value == "error"}
    assert "gpu-count-matches-topology" not in ids and "engine-flags-known" not in ids


def test_a_misspelt_parallelism_flag_is_named_and_no_gpu_count_rule_fires_on_it(tmp_path):
    root = copy_catalogue(tmp_path)
    edit(root, QWEN_AGG, "- --tensor-parallel-size\n", "- --tensor-paralel-size\n")
    found = static_findings(root, QWEN_AGG)
    [flag] = [f for f in found if f.check_id == "engine-flags-known"]
    assert "rejects --tensor-paralel-size: unrecognized arguments" in flag.message
    assert flag.hint == "did you mean --tensor-parallel-size?"
    assert not [f for f in found if f.check_id == "gpu-count-matches-topology"]


def test_a_value_the_parser_rejects_is_reported_with_its_message_and_an_unexpanded_variable_is_not(tmp_path):
    root = copy_catalogue(tmp_path)
    edit(root, QWEN_AGG, '- --max-model-len\n                - "16384"', '- --max-model-len\n                - "16Q"')
    [bad] = [f for f in static_findings(root, QWEN_AGG) if f.check_id == "engine-flags-known"]
    assert "invalid human_readable_int_or_auto value: '16Q'" in bad.message
    edit(root, QWEN_AGG, '- "16Q"', '- "$(MAX_LEN)"')
    assert not [f for f in static_findings(root, QWEN_AGG) if f.check_id == "engine-flags-known"]
