"""The shell and flag parsing the semantic checks stand on: words, commands, lines, loops."""

from __future__ import annotations

from pathlib import Path

from harness.checks.perf_script import _errexit, _unbounded_loops
from harness.recipe.commandline import Token, Word, parse_flags, parse_script, split_shell
from harness.recipe.container import Container
from harness.recipe.findings import Loc
from harness.recipe.workloads import flag
from harness.recipe.yamlsrc import parse_yaml_bytes

F = Path("perf.yaml")


def container(yaml_text: str) -> Container:
    data = parse_yaml_bytes(yaml_text.encode(), F).documents[0].data
    from harness.recipe.workloads import _plain_container

    return _plain_container(data)


def words(text: str) -> list:
    return [w.value if isinstance(w, Word) else w for w in split_shell(text)]


def test_split_shell_quotes_continuations_comments_and_operators():
    text = 'set -e # don\'t\naiperf profile \\\n  --url "http://a b" --x \'{"k": 1}\' 2>&1 | tee x || true\n'
    assert words(text) == [
        "set",
        "-e",
        "\n",
        "aiperf",
        "profile",
        "--url",
        "http://a b",
        "--x",
        '{"k": 1}',
        "2>&1",
        "|",
        "tee",
        "x",
        "||",
        "true",
        "\n",
    ]


def test_split_shell_keeps_substitutions_whole():
    assert words('for i in $(seq 1 60); do echo "${A//\\//--}"; done') == [
        "for",
        "i",
        "in",
        "$(seq 1 60)",
        ";",
        "do",
        "echo",
        "${A//\\//--}",
        ";",
        "done",
    ]


SCRIPT = """\
command: [/bin/bash, -c]
args:
  - |
    set -euo pipefail
    aiperf profile --model "$TARGET_MODEL" \\
      --url "$ENDPOINT_URL" --extra-inputs ignore_eos:true --extra-inputs "min_tokens:$OSL" --streaming
env:
  - name: TARGET_MODEL
    value: Qwen/Qwen3-32B
  - name: OSL
    value: "1024"
"""


def test_parse_script_expands_env_and_points_at_the_value_to_edit():
    script = parse_script(container(SCRIPT))
    assert script.is_shell and [c.name for c in script.commands] == ["set", "aiperf"]
    aiperf = script.commands[1]
    flags = parse_flags(aiperf.words[2:])
    model = flag(flags, "--model")
    assert model.value.value == "Qwen/Qwen3-32B"
    assert model.value.loc.line == 9  # the env value, not the script line
    url = flag(flags, "--url")
    assert url.value.value == "$ENDPOINT_URL" and url.value.loc.line == 6  # unknown env: the script line
    assert [f.value.value for f in flags if f.name == "--extra-inputs"] == ["ignore_eos:true", "min_tokens:1024"]
    assert flag(flags, "--streaming").value.value == "true"


def test_exec_form_is_one_command():
    c = container("command: [python3, -m, dynamo.vllm]\nargs: [--model, $(M)]\nenv: [{name: M, value: x/y}]\n")
    script = parse_script(c)
    assert not script.is_shell
    assert [t.value for t in script.commands[0].words] == ["python3", "-m", "dynamo.vllm", "--model", "x/y"]


def _script(body: str, flags: str = "-c"):
    text = "command: [/bin/sh, " + flags + "]\nargs:\n  - |\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return parse_script(container(text))


def test_errexit_from_set_shell_flags_and_set_plus_e():
    s = _script("set -eu\naiperf profile")
    assert _errexit(s, s.commands[-1])[0]
    s = _script("aiperf profile", flags="-ec")
    assert _errexit(s, s.commands[-1])[0]
    s = _script("set -e\nset +e\naiperf profile")
    on, off_at, _ = _errexit(s, s.commands[-1])
    assert not on and off_at.loc.line == 5
    s = _script("echo hi\naiperf profile")
    assert not _errexit(s, s.commands[-1])[0]


def test_loops_bounded_and_unbounded():
    unbounded = lambda body: [c.text for c in _unbounded_loops(_script(body), False)]  # noqa: E731
    assert unbounded("while true; do curl -sf $U/v1/models && break; sleep 5; done") == ["while true"]
    assert unbounded("until curl -sf $U/v1/models | grep -q m; do sleep 5; done") == ["until curl -sf $U/v1/models"]
    assert unbounded("for i in $(seq 1 60); do curl -sf $U && break; sleep 5; done") == []
    assert unbounded("i=0\nwhile [ $i -lt 60 ]; do i=$((i+1)); sleep 5; done") == []
    assert (
        unbounded("i=0\nuntil curl -sf $U; do\n  i=$((i+1))\n  if [ $i -ge 60 ]; then exit 1; fi\n  sleep 5\ndone")
        == []
    )
    assert unbounded("timeout 600 sh -c 'until curl -sf $U; do sleep 5; done'") == []
    assert unbounded("sh -c 'while true; do sleep 5; done'") == ["while true"]


def test_block_scalar_lines():
    s = _script("set -e\n\n# wait\naiperf profile --x 1")
    assert s.loc == Loc(F, 4, 1)
    assert s.commands[1].words[0].loc.line == 7
    assert isinstance(s.commands[1].words[0], Token)
