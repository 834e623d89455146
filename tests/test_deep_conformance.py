"""The conformance tier builds engine configs with the real model configs, on catalogue copies (needs the 1.6.1 envs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run.conformance import client, envs

from .conftest import DSR1_SGL, QWEN_AGG, copy_catalogue, edit, exec_form_as_sh_c, recipe

REPO = Path(__file__).resolve().parents[1]
LLAMA_AGG = "llama-3-70b/vllm/agg"
WIDE_EP = "deepseek-r1/trtllm/disagg-wide-ep"

needs_vllm = pytest.mark.skipif(
    envs.find_env("1.6.1", "vllm") is None,
    reason="no 1.6.1 vLLM conformance env: run `recipe-harness conformance setup --release 1.6.1 --engine vllm`",
)
needs_sglang = pytest.mark.skipif(
    envs.find_env("1.6.1", "sglang") is None,
    reason="no 1.6.1 SGLang conformance env: run `recipe-harness conformance setup --release 1.6.1 --engine sglang`",
)


def line_of(path: Path, needle: str, after: str = "") -> int:
    lines = path.read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if after in t) if after else 0
    return next(i + 1 for i in range(start, len(lines)) if needle in lines[i])


@needs_vllm
def test_wideep_on_rc29_and_tp3_for_llama_70b_fail_pytest_m_conformance_with_the_engines_message(tmp_path):
    root = copy_catalogue(tmp_path)
    wide = edit(root, WIDE_EP, "      backend: CUTEDSL\n", "      backend: WIDEEP\n")
    llama = edit(
        root,
        LLAMA_AGG,
        '- --tensor-parallel-size\n                - "4"',
        '- --tensor-parallel-size\n                - "3"',
    )
    qwen = edit(
        root, QWEN_AGG, '- --max-model-len\n                - "16384"', '- --max-model-len\n                - "16K"'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "conformance",
            "--recipes-dir",
            str(root),
        ]
        + [a for rid in (WIDE_EP, LLAMA_AGG, QWEN_AGG) for a in ("--recipe", rid)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    # TRT-LLM 1.3.0rc29's MoeConfig.backend Literal has no WIDEEP: pydantic's message at the YAML key's line
    wide_line = line_of(wide, "backend: WIDEEP")
    assert re.search(
        rf"disagg-wide-ep/deploy.yaml:{wide_line}:\d+: \[conformance\] --extra-engine-args /config/engine.yaml: "
        r"moe_config.backend: Input should be 'AUTO', 'CUTLASS', 'CUTEDSL'",
        out,
    ), out[-3000:]
    # vLLM's ParallelConfig/ModelConfig check, raised while building the engine config, at the flag's line
    tp_line = line_of(llama, "--tensor-parallel-size")
    assert re.search(
        rf"llama-3-70b/vllm/agg/deploy.yaml:{tp_line}:\d+: \[conformance\] --tensor-parallel-size: ValidationError: "
        r".*Total number of attention heads \(64\) must be divisible by tensor parallel size \(3\)",
        out,
        re.S,
    ), out[-3000:]
    failed = sorted(ln.split("conformance::")[1].split(" ")[0] for ln in out.splitlines() if ln.startswith("FAILED "))
    assert failed == [f"{WIDE_EP}::Decode", f"{LLAMA_AGG}::Worker"], failed
    # `--max-model-len 16K` (agg-round-robin) passes: the engine config is built with max_model_len 16384,
    # and the static reader's 16384 is the parser's (the cross-check would fail the item otherwise)
    assert "16K" in qwen.read_text() and "2 failed, 5 passed" in out.splitlines()[-1], out.splitlines()[-1]


@needs_sglang
def test_sglang_tp_prefix_is_tp_8_for_the_real_parser_and_the_static_reader_agrees(tmp_path):
    root = copy_catalogue(tmp_path)
    exec_form_as_sh_c(root, DSR1_SGL)
    outcomes = client.check_recipes([recipe(root, DSR1_SGL)])
    decode = [o for o in outcomes if "--tp" in [t.value for t in o.job.argv] and "decode" in o.job.service.lower()]
    assert decode, [o.job.service for o in outcomes]
    for o in decode:
        assert o.findings == [], "\n".join(f.format() for f in o.findings)
        assert o.result.summary["tp_size"] == 8
        # the static reader resolved `--tp` to SGLang's tp_size, and the parser's namespace holds the same 8
        values = o.result.parsed["values"]
        assert values[next(k for k in values if k.endswith(":tp_size"))] == 8
        assert any("ModelConfig.from_server_args" in n for n in o.job.notes)
