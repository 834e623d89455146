"""Release envs for ai-dynamo >= 1.5 (no aisimulate), and the sim's choice of the Dynamo that rehearses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.run.conformance import envs
from harness.run.sim import runtime

from .conftest import META_161

META_140 = """\
Requires-Dist: ai-dynamo-runtime==1.4.0
Requires-Dist: transformers>=4.56.0
Requires-Dist: vllm[flashinfer]==0.26.0; extra == 'vllm'
"""


def test_a_release_that_requires_aisimulate_installs_without_it():
    plan = envs.install_plan("1.6.1", "vllm", metadata=META_161)
    # ai-dynamo itself goes in with --no-deps, after its other base requirements and the engine resolved
    assert plan.no_deps == ["ai-dynamo==1.6.1"]
    assert plan.resolved == ["ai-dynamo-runtime==1.6.1", "aiohttp<4.0,>=3.14.3", "transformers>=4.56.0", "vllm==0.31.0"]
    assert [envs.requirement_name(r) for r in plan.left_out] == ["aisimulate"]
    assert "fails offline" in next(iter(plan.left_out.values()))
    assert plan.all[-1] == "ai-dynamo==1.6.1 (--no-deps)"
    # extras never leak into the base requirements
    assert not any("tomli" in r or "sglang" in r for r in plan.resolved)


def test_a_release_without_it_installs_as_before_and_engines_come_from_the_extras():
    plan = envs.install_plan("1.4.0", "vllm", metadata=META_140)
    assert plan.resolved == ["ai-dynamo==1.4.0", "vllm==0.26.0"] and not plan.no_deps and not plan.left_out
    assert envs.install_plan("1.4.0", "dynamo", metadata=META_140).resolved == ["ai-dynamo==1.4.0"]
    assert envs.engine_pin(META_161, "trtllm") == "1.3.0rc29"
    assert envs.engine_pin(META_161, "sglang") == "0.5.21"
    assert envs.requirement_name("Sentence_Piece.X>=1") == "sentence-piece-x"


def test_the_install_note_names_what_was_left_out(tmp_path):
    marker = {
        "release": "1.6.1",
        "engine": "sglang",
        "installed": {"ai-dynamo": "1.6.1", "sglang": "0.5.21"},
        "leftOut": {"aisimulate==0.13.0": "why"},
        "excluded": ["aisimulate", "cuda-tile"],
    }
    env = envs.Env("1.6.1", "sglang", tmp_path, marker)
    note = envs.install_note(env)
    assert note.startswith("ai-dynamo 1.6.1 (installed --no-deps, without aisimulate)")
    assert "sglang 0.5.21 resolved without cuda-tile" in note
    assert (
        envs.install_note(envs.Env("1.4.0", "vllm", tmp_path, {"installed": {"ai-dynamo": "1.4.0"}}))
        == "ai-dynamo 1.4.0"
    )


def _marker(root: Path, name: str, **extra) -> Path:
    path = root / "conformance" / name
    (path / "bin").mkdir(parents=True)
    release, kind = name.rsplit("-", 1)
    (path / envs.MARKER).write_text(json.dumps({"schema": 1, "release": release, "engine": kind, **extra}))
    return path


def test_the_sim_rehearses_on_its_own_release_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_HARNESS_CACHE", str(tmp_path))
    # a 1.4.0 recipe runs on the 1.4.2 of the [sim] extra: same release line
    same = runtime.resolve("1.4.0", here="1.4.2", build=False)
    assert same.python == sys.executable and same.release == "1.4.2" and "same release line" in same.note
    # a 1.6.1 recipe needs a managed env; without one and without building, the error names the command
    with pytest.raises(runtime.RuntimeError_, match="conformance setup --release 1.6.1"):
        runtime.resolve("1.6.1", here="1.4.2", build=False)
    # an engine env of the release holds its ai-dynamo; an ai-dynamo-only env is preferred when present
    engine = _marker(tmp_path, "1.6.1-sglang", installed={"ai-dynamo": "1.6.1", "sglang": "0.5.21"})
    assert runtime.resolve("1.6.1", here="1.4.2", build=False).source == str(engine)
    path = _marker(tmp_path, "1.6.1-dynamo", installed={"ai-dynamo": "1.6.1"}, leftOut={"aisimulate==0.13.0": "x"})
    other = runtime.resolve("1.6.1", here="1.4.2", build=False)
    assert other.python == str(path / "bin" / "python") and other.release == "1.6.1"
    assert other.to_dict()["note"] == "ai-dynamo 1.6.1 (installed --no-deps, without aisimulate)"
    header = runtime.header_lines(["1.4.0", "1.6.1"], here="1.4.2")
    assert "sim rehearses on Dynamo 1.4.2 from this environment" in header[0]
    line = next(h for h in header if "Dynamo 1.6.1:" in h)
    assert "1.6.1-dynamo" in line and "1.6.1-sglang (sglang 0.5.21)" in line
    assert "\n".join(header).count("(installed --no-deps, without aisimulate)") == 1, "said once, not per env"
