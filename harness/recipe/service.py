"""A DynamoGraphDeployment and its services (components): role, replicas, GPUs, and the one reading of
a service's `python -m dynamo.X` call (`Service.flags`, `Service.engine`, `Service.router_mode`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from harness.recipe.commandline import Flags, Script, Token, dynamo_engine, parse_flags
from harness.recipe.container import Container, build_container, env_literals
from harness.recipe.findings import Loc
from harness.recipe.yamlsrc import Document, SrcMap, as_int, dig, mapping, sequence

# Flags that take no value, per program, so a following flag or positional is not read as their
# value. Engines: the store-true flags of vLLM, SGLang and TRT-LLM our recipes use (one set for
# all three, as the checks always read them). Frontend: every `nargs=0` option of the frontend's
# parser (FrontendArgGroup in ai-dynamo/dynamo components/src/dynamo/frontend/frontend_args.py and
# the groups it adds from components/src/dynamo/common/configuration/groups/, release 1.4.2);
# tests/test_commandline.py compares it with the installed parser.
ENGINE_BOOLEAN_FLAGS = frozenset(
    {
        "--enable-expert-parallel",
        "-ep",
        "--enable-dp-attention",
        "--enable-attention-dp",
        "--is-prefill-worker",
        "--is-decode-worker",
        "--trust-remote-code",
        "--enforce-eager",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--disable-log-requests",
        "--skip-tokenizer-init",
    }
)
FRONTEND_BOOLEAN_FLAGS = frozenset(
    {
        "--assume-kv-reuse",
        "--dyn-debug-perf",
        "--enable-anthropic-api",
        "--enable-streaming-reasoning-dispatch",
        "--enable-streaming-tool-dispatch",
        "--enforce-disagg",
        "--exclude-tools-when-tool-choice-none",
        "--interactive",
        "--kserve-grpc-server",
        "--kv-events",
        "--load-aware",
        "--router-assume-kv-reuse",
        "--router-kv-events",
        "--router-replica-sync",
        "--router-track-active-blocks",
        "--router-track-output-blocks",
        "--router-track-prefill-tokens",
        "--serve-indexer",
        "--strip-anthropic-preamble",
        "--track-active-blocks",
        "--track-output-blocks",
        "--trust-remote-code",
        "--use-remote-indexer",
        "--version",
        "-i",
        "--no-assume-kv-reuse",
        "--no-dyn-debug-perf",
        "--no-enable-anthropic-api",
        "--no-enable-streaming-reasoning-dispatch",
        "--no-enable-streaming-tool-dispatch",
        "--no-enforce-disagg",
        "--no-exclude-tools-when-tool-choice-none",
        "--no-interactive",
        "--no-kserve-grpc-server",
        "--no-kv-events",
        "--no-load-aware",
        "--no-router-assume-kv-reuse",
        "--no-router-kv-events",
        "--no-router-replica-sync",
        "--no-router-track-active-blocks",
        "--no-router-track-output-blocks",
        "--no-router-track-prefill-tokens",
        "--no-serve-indexer",
        "--no-strip-anthropic-preamble",
        "--no-track-active-blocks",
        "--no-track-output-blocks",
        "--no-trust-remote-code",
        "--no-use-remote-indexer",
    }
)
FRONTEND_MODULE = "dynamo.frontend"

# The frontend's router: `--router-mode` (env DYN_ROUTER_MODE, default "round-robin") in
# ai-dynamo/dynamo components/src/dynamo/common/configuration/groups/router_args.py, and
# `--load-aware` (env DYN_ROUTER_LOAD_AWARE, kv_router_args.py) which FrontendArgs.validate in
# components/src/dynamo/frontend/frontend_args.py turns into router mode "kv" (release 1.4.2).
ROUTER_MODE_FLAG = "--router-mode"
ROUTER_MODE_ENV = "DYN_ROUTER_MODE"
DEFAULT_ROUTER_MODE = "round-robin"
LOAD_AWARE_FLAGS = ("--load-aware", "--no-load-aware")
LOAD_AWARE_ENV = "DYN_ROUTER_LOAD_AWARE"
_ENV_TRUE = ("true", "1", "yes", "on")  # env_or_default's reading of a boolean (common/configuration/utils.py)


def _command_line(script: Script) -> list[Token]:
    """Every word of a script, the operator that ends each command kept as a word of its own."""
    out: list[Token] = []
    for cmd in script.commands:
        out.extend(cmd.words)
        if cmd.end and cmd.words:
            out.append(Token(cmd.end, cmd.words[-1].loc))
    return out


@dataclass(frozen=True)
class RouterMode:
    """How a frontend routes, and what sets it: a flag, an env var, or Dynamo's default (no loc)."""

    value: str
    source: str  # `--router-mode`, `--load-aware`, `DYN_ROUTER_MODE`, `DYN_ROUTER_LOAD_AWARE` or "default"
    loc: Loc | None = None

    @property
    def is_default(self) -> bool:
        return self.source == "default"


