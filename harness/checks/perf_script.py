"""The perf Job's script: it fails when the benchmark fails (errexit, a checked status) and every wait
it does is bounded (a loop with a bound, a Job deadline, or AIPerf's own readiness wait)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.checks import CheckContext, check
from harness.recipe.commandline import Command, Flags, Script, Token, nested_script, shell_scripts
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.workloads import Workloads, aiperf_of, flag
from harness.recipe.yamlsrc import as_int, mapping

_COMPARISONS = {"-lt", "-le", "-gt", "-ge", "-eq", "-ne"}
_ARITH_COMPARE = re.compile(r"\$?\(\(.*[<>].*\)\)|SECONDS|date\s+\+%s")


def _errexit(script: Script, before: Command | None) -> tuple[bool, Token | None, Token | None]:
    """(errexit on at `before`, the `set +e` that turned it off, pipefail set)."""
    on = "e" in script.shell_flags
    off_at: Token | None = None
    pipefail: Token | None = None
    for cmd in script.commands:
        if cmd is before:
            break
        words = cmd.program_words()
        if not words or words[0].value != "set":
            continue
        vals = [t.value for t in words[1:]]
        for i, v in enumerate(vals):
            if v.startswith("-") and not v.startswith("--") and "e" in v[1:]:
                on, off_at = True, None
            if v.startswith("+") and "e" in v[1:]:
                on, off_at = False, words[i + 1]
            if v == "-o" and i + 1 < len(vals) and vals[i + 1] == "errexit":
                on, off_at = True, None
            if v == "-o" and i + 1 < len(vals) and vals[i + 1] == "pipefail":
                pipefail = words[i + 1]
    return on, off_at, pipefail


_CAPTURE = re.compile(r"^([A-Za-z_]\w*)=\$\?$")
_FAILS = {"exit", "return", "false"}


def _reraised(script: Script, cmd: Command) -> bool:
    """aiperf's status is captured (`rc=$?`, right after it or as its `||` branch) and later
    re-raised (`exit $rc`): the Job fails when aiperf fails even with errexit off."""
    cmds = script.commands
    i = cmds.index(cmd)
    names: set[str] = set()
    for c in cmds[i + 1 : i + 3]:
        m = _CAPTURE.match(c.words[0].value) if c.words else None
        if m:
            names.add(m.group(1))
    if not names:
        return False
    for c in cmds[i + 1 :]:
        vals = [t.value for t in c.words]
        for k, v in enumerate(vals[:-1]):
            if v in ("exit", "return") and any(ref in vals[k + 1] for n in names for ref in (f"${n}", f"${{{n}}}")):
                return True
    return False


def _fails_after(script: Script, cmd: Command) -> bool:
    """`aiperf ... || exit 1` (or `|| return 1`, `|| false`): the `||` branch fails the script."""
    cmds = script.commands
    i = cmds.index(cmd)
    nxt = cmds[i + 1] if i + 1 < len(cmds) else None
    if nxt is None or not nxt.words:
        return False
    vals = [t.value for t in nxt.program_words()]
    if not vals or vals[0] not in _FAILS:
        return False
    # a bare `exit` / `return` passes on aiperf's non-zero status; only `exit 0` would hide it
    return vals[0] == "false" or len(vals) == 1 or vals[1] != "0"


_EXIT_STATUS = {"$?", "${?}"}


def _status_is_the_scripts(script: Script, cmd: Command) -> bool:
    """aiperf's status is the script's without errexit: aiperf ends the script, alone or inside a
    trailing `&&` list (`pip install aiperf==0.13.0 && aiperf profile ...`), optionally followed
    only by `exit $?`. A shell exits with its last command's status, and an `&&` list's status is
    that of the last command it ran (bash manual, 'Lists of Commands')."""
    cmds = script.commands
    i = cmds.index(cmd)
    while i < len(cmds) and cmds[i].end == "&&":
        i += 1
    if i >= len(cmds) or cmds[i].end not in ("", "\n", ";"):
        return False  # piped, `||`-masked or sent to the background: not the script's status
    rest = cmds[i + 1 :]
    if not rest:
        return True
    vals = [t.value for t in rest[0].program_words()] if len(rest) == 1 else []
    return vals[:1] == ["exit"] and (len(vals) == 1 or (len(vals) == 2 and vals[1] in _EXIT_STATUS))


@check("perf-fails-on-error")
def perf_fails_on_error(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The Job fails when the benchmark fails: the script runs with `set -e` (`set -euo
    pipefail`, or `bash -ec`), never turns it off before aiperf, never masks aiperf with
    `|| true`, and keeps aiperf's status through a pipe (`pipefail`). Upstream shipped a Job
    without `set -e` that reported success after aiperf had failed.

    Without `set -e` the script still fails with aiperf when aiperf ends it: the last command, or
    the end of a trailing `&&` list (`pip install aiperf==0.13.0 && aiperf profile ...`), then
    at most `exit $?`.

    Fails: a script `pip install aiperf==0.13.0; aiperf profile ...; echo done` (no `set -e`).
    Fix: `set -euo pipefail` first, or let aiperf be the script's last command.

    Source: Kubernetes Job semantics (a pod whose container exits non-zero is Failed; batch/v1 Job
    status) and POSIX/bash shell rules: without `set -e` a script's status is its last command's;
    `|| true` masks a failure; a pipeline's status is its last command's unless `set -o pipefail` (bash
    manual, 'Pipelines', 'The Set Builtin').
    """
    found = aiperf_of(recipe)
    if found is None:
        return
    w, container, cmd, _ = found
    script = w.script(container)
    if not script.is_shell:
        return  # exec form: aiperf's exit status is the container's
    hint = "start the script with `set -euo pipefail`"
    if cmd not in script.commands:  # typed into a tmux pane, or a nested `sh -c`
        outer = next((c for c in script.commands if c.name == "tmux" and "aiperf" in c.text), None)
        if outer is not None:
            yield problem(
                outer.at,
                f"aiperf runs detached in a tmux session: its exit status never reaches the {w.perf.doc.kind}",
                "run aiperf in the script itself (`set -euo pipefail`), not through tmux send-keys",
            )
        return
    on, off_at, pipefail = _errexit(script, cmd)
    if _reraised(script, cmd) or _status_is_the_scripts(script, cmd):
        on, off_at = True, None  # `set +e; aiperf ...; rc=$?; ...; exit $rc`, or aiperf ends the script
    if off_at is not None:
        yield problem(
            off_at.loc, "`set +e` turns off errexit before aiperf runs: the Job succeeds when aiperf fails", hint
        )
    elif not on:
        yield problem(
            script.loc or cmd.at,
            "the perf script has no `set -e`: when aiperf fails the Job still reports success",
            hint,
        )
    # aiperf's status lost in a pipe, or masked by `||`
    pipeline = script.commands[script.commands.index(cmd) :]
    last = cmd
    for c in pipeline:
        last = c
        if c.end != "|":
            break
    if cmd.end == "|" and pipefail is None:
        yield problem(
            cmd.at,
            "aiperf is piped without `set -o pipefail`: the pipe's status is the last command's, not aiperf's",
            hint,
        )
    if last.end == "||" and not _fails_after(script, last) and not _reraised(script, last):
        yield problem(
            cmd.at,
            "aiperf's failure is masked by `|| ...`",
            "remove the `||` fallback: a failed benchmark must fail the Job",
        )


