"""Cross-file consistency: the names one recipe writes in several files (model id, served name,
secrets, KV block size) agree, so the pieces find each other on a cluster."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from harness.analysis.topology import TRTLLM_BLOCK_ENV, TRTLLM_BLOCK_FLAG, TRTLLM_DEFAULT_BLOCK
from harness.checks import CheckContext, check
from harness.recipe.commandline import Flags, Token
from harness.recipe.container import Container
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.workloads import Pod, Workloads, env_value, flag
from harness.recipe.yamlsrc import as_int, dig, mapping, sequence

MODEL_FLAGS = ("--model", "--model-path")
DEFAULT_SECRET = "hf-token-secret"


# --- model identity ------------------------------------------------------------------------


def download_model_ids(w: Workloads) -> list[Token]:
    """What the model-download Job fetches: MODEL_ID env, else the `hf download <id>` argument."""
    out: list[Token] = []
    for pod in w.downloads:
        for c in pod.containers:
            env = env_value(c, "MODEL_ID")
            if env is not None:
                out.append(Token(env[0], env[1]))
                continue
            for cmd in w.script(c).commands:
                words = cmd.program_words()
                vals = [t.value for t in words]
                if "download" in vals and words and words[0].value in ("hf", "huggingface-cli", "huggingface_hub"):
                    rest = words[vals.index("download") + 1 :]
                    if rest and not rest[0].value.startswith("-"):
                        out.append(rest[0])
    return out


@check("model-id-consistent")
def model_id_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The model the workers load (vLLM `--model`, SGLang/TRT-LLM `--model-path`, after env
    expansion) is the metadata's `model.id`, and the model-download Job fetches it
    (`MODEL_ID`): otherwise the workers load a model nobody cached, downloading it at start
    (or failing offline), and the docs describe another model.

    Fails: `--model-path Qwen/Qwen3-32B` in a recipe whose metadata says `Qwen/Qwen3-32B-FP8`.

    Source: vLLM 0.26.0 EngineArgs `--model` (ai-dynamo 1.4.0 dynamo/vllm/args.py), SGLang 0.5.16
    ServerArgs `--model-path`, Dynamo TRT-LLM `--model` with obsolete alias `--model-path`
    (dynamo/trtllm/backend_args.py); the download side is huggingface_hub `hf download <repo_id>`. The
    reference value is recipe.yaml `model.id` (this catalogue's metadata), so without metadata the check
    does nothing.
    """
    model_id, id_loc = recipe.metadata_at("model", "id")
    if not isinstance(model_id, str):
        return  # metadata-schema reports it
    w = recipe.workloads
    for pod, at, flags in w.engine_calls():
        f = flag(flags, *MODEL_FLAGS)
        if f is None:
            yield problem(
                at.loc, f"worker {pod.name} names no model ({' / '.join(MODEL_FLAGS)})", f"add --model {model_id}"
            )
        elif not f.value.value.startswith("/") and f.value.value != model_id:
            yield problem(
                f.value.loc,
                f"worker {pod.name} loads {f.value.value} but recipe.yaml model.id is {model_id}",
                f"serve {model_id}, or fix model.id",
            )
    downloads = download_model_ids(w)
    if w.downloads and not downloads:
        pod = w.downloads[0]
        yield problem(
            pod.main.loc if pod.main else pod.doc.loc,
            f"{pod.label} names no MODEL_ID",
            f"set env MODEL_ID: {model_id} on the download container",
        )
    elif downloads and model_id not in {t.value for t in downloads}:
        where = downloads[0].loc if len(downloads) == 1 else id_loc
        yield problem(
            where,
            f"the model-download Job fetches {', '.join(t.value for t in downloads)} "
            f"but recipe.yaml model.id is {model_id}",
            f"download {model_id} in model-cache/model-download.yaml (MODEL_ID), or fix model.id",
        )


def perf_models(w: Workloads) -> list[Token]:
    """What the benchmark requests: TARGET_MODEL and aiperf --model (deduplicated by place)."""
    out: list[Token] = []
    found = w.aiperf()
    container = found[0] if found else w.perf_container
    if container is not None:
        env = env_value(container, "TARGET_MODEL")
        if env is not None:
            out.append(Token(*env))
    if found:
        f = flag(found[2], "--model", "--model-names", "-m")
        if f is not None and all(t.loc != f.value.loc for t in out):
            out.append(f.value)
    return out


def _served_names(value: str, module: str) -> list[str]:
    """The names a worker registers from `--served-model-name`: vLLM and SGLang split a comma- or
    whitespace-separated list (the first the primary, the rest aliases; ai-dynamo 1.4.0
    dynamo/common/configuration/utils.py `split_served_model_names`); TRT-LLM takes the value whole."""
    if module in ("dynamo.vllm", "dynamo.sglang"):
        return [n for n in re.split(r"[\s,]+", value) if n]
    return [value]


