"""What the semantic checks read from a recipe's manifests, built once per recipe: every pod
(DGD service, Job, Deployment) with its containers, PVC mounts and claims, shell scripts
split into commands with the line of every word, and the worker, aiperf and download calls.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.recipe.findings import Loc
from harness.recipe.model import (
    MODEL_DOWNLOAD_FILE, PERF_FILE, Container, Recipe, Service, Token, _container, dig, mapping, sequence,
)
from harness.recipe.yamlsrc import Document, SrcMap

WORKLOAD_KINDS = {"Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}
_ENV_REFS = re.compile(r"\$(?:\(([A-Za-z_]\w*)\)|\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")
_SHELLS = ("sh", "bash", "dash", "zsh")


# --- shell scripts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One shell word: its raw text as written, its value (quotes removed) and its offset."""

    raw: str
    value: str
    offset: int


@dataclass
class Command:
    """One simple command of a script, with the operator that ends it (`\\n`, `;`, `&&`, `||`, `|`, `&`)."""

    words: list[Token]
    raw: list[str]
    end: str = ""

    @property
    def name(self) -> str:
        """The program, after `VAR=value` prefixes and `exec`/`timeout N`/`time` wrappers."""
        words = self.program_words()
        return words[0].value if words else ""

    def program_words(self) -> list[Token]:
        w = list(self.words)
        while w and re.match(r"^[A-Za-z_]\w*=", w[0].value):
            w = w[1:]
        while w and w[0].value in ("exec", "time", "nohup", "command"):
            w = w[1:]
        return w

    @property
    def text(self) -> str:
        return " ".join(t.value for t in self.words)


