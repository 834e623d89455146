"""The recipe domain model: Recipe -> Deployment -> Service -> Container, with source positions."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.recipe.commandline import Flags, Script, Token, parse_flags, parse_script
from harness.recipe.findings import Loc
from harness.recipe.yamlsrc import Document, LoadedFile, SrcList, SrcMap, load_yaml_file, loc_at_path

FRAMEWORKS = ("vllm", "sglang", "trtllm")
METADATA_FILE = "recipe.yaml"
DEPLOY_FILE = "deploy.yaml"
PERF_FILE = "perf.yaml"
MODEL_CACHE_DIR = "model-cache"
MODEL_CACHE_FILE = "model-cache.yaml"
MODEL_DOWNLOAD_FILE = "model-download.yaml"
GAIE_DIR = "gaie"
DGD_KIND = "DynamoGraphDeployment"
DGD_GROUP = "nvidia.com"

_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env", "/usr/bin/bash"}

if TYPE_CHECKING:
    from harness.recipe.workloads import Workloads

T = TypeVar("T")

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


def mapping(value: Any) -> SrcMap | None:
    return value if isinstance(value, SrcMap) else None


def sequence(value: Any) -> SrcList | None:
    return value if isinstance(value, SrcList) else None


def dig(node: Any, *keys: Any) -> Any:
    """Follow keys/indexes through mappings and lists; None when any step is missing."""
    for key in keys:
        if isinstance(node, dict) and not isinstance(key, int):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def loc_of(node: Any, *keys: Any, default: Loc | None = None) -> Loc:
    """The deepest known source position along a key path."""
    return loc_at_path(node, keys, getattr(node, "loc", None) or default or Loc(Path("?")))


def as_int(value: Any) -> int | None:
    """Kubernetes quantities for counts come as ints or strings ("4")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass
class Container:
    """A container spec (DGD main container, Job container, Deployment container)."""

    data: SrcMap
    env: dict[str, str] = field(default_factory=dict)  # literal values, service/spec-level env merged in
    env_locs: dict[str, Loc] = field(default_factory=dict)
    env_from_secret: dict[str, str] = field(default_factory=dict)  # var -> secret name

    @property
    def loc(self) -> Loc:
        return self.data.loc

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def image(self) -> Any:
        return self.data.get("image")

    @property
    def image_loc(self) -> Loc:
        return self.data.loc_of("image") if "image" in self.data else self.data.loc

    def _list(self, key: str) -> list[Token]:
        seq = sequence(self.data.get(key))
        if seq is None:
            return []
        return [Token(str(v), seq.loc_of(i)) for i, v in enumerate(seq) if isinstance(v, (str, int, float))]

    @property
    def command(self) -> list[Token]:
        return self._list("command")

    @property
    def args(self) -> list[Token]:
        return self._list("args")

    @cached_property
    def shell_script(self) -> Token | None:
        """The script of a `sh -c` container (command or args form), else None."""
        raw = self.command + self.args
        for i, tok in enumerate(raw[:-1]):
            if tok.value in _SHELLS or tok.value.endswith("/sh") or tok.value.endswith("/bash"):
                rest = raw[i + 1 :]
                flags = [t for t in rest if t.value.startswith("-")]
                if flags and "c" in flags[0].value and rest.index(flags[0]) + 1 < len(rest):
                    return rest[rest.index(flags[0]) + 1]
        return None

    def expand(self, text: str) -> str:
        """Resolve $VAR, ${VAR} and $(VAR) from the container's literal env; unknown refs stay."""

        def sub(m: re.Match) -> str:
            name = m.group(1) or m.group(2) or m.group(3)
            return self.env.get(name, m.group(0))

        for _ in range(3):  # env values may reference each other
            new = _ENV_REF.sub(sub, text)
            if new == text:
                break
            text = new
        return text

    @cached_property
    def argv(self) -> list[Token]:
        """The effective command line: exec form as is, `sh -c` scripts split like a shell
        would (first command chain only ends at `&&`/`;` boundaries kept as tokens), env expanded."""
        script = self.shell_script
        if script is None:
            return [Token(self.expand(t.value), t.loc) for t in self.command + self.args]
        return [Token(self.expand(v), loc) for v, loc in _split_script(script)]

    @cached_property
    def script(self) -> Script:
        """The command line as commands (a `sh -c` script split, or the exec form), env expanded,
        every word at the line to edit (an env var's value line when the word comes from one)."""
        return parse_script(self)

    def dynamo_invocation(self) -> tuple[Token, list[Token]] | None:
        """(the `dynamo.vllm` word, the words after it) of the `python -m dynamo.X` call."""
        for cmd in self.script.commands:
            words = cmd.words
            for i, tok in enumerate(words[:-1]):
                if tok.value == "-m" and words[i + 1].value.startswith("dynamo."):
                    return words[i + 1], words[i + 2 :]
        return None


def _command_line(script: Script) -> list[Token]:
    """Every word of a script, the operator that ends each command kept as a word of its own."""
    out: list[Token] = []
    for cmd in script.commands:
        out.extend(cmd.words)
        if cmd.end and cmd.words:
            out.append(Token(cmd.end, cmd.words[-1].loc))
    return out


