"""Perf Job hygiene: the benchmark Job runs AIPerf, pins it, and measures something reproducible
(seed, fixed lengths, streaming), with its artifacts on the PVC and limits on its own run time."""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.analysis.benchmark import extra_inputs as aiperf_extra_inputs
from harness.checks import CheckContext, check
from harness.recipe.commandline import Flags, Script, Token, expand_script_vars
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.versions import VERSIONS_FILE, release_matrix
from harness.recipe.workloads import Workloads, aiperf_of, flag, under
from harness.recipe.yamlsrc import as_int, mapping

ARTIFACT_FLAGS = ("--artifact-dir", "--output-artifact-dir")
OSL_FLAGS = ("--output-tokens-mean", "--osl", "--prompt-output-tokens-mean")
OSL_STDDEV_FLAGS = ("--output-tokens-stddev", "--osl-stddev", "--prompt-output-tokens-stddev")
_SNAPSHOT = re.compile(r"/snapshots/|(?:^|/)[0-9a-f]{40}(?:/|$)")
_PIN = re.compile(r"^aiperf(?:\[[^\]]*\])?\s*(==|===|@|~=|>=|<=|>|<|!=)?\s*(.*)$")


TRACE_FLAGS = ("--input-file", "--custom-dataset-type", "--fixed-schedule")


def _replays_trace(flags: Flags) -> bool:
    """aiperf replays a recorded dataset or trace (`--input-file` with `--custom-dataset-type`,
    `--fixed-schedule`): request lengths and timing come from the file, not from the synthetic
    shape flags (aiperf docs: "Trace replay", `--custom-dataset-type mooncake_trace`)."""
    return (
        flag(flags, "--input-file") is not None and flag(flags, "--custom-dataset-type", "--fixed-schedule") is not None
    )


