"""The static flag reader: it reproduces the real type functions' recorded probes and reads argv like the release's parsers."""

from __future__ import annotations

import pytest

from harness.recipe.commandline import Token
from harness.recipe.findings import Loc
from harness.recipe.flagvalues import OPAQUE, load_surface, type_function

RELEASE = "1.6.1"


def surface():
    s = load_surface(RELEASE)
    assert s is not None, (
        "harness/recipe/data/flag-surface/1.6.1.json is missing: python -m harness.run.conformance.surface"
    )
    return s


def argv(*words: str) -> list[Token]:
    return [Token(w, Loc("deploy.yaml", n + 1, 1)) for n, w in enumerate(words)]


def test_the_surface_is_recorded_from_the_real_parsers_with_provenance():
    s = surface()
    assert set(s.entry_points) == {"vllm", "sglang", "trtllm", "frontend"}
    for name, src in s.sources.items():
        assert src["versions"]["ai-dynamo"] == RELEASE and src["base_parse"] == "ok", name
    assert s.sources["vllm"]["versions"]["vllm"] == "0.31.0"
    assert s.sources["sglang"]["versions"]["sglang"] == "0.5.21"
    vllm = s.entry_point("dynamo.vllm")
    # Dynamo's own parser forbids abbreviations, vLLM's FlexibleArgumentParser allows them (and is the last stage)
    assert [(st.allow_abbrev, st.mode) for st in vllm.stages] == [(False, "known"), (True, "known"), (True, "final")]
    assert vllm.rejects_unknown and s.entry_point("dynamo.trtllm").dotted_prefixes == ("--trtllm.",)


def test_every_modelled_type_reproduces_the_real_type_functions_probes():
    checked = 0
    for ep in surface().entry_points.values():
        for name, probes in ep.probes.items():
            convert = type_function(name)
            if convert is None:
                continue  # not modelled: the reader keeps such values opaque and never judges them
            for text, outcome in probes:
                try:
                    got = {"value": convert(text)}
                except ValueError:
                    got = None
                if "error" in outcome:
                    assert got is None, (ep.name, name, text, got)
                else:
                    assert got == outcome, (ep.name, name, text, got, outcome)
                checked += 1
    assert checked > 300


@pytest.mark.parametrize(
    ("entry", "words", "dest", "value"),
    [
        ("vllm", ("--max-model-len", "16K"), "max_model_len", 16384),
        ("vllm", ("--max-model-len", "16k"), "max_model_len", 16000),
        ("vllm", ("--max-model-len", "auto"), "max_model_len", -1),
        ("vllm", ("--max_model_len=8192",), "max_model_len", 8192),  # FlexibleArgumentParser: _ is -
        ("vllm", ("-tp", "4"), "tensor_parallel_size", 4),
        ("vllm", ("--tensor-parallel", "4"), "tensor_parallel_size", 4),  # vLLM's parser allows abbreviations
        ("vllm", ("--enable-expert-parallel",), "enable_expert_parallel", True),
        ("vllm", ("--no-enable-expert-parallel",), "enable_expert_parallel", False),
        ("vllm", ("--gpu-memory-utilization", "0.85"), "gpu_memory_utilization", 0.85),
        ("sglang", ("--tp", "8"), "tp_size", 8),  # a unique prefix of --tp-size
        ("sglang", ("--context-length", "32k"), "context_length", 32000),
        ("sglang", ("--enable-dp-attention",), "enable_dp_attention", True),
    ],
)
def test_values_are_read_with_the_release_types_prefixes_and_aliases(entry, words, dest, value):
    read = surface().entry_point(entry).read(argv("--model", "m", *words) if entry == "vllm" else argv(*words))
    got = read.get(dest)
    assert got is not None and got.value == value and got.error is None
    assert read.trusted


def test_bad_values_unknown_flags_and_ambiguous_prefixes_are_named_with_the_parser_message():
    vllm = surface().entry_point("vllm")
    read = vllm.read(argv("--max-model-len", "16Q", "--kv-cache-dtype", "fp9", "--tensor-paralel-size", "2"))
    errors = {v.option.dest: v.error for v in read.errors}
    assert "invalid human_readable_int_or_auto value: '16Q'" in errors["max_model_len"]
    assert "invalid choice: 'fp9'" in errors["kv_cache_dtype"]
    [unknown] = read.unknown
    assert unknown.flag == "--tensor-paralel-size" and unknown.suggestions[0] == "--tensor-parallel-size"
    assert not read.trusted
    # Dynamo's own vLLM flags allow no abbreviation: `--disaggregation-mod` is unknown to every stage
    assert [u.flag for u in vllm.read(argv("--disaggregation-mod", "prefill")).unknown] == ["--disaggregation-mod"]
    amb = surface().entry_point("sglang").read(argv("--ep-", "2")).unknown
    assert amb and len(amb[0].ambiguous) > 1


def test_json_valued_options_are_kept_opaque_or_parsed_and_dotted_keys_are_accepted():
    vllm = surface().entry_point("vllm")
    read = vllm.read(argv("--speculative-config", '{"method": "eagle3"}', "--compilation-config.mode", "3"))
    assert read.get("speculative_config").value == {"method": "eagle3"}
    assert read.get("compilation_config").value is OPAQUE and read.trusted
    trt = surface().entry_point("trtllm").read(argv("--trtllm.kv_cache_config.free_gpu_memory_fraction", "0.5"))
    assert trt.unknown == []


def test_model_configs_are_recorded_byte_for_byte_with_provenance_for_every_catalogue_model():
    import hashlib
    from pathlib import Path

    import yaml

    from harness.recipe.model_configs import CONFIG_DIR, model_config, recorded_models

    repo = Path(__file__).resolve().parents[1]
    catalogue = {
        (yaml.safe_load(p.read_text()) or {}).get("model", {}).get("id")
        for p in (repo / "recipes").glob("*/*/*/recipe.yaml")
    }
    assert catalogue <= set(recorded_models())
    for model in recorded_models():
        found = model_config(model)
        data = (CONFIG_DIR / found.provenance["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == found.provenance["sha256"]
        assert found.provenance["package"] == "aiconfigurator-core" and found.provenance["version"] == "0.12.0"
    llama = model_config("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic")
    assert llama.config["num_attention_heads"] == 64 and "same architecture" in llama.provenance["substitute"]
