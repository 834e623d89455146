"""AIPerf arguments come from the recipe's perf Job, scaled; its export parses into a PerfResult that refuses bad runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.benchmark import PerfConfigError, find_invocation, parse_options
from harness.recipe.commandline import Token, script_commands
from harness.recipe.findings import Loc
from harness.run.perf import Scale, parse_profile_export, scaled_args

AIPERF = Path(__file__).parent.parent / "fixtures" / "sim" / "aiperf"
CI = Scale(max_concurrency=4, request_count=50, max_input_tokens=512, max_output_tokens=64)


def scaled(inv, scale=CI):
    return scaled_args(
        inv,
        model=inv.model or "m",
        url="http://127.0.0.1:9",
        tokenizer=Path("/tok"),
        artifact_dir=Path("/out"),
        scale=scale,
    )


def value_after(args, flag):
    return args[args.index(flag) + 1]


def test_shell_script_invocation_resolves_container_env(fixture_recipe):
    inv = find_invocation(fixture_recipe("qwen3-32b/vllm/agg-round-robin"))
    assert inv.model == "Qwen/Qwen3-32B"
    assert inv.get("--concurrency") == "128"  # from the container env $CONCURRENCY
    assert inv.get("--url") == "http://qwen3-32b-agg-rr-frontend:8000"
    assert inv.extra_inputs == {"ignore_eos": "true", "min_tokens": "256", "max_tokens": "256"}
    assert inv.where == "qwen3-32b/vllm/agg-round-robin/perf.yaml:22"


def test_script_variables_and_aliases_are_resolved(fixture_recipe):
    inv = find_invocation(fixture_recipe("deepseek-r1/sglang/disagg-8gpu"))
    assert inv.get("--synthetic-input-tokens-mean") == "4096"  # --isl $ISL with ISL=4096 set in the script
    assert inv.get("--output-tokens-mean") == "1024"
    assert inv.extra_inputs == {"ignore_eos": "true", "min_tokens": "1024"}  # JSON form


def test_exec_form_invocation(fixture_recipe):
    inv = find_invocation(fixture_recipe("tiny/vllm/agg-two-workers"))
    assert (inv.model, inv.get("--concurrency"), inv.get("--request-count")) == ("tiny-model", "2", "20")


def test_scaling_keeps_the_workload_shape_and_lists_changes(fixture_recipe):
    plan = scaled(find_invocation(fixture_recipe("qwen3-32b/vllm/agg-round-robin")))
    args = plan.args
    assert args[0] == "profile" and "--streaming" in args
    assert value_after(args, "--endpoint-type") == "chat"
    assert value_after(args, "--random-seed") == "100"
    assert value_after(args, "--concurrency") == "4"
    assert value_after(args, "--request-count") == "50"
    assert value_after(args, "--synthetic-input-tokens-mean") == "512"
    assert value_after(args, "--output-tokens-mean") == "64"
    assert "min_tokens:64" in args and "max_tokens:64" in args and "ignore_eos:true" in args
    assert value_after(args, "--warmup-request-count") == "4"
    assert value_after(args, "--tokenizer") == "/tok"  # never the Job's snapshot path
    assert "--use-server-token-count" in args and value_after(args, "--ui-type") == "none"
    assert (plan.expected_requests, plan.output_tokens) == (50, 64)
    assert "--concurrency 128 -> 4 (sim profile)" in plan.changes


def test_small_jobs_are_not_scaled_up(fixture_recipe):
    plan = scaled(find_invocation(fixture_recipe("tiny/vllm/agg-two-workers")))
    assert value_after(plan.args, "--concurrency") == "2"
    assert value_after(plan.args, "--request-count") == "20"
    assert plan.changes == []


def test_unknown_job_options_are_dropped_and_listed():
    inv = parse_options(["--model", "m", "--request-rate", "10", "--verbose", "--concurrency", "8"])
    plan = scaled(inv)
    assert "--request-rate" not in plan.args
    assert "--request-rate 10 dropped (not part of the sim workload)" in plan.changes


def test_script_commands_split_on_separators_and_continuations():
    script = "set -e\nA=1 && echo $A\naiperf profile \\\n  --model x # comment\necho done"
    commands = script_commands(script, lambda w: Token(w.value, Loc(Path("perf.yaml"))))
    assert [[t.value for t in c.words] for c in commands] == [
        ["set", "-e"],
        ["A=1"],
        ["echo", "$A"],
        ["aiperf", "profile", "--model", "x"],
        ["echo", "done"],
    ]


def test_perf_job_without_aiperf_is_a_config_error(broken_recipe, tmp_path):
    recipe = broken_recipe("tiny/vllm/served-name-conflict")
    assert find_invocation(recipe).model == "tiny-model"
    with pytest.raises(PerfConfigError):
        find_invocation(type(recipe)(tmp_path, tmp_path))


def test_complete_export_is_a_valid_measurement():
    result = parse_profile_export(AIPERF / "complete")
    assert result.valid, result.invalid_reason
    assert (result.expected_requests, result.completed_requests, result.error_count) == (50, 50, 0)
    assert result.target_output_tokens == 64  # from input_config: ignore_eos + osl mean
    assert result.value("request_throughput.avg") == pytest.approx(8.2573, rel=1e-3)
    assert result.value("time_to_first_token.p99") == pytest.approx(79.169, rel=1e-3)
    assert result.metrics["inter_token_latency"].unit == "ms"
    assert result.aiperf_version == "0.13.0"


def test_the_json_file_itself_can_be_given():
    assert parse_profile_export(AIPERF / "complete" / "profile_export_aiperf.json").valid


def test_any_request_error_invalidates_the_run():
    result = parse_profile_export(AIPERF / "partial-errors")
    assert not result.valid
    assert result.error_count == 2
    assert result.invalid_reason == "2 request(s) failed (first: HTTP 503: no worker available (x2))"


def test_a_cancelled_run_is_not_a_measurement():
    result = parse_profile_export(AIPERF / "incomplete")
    assert result.invalid_reason == "the run was cancelled after 30 of 50 requests"


def test_all_requests_failed_reads_the_reason_from_the_records():
    result = parse_profile_export(AIPERF / "all-errors", expected_requests=6)
    assert not result.valid
    assert result.error_count == 6
    assert result.invalid_reason == "AIPerf wrote no profile_export_aiperf.json: HTTP 404: Model not found (x6)"


def test_more_requests_expected_than_completed_is_invalid():
    result = parse_profile_export(AIPERF / "complete", expected_requests=80)
    assert result.invalid_reason == "only 50 of 80 requests completed"


def test_output_length_off_target_is_invalid():
    result = parse_profile_export(AIPERF / "complete", target_output_tokens=128)
    assert result.invalid_reason == "output length off target: 64-64 tokens, target 128"
