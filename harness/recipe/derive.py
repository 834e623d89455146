"""Rewrites a recipe's files into a variant: the customization keys of `recipe-harness derive`, and the
edits a `VariantSpec` (what the analysis layer planned) makes to deploy.yaml, perf.yaml, recipe.yaml, the
GAIE add-on and the model README. Pure functions over text; every edit goes through ruamel.yaml's round
trip (harness/recipe/bump.py's settings, byte for byte on the catalogue's files), so comments, quoting
and field order stay, and applying the same spec twice gives the same text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from harness.recipe import catalogue
from harness.recipe.bump import _ruamel

# --- the keys ---------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
ROUTER_MODES = ("kv", "round-robin")


class UsageError(ValueError):
    """A key or value `derive` does not accept; the message names the valid choices."""


@dataclass(frozen=True)
class Key:
    """One customization point: its value type, its range or choices, what it changes."""

    name: str
    help: str
    parse: Callable[[str], Any]
    choices: Callable[[], tuple[str, ...]] | None = None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"expected an integer from {low} to {high}") from None
        if not low <= value <= high:
            raise UsageError(f"out of range: expected an integer from {low} to {high}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError("expected a fraction of the GPU's memory, 0 < F <= 1 (e.g. 0.85)") from None
    if not 0 < value <= 1:
        raise UsageError("out of range: expected 0 < F <= 1 (a share of the GPU's memory, e.g. 0.85)")
    return value


def _choice(choices: Callable[[], tuple[str, ...]]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices():
            raise UsageError(f"expected one of {', '.join(choices())}")
        return text

    return parse


def _pattern(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not pattern.match(text):
            raise UsageError(f"expected {what}")
        return text

    return parse


def _gpus() -> tuple[str, ...]:
    return tuple(catalogue.gpus())


def _models() -> tuple[str, ...]:
    return tuple(sorted(catalogue.models()))


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("tp", "tensor parallel size of every worker", _int_in(1, 64)),
        Key("dp", "data parallel size of every worker (vLLM: ranks inside a replica)", _int_in(1, 64)),
        Key("gpu-memory", "the engine's share of GPU memory (vLLM --gpu-memory-utilization)", _fraction),
        Key("block-size", "KV cache block size (tokens) on every worker and the endpoint picker", _int_in(1, 1024)),
        Key("router", "the frontend's router mode", _choice(lambda: ROUTER_MODES), lambda: ROUTER_MODES),
        Key("replicas", "replicas of every worker service", _int_in(1, 256)),
        Key(
            "model", "the Hugging Face model id (a model of harness/recipe/data/models.yaml)", _choice(_models), _models
        ),
        Key("gpu", "the GPU type (harness/recipe/data/gpus.yaml)", _choice(_gpus), _gpus),
        Key("gpus-per-node", "GPUs of one node (default: the GPU type's usual node)", _int_in(1, 16)),
        Key(
            "storage-class",
            "the model-cache PVC's storageClassName (an --out tree only)",
            _pattern(_DNS_SUBDOMAIN, "a StorageClass name (DNS subdomain)"),
        ),
        Key(
            "namespace",
            "the namespace the README applies to (an --out tree only)",
            _pattern(_DNS_LABEL, "a namespace name (DNS label)"),
        ),
        Key("isl", "benchmark input sequence length (tokens)", _int_in(1, 1_048_576)),
        Key("osl", "benchmark output sequence length (tokens)", _int_in(1, 1_048_576)),
        Key("concurrency", "benchmark concurrency (a multiple of the variant's GPUs)", _int_in(1, 100_000)),
    )
}


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> {key: typed value}; raises UsageError naming the valid keys or values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE; keys: {', '.join(KEYS)}")
        if key not in KEYS:
            raise UsageError(f"--set {item!r}: unknown key {key!r}; keys: {', '.join(KEYS)}")
        try:
            out[key] = KEYS[key].parse(raw.strip())
        except UsageError as exc:
            raise UsageError(f"--set {key}={raw.strip()}: {exc}") from None
    return out


# How a setting reads in a default mode name: `tp4`, `r4` (replicas), `b200`, `kv`.
_SLUG = {"replicas": "r", "gpu-memory": "mem", "block-size": "bs", "gpus-per-node": "gpn", "concurrency": "c"}


def variant_mode(mode: str, sets: dict[str, Any]) -> str:
    """The default mode directory of a variant: the source mode and each setting, short and kebab-case
    (`agg-round-robin-tp4-r4-b200`)."""
    words = [mode]
    for key, value in sets.items():
        if key in ("storage-class", "namespace"):
            continue  # cluster settings, not the recipe's shape
        if key == "router":  # the mode's name promises its router (check router-mode-matches reads it)
            new, old = ("kv-router", "round-robin") if value == "kv" else ("round-robin", "kv-router")
            words[0] = mode.replace(old, new) if old in mode else mode
            if new not in words[0]:
                words.append(new)
        elif key == "gpu":
            words.append(str(value))
        elif key == "model":
            continue  # the model directory names it
        else:
            words.append(f"{_SLUG.get(key, key)}{value}")
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(w.lower() for w in words)).strip("-")
    return re.sub(r"-{2,}", "-", slug)


# --- what to change ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One edit of the variant, with its reason."""

    file: str  # relative to the recipes tree
    what: str
    old: str
    new: str
    reason: str

    def format(self) -> str:
        return f"{self.file}: {self.what}: {self.old or '(none)'} -> {self.new}  ({self.reason})"


