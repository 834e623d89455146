"""Ports: the frontend listens where the operator's Service sends traffic."""

from __future__ import annotations

from collections.abc import Iterator

from harness.checks import CheckContext, check
from harness.recipe.findings import Loc, Problem, problem
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import as_int, mapping, sequence

# dynamo.frontend: `--http-port`, env DYN_HTTP_PORT, default 8000 (ai-dynamo 1.4.0
# dynamo/frontend/frontend_args.py). The operator gives the frontend container the port `http`
# 8000 and a Service port 8000 -> targetPort `http` (deploy/operator/internal/dynamo/component_frontend.go,
# consts.go DynamoServicePort / DynamoContainerPortName).
HTTP_PORT_FLAG = "--http-port"
HTTP_PORT_ENV = "DYN_HTTP_PORT"
DEFAULT_HTTP_PORT = 8000
PORT_NAME = "http"


def listening_port(svc: Service) -> tuple[int | None, Loc | None, str]:
    """The port `python -m dynamo.frontend` binds: (port, where, what set it)."""
    found = svc.flags.get(HTTP_PORT_FLAG)
    if found is not None:
        return as_int(found.value.value), found.value.loc, HTTP_PORT_FLAG
    if svc.main is not None and HTTP_PORT_ENV in svc.main.env:
        return as_int(svc.main.expand(svc.main.env[HTTP_PORT_ENV])), svc.main.env_locs.get(HTTP_PORT_ENV), HTTP_PORT_ENV
    return DEFAULT_HTTP_PORT, None, "dynamo.frontend's default"


def target_port(svc: Service) -> tuple[int, Loc | None]:
    """The container port named `http`: the user's, when the main container declares one, else the operator's 8000."""
    for item in (sequence(svc.main.data.get("ports")) if svc.main is not None else None) or []:
        item = mapping(item)
        if item is not None and item.get("name") == PORT_NAME and as_int(item.get("containerPort")) is not None:
            return as_int(item["containerPort"]), item.loc_of("containerPort")
    return DEFAULT_HTTP_PORT, None


@check("frontend-port-matches-service")
def frontend_port_matches_service(recipe: Recipe, ctx: CheckContext) -> Iterator[Problem]:
    """The frontend listens on the port its Service targets. The operator creates the frontend
    Service `<dgd>-frontend` with port 8000 -> targetPort `http`, the container port `http`
    8000, and probes `/live` and `/health` on that port; `python -m dynamo.frontend` binds
    `--http-port` (env DYN_HTTP_PORT, default 8000). A frontend on another port fails its
    readiness probe, so the graph never becomes ready, and the perf Job (which targets the
    Service on 8000, see `perf-endpoint-is-frontend`) reaches nothing.

    Fails: `args: [--http-port, "8080"]` on the frontend.
    Fix: `--http-port 8000` (or declare the container port `http` as 8080 so the Service follows).

    Source: ai-dynamo 1.4.0 dynamo/frontend/frontend_args.py (`--http-port`, DYN_HTTP_PORT,
    default 8000); operator deploy/operator/internal/dynamo/component_frontend.go (port `http`
    8000, probes on `http`, env DYN_HTTP_PORT=8000) and the Service `Port 8000, TargetPort "http"`
    (graph.go GenerateComponentService).
    """
    dep = recipe.deployment
    if dep is None:
        return
    for svc in dep.frontends:
        port, where, what = listening_port(svc)
        want, want_loc = target_port(svc)
        if port is None or port == want:
            continue
        declared = (
            f"the container port http {want} (line {want_loc.line})"
            if want_loc
            else f"the operator's container port http {want}"
        )
        yield problem(
            where or (svc.main.loc if svc.main else svc.loc),
            f"frontend {svc.name} listens on {port} ({what}) but its Service targets {declared}: "
            "the readiness probe fails and the perf Job's requests to port 8000 reach nothing",
            f"use {HTTP_PORT_FLAG} {want}",
        )