def split_shell(text: str) -> list[Word | str]:
    """Split a POSIX shell script into words and control operators (as plain strings).

    Handles quotes, backslash escapes, line continuations, comments, `$(...)` and `${...}`;
    a newline outside quotes ends a command. Offsets let callers map words to source lines.
    """
    out: list[Word | str] = []
    i, n = 0, len(text)
    start, value = -1, []

    def flush(end: int) -> None:
        nonlocal start, value
        if start >= 0:
            out.append(Word(text[start:end], "".join(value), start))
        start, value = -1, []

    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            if text[i + 1] == "\n":  # line continuation
                flush(i)
                i += 2
                continue
            if start < 0:
                start = i
            value.append(text[i + 1])
            i += 2
            continue
        if ch in " \t\r":
            flush(i)
            i += 1
            continue
        if ch == "#" and start < 0:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "\n" or ch == ";" or (ch in "&|" and not (ch == "&" and (text[i - 1:i] == ">" or text[i + 1:i + 2] == ">"))):
            flush(i)
            op = text[i : i + 2] if text[i : i + 2] in ("&&", "||", ";;") else ch
            out.append(op)
            i += len(op)
            continue
        if start < 0:
            start = i
        if ch == "'":
            j = text.find("'", i + 1)
            j = n if j < 0 else j
            value.append(text[i + 1 : j])
            i = j + 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\$`':
                    value.append(text[j + 1])
                    j += 2
                    continue
                value.append(text[j])
                j += 1
            i = j + 1
        elif ch == "$" and text[i + 1 : i + 2] in ("(", "{"):
            close = ")" if text[i + 1] == "(" else "}"
            depth, j = 0, i + 1
            while j < n:
                if text[j] == text[i + 1]:
                    depth += 1
                elif text[j] == close:
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            value.append(text[i : j + 1])
            i = j + 1
        else:
            value.append(ch)
            i += 1
    flush(n)
    return out


@dataclass
class Script:
    """A container's command line as commands: a `sh -c` script, or the exec form as one command."""

    commands: list[Command]
    shell_flags: str = ""  # e.g. "-ec" for `bash -ec SCRIPT`
    is_shell: bool = False
    loc: Loc | None = None  # where the script text starts

    def find(self, program: str) -> Iterator[Command]:
        for c in self.commands:
            if c.name == program or c.name.endswith("/" + program):
                yield c


def _line_of(script: Token, offset: int) -> Loc:
    """The source line of an offset in a script scalar (block scalars start one line below)."""
    text = script.value
    if "\n" not in text.rstrip("\n"):
        return script.loc
    return Loc(script.loc.file, script.loc.line + 1 + text.count("\n", 0, offset), 1)


def first_script_line(script: Token) -> Loc:
    text = script.value
    lead = len(text) - len(text.lstrip())
    return _line_of(script, lead)


def _edit_loc(container: Container, raw: str, fallback: Loc) -> Loc:
    """Where to edit a word's value: the env var's line when the word takes its value from
    exactly one literal env var (`$MODEL`, `--url=$URL`, `aiperf==${AIPERF_VERSION}`)."""
    names = {a or b or c for a, b, c in _ENV_REFS.findall(raw)}
    if len(names) == 1:
        name = names.pop()
        if name in container.env and name in container.env_locs:
            return container.env_locs[name]
    return fallback


def script_commands(text: str, token: Callable[[Word], Token]) -> list[Command]:
    """A script's simple commands; `token` turns each word into a Token (value and line)."""
    commands: list[Command] = []
    current: list[Token] = []
    raw: list[str] = []
    for item in split_shell(text):
        if isinstance(item, str):
            if current:
                commands.append(Command(current, raw, item))
            current, raw = [], []
        else:
            current.append(token(item))
            raw.append(item.raw)
    if current:
        commands.append(Command(current, raw, ""))
    return commands


def parse_script(container: Container) -> Script:
    """The container's command line split into commands, env expanded, each word with its line."""
    raw = container.command + container.args
    script = container.shell_script
    if script is None:
        words = [Token(container.expand(t.value), _edit_loc(container, t.value, t.loc)) for t in raw]
        return Script([Command(words, [t.value for t in raw])] if words else [])
    flags = ""
    for t in raw:
        if t is script:
            break
        if t.value.startswith("-") and not t.value.startswith("--"):
            flags += t.value.lstrip("-")

    def token(word: Word) -> Token:
        return Token(container.expand(word.value), _edit_loc(container, word.raw, _line_of(script, word.offset)))

    return Script(script_commands(script.value, token), flags, True, first_script_line(script))


def nested_script(text: str, at: Loc) -> Script:
    """The script of a nested `sh -c TEXT`, every word on the outer command's line."""
    return Script(script_commands(text, lambda w: Token(w.value, at)), "", True, at)


def shell_scripts(script: Script) -> Iterator[tuple[Command, str, bool]]:
    """Nested `sh -c '...'` calls inside a script: (command, inner script text, wrapped in timeout)."""
    for cmd in script.commands:
        words = cmd.program_words()
        bounded = False
        if words and words[0].value == "timeout":
            bounded = True
            words = words[1:]
            while words and (words[0].value.startswith("-") or re.match(r"^\d+[smhd]?$", words[0].value)):
                words = words[1:]
        if words and words[0].value.rsplit("/", 1)[-1] in _SHELLS:
            for i, w in enumerate(words[1:-1], start=1):
                if w.value.startswith("-") and "c" in w.value and not w.value.startswith("--"):
                    yield cmd, words[i + 1].value, bounded
                    break


# --- flags --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str
    value: Token  # the value ("true" for a bare flag, at the flag's position)
    flag: Token


def flags_of(args: list[Token]) -> list[Flag]:
    """Every `--flag value`, `--flag=value`, `-f value` and bare `--flag`, in order (repeats kept)."""
    out: list[Flag] = []
    i = 0
    while i < len(args):
        tok = args[i]
        v = tok.value
        if v.startswith("-") and len(v) > 1 and not re.match(r"^-\d", v):
            name, eq, value = v.partition("=")
            if eq:
                out.append(Flag(name, Token(value, tok.loc), tok))
            elif i + 1 < len(args) and not (args[i + 1].value.startswith("-") and not re.match(r"^-\d", args[i + 1].value)):
                out.append(Flag(name, args[i + 1], tok))
                i += 1
            else:
                out.append(Flag(name, Token("true", tok.loc), tok))
        i += 1
    return out


def flag(flags: list[Flag], *names: str) -> Flag | None:
    """The last occurrence of any of the names (the one the program keeps)."""
    found = [f for f in flags if f.name in names]
    return found[-1] if found else None


# --- pods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A PVC mounted into a pod: claim name, path, and where the path is written."""

    claim: str
    path: str
    loc: Loc
    container: int = 0  # id() of the container's mapping; 0 = every container (DGD service volumeMounts)


@dataclass
class Pod:
    """A pod template: a DGD service (main container first), a Job or a Deployment."""

    doc: Document
    label: str
    spec: SrcMap | None
    containers: list[Container]
    service: Service | None = None
    mounts: list[Mount] = field(default_factory=list)
    claims: list[tuple[str, Loc]] = field(default_factory=list)  # every PVC name referenced

    @property
    def file(self) -> Path:
        return self.doc.file

    @property
    def main(self) -> Container | None:
        return self.containers[0] if self.containers else None

    def mounts_of(self, container: Container) -> list[Mount]:
        return [m for m in self.mounts if not m.container or m.container == id(container.data)]


def under(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount whose path contains `path` (the deepest one)."""
    best = None
    for m in mounts:
        root = m.path.rstrip("/") or "/"
        if path == root or path.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(best.path.rstrip("/")):
                best = m
    return best


def _plain_container(data: SrcMap) -> Container:
    return _container(data, None, {}, {}, None)


def _pod_volumes(pod: SrcMap | None, containers: list[Container], mounts: list[Mount], claims: list[tuple[str, Loc]]) -> None:
    if pod is None:
        return
    volumes: dict[str, str] = {}
    for v in sequence(pod.get("volumes")) or []:
        pvc = mapping(dig(v, "persistentVolumeClaim"))
        if pvc is not None and isinstance(pvc.get("claimName"), str) and isinstance(dig(v, "name"), str):
            volumes[v["name"]] = pvc["claimName"]
            claims.append((pvc["claimName"], pvc.loc_of("claimName")))
    for c in containers:
        for vm in sequence(c.data.get("volumeMounts")) or []:
            vm = mapping(vm)
            if vm is not None and vm.get("name") in volumes and isinstance(vm.get("mountPath"), str):
                sub = vm.get("subPath")
                path = vm["mountPath"]
                claim = volumes[vm["name"]] + (f"/{sub}" if isinstance(sub, str) and sub else "")
                mounts.append(Mount(claim, path, vm.loc_of("mountPath"), id(c.data)))


def _dgd_pods(doc: Document, services: list[Service]) -> list[Pod]:
    pods = []
    for svc in services:
        if svc.api_version.endswith("v1alpha1"):
            pod_spec = mapping(svc.data.get("extraPodSpec"))
        else:
            pod_spec = mapping(dig(svc.data, "podTemplate", "spec"))
        containers: list[Container] = [svc.main] if svc.main is not None else []
        for key in ("initContainers", "containers"):
            for c in sequence(pod_spec.get(key) if pod_spec else None) or []:
                c = mapping(c)
                if c is not None and c is not (svc.main.data if svc.main else None):
                    containers.append(_plain_container(c))
        mounts: list[Mount] = []
        claims: list[tuple[str, Loc]] = []
        for vm in sequence(svc.data.get("volumeMounts")) or []:
            vm = mapping(vm)
            if vm is not None and isinstance(vm.get("name"), str):
                claims.append((vm["name"], vm.loc_of("name")))
                if isinstance(vm.get("mountPoint"), str):
                    mounts.append(Mount(vm["name"], vm["mountPoint"], vm.loc_of("mountPoint")))
        _pod_volumes(pod_spec, containers, mounts, claims)
        pods.append(Pod(doc, f"service {svc.name}", pod_spec, containers, svc, mounts, claims))
    return pods


_POD_SPEC = {"Pod": ("spec",), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}


def _workload_pod(doc: Document) -> Pod:
    """A Job/Deployment/...: its containers (the working ones first, init containers last)."""
    pod_spec = mapping(dig(doc.data, *_POD_SPEC.get(doc.kind, ("spec", "template", "spec"))))
    containers = [_plain_container(c) for key in ("containers", "initContainers")
                  for c in sequence(pod_spec.get(key) if pod_spec else None) or [] if mapping(c) is not None]
    mounts: list[Mount] = []
    claims: list[tuple[str, Loc]] = []
    _pod_volumes(pod_spec, containers, mounts, claims)
    return Pod(doc, f"{doc.kind} {doc.name}", pod_spec, containers, None, mounts, claims)


# --- the recipe's workloads -----------------------------------------------------------------


@dataclass
class Workloads:
    recipe: Recipe
    pods: list[Pod]
    dgd_pods: list[Pod]
    perf: Pod | None
    downloads: list[Pod]
    gaie: list[Pod]
    scripts: dict[int, Script] = field(default_factory=dict)
    _engines: dict[int, tuple[str, list[Flag]] | None] = field(default_factory=dict)
    _aiperf: Any = ()  # () = not looked for yet

    @property
    def workers(self) -> list[Pod]:
        return [p for p in self.dgd_pods if p.service is not None and p.service.is_worker]

    @property
    def epp(self) -> list[Pod]:
        return self.gaie + [p for p in self.dgd_pods if p.service is not None and p.service.role == "epp"]

    def script(self, container: Container) -> Script:
        key = id(container.data)
        if key not in self.scripts:
            self.scripts[key] = parse_script(container)
        return self.scripts[key]

    def engine(self, pod: Pod) -> tuple[str, list[Flag]] | None:
        """(`dynamo.vllm`, flags) of the worker's `python -m dynamo.X` call (found once per pod)."""
        key = id(pod)
        if key not in self._engines:
            self._engines[key] = self._find_engine(pod)
        return self._engines[key]

    def _find_engine(self, pod: Pod) -> tuple[str, list[Flag]] | None:
        if pod.main is None:
            return None
        for cmd in self.script(pod.main).commands:
            vals = [w.value for w in cmd.words]
            for i, v in enumerate(vals[:-1]):
                if v == "-m" and vals[i + 1].startswith("dynamo."):
                    return vals[i + 1], flags_of(cmd.words[i + 2 :])
        return None

    def aiperf(self) -> tuple[Container, Command, list[Flag]] | None:
        """(container, command, flags) of the perf Job's `aiperf profile` call (found once)."""
        if self._aiperf == ():
            self._aiperf = self._find_aiperf()
        return self._aiperf

    def _find_aiperf(self) -> tuple[Container, Command, list[Flag]] | None:
        if self.perf is None:
            return None
        for c in self.perf.containers:
            for cmd in self.script(c).commands:
                words = cmd.program_words()
                for i, w in enumerate(words[:-1]):
                    if (w.value == "aiperf" or w.value.endswith("/aiperf")) and words[i + 1].value == "profile":
                        return c, cmd, flags_of(words[i + 2 :])
        return None

    @property
    def perf_container(self) -> Container | None:
        found = self.aiperf()
        if found:
            return found[0]
        return self.perf.main if self.perf else None

    def pvc_docs(self) -> dict[str, Loc]:
        """PVCs the recipe defines: the model cache's PersistentVolumeClaims and DGD `pvcs` with create: true."""
        out: dict[str, Loc] = {}
        for f in self.recipe.model_cache_files:
            for doc in f.documents:
                if doc.kind == "PersistentVolumeClaim" and doc.name:
                    out.setdefault(doc.name, doc.data.loc)
        dep = self.recipe.deployment
        for item in sequence(dep.spec.get("pvcs") if dep else None) or []:
            if dig(item, "create") is True and isinstance(dig(item, "name"), str):
                out.setdefault(item["name"], item.loc_of("name"))
        return out


_CACHE: "weakref.WeakKeyDictionary[Recipe, Workloads]" = weakref.WeakKeyDictionary()


def workloads(recipe: Recipe) -> Workloads:
    """The recipe's pods, built once per Recipe object (checks share it)."""
    found = _CACHE.get(recipe)
    if found is None:
        found = _build(recipe)
        _CACHE[recipe] = found
    return found


def _build(recipe: Recipe) -> Workloads:
    dgd_pods: list[Pod] = []
    dep = recipe.deployment
    if dep is not None:
        dgd_pods = _dgd_pods(dep.doc, dep.services)
    pods = list(dgd_pods)
    perf: Pod | None = None
    downloads: list[Pod] = []
    gaie: list[Pod] = []
    for f in recipe.files():
        for doc in f.documents:
            if not isinstance(doc.data, SrcMap) or doc.kind not in WORKLOAD_KINDS:
                continue
            pod = _workload_pod(doc)
            pods.append(pod)
            if f.path == recipe.path / PERF_FILE and perf is None and doc.kind == "Job":
                perf = pod
            elif f.path.name == MODEL_DOWNLOAD_FILE:
                downloads.append(pod)
            elif f.path.parent.name == "gaie":
                gaie.append(pod)
    return Workloads(recipe, pods, dgd_pods, perf, downloads, gaie)


def env_value(container: Container, name: str) -> tuple[str, Loc] | None:
    """A literal env value (expanded) and its line."""
    if name in container.env:
        return container.expand(container.env[name]), container.env_locs.get(name, container.loc)
    return None


def all_strings(node: Any, loc: Loc) -> Iterator[tuple[str, Loc, str]]:
    """Every string scalar under a node: (value, loc, key or "")."""
    if isinstance(node, SrcMap):
        for k, v in node.items():
            if isinstance(v, str):
                yield v, node.loc_of(k), str(k)
            else:
                yield from all_strings(v, node.loc_of(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            item_loc = node.loc_of(i) if hasattr(node, "loc_of") else loc
            if isinstance(v, str):
                yield v, item_loc, ""
            else:
                yield from all_strings(v, item_loc)


def line_in_scalar(value: str, loc: Loc, offset: int) -> Loc:
    return _line_of(Token(value, loc), offset)
