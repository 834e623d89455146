"""The recipe domain model: Recipe -> Deployment -> Service -> Container, with source positions."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

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


@dataclass(frozen=True)
class Token:
    """One argument of a command line, with where it was written."""

    value: str
    loc: Loc


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

    def dynamo_invocation(self) -> tuple[str, list[Token]] | None:
        """(`dynamo.vllm`, args after it) for the `python -m dynamo.X` call in the command line."""
        argv = self.argv
        for i, tok in enumerate(argv[:-1]):
            if tok.value == "-m" and argv[i + 1].value.startswith("dynamo."):
                args: list[Token] = []
                for t in argv[i + 2 :]:
                    if t.value in ("&&", "||", ";", "|"):
                        break
                    args.append(t)
                return argv[i + 1].value, args
        return None


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


def _long_flag(text: str) -> bool:
    return text.startswith("--")


def parse_flags(args: list[Token], booleans: Collection[str] = (),
                is_flag: Callable[[str], bool] = _long_flag) -> dict[str, Token]:
    """`--flag value`, `--flag=value` and bare `--flag` (value "true"); last one wins.

    `booleans` never take a value (so `--enable-x -tp 4` keeps `-tp` a flag); `is_flag`
    decides what is a flag (default: `--` words only).
    """
    flags: dict[str, Token] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if is_flag(tok.value):
            name, eq, value = tok.value.partition("=")
            if eq:
                flags[name] = Token(value, tok.loc)
            elif name not in booleans and i + 1 < len(args) and not is_flag(args[i + 1].value):
                flags[name] = Token(args[i + 1].value, args[i + 1].loc)
                i += 1
            else:
                flags[name] = Token("true", tok.loc)
        i += 1
    return flags


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
                out.append(Service(str(name), svc, self.api_version, _container(main, svc, spec_env, spec_locs, svc.get("envs"))))
        components = sequence(self.spec.get("components"))
        if components is not None:  # v1beta1
            for comp in components:
                comp = mapping(comp)
                if comp is None:
                    continue
                containers = sequence(dig(comp, "podTemplate", "spec", "containers")) or []
                main = next((mapping(c) for c in containers if mapping(c) is not None and dig(c, "name") == "main"), None)
                if main is None and containers:
                    main = mapping(containers[0])
                out.append(Service(str(comp.get("name") or ""), comp, self.api_version, _container(main, comp, spec_env, spec_locs, None)))
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


def _container(data: SrcMap | None, service: SrcMap | None, base_env: dict[str, str], base_locs: dict[str, Loc], service_env: Any) -> Container | None:
    if data is None:
        return None
    env, locs = dict(base_env), dict(base_locs)
    for source in (service_env, data.get("env")):
        e, l = _env_literals(source)
        env.update(e)
        locs.update(l)
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
                out.append(_container(c, None, {}, {}, None))
    return [c for c in out if c is not None]


class Recipe:
    """One recipe directory `recipes/<model>/<framework>/<mode>/`, loaded lazily and once."""

    def __init__(self, path: Path, root: Path, loader: "FileCache | None" = None):
        self.path = path
        self.root = root
        self.mode = path.name
        self.framework = path.parent.name
        self.model = path.parent.parent.name
        self.id = f"{self.model}/{self.framework}/{self.mode}"
        self._cache = loader or FileCache(root)

    def __repr__(self) -> str:
        return f"Recipe({self.id})"

    @property
    def model_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def model_cache_dir(self) -> Path:
        return self.model_dir / MODEL_CACHE_DIR

    def load(self, path: Path) -> LoadedFile | None:
        return self._cache.load_if_exists(path)

    @property
    def deploy(self) -> LoadedFile | None:
        return self.load(self.path / DEPLOY_FILE)

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

    def files(self) -> list[LoadedFile]:
        """Every YAML file that belongs to the recipe (its own, its model cache, gaie)."""
        own = [self.load(self.path / n) for n in (METADATA_FILE, DEPLOY_FILE, PERF_FILE)]
        return [f for f in own if f] + self.model_cache_files + self.gaie_files

    def documents(self, kind: str | None = None) -> list[Document]:
        docs = [d for f in self.files() if f.path.name != METADATA_FILE for d in f.documents if isinstance(d.data, SrcMap)]
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
