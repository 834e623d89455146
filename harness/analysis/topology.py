"""Engine topology of a worker: parallelism, disaggregation role and memory settings, read from
the backend's own flag spelling and (TRT-LLM) the engine config in a ConfigMap, with where each
value was written.

A pure function of a Service and the deployment's documents (`topology_of`), so the checks, the
sizing guide and the simulator plan share one reading of a worker's command line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from harness.analysis.surface import engine_surface
from harness.recipe import catalogue
from harness.recipe.commandline import Token
from harness.recipe.configfiles import mounted_file_in
from harness.recipe.findings import Loc
from harness.recipe.flagvalues import OPAQUE, EntryPoint, ReadCommand
from harness.recipe.images import parse_image, release_tuple
from harness.recipe.model import Recipe
from harness.recipe.service import ENGINE_BOOLEAN_FLAGS, Service
from harness.recipe.yamlsrc import Document, SrcList, SrcMap, as_int, dig, mapping, parse_yaml_bytes, sequence

# The names each backend spells a setting with, first = the canonical spelling for messages.
# TRT-LLM `memory_fraction` is kv_cache_config.free_gpu_memory_fraction: a share of the memory
# left after the weights, not of the whole GPU (see harness/sizing.py).
FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "tp": ("--tensor-parallel-size", "-tp"),
        "pp": ("--pipeline-parallel-size", "-pp"),
        "dp": ("--data-parallel-size", "-dp"),
        "ep": ("--enable-expert-parallel", "-ep"),
        "role": ("--disaggregation-mode",),
        "memory_fraction": ("--gpu-memory-utilization",),
        "block_size": ("--block-size",),
        "served_name": ("--served-model-name",),
        "model": ("--model",),
        "max_seq_len": ("--max-model-len",),
        "kv_cache_dtype": ("--kv-cache-dtype",),
    },
    "sglang": {
        "tp": ("--tp", "--tp-size", "--tensor-parallel-size"),
        "pp": ("--pp-size", "--pipeline-parallel-size"),
        "dp": ("--dp", "--dp-size", "--data-parallel-size"),
        "ep": ("--ep-size", "--ep", "--expert-parallel-size"),
        "dp_attention": ("--enable-dp-attention",),
        "role": ("--disaggregation-mode",),
        "memory_fraction": ("--mem-fraction-static",),
        "block_size": ("--page-size",),
        "served_name": ("--served-model-name",),
        "model": ("--model-path", "--model"),
        "max_seq_len": ("--context-length",),
        "kv_cache_dtype": ("--kv-cache-dtype",),
    },
    "trtllm": {
        "tp": ("--tensor-parallel-size", "--tp-size"),
        "pp": ("--pipeline-parallel-size", "--pp-size"),
        "ep": ("--expert-parallel-size", "--ep-size"),
        "dp_attention": ("--enable-attention-dp",),
        "role": ("--disaggregation-mode",),
        "memory_fraction": ("--free-gpu-memory-fraction",),
        "block_size": ("--kv-block-size",),
        "served_name": ("--served-model-name",),
        "model": ("--model-path", "--model"),
        "max_seq_len": ("--max-seq-len",),
        "kv_cache_dtype": ("--kv-cache-dtype",),
    },
}
# TRT-LLM engine config (LLM API YAML) keys for the same settings.
ENGINE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "tp": (("tensor_parallel_size",),),
    "pp": (("pipeline_parallel_size",),),
    "ep": (("moe_expert_parallel_size",),),
    "dp_attention": (("enable_attention_dp",),),
    "memory_fraction": (("kv_cache_config", "free_gpu_memory_fraction"),),
    "block_size": (("tokens_per_block",), ("kv_cache_config", "tokens_per_block")),
    "max_seq_len": (("max_seq_len",),),
    "kv_cache_dtype": (("kv_cache_config", "dtype"),),
}
# TRT-LLM: Dynamo's `--kv-block-size` (env DYN_TRTLLM_KV_BLOCK_SIZE, default 32,
# dynamo/trtllm/backend_args.py) and the engine's kv_cache_config.tokens_per_block (default 32,
# tensorrt_llm/llmapi/llm_args.py KvCacheConfig).
TRTLLM_BLOCK_FLAG = "--kv-block-size"
TRTLLM_BLOCK_ENV = "DYN_TRTLLM_KV_BLOCK_SIZE"
TRTLLM_DEFAULT_BLOCK = 32
TRTLLM_DEFAULT_TOKENS_PER_BLOCK = 32
ENGINE_ARGS_FLAG = "--extra-engine-args"
CONFIG_FLAG = "--config"  # SGLang and vLLM read a YAML of long options
CONFIG_FILE_BACKENDS = ("sglang", "vllm")
BOOLEAN_FLAGS = ENGINE_BOOLEAN_FLAGS  # the model's parser knows them (Service.flags)
INT_SETTINGS = {"tp", "pp", "dp", "ep", "block_size", "max_seq_len"}
FLOAT_SETTINGS = {"memory_fraction"}
BOOL_SETTINGS = {"dp_attention"}
ROLES = {"prefill": "prefill", "decode": "decode"}
AGGREGATED_ROLES = {"null", "none", "agg", "aggregated", "prefill_and_decode", "context_and_generation"}


# dynamo.vllm's role flag: `--disaggregation-mode` from Dynamo 1.0.0 (ai-dynamo/dynamo v1.0.0
# components/src/dynamo/vllm/backend_args.py, the old flags kept as deprecated aliases); up to 0.9.1
# (v0.9.1 components/src/dynamo/vllm/args.py) only `--is-prefill-worker` / `--is-decode-worker`, a worker
# without `--is-prefill-worker` being the decode worker (main.py `init`) and vLLM's FlexibleArgumentParser
# rejecting any other word ("unrecognized arguments").
VLLM_ROLE_FLAG = "--disaggregation-mode"
VLLM_ROLE_FLAG_SINCE = (1, 0, 0)


def service_image_release(service: Service) -> tuple[int, ...] | None:
    """The Dynamo release of the runtime image the service's main container pins
    (`nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.0` -> (0, 8, 0)); None for another image or tag."""
    ref = parse_image(str(service.main.image or "")) if service.main is not None else None
    return release_tuple(ref.release) if ref is not None and ref.is_dynamo else None


def predates_vllm_role_flag(service: Service) -> bool:
    """The service's image is a Dynamo release whose dynamo.vllm has no `--disaggregation-mode`."""
    release = service_image_release(service)
    return release is not None and release < VLLM_ROLE_FLAG_SINCE