@dataclass
class Loop:
    head: Command  # the `while ...` / `until ...` command
    header: list[Command] = field(default_factory=list)  # the condition (a pipeline or list)
    body: list[Command] = field(default_factory=list)
    in_body: bool = False


def _loops(script: Script) -> Iterator[Loop]:
    """Every while/until loop of a script (for loops iterate a finite list: bounded)."""
    stack: list[Loop] = []
    for cmd in script.commands:
        first = cmd.words[0].value
        if first == "done" and stack:
            loop = stack.pop()
            if loop.head.words[0].value != "for":
                yield loop
            continue
        for loop in stack:
            if loop.in_body:
                loop.body.append(cmd)
        if stack and not stack[-1].in_body:
            top = stack[-1]
            if first == "do":
                top.in_body = True
                top.body.append(cmd)
            else:
                top.header.append(cmd)
        if first in ("while", "until", "for"):
            stack.append(Loop(cmd, [cmd]))


def _has_bound(cmds: list[Command]) -> bool:
    return any(t.value in _COMPARISONS or _ARITH_COMPARE.search(t.value) for c in cmds for t in c.words)


def _exits(cmds: list[Command]) -> bool:
    return any(t.value in ("exit", "break", "return") for c in cmds for t in c.words)


def _unbounded_loops(script: Script, bounded: bool) -> Iterator[Command]:
    """Loop heads with no iteration bound, deadline or enclosing `timeout` (nested `sh -c` too)."""
    if not bounded:
        for loop in _loops(script):
            if not (_has_bound(loop.header) or (_has_bound(loop.body) and _exits(loop.body))):
                yield loop.head
    for cmd, text, wrapped in shell_scripts(script):
        yield from _unbounded_loops(nested_script(text, cmd.words[0].loc), bounded or wrapped)