@check("perf-runs-aiperf", convention=True)
def perf_runs_aiperf(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """`perf.yaml` is a batch/v1 Job (or a bare v1 Pod, as some upstream recipes use) whose
    script runs `aiperf profile`: the nightly reads AIPerf's `profile_export_aiperf.json`, and
    the other perf checks read its flags. A call typed into a tmux pane (`tmux send-keys
    "aiperf profile ..."`) or a nested `sh -c` counts. A convention check: on a foreign tree a
    benchmark written with another tool (genai-perf, `vllm bench serve`) works and is not reported.

    Fails: a perf Job that runs `genai-perf profile ...` or `python bench.py`.

    Source: This catalogue's convention (not a Dynamo rule): its nightly reads aiperf 0.13.0
    `aiperf profile`'s export `profile_export_aiperf.json` (harness/results/metrics.py), as Dynamo's
    own profiler does (ai-dynamo 1.4.0 dynamo/profiler/utils/aiperf.py `get_aiperf_result`); Dynamo
    and Kubernetes run any benchmark tool.
    """
    f = recipe.perf
    if f is None or not f.documents:
        return  # layout-perf-present / yaml-well-formed
    w = recipe.workloads
    if w.perf is None:
        yield problem(f.documents[0].loc, "perf.yaml has no Job or Pod", "write the benchmark as a batch/v1 Job")
    elif w.aiperf() is None:
        main = w.perf.main
        yield problem(
            main.loc if main else w.perf.doc.loc,
            f"{w.perf.label} never runs `aiperf profile`",
            "run the benchmark with `aiperf profile ...` in the Job's script",
        )


def _pins(script: Script) -> Iterator[tuple[Token, str, str]]:
    """(word, operator, version) for every `aiperf` requirement in a pip/uv install command."""
    for cmd in script.commands:
        vals = [t.value for t in cmd.words]
        if "install" not in vals and cmd.name not in ("uvx", "pipx"):
            continue
        for t in cmd.words:
            m = _PIN.match(t.value.strip("'\""))
            if m and t.value.strip("'\"").lower().startswith("aiperf"):
                yield t, m.group(1) or "", m.group(2).strip()


@check("perf-aiperf-pinned")
def perf_aiperf_pinned(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """When the Job installs AIPerf it pins the exact version (`pip install aiperf==0.13.0`,
    or `aiperf==$AIPERF_VERSION` with the env set), and that version is the one
    `recipes/versions.yaml` (and the metadata's `versions.aiperf`) names: an unpinned tool
    changes its metrics and defaults under the baselines.

    Fails: `pip install aiperf` (or `aiperf>=0.3`).

    Source: pip requirement specifiers (PEP 440: only `==`/`===` or a direct reference pin one version)
    and the aiperf version this catalogue benchmarks with: recipes/versions.yaml `aiperf: 0.13.0` and
    recipe.yaml `versions.aiperf` (ours; the version comparison is a catalogue convention, the
    foreign-tree built-in matrix has no aiperf row).
    """
    w = recipe.workloads
    if w.perf is None:
        return
    matrix, _ = release_matrix(recipe, ctx.catalogue)
    versions = recipe.metadata.get("versions")
    meta = str(versions.get("aiperf")) if isinstance(versions, dict) and versions.get("aiperf") else ""
    for c in w.perf.containers:
        for tok, op, version in _pins(w.script(c)):
            if op not in ("==", "===", "@") or not re.match(r"^\d+(\.\d+)*([.-]?[a-z0-9]+)*$", version):
                yield problem(
                    tok.loc,
                    f"AIPerf is installed unpinned ({tok.value!r})",
                    f"pin it: pip install aiperf=={matrix.aiperf if matrix and matrix.aiperf else '<version>'}",
                )
                continue
            if matrix is not None and matrix.aiperf and version != matrix.aiperf:
                yield problem(
                    tok.loc,
                    f"AIPerf {version} is pinned but {VERSIONS_FILE} says {matrix.aiperf}",
                    f"pin aiperf=={matrix.aiperf}, or update {VERSIONS_FILE} and the baselines together",
                )
            elif meta and version != meta:
                yield problem(
                    tok.loc,
                    f"AIPerf {version} is pinned but recipe.yaml versions.aiperf is {meta}",
                    "make the two agree",
                )


def _missing(recipe: Recipe, flag_names: tuple[str, ...], message: str, hint: str) -> Iterator[Problem]:
    found = aiperf_of(recipe)
    if found is None:
        return
    _, _, cmd, flags = found
    if flag(flags, *flag_names) is None:
        yield problem(cmd.at, message, hint)


@check("perf-seed-fixed")
def perf_seed_fixed(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """AIPerf runs with a fixed `--random-seed`, so every run sends the same synthetic
    prompts and two runs (or a run and its baseline) are comparable.

    A trace replay (`--input-file` with `--custom-dataset-type` or `--fixed-schedule`) takes
    its requests from the file and is not held to it.

    Fails: `aiperf profile ...` without `--random-seed`.

    Source: aiperf 0.13.0 `--random-seed` (CLIConfig.random_seed, default None: 'Uses system entropy if
    not specified'); Dynamo's own benchmark command passes `--random-seed 100` (ai-dynamo 1.4.0
    dynamo/profiler/utils/aiperf.py `_get_common_aiperf_cmd`). Trace replay (`--input-file` +
    `--custom-dataset-type`/`--fixed-schedule`) is exempt.
    """
    found = aiperf_of(recipe)
    if found is None or _replays_trace(found[3]):
        return
    yield from _missing(
        recipe,
        ("--random-seed",),
        "aiperf runs without --random-seed: prompts differ from run to run",
        "add --random-seed 100",
    )
    seed = flag(found[3], "--random-seed")
    if seed is not None and as_int(seed.value.value) is None:
        yield problem(
            seed.value.loc, f"--random-seed {seed.value.value!r} is not an integer", "use a fixed integer seed"
        )


def extra_inputs(flags: Flags) -> dict[str, Token]:
    """`--extra-inputs key:value` (repeatable) and `'{json}'` as key -> value, at each flag's line."""
    out: dict[str, Token] = {}
    for f in flags:
        if f.name != "--extra-inputs":
            continue
        for key, value in aiperf_extra_inputs([f.value.value]).items():
            out[key] = Token(value, f.value.loc)
        # JSON form: Dynamo's OpenAI extension {"nvext": {"ignore_eos": true}} sets the same engine
        # option (ai-dynamo/dynamo lib/llm/src/protocols/openai/nvext.rs, `NvExt.ignore_eos`)
        nvext = aiperf_extra_inputs([f.value.value]).get("nvext")
        if nvext and nvext.lstrip().startswith("{"):
            for key, value in aiperf_extra_inputs([nvext]).items():
                out.setdefault(key, Token(value, f.value.loc))
    return out


@check("perf-output-length-fixed")
def perf_output_length_fixed(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every request generates exactly the configured output length: `--extra-inputs
    ignore_eos:true` (otherwise the model stops early and tokens/s depends on what it felt like
    writing), an `--output-tokens-mean` and stddev 0, and `min_tokens:<OSL>` if given. With
    ignore_eos:true a missing min_tokens is a warning: the engine already runs every request to
    max_tokens (vLLM 0.26.0 sampling_params.py `update_from_generation_config` stops on no EOS
    id under ignore_eos).

    A trace replay takes each request's output length from the trace and is not held to it.
    `--extra-inputs` may be `key:value` or a JSON object; `{"nvext": {"ignore_eos": true}}` counts.

    Fails: `--output-tokens-mean 1024` without `--extra-inputs ignore_eos:true`.

    Source: ai-dynamo 1.4.0 dynamo/profiler/utils/aiperf.py (`_get_common_aiperf_cmd`:
    `--extra-inputs ignore_eos:true`; `get_prefill_aiperf_cmd`/`get_decode_aiperf_cmd`:
    `--output-tokens-mean <osl> --output-tokens-stddev 0 --extra-inputs max_tokens:<osl>
    --extra-inputs min_tokens:<osl>`)
    and aiperf 0.13.0 CLIConfig (`--output-tokens-mean` sets max_completion_tokens;
    `--output-tokens-stddev` default 0). `nvext.ignore_eos`: ai-dynamo
    lib/llm/src/protocols/openai/nvext.rs.
    """
    found = aiperf_of(recipe)
    if found is None or _replays_trace(found[3]):
        return
    _, _, cmd, flags = found
    at = cmd.at
    extra = extra_inputs(flags)
    osl = flag(flags, *OSL_FLAGS)
    if osl is None:
        yield problem(
            at,
            "aiperf has no --output-tokens-mean: the output length is the model's choice",
            "add --output-tokens-mean <OSL> --output-tokens-stddev 0",
        )
    ignore = extra.get("ignore_eos")
    if ignore is None or ignore.value.lower() != "true":
        yield problem(
            ignore.loc if ignore else at,
            "aiperf does not send ignore_eos:true: requests end at EOS, not at the fixed length",
            "add --extra-inputs ignore_eos:true",
        )
    min_tokens = extra.get("min_tokens")
    ignores_eos = ignore is not None and ignore.value.lower() == "true"
    if min_tokens is None:
        # with ignore_eos the engine generates up to max_tokens (= --output-tokens-mean) regardless
        # of EOS, so min_tokens only restates it: Dynamo's own common aiperf command sends ignore_eos alone
        yield problem(
            at,
            "aiperf does not send min_tokens"
            + (
                " (ignore_eos:true already runs every request to max_tokens)"
                if ignores_eos
                else ": the output length is not fixed"
            ),
            "add --extra-inputs min_tokens:<OSL> (the --output-tokens-mean value)",
            severity=Severity.WARNING if ignores_eos else None,
        )
    elif osl is not None and as_int(min_tokens.value) is not None and min_tokens.value != osl.value.value:
        yield problem(
            min_tokens.loc,
            f"min_tokens:{min_tokens.value} differs from --output-tokens-mean {osl.value.value}",
            "make them equal so every request generates exactly the OSL",
        )
    stddev = flag(flags, *OSL_STDDEV_FLAGS)
    if stddev is not None:
        try:
            nonzero = float(stddev.value.value) != 0
        except ValueError:
            nonzero = True
        if nonzero:
            yield problem(
                stddev.value.loc, f"{stddev.name} {stddev.value.value}: output lengths vary", f"set {stddev.name} 0"
            )


@check("perf-streaming")
def perf_streaming(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """AIPerf streams (`--streaming`): without it TTFT and inter-token latency cannot be
    measured and the reported latency is the whole request.

    Fails: `aiperf profile --endpoint-type chat ...` without `--streaming`.

    Source: aiperf 0.13.0 `--streaming` (CLIConfig.streaming, default False = aiperf/config/endpoint.py
    EndpointDefaults.STREAMING; 'Enables measurement of time-to-first-token (TTFT) and inter-token
    latency (ITL)'); Dynamo's own benchmark command passes it (dynamo/profiler/utils/aiperf.py
    `_get_common_aiperf_cmd`).
    """
    found = aiperf_of(recipe)
    if found is None:
        return
    s = flag(found[3], "--streaming")
    if s is None:
        yield problem(found[2].at, "aiperf runs without --streaming: no TTFT or ITL", "add --streaming")
    elif s.value.value.lower() in ("false", "0", "no"):
        yield problem(s.value.loc, "--streaming is turned off", "use --streaming")


def _known_prefix(path: str) -> str:
    """The part of a path before the first unresolved variable (what can be judged statically)."""
    cut = path.find("$")
    return path if cut < 0 else path[:cut]


@check("perf-artifacts-on-pvc")
def perf_artifacts_on_pvc(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """AIPerf writes its artifacts (`--artifact-dir`) under a PVC mount of the Job: the pod's
    own filesystem is gone when the Job ends, and with it the only copy of the results. The path
    is judged after the script's own variables and the env are expanded (`$ARTIFACT_DIR` set to
    `${ROOT_ARTIFACT_DIR}/...` earlier in the script); a part only the pod knows is not judged.

    Fails: `--artifact-dir /tmp/artifacts` while the PVC is mounted at /model-cache.

    Source: aiperf 0.13.0 `--artifact-dir`/`--output-artifact-dir` (default `./artifacts`,
    aiperf/config/artifacts.py) and Kubernetes: a container's filesystem (and emptyDir) is deleted with
    the pod, only a PVC outlives the Job (kubernetes.io/docs/concepts/storage/volumes).
    """
    found = aiperf_of(recipe)
    if found is None:
        return
    w, container, cmd, flags = found
    mounts = w.perf.mounts_of(container) if w.perf else []
    art = flag(flags, *ARTIFACT_FLAGS)
    hint = (
        f"write artifacts under the PVC mount, e.g. --artifact-dir {mounts[0].path.rstrip('/')}/perf/<recipe>"
        if mounts
        else "mount the model-cache PVC in the Job and point --artifact-dir under it"
    )
    if art is None:
        yield problem(cmd.at, "aiperf has no --artifact-dir: results stay in the pod and are lost", hint)
        return
    path = _known_prefix(expand_script_vars(art.value.value, w.script(container), container))
    if not path.startswith("/"):
        return  # built from values only the running pod knows: nothing to judge
    if under(path, mounts) is None:
        shown = art.value.value if path == art.value.value else f"{art.value.value} (= {path})"
        yield problem(
            art.value.loc,
            f"--artifact-dir {shown} is not on a mounted PVC "
            f"({', '.join(m.path for m in mounts) or 'the Job mounts none'})",
            hint,
        )


@check("perf-job-limits")
def perf_job_limits(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The perf Job sets `backoffLimit` (how often a failed benchmark reruns) and
    `activeDeadlineSeconds` (when Kubernetes stops it): without them a broken benchmark is
    retried six times and a hung one runs forever.

    Fails: a perf Job whose spec has neither.

    Source: Kubernetes batch/v1 Job: `spec.backoffLimit` (default 6 retries) and
    `spec.activeDeadlineSeconds` (no default: the Job may run forever); for a bare Pod
    `spec.activeDeadlineSeconds` (kubernetes.io/docs/concepts/workloads/controllers/job, 'Job
    termination and cleanup').
    """
    w = recipe.workloads
    if w.perf is None:
        return
    data = w.perf.doc.data
    spec = mapping(data.get("spec"))
    at = data.loc_of("spec") if spec is not None else data.loc
    limits = (
        ("backoffLimit", "set spec.backoffLimit (0 or 1: a failed benchmark should not rerun silently)"),
        ("activeDeadlineSeconds", "set spec.activeDeadlineSeconds (wait + benchmark time, with margin)"),
    )
    if w.perf.doc.kind == "Pod":
        limits = limits[1:]  # a bare Pod is never retried: only its deadline applies (PodSpec.activeDeadlineSeconds)
    for key, hint in limits:
        if spec is None or as_int(spec.get(key)) is None:
            yield problem(
                spec.loc_of(key) if spec is not None and key in spec else at, f"{w.perf.label} has no {key}", hint
            )


@check("perf-tokenizer-not-snapshot")
def perf_tokenizer_not_snapshot(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """`--tokenizer` names the model id (or a stable directory), never a Hugging Face cache
    snapshot path: `.../snapshots/<40-hex>/` changes with every model revision and the Job
    breaks on the next download (an upstream failure mode). When the hash is exactly the revision
    the model-download Job pins, the path exists today: a warning, not an error.

    Fails: `--tokenizer /model-cache/hub/models--Qwen--Qwen3-32B/snapshots/9216db5781bf21249d130ec9da846c4624c16137`.

    Source: huggingface_hub cache layout `models--<org>--<name>/snapshots/<commit>/`
    (huggingface_hub/file_download.py): a snapshot directory exists only for a downloaded revision;
    aiperf 0.13.0 `--tokenizer` accepts a Hugging Face id and resolves it through the same cache
    (HF_HOME). A snapshot of the revision the download Job pins is a warning.
    """
    found = aiperf_of(recipe)
    if found is None:
        return
    tok = flag(found[3], "--tokenizer")
    if tok is not None and _SNAPSHOT.search(tok.value.value):
        pinned = _pinned_revisions(recipe.workloads)
        hashes = set(re.findall(r"[0-9a-f]{40}", tok.value.value))
        if hashes and hashes <= pinned:
            yield problem(
                tok.value.loc,
                f"--tokenizer points into the cache snapshot of the revision the download Job pins "
                f"({tok.value.value}): it breaks when the pin moves",
                "use the Hugging Face model id (with HF_HOME on the PVC) instead of a snapshot path",
                Severity.WARNING,
            )
            return
        yield problem(
            tok.value.loc,
            f"--tokenizer points into a cache snapshot ({tok.value.value})",
            "use the Hugging Face model id (with HF_HOME on the PVC) instead of a snapshot path",
        )


def _pinned_revisions(w: Workloads) -> set[str]:
    """40-hex revisions the model-download Jobs pin (`--revision X`, a *REVISION env var)."""
    out: set[str] = set()
    for pod in w.downloads:
        for c in pod.containers:
            out |= {v for k, v in c.env.items() if "REVISION" in k.upper() and re.fullmatch(r"[0-9a-f]{40}", v)}
            for cmd in w.script(c).commands:
                vals = [t.value for t in cmd.words]
                out |= {
                    vals[i + 1]
                    for i, v in enumerate(vals[:-1])
                    if v == "--revision" and re.fullmatch(r"[0-9a-f]{40}", vals[i + 1])
                }
    return out