@dataclass(frozen=True)
class Setting:
    """One engine setting as written: the value, where, and under which name."""

    value: Any
    raw: str
    loc: Loc
    source: str  # `--tensor-parallel-size` or `tensor_parallel_size (ConfigMap qwen-engine, engine.yaml)`

    def describe(self) -> str:
        return f"{self.source} {self.raw} (line {self.loc.line})"


@dataclass(frozen=True)
class Conflict:
    """A setting stated on the command line and in the engine config with different values."""

    name: str
    cli: Setting
    config: Setting


@dataclass
class EngineConfig:
    """The TRT-LLM engine config a worker loads with --extra-engine-args."""

    arg: Token
    configmap: str = ""
    key: str = ""
    data: SrcMap | None = None
    error: str = ""  # why it could not be read (not mounted, no such ConfigMap or key, bad YAML)
    on_pvc: str = ""  # the PVC the file lies on (the DGD's `volumeMounts`): it exists at run time, not in the recipe
    unresolved: bool = False  # the path is a variable the recipe does not resolve (`${ARGS:-default}` in a script)


@dataclass
class Topology:
    """How one worker replica uses its GPUs, as the engine will see it."""

    service: str
    backend: str
    settings: dict[str, Setting] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    unreadable: list[Setting] = field(default_factory=list)  # values that are not numbers (unexpanded $VAR?)
    engine_config: EngineConfig | None = None
    legacy_prefill_flag: bool = False
    # The command line as the release's own parsers read it (None: no surface recorded for the release,
    # the generic reading of Service.flags stands in). Not trusted: a word no parser claims, or a value
    # the parser rejects; rules about absent flags then stay silent.
    read: ReadCommand | None = None
    parser: str = ""  # which parsers read it: the surface's source, or the generic fallback

    def get(self, name: str) -> Setting | None:
        return self.settings.get(name)

    def _int(self, name: str, default: int = 1) -> int:
        value = self._typed(name, int)
        return default if value is None else value

    @property
    def tp(self) -> int:
        return self._int("tp")

    @property
    def pp(self) -> int:
        return self._int("pp")

    @property
    def dp(self) -> int:
        return self._int("dp")

    @property
    def dp_attention(self) -> bool:
        s = self.settings.get("dp_attention")
        return bool(s and s.value is True)

    @property
    def ep(self) -> int:
        """Expert-parallel ranks. vLLM's --enable-expert-parallel spans TP x DP ranks."""
        if self.backend == "vllm":
            s = self.settings.get("ep")
            return self.tp * self.dp if s is not None and s.value is True else 1
        return self._int("ep")

    @property
    def role(self) -> str | None:
        s = self.settings.get("role")
        return s.value if s is not None else None

    def _typed(self, name: str, kind: type) -> Any:
        s = self.settings.get(name)
        return s.value if s is not None and isinstance(s.value, kind) else None

    @property
    def memory_fraction(self) -> float | None:
        return self._typed("memory_fraction", float)

    @property
    def block_size(self) -> int | None:
        return self._typed("block_size", int)

    @property
    def max_seq_len(self) -> int | None:
        return self._typed("max_seq_len", int)

    @property
    def served_name(self) -> str | None:
        return self._typed("served_name", str)

    @property
    def model(self) -> str | None:
        return self._typed("model", str)

    @property
    def kv_cache_dtype(self) -> str | None:
        return self._typed("kv_cache_dtype", str)

    @property
    def attention_tp(self) -> int:
        """Ranks one sequence's attention is split over: attention DP replicates attention."""
        if not self.dp_attention:
            return self.tp
        if self.backend == "sglang":
            return max(1, self.tp // max(1, self.dp))
        return 1  # TRT-LLM enable_attention_dp: every rank runs whole attention for its own batch

    @property
    def gpus_per_replica(self) -> int:
        """vLLM: TP x PP x DP (DP ranks inside the replica); SGLang: TP x PP (DP attention and EP
        live inside TP; plain --dp without DP attention launches DP copies of the TP group);
        TRT-LLM: TP x PP (EP and attention DP live inside TP)."""
        if self.backend == "vllm":
            return self.tp * self.pp * self.dp
        if self.backend == "sglang":
            return self.tp * self.pp * (1 if self.dp_attention else self.dp)
        return self.tp * self.pp

    @property
    def parallelism_known(self) -> bool:
        """False when a TRT-LLM engine config the worker loads (--extra-engine-args) cannot be read from
        the recipe (a file on a PVC, a path under no ConfigMap mount): its `tensor_parallel_size` and
        `pipeline_parallel_size` override the CLI (see _merge_engine_config), so the world size is unknown."""
        cfg = self.engine_config
        return cfg is None or cfg.data is not None

    def parallelism_terms(self) -> list[Setting]:
        """The settings that multiply into gpus_per_replica, as written (for messages)."""
        names = {
            "vllm": ("tp", "pp", "dp"),
            "sglang": ("tp", "pp") + (() if self.dp_attention else ("dp",)),
            "trtllm": ("tp", "pp"),
        }.get(self.backend, ("tp", "pp"))
        return [self.settings[n] for n in names if n in self.settings]

    def describe_parallelism(self) -> str:
        terms = self.parallelism_terms()
        if not terms:
            return "no parallelism flags (1 GPU)"
        return " x ".join(t.describe() for t in terms) + f" = {self.gpus_per_replica} GPU(s)"


# --- parsing -----------------------------------------------------------------------------


def _convert(name: str, raw: Any) -> tuple[Any, bool]:
    """(value, ok): numbers for counts and fractions, booleans for switches."""
    if name in INT_SETTINGS:
        if isinstance(raw, bool):
            return None, False
        if isinstance(raw, int):
            return raw, True
        text = str(raw).strip()
        return (int(text), True) if text.isdigit() else (None, False)
    if name in FLOAT_SETTINGS:
        try:
            return float(raw), True
        except (TypeError, ValueError):
            return None, False
    if name in BOOL_SETTINGS:
        if isinstance(raw, bool):
            return raw, True
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes"):
            return True, True
        if text in ("false", "0", "no"):
            return False, True
        return None, False
    if name == "role":
        text = str(raw).strip().lower()
        if text in ROLES:
            return ROLES[text], True
        return (None, True) if text in AGGREGATED_ROLES else (None, False)
    if name == "ep_switch":  # vLLM: --enable-expert-parallel spans all TP x DP ranks
        return str(raw).strip().lower() == "true", True
    return str(raw), True


def topology_of(
    service: Service, backend: str, docs: Iterable[Document] = (), surface: EntryPoint | None = None
) -> Topology:
    """Read a worker's topology from its `python -m dynamo.<backend>` arguments and, for
    TRT-LLM, the engine config ConfigMap that --extra-engine-args points into.

    With the release's recorded parser surface, every value is read as that release's parsers read
    it (harness/recipe/flagvalues.py: prefixes such as SGLang `--tp`, aliases, `16K`, choices);
    without one, the generic reading of `Service.flags` with the spellings of FLAGS stands in."""
    topo = Topology(service.name, backend)
    spelling = FLAGS.get(backend)
    if service.main is None or spelling is None:
        return topo
    flags = service.flags.last()  # last one wins, as argparse does
    inv = service.main.dynamo_invocation()
    if surface is not None and inv is not None:
        _read_with_surface(topo, surface, inv[1], spelling)
    else:
        topo.parser = "generic flag reading (no recorded parser surface for this release)"
        _read_generic(topo, flags, backend, spelling)
    if "role" not in topo.settings:
        for flag, role in (("--is-prefill-worker", "prefill"), ("--is-decode-worker", "decode")):
            if flag in flags and flags[flag].value == "true":
                topo.settings["role"] = Setting(role, "", flag_line(flags[flag].at, flag), flag)
                topo.legacy_prefill_flag = role == "prefill"
    if backend in CONFIG_FILE_BACKENDS and CONFIG_FLAG in flags:
        _merge_config_file(topo, service, flags[CONFIG_FLAG], spelling, docs)
    if backend == "trtllm" and ENGINE_ARGS_FLAG in flags:
        topo.engine_config = engine_config(service, flags[ENGINE_ARGS_FLAG], docs)
        _merge_engine_config(topo)
    return topo


def _read_with_surface(topo: Topology, surface: EntryPoint, argv: list[Token], spelling: dict) -> None:
    """Settings from the release's own reading of the argv: a setting is the dest its canonical spelling
    names in the recorded parsers, so every alias and accepted prefix of that option counts."""
    topo.read = read = surface.read(argv)
    topo.parser = surface.source
    for name, names in spelling.items():
        option = next((o for o in map(surface.option, names) if o is not None), None)
        found = read.get(option.dest) if option is not None else None
        if found is None:
            continue
        raw = found.raw[0] if isinstance(found.raw, list) and found.raw else found.raw
        raw_text = "true" if raw is None else str(raw)
        loc = flag_line(found.at.at, found.written)
        if found.error:
            topo.unreadable.append(Setting(None, raw_text, loc, found.written))
            continue
        typed = found.value
        if typed is OPAQUE or name not in INT_SETTINGS | FLOAT_SETTINGS | BOOL_SETTINGS | {"ep"}:
            typed = raw_text  # names, roles, dtypes: the word as written
        elif isinstance(typed, bool):
            typed = str(typed).lower() if name == "ep" else typed
        if name == "max_seq_len" and isinstance(typed, int) and typed < 0:
            continue  # vLLM `--max-model-len auto` / -1: the engine picks the length, as if unset
        value, ok = _convert("ep_switch" if (topo.backend, name) == ("vllm", "ep") else name, typed)
        setting = Setting(value, raw_text, loc, found.written)
        (topo.settings.__setitem__(name, setting) if ok else topo.unreadable.append(setting))


def _read_generic(topo: Topology, flags: dict[str, Token], backend: str, spelling: dict) -> None:
    """The fallback: the spellings of FLAGS on the generic reading of the command line."""
    for name, names in spelling.items():
        for flag in names:  # the canonical spelling wins when two are given
            if flag in flags:
                tok = flags[flag]
                value, ok = _convert("ep_switch" if (backend, name) == ("vllm", "ep") else name, tok.value)
                setting = Setting(value, tok.value, flag_line(tok.at, flag), flag)
                (topo.settings.__setitem__(name, setting) if ok else topo.unreadable.append(setting))
                break


def _merge_config_file(
    topo: Topology, service: Service, arg: Token, spelling: dict[str, tuple[str, ...]], docs: Iterable[Document]
) -> None:
    """Settings from a `--config` YAML in a ConfigMap of the same manifests (SGLang, vLLM).

    Its keys are the long option names without `--` (`tensor-parallel-size: 8`,
    `disaggregation-mode: prefill`); the command line overrides the file, so a setting the CLI
    gives is kept. A file baked into the image is not readable here and is skipped.
    Sources: sgl-project/sglang docs/advanced_features/server_arguments.md ("CLI arguments will
    override config file values"; python/sglang/srt/server_args_config_parser.py), vLLM
    FlexibleArgumentParser `--config` (vllm/utils: the file's args are inserted before the CLI's).
    """
    found = mounted_file_in(docs, service, arg.value)
    if found is None:
        return
    loaded = parse_yaml_bytes(found.content.encode("utf-8"), found.loc.file)
    if loaded.problems or not loaded.documents or not isinstance(loaded.documents[0].data, SrcMap):
        return
    key_loc = found.key_loc or found.loc
    if "\n" in found.content.rstrip("\n") and found.loc.line == key_loc.line:
        data = _shift(loaded.documents[0].data, found.loc.line, key_loc.column + 1, None)
    else:
        data = _shift(loaded.documents[0].data, 0, 0, found.loc)
    keys = {"--" + str(k).replace("_", "-"): k for k in data}
    where = f"(ConfigMap {found.configmap}, {found.key})"
    for name, names in spelling.items():
        if name in topo.settings or any(s.source in names for s in topo.unreadable):
            continue  # the command line wins
        for option in names:
            if option in keys:
                raw = data[keys[option]]
                kind = "ep_switch" if (topo.backend, name) == ("vllm", "ep") else name
                value, ok = _convert(kind, str(raw).lower() if isinstance(raw, bool) else raw)
                setting = Setting(
                    value,
                    str(raw).lower() if isinstance(raw, bool) else str(raw),
                    data.loc_of(keys[option]),
                    f"{keys[option]} {where}",
                )
                (topo.settings.__setitem__(name, setting) if ok else topo.unreadable.append(setting))
                break


_BLOCK_HEADER = re.compile(r"[>|][-+0-9]*\s*(#.*)?$")


@lru_cache(maxsize=128)
def _source_lines(path: str, mtime_ns: int) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())