def _active_deadline(w: Workloads) -> int | None:
    """The perf Job's (or bare Pod's) `activeDeadlineSeconds`, or its pod template's: Kubernetes
    stops the run then (Job: DeadlineExceeded; Pod: the kubelet kills it)."""
    specs = [mapping(w.perf.doc.data.get("spec")), w.perf.spec]
    values = [as_int(spec.get("activeDeadlineSeconds")) for spec in specs if spec is not None]
    return next((v for v in values if v is not None and v > 0), None)


def _waits_itself(flags: Flags) -> bool:
    """aiperf 0.13.0 `--wait-for-model-timeout N` (N > 0): aiperf probes the model before the run
    and exits non-zero when it is not ready in time (aiperf/cli_runner/_preflight.py)."""
    timeout = flag(flags, "--wait-for-model-timeout")
    try:
        return timeout is not None and float(timeout.value.value) > 0
    except ValueError:
        return timeout.value.value.startswith("$")  # set from the environment: taken as given


@check("perf-wait-bounded")
def perf_wait_bounded(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The Job waits for the model before benchmarking (poll `/v1/models`, `/health` or
    `kubectl wait`), and the wait is bounded: an iteration limit, a deadline or `timeout`.
    `while true` / `until curl ...` without a bound hangs forever when the model never comes
    up, holding the benchmark slot and hiding the failure. aiperf can wait itself:
    `--wait-for-model-timeout N` is a bounded wait. A loop with no bound of its own in a Job (or
    Pod) with `activeDeadlineSeconds` is a warning: Kubernetes ends it at the deadline.

    Fails: `until curl -sf $ENDPOINT_URL/v1/models; do sleep 5; done` with no counter and no
    activeDeadlineSeconds.

    Source: Kubernetes Job: nothing bounds a running container except `activeDeadlineSeconds`; shell
    loops (`while`/`until`) run until their condition changes (bash manual 'Looping Constructs'); the
    model is ready when the frontend lists it in `/v1/models` (ai-dynamo frontend, OpenAI API).
    """
    w = recipe.workloads
    if w.perf is None:
        return
    deadline = _active_deadline(w)
    waits = False
    for c in w.perf.containers:
        script = w.script(c)
        for head in _unbounded_loops(script, False):
            if deadline is not None:
                yield problem(
                    head.words[0].loc,
                    f"wait loop `{head.text[:60]}` has no bound of its own: only the "
                    f"{w.perf.doc.kind}'s activeDeadlineSeconds ({deadline}) ends it",
                    "count attempts (`for i in $(seq 1 120)` / `[ $i -ge 120 ] && exit 1`) "
                    "or wrap it in `timeout 1800`",
                    severity=Severity.WARNING,
                )
                continue
            yield problem(
                head.words[0].loc,
                f"wait loop `{head.text[:60]}` has no bound: the Job hangs when the model never appears",
                "count attempts (`for i in $(seq 1 120)` / `[ $i -ge 120 ] && exit 1`) or wrap it in `timeout 1800`",
            )
        text = " ".join(t.value for cmd in script.commands for t in cmd.words)
        if "/v1/models" in text or "/health" in text or re.search(r"\bkubectl\s+wait\b", text):
            waits = True
    found = w.aiperf()
    if found and _waits_itself(found[2]):
        waits = True
    if not waits and found:
        yield problem(
            found[1].at,
            "the Job never waits for the model: aiperf starts before the frontend serves it",
            "poll $ENDPOINT_URL/v1/models until the served model is listed (bounded), then run aiperf",
        )