def router_mode_of(flags: Flags, env: dict[str, str], env_locs: dict[str, Loc]) -> RouterMode:
    """The router mode `python -m dynamo.frontend` runs with these flags and env (sources: see
    ROUTER_MODE_FLAG). The sim plan calls it with the flags its frontend keeps."""
    aware = flags.get(*LOAD_AWARE_FLAGS)
    if aware is not None and aware.name == "--load-aware":
        return RouterMode("kv", aware.name, aware.flag.loc)
    if aware is None and env.get(LOAD_AWARE_ENV, "").strip().lower() in _ENV_TRUE:
        return RouterMode("kv", LOAD_AWARE_ENV, env_locs.get(LOAD_AWARE_ENV))
    mode = flags.get(ROUTER_MODE_FLAG)
    if mode is not None:
        return RouterMode(mode.value.value, ROUTER_MODE_FLAG, mode.value.loc)
    if env.get(ROUTER_MODE_ENV):
        return RouterMode(env[ROUTER_MODE_ENV], ROUTER_MODE_ENV, env_locs.get(ROUTER_MODE_ENV))
    return RouterMode(DEFAULT_ROUTER_MODE, "default")


@dataclass
class Service:
    """One DGD service/component: frontend, worker, prefill or decode worker, planner, epp."""

    name: str
    data: SrcMap
    api_version: str
    main: Container | None

    @property
    def loc(self) -> Loc:
        return self.data.loc

    @cached_property
    def module(self) -> Token | None:
        """The `dynamo.vllm` / `dynamo.frontend` word of the main container's `python -m` call."""
        inv = self.main.dynamo_invocation() if self.main else None
        return inv[0] if inv else None

    @property
    def engine(self) -> str:
        """What `python -m dynamo.X` runs: `vllm`, `sglang`, `trtllm`, `frontend`, ... ("" when the
        main container starts no Dynamo module)."""
        return dynamo_engine(self.module.value) if self.module is not None else ""

    @cached_property
    def flags(self) -> Flags:
        """The flags of the main container's `python -m dynamo.X` call, with their positions; of
        its whole command line when it starts no Dynamo module. The one reading of a service's
        flags: checks, topology, the sim plan and the k8s deployer all use it."""
        if self.main is None:
            return Flags()
        inv = self.main.dynamo_invocation()
        if inv is not None:
            args = inv[1]
        else:
            args = _command_line(self.main.script)
        booleans = FRONTEND_BOOLEAN_FLAGS if inv and inv[0].value == FRONTEND_MODULE else ENGINE_BOOLEAN_FLAGS
        return parse_flags(args, booleans)

    @cached_property
    def router_mode(self) -> RouterMode:
        """The router a frontend runs, as `python -m dynamo.frontend` decides it: `--load-aware`
        (or DYN_ROUTER_LOAD_AWARE) means kv, else `--router-mode`, else DYN_ROUTER_MODE, else
        round-robin (see ROUTER_MODE_FLAG for the source)."""
        if self.main is None:
            return RouterMode(DEFAULT_ROUTER_MODE, "default")
        return router_mode_of(self.flags, self.main.env, self.main.env_locs)

    @property
    def component_type(self) -> str:
        v = self.data.get("componentType") or self.data.get("type") or ""
        return str(v)

    @property
    def sub_component_type(self) -> str:
        v = self.data.get("subComponentType") or ""
        if not v and self.component_type in ("prefill", "decode"):
            v = self.component_type
        return str(v)

    @property
    def role(self) -> str:
        """frontend | prefill | decode | worker (aggregated) | planner | epp | <other>."""
        ct = self.component_type
        if ct in ("frontend", "planner", "epp"):
            return ct
        if self.sub_component_type in ("prefill", "decode"):
            return self.sub_component_type
        if ct in ("worker", "main", "prefill", "decode"):
            return ct if ct in ("prefill", "decode") else "worker"
        return ct or "worker"

    @property
    def is_worker(self) -> bool:
        return self.role in ("worker", "prefill", "decode")

    @property
    def replicas(self) -> int:
        v = as_int(self.data.get("replicas"))
        return 1 if v is None else v

    @property
    def node_count(self) -> int:
        v = as_int(dig(self.data, "multinode", "nodeCount"))
        return 1 if v is None else v

    @property
    def resources(self) -> SrcMap | None:
        if "resources" in self.data:
            return mapping(self.data.get("resources"))
        return mapping(self.main.data.get("resources")) if self.main else None

    @property
    def gpu_limit(self) -> int:
        """GPUs per pod (per node of a multinode replica)."""
        res = self.resources
        if res is None:
            return 0
        for section in ("limits", "requests"):
            sec = mapping(res.get(section))
            if sec is None:
                continue
            for key in ("gpu", "nvidia.com/gpu"):
                v = as_int(sec.get(key))
                if v is not None:
                    return v
        return 0

    @property
    def gpu_limit_loc(self) -> Loc:
        res = self.resources
        if res is None:
            return self.loc
        for section in ("limits", "requests"):
            sec = mapping(res.get(section))
            if sec is not None:
                for key in ("gpu", "nvidia.com/gpu"):
                    if key in sec:
                        return sec.loc_of(key)
        return res.loc

    @property
    def invalid_counts(self) -> list[tuple[str, Loc]]:
        """The counts this service states but not as a number (`replicas: eight`): the properties above
        default them, so nothing computed from them may be reported as a fact (the schema check names them)."""
        out: list[tuple[str, Loc]] = []
        if self.data.get("replicas") is not None and as_int(self.data.get("replicas")) is None:
            out.append(("replicas", self.data.loc_of("replicas")))
        multinode = mapping(self.data.get("multinode"))
        if multinode is not None and multinode.get("nodeCount") is not None and self.node_count_raw is None:
            out.append(("multinode.nodeCount", multinode.loc_of("nodeCount")))
        res = self.resources
        for section in ("limits", "requests"):
            sec = mapping(res.get(section)) if res is not None else None
            for key in ("gpu", "nvidia.com/gpu"):
                if sec is not None and sec.get(key) is not None and as_int(sec.get(key)) is None:
                    out.append((f"{section}.{key}", sec.loc_of(key)))
        return out

    @property
    def node_count_raw(self) -> int | None:
        return as_int(dig(self.data, "multinode", "nodeCount"))

    @property
    def gpus_per_replica(self) -> int:
        return self.gpu_limit * self.node_count

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_replica * self.replicas