def flag_line(loc: Loc, flag: str) -> Loc:
    """The line a flag is written on inside a folded (`>`) block scalar.

    YAML folds such a script into one line, so its words only know where the scalar starts;
    the contributor must edit the line the flag is on. Other locations are returned as they are.
    """
    try:
        lines = _source_lines(str(loc.file), Path(loc.file).stat().st_mtime_ns)
    except OSError:
        return loc
    if not (0 < loc.line <= len(lines)) or not _BLOCK_HEADER.search(lines[loc.line - 1]):
        return loc
    pattern = re.compile(rf"(?<!\S){re.escape(flag)}(?=[\s=]|$)")
    indent = None
    for i in range(loc.line, len(lines)):
        text = lines[i]
        if not text.strip():
            continue
        depth = len(text) - len(text.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:
            break
        m = pattern.search(text)
        if m:
            return Loc(loc.file, i + 1, m.start() + 1)
    return loc


def _merge_engine_config(topo: Topology) -> None:
    """The engine config overrides the CLI in Dynamo's TRT-LLM worker: it becomes the effective
    value, and a different CLI value is a conflict."""
    cfg = topo.engine_config
    if cfg is None or cfg.data is None:
        return
    where = f"(ConfigMap {cfg.configmap}, {cfg.key})"
    for name, paths in ENGINE_KEYS.items():
        for path in paths:
            parent = dig(cfg.data, *path[:-1]) if len(path) > 1 else cfg.data
            if not isinstance(parent, SrcMap) or path[-1] not in parent:
                continue
            raw = parent[path[-1]]
            value, ok = _convert(name, raw)
            setting = Setting(
                value,
                str(raw).lower() if isinstance(raw, bool) else str(raw),
                parent.loc_of(path[-1]),
                f"{'.'.join(path)} {where}",
            )
            if not ok:
                topo.unreadable.append(setting)
                break
            cli = topo.settings.get(name)
            if cli is not None and cli.value != value:
                topo.conflicts.append(Conflict(name, cli, setting))
            topo.settings[name] = setting
            break


def engine_config(service: Service, arg: Token, docs: Iterable[Document]) -> EngineConfig:
    """Follow --extra-engine-args PATH through the container's volumeMounts to a ConfigMap key."""
    cfg = EngineConfig(arg)
    if "$" in arg.value:
        cfg.unresolved = True
        cfg.error = f"{arg.value} is a variable the recipe does not resolve"
        return cfg
    path = PurePosixPath(arg.value)
    main = service.main
    mounts = sequence(main.data.get("volumeMounts")) if main else None
    volumes = sequence(dig(service.data, "extraPodSpec", "volumes")) or sequence(
        dig(service.data, "podTemplate", "spec", "volumes")
    )
    for mount in mounts or []:
        mount_path, vol_name = dig(mount, "mountPath"), dig(mount, "name")
        if not isinstance(mount_path, str) or not isinstance(vol_name, str):
            continue
        sub = dig(mount, "subPath")
        base = PurePosixPath(mount_path)
        if isinstance(sub, str) and sub:
            if path != base:
                continue
            rel = sub
        elif path.is_relative_to(base) and path != base:
            rel = str(path.relative_to(base))
        else:
            continue
        volume = next((v for v in volumes or [] if dig(v, "name") == vol_name), None)
        cm_name = dig(volume, "configMap", "name")
        if not isinstance(cm_name, str):
            cfg.error = f"volume {vol_name!r} mounted at {mount_path} is not a ConfigMap volume of this service"
            return cfg
        items = sequence(dig(volume, "configMap", "items")) or []
        key = next((str(dig(it, "key")) for it in items if dig(it, "path") == rel), None)
        if items and key is None:
            cfg.error = f"ConfigMap volume {vol_name!r} does not project a file {rel!r}"
            return cfg
        cfg.configmap, cfg.key = cm_name, key or rel
        _read_configmap(cfg, docs)
        return cfg
    for mount in sequence(service.data.get("volumeMounts")) or []:  # the DGD's PVC mounts (name, mountPoint)
        point = dig(mount, "mountPoint")
        if isinstance(point, str) and point and path.is_relative_to(PurePosixPath(point)):
            cfg.on_pvc = str(dig(mount, "name") or "")
            cfg.error = f"{arg.value} is a file on PVC {cfg.on_pvc!r} (mounted at {point}), not in the recipe"
            return cfg
    cfg.error = f"{arg.value} is not under any volumeMount of the container"
    return cfg


def _read_configmap(cfg: EngineConfig, docs: Iterable[Document]) -> None:
    cm = next((d for d in docs if d.kind == "ConfigMap" and d.name == cfg.configmap), None)
    if cm is None:
        cfg.error = f"ConfigMap {cfg.configmap!r} is not in the recipe"
        return
    data = mapping(cm.data.get("data"))
    if data is None or not isinstance(data.get(cfg.key), str):
        cfg.error = f"ConfigMap {cfg.configmap!r} has no key {cfg.key!r}"
        return
    text = data[cfg.key]
    loaded = parse_yaml_bytes(text.encode("utf-8"), cm.file)
    if loaded.problems or not loaded.documents or not isinstance(loaded.documents[0].data, SrcMap):
        msg = loaded.problems[0].message if loaded.problems else "not a YAML mapping"
        cfg.error = f"ConfigMap {cfg.configmap!r} key {cfg.key!r}: {msg}"
        return
    value_loc, key_loc = data.loc_of(cfg.key), data.key_loc(cfg.key)
    if "\n" in text.rstrip("\n") and value_loc.line == key_loc.line:
        # a block scalar (`key: |`): its text starts on the next line, indented under the key
        cfg.data = _shift(loaded.documents[0].data, value_loc.line, key_loc.column + 1, None)
    else:
        cfg.data = _shift(loaded.documents[0].data, 0, 0, value_loc)


def _shift(node: Any, dline: int, dcol: int, fixed: Loc | None) -> Any:
    """Move the positions of YAML parsed from an embedded string to where it sits in the file."""

    def move(loc: Loc) -> Loc:
        return fixed or Loc(loc.file, loc.line + dline, loc.column + dcol)

    if isinstance(node, SrcMap):
        node.loc = move(node.loc)
        node.key_locs = {k: move(v) for k, v in node.key_locs.items()}
        node.value_locs = {k: move(v) for k, v in node.value_locs.items()}
        for v in node.values():
            _shift(v, dline, dcol, fixed)
    elif isinstance(node, SrcList):
        node.loc = move(node.loc)
        node.item_locs = [move(v) for v in node.item_locs]
        for v in node:
            _shift(v, dline, dcol, fixed)
    return node


# --- per recipe, parsed once --------------------------------------------------------------


def recipe_topologies(recipe: Recipe) -> dict[str, Topology]:
    """Topology per worker service name, parsed once per loaded recipe."""
    return recipe.derived(_recipe_topologies)


def _recipe_topologies(recipe: Recipe) -> dict[str, Topology]:
    dep = recipe.deployment
    out: dict[str, Topology] = {}
    if dep is not None:
        declared = dep.backend_framework or recipe.framework
        docs = recipe.deploy.documents if recipe.deploy else []
        for svc in dep.workers:
            # the engine the worker starts (`python -m dynamo.sglang`) is what reads its flags; the graph's
            # backendFramework, else the directory name (`sglang-wideep/` on a foreign tree), only when it starts none
            backend = svc.engine if svc.engine in FLAGS else declared
            out[svc.name] = topology_of(svc, backend, docs, engine_surface(recipe, svc))
    return out


def workers(recipe: Recipe) -> list[tuple[Service, Topology]]:
    """Every worker service of the recipe with its engine topology."""
    dep = recipe.deployment
    if dep is None:
        return []
    topos = recipe_topologies(recipe)
    return [(svc, topos[svc.name]) for svc in dep.workers if svc.name in topos]


GPU_DEVICE_CLASS = "gpu.nvidia.com"  # NVIDIA k8s-dra-driver-gpu DeviceClass for whole GPUs


def dra_gpus(service: Service, docs: Iterable[Document]) -> int:
    """GPUs one pod of the service gets through DRA: its `resourceClaims` whose
    ResourceClaimTemplate (in the same manifests) requests devices of class gpu.nvidia.com,
    `count` each (ExactCount, default 1). Kubernetes resource.k8s.io v1beta1 puts deviceClassName
    and count on the request, v1 under `exactly`. 0 when none is found."""
    pod = mapping(dig(service.data, "extraPodSpec")) or mapping(dig(service.data, "podTemplate", "spec"))
    claims = sequence(pod.get("resourceClaims")) if pod is not None else None
    if not claims:
        return 0
    templates = {d.name: d for d in docs if d.kind == "ResourceClaimTemplate"}
    total = 0
    for claim in claims:
        tpl = templates.get(str(dig(claim, "resourceClaimTemplateName") or ""))
        for req in sequence(dig(tpl.data, "spec", "spec", "devices", "requests") if tpl else None) or []:
            spec = mapping(dig(req, "exactly")) or mapping(req)
            if spec is None or str(spec.get("deviceClassName") or "") != GPU_DEVICE_CLASS:
                continue
            if str(spec.get("allocationMode") or "ExactCount") != "ExactCount":
                continue
            total += as_int(spec.get("count")) or 1
    return total


def claim_template_documents(recipe: Recipe) -> list[Document]:
    """The documents a worker's `resourceClaimTemplateName` may name: the manifest's own, then those of the
    manifests beside it (a recipe that applies `kubectl apply -f <dir>/` keeps its ResourceClaimTemplate or
    ComputeDomain in a sibling file; a claim template must exist in the namespace, from any file)."""
    docs = list(recipe.deploy.documents) if recipe.deploy else []
    if recipe.path.is_dir():
        for path in sorted(p for ext in ("*.yaml", "*.yml") for p in recipe.path.glob(ext)):
            if path != recipe.manifest and (f := recipe.load(path)) is not None:
                docs.extend(d for d in f.documents if d.kind == "ResourceClaimTemplate")
    return docs


def gpus_per_node(recipe: Recipe) -> int | None:
    """GPUs of one node: the metadata's `hardware.gpusPerNode`, else the catalogue's for `hardware.gpu`."""
    declared = as_int(dig(recipe.metadata, "hardware", "gpusPerNode"))
    if declared:
        return declared
    facts = catalogue.gpu(str(dig(recipe.metadata, "hardware", "gpu") or ""))
    return facts.gpus_per_node if facts else None


def nodes_needed(services: list[Service], gpus_per_node: int) -> int:
    """Nodes the scheduler needs: every pod (each node of a multinode replica is one pod with
    `limits.gpu` GPUs) packed first-fit decreasing onto nodes of `gpus_per_node` GPUs."""
    pods = sorted(
        (s.gpu_limit for s in services for _ in range(s.replicas * s.node_count) if s.gpu_limit > 0), reverse=True
    )
    free: list[int] = []
    for size in pods:
        if size > gpus_per_node:  # cannot schedule at all: gpus-per-node-within-hardware says so
            free.extend([0] * -(-size // gpus_per_node))
            continue
        for i, room in enumerate(free):
            if room >= size:
                free[i] -= size
                break
        else:
            free.append(gpus_per_node - size)
    return len(free)
