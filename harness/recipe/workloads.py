"""What the semantic checks read from a recipe's manifests, built once per recipe
(`Recipe.workloads`): every pod (DGD service, Job, Deployment) with its containers, PVC mounts
and claims, and the worker, aiperf and download calls (command lines: harness/recipe/commandline.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.recipe.commandline import (
    Command,
    Flag,
    Flags,
    Script,
    Token,
    nested_script,
    parse_flags,
    script_line,
    shell_scripts,
)
from harness.recipe.container import Container, build_container
from harness.recipe.findings import Loc
from harness.recipe.model import MODEL_DOWNLOAD_FILE, PERF_FILE, Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import Document, SrcMap, dig, mapping, sequence

WORKLOAD_KINDS = {"Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}
PERF_RUNNER_KINDS = ("Job", "Pod")


def flag(flags: Iterable[Flag], *names: str) -> Flag | None:
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

    @property
    def name(self) -> str:
        """The service's name for a DGD pod, else `Job <name>`, `Deployment <name>`, ..."""
        return self.service.name if self.service else self.label

    def mounts_of(self, container: Container) -> list[Mount]:
        return [m for m in self.mounts if not m.container or m.container == id(container.data)]


def under(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount whose path contains `path` (the deepest one)."""
    best = None
    for m in mounts:
        root = m.path.rstrip("/") or "/"
        if (path == root or path.startswith(root.rstrip("/") + "/")) and (
            best is None or len(root) > len(best.path.rstrip("/"))
        ):
            best = m
    return best


def _plain_container(data: SrcMap) -> Container:
    return build_container(data, None, {}, {}, None)


def _pod_volumes(
    pod: SrcMap | None, containers: list[Container], mounts: list[Mount], claims: list[tuple[str, Loc]]
) -> None:
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
    containers = [
        _plain_container(c)
        for key in ("containers", "initContainers")
        for c in sequence(pod_spec.get(key) if pod_spec else None) or []
        if mapping(c) is not None
    ]
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
    _aiperf: Any = ()  # () = not looked for yet

    @property
    def workers(self) -> list[Pod]:
        return [p for p in self.dgd_pods if p.service is not None and p.service.is_worker]

    @property
    def epp(self) -> list[Pod]:
        return self.gaie + [p for p in self.dgd_pods if p.service is not None and p.service.role == "epp"]

    @staticmethod
    def script(container: Container) -> Script:
        return container.script

    @staticmethod
    def dynamo_call(pod: Pod) -> tuple[str, Flags] | None:
        """(`dynamo.vllm`, flags) of a DGD pod's `python -m dynamo.X` call (`Service.flags`)."""
        svc = pod.service
        if svc is None or svc.module is None:
            return None
        return svc.module.value, svc.flags

    def engine_calls(self) -> Iterator[tuple[Pod, Token, Flags]]:
        """(worker pod, the `dynamo.X` word, its flags) for every worker that runs a Dynamo engine."""
        for pod in self.workers:
            found = self.dynamo_call(pod)
            if found is None or pod.main is None:
                continue
            module, flags = found
            at = next((t for cmd in self.script(pod.main).commands for t in cmd.words if t.value == module), None)
            yield pod, at or Token(module, pod.main.loc), flags

    def aiperf(self) -> tuple[Container, Command, Flags] | None:
        """(container, command, flags) of the perf Job's `aiperf profile` call (found once)."""
        if self._aiperf == ():
            call = self.aiperf_call()
            self._aiperf = (call[0], call[1], parse_flags(call[2])) if call else None
        return self._aiperf

    def aiperf_call(self) -> tuple[Container, Command, list[Token]] | None:
        """The benchmark's `aiperf profile` call, (container, command, the words after `profile`): the
        first one that is not a warmup run (a call whose words say warmup, e.g. `--artifact-dir
        /perf/warmup`, or that the script announces as one: `echo "Running warmup..."` right before
        it or `echo "Warmup complete"` right after), else the first one. The one answer to "what does
        the perf Job benchmark" for the checks, the sim's perf step and the gpu stage
        (harness/analysis/benchmark.py)."""
        if self.perf is None:
            return None
        calls = [
            (c, cmd, words, announced_warmup(self.script(c), cmd))
            for c in self.perf.containers
            for cmd, words in aiperf_calls(self.script(c))
        ]
        if not calls:
            return None
        c, cmd, words, _ = next((call for call in calls if not (call[3] or is_warmup(call[2]))), calls[0])
        return c, cmd, words

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
        self._dgd_created(out)
        return out

    def model_tree_pvcs(self) -> dict[str, Loc]:
        """PVCs defined anywhere in the model's tree: the conventional model-cache.yaml first, then
        every other manifest under the model directory (upstream keeps some in `model-cache/cache.yaml`)."""
        out = self.pvc_docs()
        model_dir = self.recipe.model_dir
        if not model_dir.is_dir():
            return out
        for path in sorted(p for ext in ("*.yaml", "*.yml") for p in model_dir.rglob(ext)):
            f = self.recipe.load(path)
            for doc in f.documents if f else ():
                if doc.kind == "PersistentVolumeClaim" and doc.name and isinstance(doc.data, SrcMap):
                    out.setdefault(doc.name, doc.data.loc)
        return out

    def _dgd_created(self, out: dict[str, Loc]) -> None:
        dep = self.recipe.deployment
        for item in sequence(dep.spec.get("pvcs") if dep else None) or []:
            if dig(item, "create") is True and isinstance(dig(item, "name"), str):
                out.setdefault(item["name"], item.loc_of("name"))


_WARMUP = re.compile(r"warm[-_ ]?up", re.IGNORECASE)


def is_warmup(words: list[Token]) -> bool:
    """An aiperf call that only warms the server up (its words say so); the benchmark's rules
    (seed, fixed lengths, artifacts) do not apply to it."""
    return any(_WARMUP.search(w.value) for w in words if not w.value.startswith("-"))  # not `--warmup-request-count`


_QUIET = {"set", ":", "true"}  # commands a script puts between its message and the call (`set +e`)


def announced_warmup(script: Script, cmd: Command) -> bool:
    """The script's own messages call this aiperf run a warm-up: the nearest `echo`/`printf` before it
    (past `set +e` and the like) or the one right after it says warm-up."""
    cmds = script.commands
    if cmd not in cmds:
        return False
    i = cmds.index(cmd)
    before = next((c for c in reversed(cmds[:i]) if c.words and c.words[0].value not in _QUIET), None)
    after = cmds[i + 1] if i + 1 < len(cmds) else None
    for near in (before, after):
        words = near.program_words() if near is not None else []
        if words and words[0].value in ("echo", "printf") and any(_WARMUP.search(w.value) for w in words[1:]):
            return True
    return False


def aiperf_calls(script: Script) -> Iterator[tuple[Command, list[Token]]]:
    """(command, the words after `aiperf profile`) for every call in a script, also inside a
    nested `sh -c '...'` and a `tmux send-keys '...'` (the pane's shell runs that text)."""
    for cmd in script.commands:
        words = cmd.program_words()
        for i, w in enumerate(words[:-1]):
            if (w.value == "aiperf" or w.value.endswith("/aiperf")) and words[i + 1].value == "profile":
                yield cmd, words[i + 2 :]
                break
        vals = [t.value for t in words]
        if len(vals) > 2 and vals[0] == "tmux" and vals[1] in ("send-keys", "send"):
            texts = [t for t in words[2:] if " " in t.value]
            for t in texts:
                inner = nested_script(t.value, t.loc)
                yield from aiperf_calls(inner)
    for cmd, text, _ in shell_scripts(script):
        yield from aiperf_calls(nested_script(text, cmd.words[0].loc))


def aiperf_of(recipe: Recipe) -> tuple[Workloads, Container, Command, Flags] | None:
    """(workloads, container, command, flags) of the recipe's benchmark call, or None (`Workloads.aiperf`)."""
    w = recipe.workloads
    found = w.aiperf()
    return (w, *found) if found else None


def workloads(recipe: Recipe) -> Workloads:
    """The recipe's pods (`Recipe.workloads`, built once per Recipe object; checks share it)."""
    return recipe.workloads


def build_workloads(recipe: Recipe) -> Workloads:
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
            if (
                f.path == recipe.path / PERF_FILE
                and doc.kind in PERF_RUNNER_KINDS
                and (perf is None or perf.doc.kind != "Job")
            ):
                perf = pod  # a Job, else a bare Pod (upstream runs some benchmarks from one)
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
    return script_line(Token(value, loc), offset)