@dataclass
class WorkerSpec:
    """The planned state of one worker service."""

    replicas: int
    gpus_per_pod: int
    node_count: int  # 1: not multinode
    flags: dict[str, tuple[str, str]] = field(default_factory=dict)  # flag -> (value, reason): set or added
    add_comments: dict[str, str] = field(default_factory=dict)  # flag -> comment written above it when added
    env: dict[str, tuple[str, str]] = field(default_factory=dict)  # env var -> (value, reason)
    # flag -> (literal, value, reason): replaced only where the argument is written as that literal
    # (`--model Qwen/Qwen3-32B`, never `--model $(MODEL_PATH)`, which follows its env var)
    literal_flags: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # replicas | gpus | nodeCount -> why


@dataclass
class VariantSpec:
    """Everything the variant's files must say, as planned by harness/analysis/variant.py."""

    source_id: str
    variant_id: str
    source_dgd: str
    variant_dgd: str
    workers: dict[str, WorkerSpec]
    frontend_flags: dict[str, tuple[str, str]] = field(default_factory=dict)
    perf_env: dict[str, tuple[str, str]] = field(default_factory=dict)
    metadata: dict[tuple[str, ...], tuple[Any, str]] = field(default_factory=dict)
    known_limits: list[str] = field(default_factory=list)
    epp_env: dict[str, tuple[str, str]] = field(default_factory=dict)
    # file name -> {comment prefix ("# Topology:") -> the new line}; comments that state planned values
    header_lines: dict[str, dict[str, str]] = field(default_factory=dict)
    storage_class: str | None = None
    gpu_sum_comment: str = ""  # recipe.yaml's comment above `gpus:`


class DeriveError(ValueError):
    """A file the variant cannot be written from (a shape the editor does not handle), with why."""


# --- YAML primitives ----------------------------------------------------------------------------


def load_all(text: str) -> list[Any]:
    return list(_ruamel().load_all(text))


def dump_all(docs: list[Any]) -> str:
    buf = io.StringIO()
    _ruamel().dump_all(docs, buf)
    return buf.getvalue()


def styled(old: Any, new: Any) -> Any:
    """`new` written the way `old` was (quoted stays quoted, a plain number stays a number)."""
    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(str(new))
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(str(new))
    if isinstance(old, bool):
        return new
    if isinstance(old, int) and re.fullmatch(r"-?\d+", str(new)):
        return int(new)
    if isinstance(old, float) and re.fullmatch(r"-?\d+(\.\d+)?", str(new)):
        return float(new)
    return str(new) if not isinstance(new, (int, float)) else new


def components(doc: Any) -> list[tuple[str, CommentedMap]]:
    """(name, component) of a DynamoGraphDeployment: v1beta1 `components` list or v1alpha1 `services` map."""
    spec = doc.get("spec") if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        return []
    if isinstance(spec.get("components"), list):
        return [(str(c.get("name")), c) for c in spec["components"] if isinstance(c, dict)]
    if isinstance(spec.get("services"), dict):
        return [(str(k), v) for k, v in spec["services"].items() if isinstance(v, dict)]
    return []


def main_container(comp: CommentedMap) -> CommentedMap | None:
    """The engine container: v1beta1 `podTemplate.spec.containers[name=main]`, v1alpha1 `extraPodSpec.mainContainer`."""
    pod = (comp.get("podTemplate") or {}).get("spec") if isinstance(comp.get("podTemplate"), dict) else None
    if isinstance(pod, dict):
        for c in pod.get("containers") or []:
            if isinstance(c, dict) and c.get("name") == "main":
                return c
    extra = comp.get("extraPodSpec")
    if isinstance(extra, dict) and isinstance(extra.get("mainContainer"), dict):
        return extra["mainContainer"]
    return None


