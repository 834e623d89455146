"""Cross-file consistency: the names and numbers one recipe writes in several files (model id,
served name, frontend Service, PVCs, cache paths, secrets, benchmark shape, KV block size)
agree, so the pieces find each other on a cluster."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from harness.checks import CheckContext, check
from harness.checks.kv_routing import TRTLLM_BLOCK_ENV, TRTLLM_BLOCK_FLAG, TRTLLM_DEFAULT_BLOCK
from harness.recipe.commandline import Flags
from harness.recipe.findings import Loc, Problem, Severity, problem
from harness.recipe.model import Container, Recipe, Token, as_int, dig, mapping, sequence
from harness.recipe.workloads import Mount, Pod, Workloads, env_value, flag, under

MODEL_FLAGS = ("--model", "--model-path")
CACHE_ENV = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "MODEL_PATH", "MODEL_DIR")
FRONTEND_PORT = 8000
DEFAULT_SECRET = "hf-token-secret"


def _meta(recipe: Recipe, *keys: str) -> tuple[object, Loc]:
    """A metadata value and its line (the deepest existing key's line when it is missing)."""
    node, loc = recipe.metadata, recipe.metadata.loc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None, loc
        loc = node.loc_of(key)
        node = node[key]
    return node, loc


def _engines(w: Workloads) -> Iterator[tuple[Pod, Token, Flags]]:
    """(worker pod, the `dynamo.X` word, its flags) for every worker that runs a Dynamo engine."""
    for pod in w.workers:
        found = w.engine(pod)
        if found is None or pod.main is None:
            continue
        module, flags = found
        at = next((t for cmd in w.script(pod.main).commands for t in cmd.words if t.value == module), None)
        yield pod, at or Token(module, pod.main.loc), flags


def _name(pod: Pod) -> str:
    return pod.service.name if pod.service else pod.label


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
    model_id, id_loc = _meta(recipe, "model", "id")
    if not isinstance(model_id, str):
        return  # metadata-schema reports it
    w = recipe.workloads
    for pod, at, flags in _engines(w):
        f = flag(flags, *MODEL_FLAGS)
        if f is None:
            yield problem(
                at.loc, f"worker {_name(pod)} names no model ({' / '.join(MODEL_FLAGS)})", f"add --model {model_id}"
            )
        elif not f.value.value.startswith("/") and f.value.value != model_id:
            yield problem(
                f.value.loc,
                f"worker {_name(pod)} loads {f.value.value} but recipe.yaml model.id is {model_id}",
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
    served, _ = _meta(recipe, "model", "servedName")
    if not isinstance(served, str):
        return
    w = recipe.workloads
    for pod, at, flags in _engines(w):
        f = flag(flags, "--served-model-name")
        if f is None:
            model = flag(flags, "--model", "--model-path")
            if model is None or model.value.value != served:  # unset: the worker serves its --model value
                serves = f"the model path {model.value.value!r}" if model else "the model path"
                yield problem(
                    at.loc,
                    f"worker {_name(pod)} has no --served-model-name: it serves {serves} instead of {served!r}",
                    f"add --served-model-name {served}",
                )
        elif served not in _served_names(f.value.value, at.value):
            yield problem(
                f.value.loc,
                f"worker {_name(pod)} serves {f.value.value!r} but recipe.yaml model.servedName is {served!r}",
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


def _names_service(host: str, service: str) -> bool:
    """`host` resolves to the Service in cluster DNS: `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` or
    `<svc>.<ns>.svc.cluster.local` (kubernetes.io/docs/concepts/services-networking/dns-pod-service)."""
    labels = host.lower().split(".")
    if labels[0] != service.lower():
        return False
    rest = labels[1:]
    return not rest or (bool(rest[0]) and rest[1:] in ([], ["svc"], ["svc", "cluster", "local"]))


@check("perf-endpoint-is-frontend")
def perf_endpoint_is_frontend(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The perf Job targets the frontend Service the operator creates,
    `http://<dgd-name>-frontend:8000` (ENDPOINT_URL and aiperf `--url`). An upstream recipe
    shipped `<name>-0:8000`, a Service that does not exist: the Job never reached the model.
    The Service's cluster DNS names count too (`<svc>.<ns>`, `<svc>.<ns>.svc[.cluster.local]`); a
    literal namespace in them is a warning (the Job reaches the frontend only in that namespace).

    Fails: `ENDPOINT_URL: http://llama-3-70b-vllm-agg-0:8000`.

    Source: Operator: the frontend Service is named `GetDCDResourceName(dgd, componentName, "")` =
    `<dgd>-<lower(component)>` with `.` replaced by `-` (deploy/operator/internal/dynamo/graph.go,
    GenerateComponentService), port `DynamoServicePort` 8000 named `http`
    (deploy/operator/internal/consts/consts.go). aiperf 0.13.0
    `--url` (prepends http:// when no scheme).
    """
    w = recipe.workloads
    dep = recipe.deployment
    if w.perf is None or dep is None or not dep.name:
        return
    # the operator names a component's Service <dgd>-<service name, lower-cased>
    frontends = dep.frontends
    expected = f"{dep.name}-{frontends[0].name.lower() if len(frontends) == 1 else 'frontend'}"
    container = w.perf_container
    found = w.aiperf()
    urls: list[Token] = []
    if container is not None:
        env = env_value(container, "ENDPOINT_URL")
        if env is not None:
            urls.append(Token(*env))
    if found:
        f = flag(found[2], "--url", "-u")
        if f is not None and all(t.loc != f.value.loc for t in urls):
            urls.append(f.value)
    if not urls and found:
        yield problem(
            found[1].words[0].loc,
            "the perf Job names no endpoint (ENDPOINT_URL / aiperf --url)",
            f"set ENDPOINT_URL: http://{expected}:{FRONTEND_PORT}",
        )
    for t in urls:
        text = t.value.strip()
        parts = urlsplit(text if "://" in text else f"http://{text}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = -1
        host = parts.hostname or ""
        namespace = host.split(".")[1] if "." in host else ""
        if (
            _names_service(host, expected)
            and port == FRONTEND_PORT
            and parts.scheme == "http"
            and namespace
            and "$" not in namespace
        ):
            yield problem(
                t.loc,
                f"the perf Job reaches the frontend only in namespace {namespace!r} ({text})",
                f"use http://{expected}:{FRONTEND_PORT}: the Service in the Job's own namespace",
                severity=Severity.WARNING,
            )
        elif not _names_service(host, expected) or port != FRONTEND_PORT or parts.scheme != "http":
            yield problem(
                t.loc,
                f"the perf Job targets {text} but the frontend Service is {expected}:{FRONTEND_PORT} "
                f"(the operator names it <DynamoGraphDeployment name>-frontend)",
                f"use http://{expected}:{FRONTEND_PORT}",
            )


# --- storage -------------------------------------------------------------------------------


def claim_refs(w: Workloads) -> Iterator[tuple[str, Loc, str]]:
    """Every PVC name a recipe uses: DGD spec.pvcs, service volumeMounts, pod volumes."""
    dep = w.recipe.deployment
    for item in sequence(dep.spec.get("pvcs") if dep else None) or []:
        if mapping(item) is not None and isinstance(item.get("name"), str) and item.get("create") is not True:
            yield item["name"], item.loc_of("name"), "spec.pvcs"
    for pod in w.pods:
        for name, loc in pod.claims:
            yield name, loc, pod.label


@check("pvc-defined")
def pvc_defined(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Every PVC a recipe mounts or lists (DGD `spec.pvcs`, `volumeMounts`, Job volumes'
    `claimName`) is defined by a manifest of the model's tree: the catalogue's
    `model-cache/model-cache.yaml`, any other manifest under the model directory (upstream keeps
    some in `model-cache/cache.yaml`), or the DGD itself with `create: true`. A wrong name leaves
    pods Pending forever. Upstream shipped PVC names that did not match.

    Fails: `claimName: model-cache-pvc` while model-cache.yaml defines `model-cache`.

    Source: the operator creates only `spec.pvcs` entries with `create: true`
    (ai-dynamo/dynamo deploy/operator api/v1alpha1 `PVC.Create`); every other claim must exist.
    """
    w = recipe.workloads
    conventional = w.pvc_docs()
    defined = w.model_tree_pvcs()
    names = ", ".join(sorted(conventional)) or "none"
    seen: set[tuple] = set()
    for name, loc, where in claim_refs(w):
        key = (name, loc)
        if name not in defined and key not in seen:
            seen.add(key)
            yield problem(
                loc,
                f"PVC {name!r} ({where}) is not defined in {recipe.model}/model-cache/model-cache.yaml "
                f"(defines: {names})",
                f"use one of: {', '.join(sorted(defined))}"
                if defined
                else "define the PVC in model-cache/model-cache.yaml",
            )


def _on_claim(path: str, mounts: list[Mount]) -> tuple[str, str] | None:
    """(claim, path inside the claim) of an absolute path under one of the mounts."""
    m = under(path, mounts)
    if m is None:
        return None
    rel = path[len(m.path.rstrip("/")) :].strip("/")
    claim, _, sub = m.claim.partition("/")
    return claim, "/".join(p for p in (sub, rel) if p)


def _cache_home(pod: Pod, c: Container) -> tuple[tuple[str, str] | None, Loc, str] | None:
    for name in ("HF_HUB_CACHE", "HF_HOME"):
        env = env_value(c, name)
        if env is not None and env[0].startswith("/"):
            path = env[0] if name == "HF_HUB_CACHE" else env[0].rstrip("/") + "/hub"
            return _on_claim(path, pod.mounts_of(c)), env[1], name
    return None


def _host_path_mounts(pod: Pod, c: Container) -> list[Mount]:
    """hostPath volumes mounted into the container: weights staged on the node are a model source too."""
    if pod.spec is None:
        return []
    host = {
        v["name"]: str(dig(v, "hostPath", "path"))
        for v in sequence(pod.spec.get("volumes")) or []
        if mapping(v) is not None and isinstance(v.get("name"), str) and mapping(v.get("hostPath")) is not None
    }
    out = []
    for vm in sequence(c.data.get("volumeMounts")) or []:
        if mapping(vm) is not None and vm.get("name") in host and isinstance(vm.get("mountPath"), str):
            out.append(Mount(f"hostPath:{host[vm['name']]}", vm["mountPath"], vm.loc_of("mountPath"), id(c.data)))
    return out


def _loads_from_disk(w: Workloads, pod: Pod) -> bool:
    """The worker reads its weights from a directory, not the hub cache: an absolute `--model`
    path (a `--local-dir` download or staged weights), or HF_HUB_OFFLINE=1 (an offline load)."""
    found = w.engine(pod)
    f = flag(found[1], *MODEL_FLAGS) if found else None
    if f is not None and f.value.value.startswith("/"):
        return True
    offline = env_value(pod.main, "HF_HUB_OFFLINE") if pod.main else None
    return offline is not None and offline[0].strip().lower() in ("1", "true", "yes", "on")


@check("model-path-on-pvc")
def model_path_on_pvc(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """Cache and model paths (`HF_HOME`, `HF_HUB_CACHE`, `MODEL_PATH`, an absolute
    `--model`) lie under a mounted PVC, and the workers read the cache where the download Job
    wrote it (same claim, same path inside it): otherwise every pod downloads the model again
    into its own disk at start, or cannot find it offline.

    Not held to it: the frontend (it loads no weights: workers publish the model card and
    tokenizer files when they register, ai-dynamo/dynamo lib/llm/src/discovery/watcher.rs and
    model_card.rs), paths on a hostPath mount (weights staged on the node), and a worker that
    loads from a directory (`--model /abs/path`, e.g. after `hf download --local-dir`) or
    offline (`HF_HUB_OFFLINE=1`) needs no HF_HOME matching the download Job.

    Fails: `HF_HOME: /root/.cache/huggingface` on a worker whose PVC is mounted at /model-cache.

    Source: huggingface_hub cache layout (HF_HOME, HF_HUB_CACHE = $HF_HOME/hub;
    huggingface_hub/constants.py) and Kubernetes volumes: only a PersistentVolumeClaim (or a hostPath)
    outlives the pod and is shared with the download Job; the frontend needs no weights (ai-dynamo
    lib/llm/src/discovery/watcher.rs, model_card.rs).
    """
    w = recipe.workloads
    for pod in w.pods:
        if pod.service is not None and pod.service.role == "frontend":
            continue  # the frontend loads no weights: it takes the model card from the workers' registration
        for c in pod.containers:
            mounts = pod.mounts_of(c)
            staged = _host_path_mounts(pod, c)
            for name in CACHE_ENV:
                env = env_value(c, name)
                if (
                    env is not None
                    and env[0].startswith("/")
                    and under(env[0], mounts) is None
                    and under(env[0], staged) is None
                ):
                    yield problem(
                        env[1],
                        f"{name}={env[0]} in {pod.label} is not on a mounted PVC "
                        f"({', '.join(m.path for m in mounts) or 'no PVC mounted'})",
                        "mount the model-cache PVC and point it under the mount path",
                    )
    for pod, _at, flags in _engines(w):
        f = flag(flags, *MODEL_FLAGS)
        if (
            f is not None
            and f.value.value.startswith("/")
            and pod.main
            and under(f.value.value, pod.mounts_of(pod.main)) is None
            and under(f.value.value, _host_path_mounts(pod, pod.main)) is None
        ):
            yield problem(
                f.value.loc,
                f"worker {_name(pod)} loads {f.value.value}, which is not on a mounted PVC",
                "mount the model-cache PVC and load the model from under it",
            )
    # the workers' cache is where the download Job put it
    written = {home[0] for pod in w.downloads for c in pod.containers if (home := _cache_home(pod, c)) and home[0]}
    if not written:
        return
    for pod in w.workers:
        if pod.main is None:
            continue
        home = _cache_home(pod, pod.main)
        if home is None and _loads_from_disk(w, pod):
            continue
        if home is None:
            yield problem(
                pod.main.loc,
                f"worker {_name(pod)} sets no HF_HOME: it downloads the model again instead of reading the cache",
                f"set HF_HOME so that the hub cache is {sorted(written)[0][0]}:/{sorted(written)[0][1]}",
            )
        elif home[0] is not None and home[0] not in written:
            claim, rel = home[0]
            want = ", ".join(f"{c}:/{r}" for c, r in sorted(written))
            yield problem(
                home[1],
                f"worker {_name(pod)} reads the hub cache at {claim}:/{rel} but the download Job writes {want}",
                "point HF_HOME at the same directory of the same PVC as the download Job",
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


# --- benchmark shape ------------------------------------------------------------------------


def _perf_numbers(w: Workloads, env_names: tuple[str, ...], flag_names: tuple[str, ...]) -> list[Token]:
    """An integer the perf Job states as env and/or aiperf flag (one Token per place)."""
    out: list[Token] = []
    container = w.perf_container
    if container is not None:
        for name in env_names:
            env = env_value(container, name)
            if env is not None:
                out.append(Token(*env))
    found = w.aiperf()
    if found:
        f = flag(found[2], *flag_names)
        if f is not None and all(t.loc != f.value.loc for t in out):
            out.append(f.value)
    return out


@check("perf-concurrency-matches-metadata", convention=True)
def perf_concurrency_matches_metadata(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The perf Job's concurrency (`CONCURRENCY`, aiperf `--concurrency`) and GPU count
    (`DEPLOYMENT_GPU_COUNT`) are the metadata's `benchmark.concurrency` and `gpus`, and
    concurrency = `concurrencyPerGpu` x `gpus`: per-GPU throughput and the baselines are
    computed from these numbers.

    Fails: `CONCURRENCY: "64"` with `benchmark: {concurrency: 32}`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    numbers are recipe.yaml `benchmark.concurrency`, `benchmark.concurrencyPerGpu`, `gpus`; the flag
    read is aiperf 0.13.0 `--concurrency` (aiperf/config/flags/cli_config.py) and the env names
    CONCURRENCY / CONCURRENCY_PER_GPU / DEPLOYMENT_GPU_COUNT of our perf Job template.
    """
    concurrency, c_loc = _meta(recipe, "benchmark", "concurrency")
    per_gpu, _ = _meta(recipe, "benchmark", "concurrencyPerGpu")
    gpus, _ = _meta(recipe, "gpus")
    if (
        isinstance(concurrency, int)
        and isinstance(per_gpu, int)
        and isinstance(gpus, int)
        and per_gpu * gpus != concurrency
    ):
        yield problem(
            c_loc,
            f"benchmark.concurrency is {concurrency} but concurrencyPerGpu x gpus = "
            f"{per_gpu} x {gpus} = {per_gpu * gpus}",
            f"set benchmark.concurrency: {per_gpu * gpus}",
        )
    w = recipe.workloads
    if w.perf is None:
        return
    checks = (
        (concurrency, "benchmark.concurrency", ("CONCURRENCY",), ("--concurrency",)),
        (per_gpu, "benchmark.concurrencyPerGpu", ("CONCURRENCY_PER_GPU",), ()),
        (gpus, "gpus", ("DEPLOYMENT_GPU_COUNT",), ()),
    )
    for expected, key, env_names, flag_names in checks:
        if not isinstance(expected, int):
            continue
        for t in _perf_numbers(w, env_names, flag_names):
            if as_int(t.value) != expected:
                yield problem(
                    t.loc, f"the perf Job uses {t.value} but recipe.yaml {key} is {expected}", f"use {expected}"
                )


@check("perf-lengths-match-metadata", convention=True)
def perf_lengths_match_metadata(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The perf Job's input and output lengths and request count (ISL/OSL env, aiperf
    `--synthetic-input-tokens-mean`, `--output-tokens-mean`, `--request-count`) are the
    metadata's `benchmark.isl`, `osl` and `requestCount`: the targets and the catalogue
    table quote those.

    Fails: `--output-tokens-mean 512` with `benchmark: {osl: 1024}`.

    Source: This catalogue's convention (not a Dynamo rule); convention check: off on foreign trees. The
    numbers are recipe.yaml `benchmark.{isl,osl,requestCount}`; the flags read are aiperf 0.13.0
    `--synthetic-input-tokens-mean`/`--isl`,
    `--output-tokens-mean`/`--osl`/`--prompt-output-tokens-mean`, `--request-count`/`--num-requests`
    (aiperf/config/flags/cli_config.py CLIConfig).
    """
    w = recipe.workloads
    if w.perf is None:
        return
    checks = (
        ("isl", ("ISL",), ("--synthetic-input-tokens-mean", "--isl", "--prompt-input-tokens-mean")),
        ("osl", ("OSL",), ("--output-tokens-mean", "--osl", "--prompt-output-tokens-mean")),
        ("requestCount", ("REQUEST_COUNT",), ("--request-count", "--num-requests")),
    )
    for key, env_names, flag_names in checks:
        expected, _ = _meta(recipe, "benchmark", key)
        if not isinstance(expected, int):
            continue
        for t in _perf_numbers(w, env_names, flag_names):
            if as_int(t.value) != expected:
                yield problem(
                    t.loc,
                    f"the perf Job uses {t.value} but recipe.yaml benchmark.{key} is {expected}",
                    f"use {expected}",
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
    for pod, at, flags in _engines(w):
        f = flag(flags, *BLOCK_FLAGS)
        if at.value == "dynamo.trtllm" and pod.main is not None:
            worker_sizes[_name(pod)] = _trtllm_block(pod.main, flags)
        elif f is None:
            yield problem(
                at.loc,
                f"the endpoint picker assumes a KV block size but worker {_name(pod)} sets no --block-size "
                "(the engine default may differ)",
                f"add --block-size {epp_sizes[0][1].value}",
            )
        else:
            worker_sizes[_name(pod)] = (f.value, "--block-size")
    for name, t in epp_sizes:
        for worker, (size, what) in worker_sizes.items():
            if as_int(t.value) != as_int(size.value):
                yield problem(
                    t.loc,
                    f"endpoint picker {name}={t.value} but worker {worker} uses {what} {size.value}",
                    f'set {name}: "{size.value}"',
                )
                break
