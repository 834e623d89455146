"""Rendered pods: what the operator does to a service's command line must not change what its engine receives."""

from __future__ import annotations

from collections.abc import Iterator

from harness.analysis.render import MULTINODE_DEPLOYERS, render_recipe
from harness.checks import CheckContext, check
from harness.recipe.findings import Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.yamlsrc import dig

_NAMES = {"grove": "Grove", "lws": "LWS"}


@check("engine-args-survive-operator")
def engine_args_survive_operator(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A multinode service's engine receives every argument as the manifest wrote it (as a single-node
    pod would get it): the operator's shell wrapping must not change one, or the engine starts with
    a wrong value, such as a model path with a stray backslash.

    Why: for `multinode.nodeCount > 1` the operator rewrites the command line. The TRT-LLM leader
    runs it through `mpirun ... bash -c 'trtllm-llmapi-launch <cmd>'`; under Grove, SGLang and vLLM
    worker pods (and vLLM data-parallel workers always) run `sh -c "exec <cmd> <flags>"`. Each token
    goes through the operator's quoting helper, which escapes `$` as `\\$`. The kubelet expands
    `$(VAR)` in command and args before any shell runs, and it ignores quotes and backslashes.
    The backslash survives in front of the value. The engine then loads the model
    `\\nvidia/DeepSeek-R1-FP4` and fails on the leader, or on every worker, while single-node pods of the
    same recipe are fine.

    Fails: a TRT-LLM service with `multinode: {nodeCount: 8}` and `args: [--model-path, "$(MODEL_PATH)"]`
    (the engine receives `\\nvidia/DeepSeek-R1-FP4`). Fix: write the value itself
    (`--model-path nvidia/DeepSeek-R1-FP4`), or use a `sh -c` command that reads `$MODEL_PATH`
    from the environment; `recipe-harness render RECIPE` shows the argv the engine receives.

    Source: ai-dynamo/dynamo deploy/operator/internal/dynamo/backend_trtllm.go
    `TRTLLMBackend.setupLeaderContainer` (quotes python command tokens with `shellQuoteForBashC`,
    wraps them in `bash -c '...'` under mpirun); the flag-injection file's `shellQuoteForBashC` and
    `injectFlagsIntoContainerCommand` (mutation/command_line.go `ShellQuote` in newer trees);
    grove.go `GroveMultinodeDeployer.GetNodeRank` (`$((GROVE_PCLQ_POD_INDEX + 1))`, needsShell=true);
    backend_vllm.go `injectDataParallelLaunchFlags` (needsShell=true). Kubelet: kubernetes
    third_party/forked/golang/expansion/expand.go. Both Grove and LWS forms are rendered (only LWS when the
    DGD sets `nvidia.com/enable-grove: "false"`), modelled by harness/analysis/render.py.
    """
    dep = recipe.deployment
    if dep is None or not any(s.node_count > 1 for s in dep.services):
        return
    grove = str(dig(dep.data, "metadata", "annotations", "nvidia.com/enable-grove") or "").lower() != "false"
    deployers = MULTINODE_DEPLOYERS if grove else ("lws",)
    found: dict[tuple, dict] = {}
    broken: dict[tuple, dict] = {}
    for kind in deployers:
        for pod in render_recipe(recipe, kind):
            if pod.launch_error and pod.launch_loc is not None:
                entry = broken.setdefault(
                    (str(pod.launch_loc.file), pod.launch_loc.line, pod.launch_error),
                    {"loc": pod.launch_loc, "where": []},
                )
                entry["where"].append(f"{pod.service} {pod.role} ({_NAMES[kind]})")
            for m in pod.mangled:
                key = (str(m.token.loc.file), m.token.loc.line, m.token.value, m.written, m.received)
                entry = found.setdefault(key, {"mangled": m, "where": {}})
                entry["where"].setdefault(f"{pod.service} {pod.role}", []).append(_NAMES[kind])
    for (_, _, error), entry in broken.items():
        yield problem(
            entry["loc"],
            f"the operator's multinode wrapping of {', '.join(entry['where'])} cannot start the engine: {error}",
            "for a TRT-LLM multinode service give the engine as `command: [python3, -m, dynamo.trtllm]` with "
            "args (the operator runs it under mpirun); a `sh -c` script is embedded raw, without `exec`",
        )
    for entry in found.values():
        m = entry["mangled"]
        received = " ".join(f"`{v}`" for v in m.received) or "nothing (the argument vanished)"
        meant = " ".join(f"`{v}`" for v in m.written) or "nothing"
        where = ", ".join(f"{pod} ({', '.join(kinds)})" for pod, kinds in entry["where"].items())
        why = (
            "the operator re-quotes each argument for a shell and escapes `$`, but the kubelet expands "
            "$(VAR) before the shell runs and the backslash stays"
            if "$(" in m.token.value
            else "the operator's shell wrapping re-parses it"
        )
        yield problem(
            m.token.loc,
            f"the engine of {where} receives {received} for `{m.token.value}` "
            f"(a single-node pod would get {meant}): {why}",
            "write the value itself instead of $(VAR) in a multinode service's command/args (or read the variable in "
            "a `sh -c` script as $VAR); `recipe-harness render` shows the argv the engine receives",
        )