def _plain_args(container: CommentedMap, where: str) -> CommentedSeq:
    args = container.get("args")
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise DeriveError(f"{where}: the command line is not a list of arguments (a shell script?): edit it by hand")
    if any(isinstance(a, str) and "\n" in a for a in args):
        raise DeriveError(f"{where}: an argument holds a script: edit it by hand")
    return args


def arg_value(args: list, flag: str) -> str | None:
    """The value of the last `flag VALUE` or `flag=VALUE` in a list of arguments."""
    found = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            found = str(args[i + 1])
        elif isinstance(a, str) and a.startswith(flag + "="):
            found = a.split("=", 1)[1]
    return found


def set_arg(args: CommentedSeq, flag: str, value: str, comment: str = "") -> str | None:
    """Set every `flag VALUE` / `flag=VALUE` to value, or append `flag VALUE` (with a comment above it);
    returns the old value (None: added)."""
    old = None
    for i, a in enumerate(list(args)):
        if a == flag and i + 1 < len(args):
            old = str(args[i + 1])
            args[i + 1] = styled(args[i + 1], value)
        elif isinstance(a, str) and a.startswith(flag + "="):
            old = a.split("=", 1)[1]
            args[i] = styled(a, f"{flag}={value}")
    if old is not None:
        return old
    index = len(args)
    if value == "":  # a switch (`--publish-kv-events`): the flag alone
        if flag not in args:
            args.append(flag)
            _comment_above(args, index, comment)
        return None
    quoted = value.startswith("{") or value.isdigit()
    args.append(flag)
    args.append(
        SingleQuotedScalarString(value)
        if value.startswith("{")
        else (DoubleQuotedScalarString(value) if quoted else value)
    )
    _comment_above(args, index, comment)
    return None


def _comment_above(args: CommentedSeq, index: int, comment: str) -> None:
    """A comment line above item `index` of a block sequence, aligned with its dash."""
    if comment and not args.fa.flow_style():
        col = args.lc.data[0][1] - 2 if args.lc.data else 0
        args.yaml_set_comment_before_after_key(index, before=comment, indent=max(0, col))


def set_env(container: CommentedMap, name: str, value: str) -> str | None:
    """Set an existing env var's value (None when the container has no such var: nothing is added)."""
    for e in container.get("env") or []:
        if isinstance(e, dict) and e.get("name") == name and "value" in e:
            old = str(e["value"])
            e["value"] = styled(e["value"], value)
            return old
    return None


def gpu_counts(comp: CommentedMap, container: CommentedMap | None) -> list[tuple[CommentedMap, str]]:
    """(section, key) of every GPU count the component states: requests and limits, `nvidia.com/gpu` or `gpu`."""
    out = []
    for holder in (comp, container):
        res = holder.get("resources") if isinstance(holder, dict) else None
        if not isinstance(res, dict):
            continue
        for section in ("requests", "limits"):
            sec = res.get(section)
            if isinstance(sec, dict):
                out += [(sec, key) for key in ("nvidia.com/gpu", "gpu") if key in sec]
    return out


def _limits(comp: CommentedMap, container: CommentedMap | None) -> Any:
    for holder in (container, comp):
        res = holder.get("resources") if isinstance(holder, dict) else None
        if isinstance(res, dict) and isinstance(res.get("limits"), dict):
            return res["limits"]
    return None


def set_path(data: CommentedMap, path: tuple[str, ...], value: Any) -> Any:
    """Set a nested mapping value (created when missing); returns the old value."""
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = CommentedMap()
        node = node[key]
    old = node.get(path[-1])
    if isinstance(value, dict):
        node[path[-1]] = CommentedMap((k, _quoted(v)) for k, v in value.items())
    elif isinstance(value, list):
        seq = CommentedSeq(value)
        if isinstance(old, CommentedSeq) and old.fa.flow_style():
            seq.fa.set_flow_style()
        node[path[-1]] = seq
    else:
        node[path[-1]] = styled(old, value) if old is not None else value
    return old


def _quoted(value: Any) -> Any:
    """A new text value as the catalogue writes prose: double-quoted."""
    return DoubleQuotedScalarString(value) if isinstance(value, str) and " " in value else value


def _text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


# --- applying a spec ----------------------------------------------------------------------------