def _split_script(script: Token) -> Iterator[tuple[str, Loc]]:
    """Split a shell script into words, with the line each word is on.

    Newlines separate commands (a `;` token is emitted between them) and a backslash-newline
    continues a command, as in a shell; comments are dropped."""
    base = script.loc
    block = "\n" in script.value.rstrip("\n")
    for starts, logical in _logical_lines(script.value):
        lexer = shlex.shlex(logical, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # unbalanced quotes: fall back to whitespace
            words = logical.split()
        pos, physical = 0, starts[0][1]
        for word in words:
            found = logical.find(word, pos)
            if found >= 0:  # quoted words do not appear verbatim: they keep the previous line
                pos = found + len(word)
                physical = max(p for off, p in starts if off <= found)
            yield word, _script_loc(base, block, physical)
        if words:
            yield ";", _script_loc(base, block, physical)


def _script_loc(base: Loc, block: bool, physical: int) -> Loc:
    # a block scalar's text starts on the line after its `|` indicator
    return Loc(base.file, base.line + 1 + physical, 1) if block else base


def _logical_lines(text: str) -> Iterator[tuple[list[tuple[int, int]], str]]:
    """Commands with continuations joined: ([(offset in command, physical line index)], command)."""
    parts: list[str] = []
    starts: list[tuple[int, int]] = []
    length = 0
    for i, physical in enumerate(text.split("\n")):
        continued = physical.endswith("\\") and not physical.endswith("\\\\")
        piece = physical[:-1] if continued else physical
        starts.append((length, i))
        parts.append(piece)
        length += len(piece) + 1
        if not continued:
            yield starts, " ".join(parts)
            parts, starts, length = [], [], 0
    if parts:
        yield starts, " ".join(parts)


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
        return _env_literals(self.spec.get("envs") or self.spec.get("env"))

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


def _env_literals(env: Any) -> tuple[dict[str, str], dict[str, Loc]]:
    values: dict[str, str] = {}
    locs: dict[str, Loc] = {}
    seq = sequence(env)
    if seq is None:
        return values, locs
    for i, item in enumerate(seq):
        item = mapping(item)
        if item is None or not isinstance(item.get("name"), str):
            continue
        if "value" in item and item.get("value") is not None:
            values[item["name"]] = str(item["value"])
            locs[item["name"]] = item.loc_of("value")
        else:
            locs.setdefault(item["name"], seq.loc_of(i))
    return values, locs


def build_container(
    data: SrcMap | None, service: SrcMap | None, base_env: dict[str, str], base_locs: dict[str, Loc], service_env: Any
) -> Container | None:
    if data is None:
        return None
    env, locs = dict(base_env), dict(base_locs)
    for source in (service_env, data.get("env")):
        source_env, source_locs = _env_literals(source)
        env.update(source_env)
        locs.update(source_locs)
    secret_refs: dict[str, str] = {}
    for item in sequence(data.get("env")) or []:
        name = dig(item, "valueFrom", "secretKeyRef", "name")
        if isinstance(name, str) and isinstance(dig(item, "name"), str):
            secret_refs[item["name"]] = name
    return Container(data, env, locs, secret_refs)


def pod_containers(doc: Document) -> list[Container]:
    """Containers (and init containers) of a Job, Deployment, StatefulSet or Pod manifest."""
    data = doc.data if isinstance(doc.data, SrcMap) else None
    if data is None:
        return []
    spec = mapping(data.get("spec"))
    if doc.kind == "Pod":
        pod = spec
    elif doc.kind == "CronJob":
        pod = mapping(dig(spec, "jobTemplate", "spec", "template", "spec"))
    else:
        pod = mapping(dig(spec, "template", "spec"))
    if pod is None:
        return []
    out = []
    for key in ("initContainers", "containers"):
        for c in sequence(pod.get(key)) or []:
            c = mapping(c)
            if c is not None:
                out.append(build_container(c, None, {}, {}, None))
    return [c for c in out if c is not None]


class Recipe:
    """One recipe directory `recipes/<model>/<framework>/<mode>/`, loaded lazily and once.

    Everything derived from it is cached on the object, so it lives exactly as long as the
    loaded recipe: facts of the model as cached properties (`deployment`, `workloads`), facts
    of the layers above (topology, storage) through `derived(fn)`.

    On a foreign tree a recipe is any manifest holding a DynamoGraphDeployment, at any depth and
    under any name (`manifest`): its id is its directory below the tree, plus the file's stem when
    the file is not `deploy.yaml` (`deepseek-r1/vllm/disagg/deploy_hopper_16gpu`); the model is
    the first directory below the tree.
    """

    def __init__(self, path: Path, root: Path, loader: FileCache | None = None, manifest: Path | None = None):
        self.path = path
        self.root = root
        self.manifest = manifest or path / DEPLOY_FILE
        if manifest is None:
            self.mode = path.name
            self.framework = path.parent.name
            self.model = path.parent.parent.name
            self.id = f"{self.model}/{self.framework}/{self.mode}"
            self._model_dir = path.parent.parent
        else:
            parts = list(_parts_below(path, root))
            self._model_dir = root / parts[0] if parts else root
            if manifest.name != DEPLOY_FILE:
                parts.append(manifest.stem)
            self.model = parts[0] if parts else root.name
            self.framework = parts[1] if len(parts) > 1 else ""
            self.mode = "/".join(parts[2:])
            self.id = "/".join(parts) or root.name
        self._cache = loader or FileCache(root)
        self._derived: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"Recipe({self.id})"

    def derived(self, build: Callable[..., T], *args: Any) -> T:
        """`build(self, *args)`, computed once per loaded recipe and args: how a layer above the
        model caches what it derives from a recipe (`recipe_topologies`, `model_cache_needs`)."""
        slot = (build, *args)
        if slot not in self._derived:
            self._derived[slot] = build(self, *args)
        return self._derived[slot]

    @cached_property
    def workloads(self) -> Workloads:
        """Every pod of the recipe's manifests with containers, scripts and mounts (built once)."""
        from harness.recipe.workloads import build_workloads  # workloads is built on this model

        return build_workloads(self)

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def model_cache_dir(self) -> Path:
        return self.model_dir / MODEL_CACHE_DIR

    def load(self, path: Path) -> LoadedFile | None:
        return self._cache.load_if_exists(path)

    @property
    def deploy(self) -> LoadedFile | None:
        return self.load(self.manifest)

    @property
    def perf(self) -> LoadedFile | None:
        return self.load(self.path / PERF_FILE)

    @property
    def metadata_file(self) -> LoadedFile | None:
        return self.load(self.path / METADATA_FILE)

    @property
    def metadata(self) -> SrcMap:
        """The metadata mapping; empty (with the file's position) when missing or broken."""
        f = self.metadata_file
        if f and f.documents and isinstance(f.documents[0].data, SrcMap):
            return f.documents[0].data
        return SrcMap(Loc(self.path / METADATA_FILE))

    @property
    def model_cache_files(self) -> list[LoadedFile]:
        return [f for f in (self.load(self.model_cache_dir / n) for n in (MODEL_CACHE_FILE, MODEL_DOWNLOAD_FILE)) if f]

    @property
    def gaie_files(self) -> list[LoadedFile]:
        d = self.path / GAIE_DIR
        if not d.is_dir():
            return []
        return [f for f in (self.load(p) for p in sorted(d.glob("*.y*ml"))) if f]

    def readmes(self) -> list[tuple[Path, list[str]]]:
        """The README lines of the recipe's directory and of its model directory (the ones that exist)."""
        if "readmes" not in self._derived:
            out = []
            for path in dict.fromkeys((self.path / "README.md", self.model_dir / "README.md")):
                try:
                    out.append((path, path.read_text(encoding="utf-8", errors="replace").splitlines()))
                except OSError:
                    continue
            self._derived["readmes"] = out
        return self._derived["readmes"]

    def files(self) -> list[LoadedFile]:
        """Every YAML file that belongs to the recipe (its own, its model cache, gaie)."""
        own = [self.load(p) for p in (self.path / METADATA_FILE, self.manifest, self.path / PERF_FILE)]
        return [f for f in own if f] + self.model_cache_files + self.gaie_files

    def documents(self, kind: str | None = None) -> list[Document]:
        docs = [
            d for f in self.files() if f.path.name != METADATA_FILE for d in f.documents if isinstance(d.data, SrcMap)
        ]
        return [d for d in docs if kind is None or d.kind == kind]

    @property
    def dgd_doc(self) -> Document | None:
        f = self.deploy
        if not f:
            return None
        return next((d for d in f.documents if d.kind == DGD_KIND and isinstance(d.data, SrcMap)), None)

    @cached_property
    def deployment(self) -> Deployment | None:
        doc = self.dgd_doc
        return Deployment(doc) if doc else None

    def perf_job(self) -> Document | None:
        f = self.perf
        if not f:
            return None
        return next((d for d in f.documents if d.kind == "Job" and isinstance(d.data, SrcMap)), None)


def _parts_below(path: Path, root: Path) -> tuple[str, ...]:
    try:
        return path.relative_to(root).parts
    except ValueError:
        return (path.name,)


class FileCache:
    """Loads each YAML file once per session (model-cache files are shared by recipes)."""

    def __init__(self, root: Path, max_bytes: int | None = None):
        self.root = root
        self.max_bytes = max_bytes
        self._files: dict[Path, LoadedFile] = {}
        self._present: dict[Path, LoadedFile | None] = {}

    def load(self, path: Path) -> LoadedFile:
        key = path.absolute()
        if key not in self._files:
            kwargs = {"max_bytes": self.max_bytes} if self.max_bytes else {}
            self._files[key] = load_yaml_file(path, self.root, **kwargs)
        return self._files[key]

    def load_if_exists(self, path: Path) -> LoadedFile | None:
        """Like load, None for a missing file; existence is remembered too (checks ask many times)."""
        try:
            return self._present[path]
        except KeyError:
            found = self.load(path) if path.exists() or path.is_symlink() else None
            self._present[path] = found
            return found