@check("served-name-consistent")
def served_name_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every worker serves the metadata's `model.servedName`, and the perf Job requests that name
    (`TARGET_MODEL` / aiperf `--model`): the frontend lists the served name in `/v1/models` and
    routes by it, so any other name gets 404s. A worker serves its `--served-model-name` (vLLM and
    SGLang: each name of a comma/space list, the rest as aliases), else its `--model` /
    `--model-path` value.

    Fails: `--served-model-name llama-70b` on the worker and
    `TARGET_MODEL: RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic`.

    Source: ai-dynamo 1.4.0 dynamo/vllm/args.py + main.py (served_model_name; when unset
    `config.served_model_name = config.model`, main.py:123) and dynamo/sglang/args.py (unset ->
    model_path), names split by `split_served_model_names` (dynamo/common/configuration/utils.py:
    whitespace/comma list, first is primary, rest aliases); the frontend routes by the registered name.
    The reference value is recipe.yaml `model.servedName` (this catalogue's metadata).
    """
    served, _ = recipe.metadata_at("model", "servedName")
    if not isinstance(served, str):
        return
    w = recipe.workloads
    for pod, at, flags in w.engine_calls():
        f = flag(flags, "--served-model-name")
        if f is None:
            model = flag(flags, "--model", "--model-path")
            if model is None or model.value.value != served:  # unset: the worker serves its --model value
                serves = f"the model path {model.value.value!r}" if model else "the model path"
                yield problem(
                    at.loc,
                    f"worker {pod.name} has no --served-model-name: it serves {serves} instead of {served!r}",
                    f"add --served-model-name {served}",
                )
        elif served not in _served_names(f.value.value, at.value):
            yield problem(
                f.value.loc,
                f"worker {pod.name} serves {f.value.value!r} but recipe.yaml model.servedName is {served!r}",
                "use one served name everywhere",
            )
    if w.perf is None:
        return
    models = perf_models(w)
    if not models and w.aiperf():
        yield problem(
            w.aiperf()[1].words[0].loc,
            "the perf Job names no model (TARGET_MODEL / aiperf --model)",
            f"set TARGET_MODEL: {served}",
        )
    for t in models:
        if t.value != served:
            yield problem(
                t.loc, f"the perf Job requests {t.value!r} but the workers serve {served!r}", f"request {served}"
            )


# --- secrets -------------------------------------------------------------------------------


# The keys a Hugging Face token is read under (huggingface_hub reads HF_TOKEN, older code
# HUGGING_FACE_HUB_TOKEN); a whole-secret import (envFromSecret, envFrom) is how workers get it.
TOKEN_KEYS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class SecretRef:
    """One secret a pod reads: its name, where, the pod, and the key (None: the whole secret)."""

    name: str
    loc: Loc
    pod: Pod
    key: str | None

    @property
    def group(self) -> str:
        """What the reference is for: the HF token (whole-secret imports included), else its key."""
        return "HF token" if self.key is None or self.key in TOKEN_KEYS else self.key


def secret_refs(w: Workloads) -> Iterator[SecretRef]:
    """Secrets the recipe's pods read env from (envFromSecret, secretKeyRef, envFrom)."""
    for pod in w.pods:
        if pod.service is not None and isinstance(pod.service.data.get("envFromSecret"), str):
            yield SecretRef(pod.service.data["envFromSecret"], pod.service.data.loc_of("envFromSecret"), pod, None)
        envs = [sequence(pod.service.data.get("envs"))] if pod.service is not None else []
        for c in pod.containers:
            envs.append(sequence(c.data.get("env")))
            for item in sequence(c.data.get("envFrom")) or []:
                ref = mapping(dig(item, "secretRef"))
                if ref is not None and isinstance(ref.get("name"), str):
                    yield SecretRef(ref["name"], ref.loc_of("name"), pod, None)
        for env in envs:
            for item in env or []:
                ref = mapping(dig(item, "valueFrom", "secretKeyRef"))
                if ref is not None and isinstance(ref.get("name"), str):
                    key = ref.get("key")
                    yield SecretRef(ref["name"], ref.loc_of("name"), pod, key if isinstance(key, str) else None)


@check("secret-name-consistent")
def secret_name_consistent(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """One secret name per key across the recipe (the HF token: default `hf-token-secret`): the
    one the model-download Job reads is the one users create from the README, so a worker, EPP
    or perf Job that reads the same key from another secret fails with
    CreateContainerConfigError. Different keys may live in different secrets (the HF token in
    one, an S3 or NGC credential in another). A whole-secret import (`envFromSecret`,
    `envFrom.secretRef`) counts as reading the HF token, unless the same pod already reads the
    token from the expected secret (then the import is for something else).

    Fails: `envFromSecret: hf-secret` on a worker while the download Job reads `hf-token-secret`.

    Source: Kubernetes: a container whose `env[].valueFrom.secretKeyRef` / `envFrom[].secretRef` names a
    missing Secret fails with CreateContainerConfigError, and each reference names its own Secret and
    key, so different keys from different Secrets are fine
    (kubernetes.io/docs/concepts/configuration/secret, 'Using Secrets as environment variables'); the
    DGD `envFromSecret` field (DGD CRD, schemas/dynamo/1.6.1) becomes an envFrom secretRef. The
    single token secret name `hf-token-secret` is this catalogue's README convention.
    """
    w = recipe.workloads
    groups: dict[str, list[SecretRef]] = {}
    for ref in secret_refs(w):
        groups.setdefault(ref.group, []).append(ref)
    for group, refs in groups.items():
        from_download = [r.name for r in refs if r.pod in w.downloads]
        if from_download:
            expected, source = from_download[0], "the model-download Job"
        else:
            counts = Counter(r.name for r in refs)
            expected = DEFAULT_SECRET if DEFAULT_SECRET in counts else counts.most_common(1)[0][0]
            source = "the rest of the recipe"
        served = {id(r.pod) for r in refs if r.name == expected}
        for r in refs:
            if r.name == expected or (r.key is None and id(r.pod) in served):
                continue
            yield problem(
                r.loc,
                f"{r.pod.label} reads secret {r.name!r} but {source} uses {expected!r}",
                f"use secret {expected!r} (one token secret per namespace, created once from the README)"
                if group == "HF token"
                else f"use secret {expected!r} (the one secret that holds {group})",
            )


# --- endpoint picker -------------------------------------------------------------------------

BLOCK_FLAGS = ("--block-size", "--page-size", "--tokens-per-block")


def _trtllm_block(main: Container, flags: Flags) -> tuple[Token, str]:
    """Dynamo's TRT-LLM block size and what set it: `--kv-block-size`, DYN_TRTLLM_KV_BLOCK_SIZE, or
    Dynamo's default (32)."""
    f = flag(flags, TRTLLM_BLOCK_FLAG)
    if f is not None:
        return f.value, TRTLLM_BLOCK_FLAG
    env = env_value(main, TRTLLM_BLOCK_ENV)
    if env is not None:
        return Token(*env), TRTLLM_BLOCK_ENV
    return Token(str(TRTLLM_DEFAULT_BLOCK), main.loc), "Dynamo's TRT-LLM default"


@check("epp-block-size-matches")
def epp_block_size_matches(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The GAIE endpoint picker's KV block size (`DYN_KV_BLOCK_SIZE` or any `*BLOCK_SIZE*`
    env) equals the workers' `--block-size` (SGLang `--page-size`; TRT-LLM Dynamo's
    `--kv-block-size`, else DYN_TRTLLM_KV_BLOCK_SIZE, else its default 32, so a TRT-LLM worker
    that sets none is compared at 32): the picker hashes prompts into blocks of that size to
    find cached prefixes, and a different size silently mis-scores every request.

    Fails: `DYN_KV_BLOCK_SIZE: "32"` with workers at `--block-size 16`.

    Source: ai-dynamo/dynamo deploy/inference-gateway/epp/pkg/plugins/dynamo_kv_scorer/plugin.go
    `loadDynamoConfig` (DYN_KV_BLOCK_SIZE is required, a power of 2 in [16, 8192], and 'must match the
    model card's kv_cache_block_size'); the worker publishes that size in its model card: ai-dynamo
    1.4.0 dynamo/vllm/main.py (`kv_cache_block_size=runtime_values["kv_event_block_size"]`, vLLM
    `--block-size`, set at runtime by attention backend when absent, dynamo/vllm/args.py), SGLang
    `--page-size`, TRT-LLM Dynamo `--kv-block-size` (env DYN_TRTLLM_KV_BLOCK_SIZE, default 32: ai-dynamo
    1.6.1 dynamo/trtllm/backend_args.py; dynamo/trtllm/workers/llm_worker.py publishes it, or the
    engine's reported tokens per block, which `kv-block-size-consistent` keeps equal to it).
    """
    w = recipe.workloads
    epp_sizes = [
        (name, Token(*env))
        for pod in w.epp
        for c in pod.containers
        for name in sorted(c.env)
        if "BLOCK_SIZE" in name.upper() and (env := env_value(c, name))
    ]
    if not epp_sizes:
        return
    worker_sizes: dict[str, tuple[Token, str]] = {}
    for pod, at, flags in w.engine_calls():
        f = flag(flags, *BLOCK_FLAGS)
        if at.value == "dynamo.trtllm" and pod.main is not None:
            worker_sizes[pod.name] = _trtllm_block(pod.main, flags)
        elif f is None:
            yield problem(
                at.loc,
                f"the endpoint picker assumes a KV block size but worker {pod.name} sets no --block-size "
                "(the engine default may differ)",
                f"add --block-size {epp_sizes[0][1].value}",
            )
        else:
            worker_sizes[pod.name] = (f.value, "--block-size")
    for name, t in epp_sizes:
        for worker, (size, what) in worker_sizes.items():
            if as_int(t.value) != as_int(size.value):
                yield problem(
                    t.loc,
                    f"endpoint picker {name}={t.value} but worker {worker} uses {what} {size.value}",
                    f'set {name}: "{size.value}"',
                )
                break