def rename(text: str, spec: VariantSpec) -> str:
    """The source's recipe id and DGD name become the variant's (Service names, perf endpoint, paths, comments)."""
    text = text.replace(spec.source_id, spec.variant_id)
    return re.sub(rf"(?<![a-z0-9-]){re.escape(spec.source_dgd)}(?![a-z0-9])", spec.variant_dgd, text)


def _headers(text: str, spec: VariantSpec, rel: str) -> str:
    """Whole comment lines that state a planned value, rewritten (only comments: a `#` at the line's start)."""
    rules = spec.header_lines.get(rel.rsplit("/", 1)[-1], {})
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        for prefix, new in rules.items():
            if line.startswith(prefix):
                lines[i] = new + "\n"
    if "DYN_KV_BLOCK_SIZE" in spec.epp_env:  # the EPP's comment names the workers' block size
        size = spec.epp_env["DYN_KV_BLOCK_SIZE"][0]
        lines = [
            re.sub(r"(--block-size \()\d+(\))", rf"\g<1>{size}\g<2>", x) if x.startswith("#") else x for x in lines
        ]
    return "".join(lines)


def apply_deploy(text: str, spec: VariantSpec, rel: str) -> tuple[str, list[Change]]:
    changes: list[Change] = []
    docs = load_all(rename(text, spec))
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "DynamoGraphDeployment":
            continue
        for name, comp in components(doc):
            container = main_container(comp)
            where = f"{rel} component {name}"
            if name in spec.workers:
                ws = spec.workers[name]
                if comp.get("replicas") != ws.replicas:
                    old = comp.get("replicas")
                    comp["replicas"] = ws.replicas
                    changes.append(
                        Change(rel, f"{name}.replicas", _text(old), str(ws.replicas), ws.reasons["replicas"])
                    )
                for sec, key in gpu_counts(comp, container):
                    if str(sec[key]) != str(ws.gpus_per_pod):
                        old = sec[key]
                        sec[key] = styled(old, str(ws.gpus_per_pod))
                        what = f"{name} {'limits' if sec is _limits(comp, container) else 'requests'} {key}"
                        changes.append(Change(rel, what, str(old), str(ws.gpus_per_pod), ws.reasons["gpus"]))
                multinode = comp.get("multinode")
                if isinstance(multinode, dict) or ws.node_count > 1:
                    if not isinstance(multinode, dict):
                        raise DeriveError(
                            f"{where}: needs {ws.node_count} nodes per replica but is not multinode: "
                            "add `multinode: {nodeCount: N}` and the engine's multinode flags by hand"
                        )
                    if multinode.get("nodeCount") != ws.node_count:
                        old = multinode.get("nodeCount")
                        multinode["nodeCount"] = ws.node_count
                        changes.append(
                            Change(
                                rel, f"{name}.multinode.nodeCount", str(old), str(ws.node_count), ws.reasons["nodes"]
                            )
                        )
                if container is None:
                    raise DeriveError(f"{where}: no main container")
                if ws.flags:
                    args = _plain_args(container, where)
                    for flag, (value, reason) in ws.flags.items():
                        present = flag in args
                        old = set_arg(args, flag, value, ws.add_comments.get(flag, ""))
                        if (old != value and value != "") or (value == "" and not present):
                            changes.append(Change(rel, f"{name} {flag}", old or "", value or "(switch on)", reason))
                if ws.literal_flags:
                    args = _plain_args(container, where)
                    for flag, (literal, value, reason) in ws.literal_flags.items():
                        if arg_value(args, flag) == literal:
                            set_arg(args, flag, value)
                            changes.append(Change(rel, f"{name} {flag}", literal, value, reason))
                for env, (value, reason) in ws.env.items():
                    old = set_env(container, env, value)
                    if old is not None and old != value:
                        changes.append(Change(rel, f"{name} env {env}", old, value, reason))
            elif spec.frontend_flags and str(comp.get("type") or comp.get("componentType")) == "frontend":
                if container is None:
                    raise DeriveError(f"{where}: no main container")
                args = _plain_args(container, where)
                for flag, (value, reason) in spec.frontend_flags.items():
                    old = set_arg(args, flag, value)
                    if old != value:
                        changes.append(Change(rel, f"{name} {flag}", old or "", value, reason))
    return _headers(dump_all(docs), spec, rel), changes