@dataclass
class Deployment:
    """A DynamoGraphDeployment, v1alpha1 (services map) or v1beta1 (components list)."""

    doc: Document

    @property
    def data(self) -> SrcMap:
        return self.doc.data

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def api_version(self) -> str:
        return self.doc.api_version

    @property
    def spec(self) -> SrcMap:
        return mapping(self.data.get("spec")) or SrcMap(self.doc.loc)

    @property
    def backend_framework(self) -> str:
        v = self.spec.get("backendFramework")
        return v if isinstance(v, str) else ""

    def _spec_env(self) -> tuple[dict[str, str], dict[str, Loc]]:
        return env_literals(self.spec.get("envs") or self.spec.get("env"))

    @cached_property
    def services(self) -> list[Service]:
        out: list[Service] = []
        spec_env, spec_locs = self._spec_env()
        services = mapping(self.spec.get("services"))
        if services is not None:  # v1alpha1
            for name, svc in services.items():
                svc = mapping(svc)
                if svc is None:
                    continue
                main = mapping(dig(svc, "extraPodSpec", "mainContainer"))
                out.append(
                    Service(
                        str(name),
                        svc,
                        self.api_version,
                        build_container(main, svc, spec_env, spec_locs, svc.get("envs")),
                    )
                )
        components = sequence(self.spec.get("components"))
        if components is not None:  # v1beta1
            for comp in components:
                comp = mapping(comp)
                if comp is None:
                    continue
                containers = sequence(dig(comp, "podTemplate", "spec", "containers")) or []
                main = next(
                    (mapping(c) for c in containers if mapping(c) is not None and dig(c, "name") == "main"), None
                )
                if main is None and containers:
                    main = mapping(containers[0])
                out.append(
                    Service(
                        str(comp.get("name") or ""),
                        comp,
                        self.api_version,
                        build_container(main, comp, spec_env, spec_locs, None),
                    )
                )
        return out

    @property
    def workers(self) -> list[Service]:
        return [s for s in self.services if s.is_worker]

    @property
    def frontends(self) -> list[Service]:
        return [s for s in self.services if s.role == "frontend"]

    @property
    def total_gpus(self) -> int:
        return sum(s.total_gpus for s in self.workers)
