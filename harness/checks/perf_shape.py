"""The perf Job agrees with the recipe it benchmarks: it calls the recipe's frontend Service, and its
concurrency and request lengths are the ones recipe.yaml states."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from harness.checks import CheckContext, check
from harness.recipe.commandline import Token
from harness.recipe.findings import Problem, Severity, problem
from harness.recipe.model import Recipe
from harness.recipe.workloads import Workloads, env_value, flag
from harness.recipe.yamlsrc import as_int

FRONTEND_PORT = 8000


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


_METRICS_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?::\d+)?/metrics\b")


@check("perf-metrics-urls-name-components")
def perf_metrics_urls_name_components(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """A server-metrics URL the perf Job scrapes (`--server-metrics`, `AIPERF_SERVER_METRICS_URLS`, any
    `http://<host>/metrics` in its env or script) that names a component of this deployment,
    `<dgd-name>-<component>...`, names one the deployment has: an aggregated recipe copied from its
    disaggregated sibling kept `<dgd>-prefill-0` and `<dgd>-dec-0-...`, hosts that never resolve, so the
    benchmark records no server metrics (or fails to start scraping). A host that does not start with
    the DynamoGraphDeployment's name is not judged.

    Fails: `http://demo-agg-prefill-0:9090/metrics` for a DGD `demo-agg` whose services are Frontend and agg.
    Fix: name the components the deployment has (`http://demo-agg-agg-0:9090/metrics`).

    Source: Operator: every resource of a component is named after `<dgd>-<lower(component)>`
    (`GetDCDResourceName`, deploy/operator/internal/dynamo/graph.go; Grove pods `<dgd>-<replica>-<component>...`),
    so a host `<dgd>-<x>` whose `<x>` starts with no component name is no Service or pod of the deployment.
    """
    w = recipe.workloads
    dep = recipe.deployment
    if w.perf is None or dep is None or not dep.name:
        return
    prefix = dep.name.lower() + "-"
    components = sorted({s.name.lower().replace(".", "-") for s in dep.services if s.name}, key=len, reverse=True)
    for container in w.perf.containers:
        texts = [(value, container.env_locs.get(name, container.loc)) for name, value in container.env.items()]
        if container.shell_script is not None:
            texts.append((container.shell_script.value, container.shell_script.loc))
        seen: set[str] = set()
        for text, loc in texts:
            for host in _METRICS_URL.findall(text):
                name = host.lower().split(".")[0]
                if not name.startswith(prefix) or name in seen:
                    continue
                rest = re.sub(r"^\d+-", "", name[len(prefix) :])  # Grove: <dgd>-<replica>-<component>
                if any(rest == c or rest.startswith(c + "-") for c in components):
                    continue
                seen.add(name)
                yield problem(
                    loc,
                    f"the perf Job scrapes metrics from {host}, but DynamoGraphDeployment {dep.name} has no such "
                    f"component (services: {', '.join(s.name for s in dep.services)})",
                    f"point the metrics URL at a component of {dep.name}, or drop it",
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
    concurrency, c_loc = recipe.metadata_at("benchmark", "concurrency")
    per_gpu, _ = recipe.metadata_at("benchmark", "concurrencyPerGpu")
    gpus, _ = recipe.metadata_at("gpus")
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
        expected, _ = recipe.metadata_at("benchmark", key)
        if not isinstance(expected, int):
            continue
        for t in _perf_numbers(w, env_names, flag_names):
            if as_int(t.value) != expected:
                yield problem(
                    t.loc,
                    f"the perf Job uses {t.value} but recipe.yaml benchmark.{key} is {expected}",
                    f"use {expected}",
                )