def apply_env_file(text: str, env: dict[str, tuple[str, str]], spec: VariantSpec, rel: str) -> tuple[str, list[Change]]:
    """Env values of every container in the file's Jobs, Deployments and Pods (perf.yaml, the GAIE EPP)."""
    changes: list[Change] = []
    docs = load_all(rename(text, spec))
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        spec_node = doc.get("spec") or {}
        pod = (spec_node.get("template") or {}).get("spec") if isinstance(spec_node, dict) else None
        pod = pod if isinstance(pod, dict) else spec_node
        for c in (pod.get("containers") if isinstance(pod, dict) else None) or []:
            if not isinstance(c, dict):
                continue
            for name, (value, reason) in env.items():
                old = set_env(c, name, value)
                if old is not None and old != value:
                    changes.append(Change(rel, f"env {name}", old, value, reason))
    return _headers(dump_all(docs), spec, rel), changes


def apply_metadata(text: str, spec: VariantSpec, rel: str) -> tuple[str, list[Change]]:
    changes: list[Change] = []
    docs = load_all(rename(text, spec))
    data = docs[0]
    for path, (value, reason) in spec.metadata.items():
        old = set_path(data, path, value)
        if old is None or _text(old) != _text(value):
            changes.append(Change(rel, ".".join(path), "" if old is None else _text(old), _text(value), reason))
    limits = data.get("knownLimits")
    if spec.known_limits:
        if not isinstance(limits, list):
            data["knownLimits"] = limits = CommentedSeq()
        for line in spec.known_limits:
            if line not in limits:
                limits.append(_quoted(line))
                changes.append(Change(rel, "knownLimits", "", line, "what the variant has not proven"))
    out = dump_all(docs)
    if spec.gpu_sum_comment:  # the `# Worker 8 x 2 = 16 GPUs` line above `gpus:`
        out = re.sub(r"(?m)^# [A-Z][^\n]* = \d+ GPUs$", spec.gpu_sum_comment, out)
    return out, changes


def apply_storage_class(text: str, storage_class: str, rel: str) -> tuple[str, list[Change]]:
    """The model-cache PVC's storageClassName (the commented placeholder line is replaced)."""
    docs = load_all(text)
    changes = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "PersistentVolumeClaim":
            old = doc["spec"].get("storageClassName")
            if old != storage_class:
                doc["spec"].insert(0, "storageClassName", storage_class)
                changes.append(
                    Change(
                        rel, "storageClassName", str(old or ""), storage_class, "--set storage-class (ReadWriteMany)"
                    )
                )
    out = dump_all(docs)
    out = re.sub(r"(?m)^\s*# storageClassName: <rwx-class>.*\n", "", out)
    return out, changes


# --- the model README ---------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def upsert_readme(text: str, section: str, key: str, source_key: str, new_line: str) -> str:
    """In `## section`, replace the line for `key` (a table row whose first cell is it, or a bullet that
    starts with it), or insert new_line after the last line for `source_key`."""
    lines = text.splitlines(keepends=True)
    inside, last_source, existing, last_kind = False, None, None, None
    table = new_line.lstrip().startswith("|")
    for i, line in enumerate(lines):
        if line.startswith("#"):
            inside = line.strip().lstrip("#").strip().lower() == section.lower()
            continue
        if not inside:
            continue
        head = _cells(line)[0] if line.lstrip().startswith("|") else line.split(":", 1)[0].lstrip("- ").strip()
        if head == key:
            existing = i
        elif head == source_key:
            last_source = i
        if (table and line.lstrip().startswith("|")) or (not table and line.startswith("- `")):
            last_kind = i  # the section's last row (or recipe bullet): a recipe from another model goes after it
    if existing is not None:
        lines[existing] = new_line + "\n"
    elif last_source is not None or last_kind is not None:
        lines.insert((last_source if last_source is not None else last_kind) + 1, new_line + "\n")
    else:
        raise DeriveError(f"the model README's `## {section}` has no line for {source_key}: add the variant by hand")
    return "".join(lines)


def replace_bullets(text: str, section: str, key: str, source_key: str, bullets: list[str]) -> str:
    """In `## section`, the bullets for `key` become `bullets`: where they were, else after the last bullet
    for `source_key` (so deriving again leaves the order of other variants' bullets alone)."""
    lines = text.splitlines(keepends=True)
    inside, kept, at = False, [], None
    for line in lines:
        if line.startswith("#"):
            inside = line.strip().lstrip("#").strip().lower() == section.lower()
        if inside and line.startswith(f"- {key}:"):
            at = len(kept) if at is None else at
            continue
        kept.append(line)
    if at is not None:
        kept[at:at] = [b + "\n" for b in bullets]
        return "".join(kept)
    text = "".join(kept)
    for bullet in reversed(bullets):
        text = upsert_readme(text, section, "\0", source_key, bullet)
    return text
