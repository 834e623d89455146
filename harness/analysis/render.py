"""The pods the Dynamo operator would create for each service of a recipe's DynamoGraphDeployment,
and the argv each engine process finally receives.

Modelled on the operator source of ai-dynamo/dynamo `deploy/operator/internal/dynamo/` (Dynamo 1.x,
v1alpha1 API path). The code index holds many versions of these files without tags, so the exact
v1.4.0 commit could not be pinned; the commits read were:
  backend_trtllm.go @015d780b (TRTLLMBackend.UpdateContainer / setupLeaderContainer / setupWorkerContainer),
  backend_sglang.go @7caca066 (SGLangBackend.getMultinodeFlags, isPythonCommand),
  backend_vllm.go @18bda510 (updateVLLMMultinodeArgs and the mp / ray / data-parallel launchers),
  the flag-injection file holding shellQuoteForBashC + injectFlagsIntoContainerCommand (index id
  52247825409; the same body as mutation/command_line.go ShellQuote @62eeb052),
  graph.go GenerateBasePodSpec (index id 51918951736), grove.go GroveMultinodeDeployer,
  LWSMultinodeDeployer, component_common.go / component_worker.go @015d780b, component_frontend.go @132ccbe3.
Facts and their provenance are collected in the project notes (operator-facts.md).

Three layers rewrite a command before the engine sees it, and all three are modelled:
  1. the operator (multinode flags, `sh -c "exec ..."`, mpirun), with its quoting helper;
  2. the kubelet (`$(VAR)` expansion in command and args, blind to quotes);
  3. the shell(s) (`sh -c`, and `bash -c` on every MPI rank).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.shell import (
    ShellParser,
    ShellSyntaxError,
    SimpleCommand,
    Traced,
    Word,
    concat,
    join,
    kubelet_env,
    kubelet_expand,
)
from harness.recipe.commandline import Token, dynamo_module_at
from harness.recipe.findings import Loc, display_path
from harness.recipe.model import Recipe
from harness.recipe.service import Service
from harness.recipe.yamlsrc import as_int, dig, mapping, sequence

MULTINODE_DEPLOYERS = ("grove", "lws")
OPERATOR_MODEL = "modelled on the deploy/operator 1.x source, see harness/analysis/render.py"


def operator_release(recipe: Recipe) -> str:
    """The render header: which operator release the rendered pods model (the recipe's own `versions.dynamo`)."""
    release = dig(recipe.metadata, "versions", "dynamo")
    if release:
        return f"Dynamo {release} operator ({OPERATOR_MODEL})"
    return f"Dynamo operator, release not named by recipe.yaml versions.dynamo ({OPERATOR_MODEL})"


# deploy/operator/internal/consts/consts.go
SYSTEM_PORT = 9090
NIXL_PORT = 19090
HTTP_PORT = 8000
MPIRUN_SSH_PORT = 2222
SGLANG_PORT = "29500"  # backend_sglang.go SglangPort
VLLM_MP_MASTER_PORT = "29500"  # consts VLLMMpMasterPort
VLLM_RAY_PORT = "6379"  # backend_vllm.go VLLMPort
VLLM_DP_RPC_PORT = "13445"  # backend_vllm.go dataParallelRPCPort
DEFAULT_SHM = "8Gi"  # consts DefaultSharedMemorySize
MPI_SSH_SECRET = "mpirun-ssh-key"  # operator config mpi.sshSecretName: the name is installation-specific

# The image runs as a non-root user (uid 1000) unless the pod's securityContext says otherwise:
# the mpirun wrapper adds --allow-run-as-root only for uid 0.
DEFAULT_UID = 1000


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None  # None: valueFrom (see value_from) or a secret's key
    value_from: str = ""  # "fieldRef status.podIP", "secretKeyRef hf-token/HF_TOKEN", ...
    source: str = "manifest"  # manifest | operator | grove | lws


@dataclass(frozen=True)
class Mount:
    name: str
    mount_path: str
    volume: str  # what backs it: "pvc model-cache", "emptyDir medium=Memory sizeLimit=8Gi", ...
    read_only: bool = False
    source: str = "manifest"  # manifest | operator


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class EngineArg(Token):
    """One argument the engine receives; `loc` is where it was written (or, when the operator
    injected it, the service's multinode setting)."""

    injected: bool = False


@dataclass(frozen=True)
class Mangled:
    """A manifest argument the engine receives differently from how a single-node pod would."""

    token: Token  # as written in the manifest
    written: tuple[str, ...]  # what the author meant: the argument(s) after the kubelet's expansion
    received: tuple[str, ...]  # what the engine gets in this pod


@dataclass
class RenderedPod:
    """One pod form of a service: `single`, or a multinode `leader` / `worker`."""

    service: str
    role: str  # single | leader | worker
    pods: int  # pods of this form per service replica
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    mounts: list[Mount]
    ports: list[Port]
    engine_argv: list[EngineArg] | None  # None: this pod runs no engine process (sshd, ray agent)
    launcher: list[str] = field(default_factory=list)  # argv that starts the engine on every rank (mpirun)
    mangled: list[Mangled] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    multinode: str | None = None  # grove | lws for multinode services
    launch_error: str = ""  # why the command this pod runs cannot start the engine the manifest wrote
    launch_loc: Loc | None = None  # where that command was written

    @property
    def engine_args(self) -> list[EngineArg]:
        """The arguments after `-m dynamo.<x>` (empty when there is no such call)."""
        argv = self.engine_argv or []
        at = dynamo_module_at(argv)
        return argv[at + 1 :] if at is not None else []

    @property
    def engine_module(self) -> str | None:
        argv = self.engine_argv or []
        at = dynamo_module_at(argv)
        return argv[at].value if at is not None else None

    def to_dict(self) -> dict[str, Any]:
        def env_item(e: EnvVar) -> dict[str, Any]:
            item: dict[str, Any] = {"name": e.name}
            if e.value is not None:
                item["value"] = e.value
            if e.value_from:
                item["valueFrom"] = e.value_from
            item["source"] = e.source
            return item

        return {
            "service": self.service,
            "role": self.role,
            "pods": self.pods,
            **({"multinode": self.multinode} if self.multinode else {}),
            "command": list(self.command),
            "args": list(self.args),
            "env": [env_item(e) for e in self.env],
            "volumeMounts": [
                {
                    "name": m.name,
                    "mountPath": m.mount_path,
                    "volume": m.volume,
                    **({"readOnly": True} if m.read_only else {}),
                    "source": m.source,
                }
                for m in self.mounts
            ],
            "ports": [{"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in self.ports],
            **({"launcher": list(self.launcher)} if self.launcher else {}),
            "engineArgv": None
            if self.engine_argv is None
            else [
                {
                    "value": t.value,
                    "at": f"{display_path(t.loc.file)}:{t.loc.line}",
                    **({"injected": True} if t.injected else {}),
                }
                for t in self.engine_argv
            ],
            **(
                {
                    "mangled": [
                        {
                            "at": f"{display_path(m.token.loc.file)}:{m.token.loc.line}",
                            "written": list(m.written),
                            "received": list(m.received),
                        }
                        for m in self.mangled
                    ]
                }
                if self.mangled
                else {}
            ),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


class RenderError(ValueError):
    """The recipe has no DynamoGraphDeployment to render."""


# --- entry points ------------------------------------------------------------------------------


def render_recipe(recipe: Recipe, multinode: str = "grove", namespace: str = "default") -> list[RenderedPod]:
    """The pod forms of every service of the recipe's DGD (one per single-node service, a leader
    and a worker form per multinode service)."""
    if multinode not in MULTINODE_DEPLOYERS:
        raise ValueError(f"multinode must be one of {MULTINODE_DEPLOYERS}, not {multinode!r}")
    dep = recipe.deployment
    if dep is None:
        raise RenderError(f"{recipe.id}: no DynamoGraphDeployment in deploy.yaml")
    framework = dep.backend_framework
    pods: list[RenderedPod] = []
    for svc in dep.services:
        pods.extend(render_service(svc, dep.name, framework, dep.spec, multinode, namespace))
    return pods


def render_service(
    svc: Service, dgd_name: str, framework: str, spec: Any, multinode: str = "grove", namespace: str = "default"
) -> list[RenderedPod]:
    nodes = svc.node_count
    if nodes <= 1:
        return [_render(svc, dgd_name, framework, spec, "single", 1, multinode, namespace)]
    # graph.go expandRolesForService: <svc>-ldr (1 replica) and <svc>-wkr (nodeCount-1 replicas)
    return [
        _render(svc, dgd_name, framework, spec, "leader", nodes, multinode, namespace),
        _render(svc, dgd_name, framework, spec, "worker", nodes, multinode, namespace),
    ]


# --- the container before the backend touches it -----------------------------------------------


@dataclass
class _Container:
    """The main container as GenerateBasePodSpec has it when it calls backend.UpdateContainer."""

    command: list[Traced]
    args: list[Traced]
    env: list[EnvVar]
    mounts: list[Mount]
    ports: list[Port]
    raw: list[Token]  # the manifest's own command + args tokens; Traced origins index into this
    notes: list[str] = field(default_factory=list)


def _is_frontend(svc: Service) -> bool:
    return svc.component_type == "frontend"


def _is_worker(svc: Service) -> bool:
    # component_worker.go WorkerDefaults serves componentType worker (and v1beta1 prefill/decode)
    return svc.component_type in ("worker", "main", "prefill", "decode")


def _dynamo_namespace(svc: Service, namespace: str, dgd_name: str) -> str:
    # api ComputeDynamoNamespace: "<k8s namespace>-<dgd name, dots -> dashes>", or "dynamo" when global
    if svc.data.get("globalDynamoNamespace") is True:
        return "dynamo"
    return f"{namespace}-{dgd_name.replace('.', '-')}"


def _base_env(svc: Service, dgd_name: str, namespace: str) -> list[EnvVar]:
    """component_common.go getCommonContainer + component_worker.go / component_frontend.go GetBaseContainer."""
    ns = _dynamo_namespace(svc, namespace, dgd_name)
    op = "operator"
    env = [
        EnvVar("DYN_NAMESPACE", ns, source=op),
        EnvVar("DYN_COMPONENT", svc.component_type, source=op),
        EnvVar("DYN_PARENT_DGD_K8S_NAME", dgd_name, source=op),
        EnvVar("DYN_PARENT_DGD_K8S_NAMESPACE", namespace, source=op),
        EnvVar("POD_NAME", None, "fieldRef metadata.name", op),
        EnvVar("POD_NAMESPACE", None, "fieldRef metadata.namespace", op),
        EnvVar("POD_UID", None, "fieldRef metadata.uid", op),
        EnvVar("DYN_DISCOVERY_BACKEND", "kubernetes", source=op),
    ]
    if _is_frontend(svc):
        env += [
            EnvVar("DYNAMO_PORT", str(HTTP_PORT), source=op),
            EnvVar("DYN_HTTP_PORT", str(HTTP_PORT), source=op),
            EnvVar("DYN_NAMESPACE_PREFIX", ns, source=op),
        ]
    elif _is_worker(svc):
        env += [
            EnvVar("DYN_SYSTEM_ENABLED", "true", source=op),
            EnvVar("DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", '["generate"]', source=op),
            EnvVar("DYN_SYSTEM_PORT", str(SYSTEM_PORT), source=op),
            EnvVar("DYN_HEALTH_CHECK_ENABLED", "false", source=op),
            EnvVar("NIXL_TELEMETRY_ENABLE", "n", source=op),
            EnvVar("NIXL_TELEMETRY_EXPORTER", "prometheus", source=op),
            EnvVar("NIXL_TELEMETRY_PROMETHEUS_PORT", str(NIXL_PORT), source=op),
        ]
    return env


def _manifest_env(items: Any) -> list[EnvVar]:
    out = []
    for item in sequence(items) or []:
        item = mapping(item)
        if item is None or not isinstance(item.get("name"), str):
            continue
        if item.get("value") is not None:
            out.append(EnvVar(item["name"], str(item["value"])))
            continue
        ref = mapping(item.get("valueFrom"))
        desc = ""
        if ref is not None:
            for kind in ("fieldRef", "secretKeyRef", "configMapKeyRef", "resourceFieldRef"):
                sub = mapping(ref.get(kind))
                if sub is not None:
                    what = sub.get("fieldPath") or sub.get("resource") or f"{sub.get('name')}/{sub.get('key')}"
                    desc = f"{kind} {what}"
        out.append(EnvVar(item["name"], None, desc))
    return out


def merge_envs(base: list[EnvVar], override: list[EnvVar]) -> list[EnvVar]:
    """controller_common MergeEnvs: base order kept, a name present in both takes the override's
    value, new names are appended."""
    out = list(base)
    index = {e.name: i for i, e in enumerate(out)}
    for e in override:
        if e.name in index:
            out[index[e.name]] = e
        else:
            index[e.name] = len(out)
            out.append(e)
    return out


def _main_container(svc: Service) -> Any:
    return svc.main.data if svc.main is not None else None


def _base_container(svc: Service, dgd_name: str, spec: Any, namespace: str) -> _Container:
    """graph.go GenerateBasePodSpec up to backend.UpdateContainer."""
    main = _main_container(svc)
    # defaults: component_frontend.go (python3 -m dynamo.frontend, port http 8000);
    # component_common.go (["/bin/sh", "-c"], no args) for every other component
    if _is_frontend(svc):
        command, args = ["python3"], ["-m", "dynamo.frontend"]
        ports = [Port("http", HTTP_PORT)]
    else:
        command, args = ["/bin/sh", "-c"], []
        ports = [Port("system", SYSTEM_PORT), Port("nixl", NIXL_PORT)] if _is_worker(svc) else []
    raw: list[Token] = []
    cmd_t: list[Traced] = [Traced.of(c) for c in command]
    args_t: list[Traced] = [Traced.of(a) for a in args]
    if main is not None:
        # mergo.Merge(&container, main, WithOverride): a non-empty user slice replaces the default
        user_cmd, user_args = svc.main.command, svc.main.args
        if user_cmd:
            cmd_t = [Traced.token(t.value, len(raw) + i) for i, t in enumerate(user_cmd)]
            raw.extend(user_cmd)
        if user_args:
            args_t = [Traced.token(t.value, len(raw) + i) for i, t in enumerate(user_args)]
            raw.extend(user_args)
    env = _base_env(svc, dgd_name, namespace)
    if main is not None:
        env = merge_envs(env, _manifest_env(main.get("env")))
    # GeneratePodSpecForComponent: spec.envs under the service's envs; then MergeEnvs(container, component.Envs)
    component_envs = merge_envs(_manifest_env(dig(spec, "envs")), _manifest_env(svc.data.get("envs")))
    env = merge_envs(env, component_envs)

    mounts: list[Mount] = []
    if main is not None:
        for m in sequence(main.get("volumeMounts")) or []:
            if mapping(m) is not None and isinstance(m.get("name"), str):
                mounts.append(
                    Mount(
                        m["name"], str(m.get("mountPath") or ""), _volume_desc(svc, m["name"]), bool(m.get("readOnly"))
                    )
                )
    for m in sequence(svc.data.get("volumeMounts")) or []:  # v1alpha1 component volumeMounts: PVC by name
        if mapping(m) is not None and isinstance(m.get("name"), str):
            mounts.append(Mount(m["name"], str(m.get("mountPoint") or ""), f"pvc {m['name']}"))
    return _Container(cmd_t, args_t, env, mounts, ports, raw)


def _volume_desc(svc: Service, name: str) -> str:
    vols = (
        sequence(dig(svc.data, "extraPodSpec", "volumes"))
        or sequence(dig(svc.data, "podTemplate", "spec", "volumes"))
        or []
    )
    for v in vols:
        v = mapping(v)
        if v is None or v.get("name") != name:
            continue
        for kind, key in (("configMap", "name"), ("secret", "secretName"), ("persistentVolumeClaim", "claimName")):
            sub = mapping(v.get(kind))
            if sub is not None:
                return f"{kind} {sub.get(key)}"
        if "emptyDir" in v:
            return "emptyDir"
        return next((k for k in v if k != "name"), "volume")
    return "volume (not declared in the pod spec)"


def _shm_mount(svc: Service) -> Mount | None:
    """graph.go ApplySharedMemoryVolumeAndMount: an in-memory emptyDir at /dev/shm, 8Gi unless set."""
    shm = mapping(svc.data.get("sharedMemory"))
    size: Any = DEFAULT_SHM
    if shm is not None:  # v1alpha1 sharedMemory: {disabled, size}
        if shm.get("disabled") is True:
            return None
        size = shm.get("size") or DEFAULT_SHM
    elif "sharedMemorySize" in svc.data:  # v1beta1: "0" disables
        size = svc.data.get("sharedMemorySize")
        if str(size) in ("0", ""):
            return None
    return Mount("shared-memory", "/dev/shm", f"emptyDir medium=Memory sizeLimit={size}", source="operator")


# --- multinode deployers (grove.go GroveMultinodeDeployer, LWSMultinodeDeployer) ----------------


@dataclass(frozen=True)
class _Deployer:
    kind: str
    service: str  # lower-cased service name

    def leader_hostname(self) -> str:
        if self.kind == "grove":
            return f"$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-{self.service}-ldr-0.$(GROVE_HEADLESS_SERVICE)"
        return "$(LWS_LEADER_ADDRESS)"

    def node_rank(self) -> tuple[str, bool]:
        """(rank expression, needs a shell): Grove's rank is shell arithmetic."""
        if self.kind == "grove":
            return "$((GROVE_PCLQ_POD_INDEX + 1))", True
        return "$(LWS_WORKER_INDEX)", False

    def needs_dns_wait(self) -> bool:
        return self.kind == "lws"

    def host_names(self, nodes: int) -> list[str]:
        if self.kind == "grove":
            return [self.leader_hostname()] + [
                f"$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-{self.service}-wkr-{i}.$(GROVE_HEADLESS_SERVICE)"
                for i in range(nodes - 1)
            ]
        # LWS worker entries are shell command substitutions: callers feed them through a shell
        return ["$(LWS_LEADER_ADDRESS)"] + [
            f"$(echo \"$LWS_LEADER_ADDRESS\" | sed 's/\\./-{i}\\./')" for i in range(1, nodes)
        ]

    def runtime_env(self, dgd_name: str, namespace: str, role: str, nodes: int) -> list[EnvVar]:
        """The env the deployer injects at pod creation, for the first pod of each role, with
        illustrative values (replica 0): the names are what the operator's expressions use."""
        if self.kind == "grove":
            return [
                EnvVar("GROVE_PCS_NAME", dgd_name, source="grove"),
                EnvVar("GROVE_PCS_INDEX", "0", source="grove"),
                EnvVar("GROVE_PCSG_NAME", f"{dgd_name}-0-{self.service}", source="grove"),
                EnvVar("GROVE_PCSG_INDEX", "0", source="grove"),
                EnvVar("GROVE_HEADLESS_SERVICE", f"{dgd_name}-0", source="grove"),
                EnvVar("GROVE_PCLQ_POD_INDEX", "0", source="grove"),
            ]
        lws = f"{dgd_name}-{self.service}"
        return [
            EnvVar("LWS_LEADER_ADDRESS", f"{lws}-0.{lws}.{namespace}", source="lws"),
            EnvVar("LWS_GROUP_SIZE", str(nodes), source="lws"),
            EnvVar("LWS_WORKER_INDEX", "0" if role == "leader" else "1", source="lws"),
        ]


# --- the operator's quoting and flag injection -------------------------------------------------

_SPECIAL = set(" \t\n'\"\\{}[]$`!")


def shell_quote(s: Traced) -> Traced:
    """shellQuoteForBashC / mutation.ShellQuote, exactly: tokens with a special character are
    wrapped in double quotes with `\\ " $ \\`` backslash-escaped and `'` written as `'"'"'`.

    Escaping `$` keeps the shell from expanding it, but the kubelet expands `$(VAR)` before any
    shell runs and ignores the backslash, so `$(VAR)` arrives as `"\\<value>"`: the engine gets a
    stray backslash in front of the value.
    """
    if not any(c in _SPECIAL for c in s.text):
        return s
    first = s.origins[0] if s.origins else None
    out_t, out_o = ['"'], [first]
    for ch, o in zip(s.text, s.origins):
        rep = {"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`", "'": "'\"'\"'"}.get(ch, ch)
        out_t.append(rep)
        out_o.extend((o,) * len(rep))
    out_t.append('"')
    out_o.append(s.origins[-1] if s.origins else first)
    return Traced("".join(out_t), tuple(out_o))


_PYTHON = re.compile(r"^(.*/)?(python\d*(\.\d+)*)$")


def is_python_command(cmd: str) -> bool:
    """backend_sglang.go isPythonCommand."""
    return cmd in ("python", "python3") or bool(_PYTHON.match(cmd))


def _inject_into_python_command(arg: Traced, flags: str, framework: str) -> Traced:
    """injectFlagsIntoPythonCommand: insert the flags after the first `python ... <framework>` word
    of a shell string, before any `|`, `&` or `;` (Go RE2 `\\s` is [\\t\\n\\f\\r ])."""
    ws = r"[\t\n\f\r ]"
    pattern = re.compile(rf"(python[0-9.]*{ws}+[^|&;]*{re.escape(framework)}[^|&;]*?)({ws}|\Z|[|&;])")
    out = Traced("", ())
    pos = 0
    for m in pattern.finditer(arg.text):
        out = out + arg[pos : m.end(1)] + Traced.of(" " + flags) + arg[m.start(2) : m.end(2)]
        pos = m.end()
    return out + arg[pos:]


def inject_flags(c: _Container, flags: str, needs_shell: bool, framework: str) -> None:
    """injectFlagsIntoContainerCommand (flag-injection file; mutation/command_line.go in newer trees)."""
    if c.command and is_python_command(c.command[0].text):
        if needs_shell:
            # every command and args token through shellQuoteForBashC, wrapped as sh -c "exec ..."
            cmd = join(shell_quote(t) for t in c.command)
            if c.args:
                script = concat("exec ", cmd, " ", join(shell_quote(t) for t in c.args), " " + flags)
            else:
                script = concat("exec ", cmd, " " + flags)
            c.command = [Traced.of("sh"), Traced.of("-c")]
            c.args = [script]
        else:
            c.args = c.args + [Traced.of(f) for f in flags.split()]
        return
    for i, arg in enumerate(c.args):  # a shell string: splice the flags after the first python+framework call
        modified = _inject_into_python_command(arg, flags, framework)
        if modified.text != arg.text:
            c.args[i] = modified
            break


# --- backends ----------------------------------------------------------------------------------


def _gpus(svc: Service, section_order: tuple[str, ...]) -> int:
    """GPUs per pod as the backends read them: `Resources.{Requests,Limits}.GPU` of the v1alpha1 form the operator
    reconciles. v1alpha1 writes it as `resources.<section>.gpu`; v1beta1 as the main container's
    `resources.<section>["nvidia.com/gpu"]`, which the conversion (api/v1alpha1 shared_spec_conversion.go
    decomposePodTemplateFromHub -> resourcesFromNative) turns into that same GPU field."""
    if "resources" in svc.data:  # v1alpha1
        res, key = mapping(svc.data.get("resources")), "gpu"
    else:  # v1beta1: the main container of podTemplate
        res, key = svc.resources, "nvidia.com/gpu"
    for section in section_order:
        v = as_int(dig(res, section, key)) if res is not None else None
        if v is not None:
            return v
    return 0


def _sglang(c: _Container, role: str, nodes: int, d: _Deployer) -> None:
    """backend_sglang.go SGLangBackend.UpdateContainer / getMultinodeFlags."""
    dist_init = f"{d.leader_hostname()}:{SGLANG_PORT}"
    rank, needs_shell = ("0", False) if role == "leader" else d.node_rank()
    inject_flags(c, f"--dist-init-addr {dist_init} --nnodes {nodes} --node-rank {rank}", needs_shell, "sglang")
    if role == "worker":
        c.notes.append("liveness, readiness and startup probes removed (SGLangBackend.UpdateContainer)")


def _flag_value(words: list[str], flag: str) -> int:
    """backend_vllm.go getFlagValue: the int after an exact `flag` word, else 1."""
    for i, w in enumerate(words):
        if w == flag and i + 1 < len(words):
            try:
                return int(words[i + 1])
            except ValueError:
                continue
    return 1


def _vllm(c: _Container, svc: Service, role: str, nodes: int, d: _Deployer, annotations: dict[str, str]) -> None:
    """backend_vllm.go VLLMBackend.UpdateContainer / updateVLLMMultinodeArgs."""
    expanded = [w for a in c.args for w in a.text.split()]  # getExpandedArgs: strings.Fields, no kubelet
    gpus = _gpus(svc, ("limits",))  # getContainerGPUs reads limits.gpu only
    world = _flag_value(expanded, "--tensor-parallel-size") * _flag_value(expanded, "--pipeline-parallel-size")
    backend = annotations.get("nvidia.com/vllm-distributed-executor-backend", "").lower()
    # shouldUseMpBackend: the annotation, else the VLLMMultiprocessing gate (operator origin >= 1.0.0)
    use_mp = backend != "ray"
    if gpus and world > gpus and use_mp:
        flags = (
            f"--distributed-executor-backend mp --nnodes {nodes} --master-addr {d.leader_hostname()} "
            f"--master-port {VLLM_MP_MASTER_PORT}"
        )
        needs_shell = False
        if role == "leader":
            flags += " --node-rank 0"
        else:
            rank, needs_shell = d.node_rank()
            flags += f" --node-rank {rank} --headless"
            c.notes.append("init container wait-for-leader-mp waits for the leader's master port (UpdatePodSpec)")
        inject_flags(c, flags, needs_shell, "vllm")
        c.env.append(EnvVar("VLLM_NIXL_SIDE_CHANNEL_HOST", None, "fieldRef status.podIP", "operator"))
    elif gpus and world > gpus:
        # injectRayDistributedLaunchFlags; the newest read version quotes each token with
        # shellQuoteForBashC (older ones joined them raw)
        if role == "leader":
            cmd = join(shell_quote(t) for t in c.command)
            args = join(shell_quote(t) for t in c.args)
            c.args = [
                concat(
                    f"ray start --head --port={VLLM_RAY_PORT} && ",
                    cmd,
                    " ",
                    args,
                    " --distributed-executor-backend ray",
                )
            ]
        else:
            c.args = [Traced.of(f"ray start --address={d.leader_hostname()}:{VLLM_RAY_PORT} --block")]
        c.command = [Traced.of("/bin/sh"), Traced.of("-c")]
    elif gpus and world * _flag_value(expanded, "--data-parallel-size") > gpus:
        # injectDataParallelLaunchFlags: hybrid load balancing; the worker's start rank is shell
        # arithmetic, so the worker is always wrapped in sh -c
        local = gpus // world
        total = _flag_value(expanded, "--data-parallel-size")
        if total == 1:
            total = local * nodes
        flags = ["--data-parallel-hybrid-lb"]
        if "--data-parallel-size" not in expanded:
            flags += ["--data-parallel-size", str(total)]
        if role == "leader":
            start, needs_shell = "0", False
        else:
            rank, _ = d.node_rank()
            start, needs_shell = f"$(( {local} * {rank} ))", True
        flags += [
            "--data-parallel-size-local",
            str(local),
            "--data-parallel-start-rank",
            start,
            "--data-parallel-address",
            d.leader_hostname(),
            "--data-parallel-rpc-port",
            VLLM_DP_RPC_PORT,
        ]
        inject_flags(c, " ".join(flags), needs_shell, "vllm")
    else:
        c.notes.append("vLLM: no multinode flags injected (TP*PP and TP*PP*DP fit one node's limits.gpu)")
    if role == "worker":
        c.notes.append("liveness, readiness and startup probes removed (VLLMBackend.UpdateContainer)")


# mpirun forwards these to every rank whatever the container defines (getCommonTRTLLMEnvVars)
_TRTLLM_COMMON_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "MODEL_PATH",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "TOKENIZERS_PARALLELISM",
    "NCCL_DEBUG",
    "NCCL_IB_DISABLE",
    "NCCL_P2P_DISABLE",
    "TENSORRT_LLM_CACHE_DIR",
    "HF_HOME",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "HOME",
    "USER",
    "TRTLLM_USE_UCX_KVCACHE",
)

_SSH_SETUP = [
    "mkdir -p $HOME/.ssh",
    "ls -la /ssh-pk/",
    "cp /ssh-pk/private.key $HOME/.ssh/id_rsa",
    "cp /ssh-pk/private.key.pub $HOME/.ssh/id_rsa.pub",
    "cp /ssh-pk/private.key.pub $HOME/.ssh/authorized_keys",
    "chmod 600 $HOME/.ssh/id_rsa $HOME/.ssh/authorized_keys",
    "chmod 644 $HOME/.ssh/id_rsa.pub",
    f"printf 'Host *\\nIdentityFile '$HOME'/.ssh/id_rsa\\nStrictHostKeyChecking no\\nPort {MPIRUN_SSH_PORT}\\n' "
    "> $HOME/.ssh/config",
]

_SSHD_SETUP = [
    "mkdir -p $HOME/.ssh $HOME/.ssh/host_keys $HOME/.ssh/run",
    *_SSH_SETUP[1:],
    "ssh-keygen -t rsa -f $HOME/.ssh/host_keys/ssh_host_rsa_key -N ''",
    "ssh-keygen -t ecdsa -f $HOME/.ssh/host_keys/ssh_host_ecdsa_key -N ''",
    "ssh-keygen -t ed25519 -f $HOME/.ssh/host_keys/ssh_host_ed25519_key -N ''",
    f"printf 'Port {MPIRUN_SSH_PORT}\\nHostKey '$HOME'/.ssh/host_keys/ssh_host_rsa_key"
    "\\nHostKey '$HOME'/.ssh/host_keys/ssh_host_ecdsa_key"
    "\\nHostKey '$HOME'/.ssh/host_keys/ssh_host_ed25519_key\\nPidFile '$HOME'/.ssh/run/sshd.pid\\nStrictModes no"
    "\\nPermitRootLogin yes\\nPasswordAuthentication no\\nPubkeyAuthentication yes"
    "\\nAuthorizedKeysFile '$HOME'/.ssh/authorized_keys\\n' > $HOME/.ssh/sshd_config",
    "/usr/sbin/sshd -D -f $HOME/.ssh/sshd_config",
]


def _trtllm(c: _Container, svc: Service, role: str, nodes: int, d: _Deployer) -> None:
    """backend_trtllm.go TRTLLMBackend.UpdateContainer."""
    if role == "worker":
        c.notes.append(
            f"liveness and startup probes removed; readiness = TCP :{MPIRUN_SSH_PORT} (TRTLLMBackend.UpdateContainer)"
        )
    c.mounts.append(
        Mount(
            MPI_SSH_SECRET, "/ssh-pk", f"secret {MPI_SSH_SECRET} (operator config mpi.sshSecretName)", True, "operator"
        )
    )
    c.env.append(EnvVar("OMPI_MCA_orte_keep_fqdn_hostnames", "1", source="operator"))
    if role == "leader":
        _trtllm_leader(c, svc, nodes, d)
    else:
        # setupWorkerContainer: the worker's own command is discarded; it only serves sshd for mpirun
        c.command = [Traced.of("/bin/sh"), Traced.of("-c")]
        c.args = [Traced.of(" && ".join(_SSHD_SETUP))]


def _trtllm_leader(c: _Container, svc: Service, nodes: int, d: _Deployer) -> None:
    """setupLeaderContainer: ssh setup, then mpirun over all nodes running
    `bash -c 'trtllm-llmapi-launch <original command>'` on every rank."""
    hosts = d.host_names(nodes)
    if c.command and is_python_command(c.command[0].text):
        original = join([shell_quote(t) for t in c.command] + [shell_quote(t) for t in c.args])
    elif c.args:
        original = join(c.args)  # a shell command's args are taken raw (a `sh -c` command word is dropped)
    else:
        original = join(c.command)
    wrapped = concat("bash -c 'trtllm-llmapi-launch ", original, "'")
    total_gpus = nodes * _gpus(svc, ("requests", "limits"))  # getGPUsPerNode: requests.gpu, else limits.gpu
    names = sorted(set(_TRTLLM_COMMON_ENV) | {e.name for e in c.env})  # collectAllEnvVars
    env_flags = " ".join(f"-x {n}" for n in names)
    mpirun = concat(
        f'mpirun $([ "$(id -u)" = "0" ] && echo --allow-run-as-root) --oversubscribe -n {total_gpus} '
        f'-H {",".join(hosts)} --mca pml ob1 --mca plm_rsh_args "-p {MPIRUN_SSH_PORT} -o StrictHostKeyChecking=no '
        f'-i $HOME/.ssh/id_rsa" {env_flags} ',
        wrapped,
    )
    steps = [Traced.of(s) for s in _SSH_SETUP]
    if d.needs_dns_wait():
        workers = " ".join(hosts[1:])
        steps.append(
            Traced.of(
                f'TIMEOUT=300; START_TIME=$(date +%s); for worker in {workers}; do echo "Waiting for DNS: $worker"; '
                "until getent hosts $worker >/dev/null 2>&1; do CURRENT_TIME=$(date +%s); "
                "if [ $((CURRENT_TIME - START_TIME)) "
                '-gt $TIMEOUT ]; then echo "ERROR: Timeout waiting for DNS: $worker"; exit 1; fi; '
                'echo "DNS not ready for '
                '$worker, retrying..."; sleep 2; done; echo "✓ DNS resolved: $worker"; done; '
                'echo "All workers DNS ready"'
            )
        )
    steps.append(mpirun)
    c.command = [Traced.of("/bin/sh"), Traced.of("-c")]
    c.args = [join(steps, " && ")]


# --- from container to engine argv -------------------------------------------------------------

_SHELLS = {"sh", "bash", "dash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "/bin/dash"}
# mpirun options that take values (Open MPI); anything else starting with '-' takes none
_MPIRUN_ARITY = {
    "-n": 1,
    "-np": 1,
    "-c": 1,
    "-H": 1,
    "--host": 1,
    "-host": 1,
    "-x": 1,
    "--mca": 2,
    "-mca": 2,
    "--hostfile": 1,
    "-hostfile": 1,
    "--map-by": 1,
    "--bind-to": 1,
    "--rank-by": 1,
    "-N": 1,
    "--npernode": 1,
    "-wdir": 1,
    "--wdir": 1,
    "--prefix": 1,
}


@dataclass
class _Engine:
    argv: list[Word]
    launcher: list[str]


class _Runner:
    """Follows a command line through shells and launchers to the python process it starts."""

    def __init__(self, env: dict[str, str], uid: int) -> None:
        self.env = env
        self.uid = uid
        self.notes: list[str] = []

    def substitute(self, cmd: str) -> str:
        """The `$(...)` idioms the operator writes; anything else stays visible as written."""
        if re.fullmatch(r'\[ "\$\(id -u\)" = "0" \] && echo --allow-run-as-root', cmd.strip()):
            return "--allow-run-as-root" if self.uid == 0 else ""
        m = re.fullmatch(r'echo "\$([A-Za-z_][A-Za-z0-9_]*)" \| sed \'s/\\\./(.*)\\\./\'', cmd.strip())
        if m:  # LWS worker host: the leader address with "-<i>" spliced before its first dot
            return self.env.get(m.group(1), "").replace(".", f"{m.group(2)}.", 1)
        return f"$({cmd})"

    def unset(self, name: str) -> str:
        return "${" + name + "}"  # set by the image or the runtime, unknown here: keep it visible

    def shell(self, script: Traced) -> list[SimpleCommand]:
        return ShellParser(self.env, self.substitute, self.unset).parse(script)

    def run(self, words: list[Word], launcher: list[str], in_shell: bool = False) -> _Engine | None:
        words = list(words)
        # `exec` and `NAME=value` prefixes mean something to a shell only: a launcher given
        # `exec python3 ...` (trtllm-llmapi-launch, mpirun) looks for a program named exec and fails
        while (
            in_shell
            and words
            and (words[0].text == "exec" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0].text, re.S))
        ):
            words = words[1:]
        if not words:
            return None
        if not in_shell and (words[0].text == "exec" or "=" in words[0].text):
            self.notes.append(
                f"{' '.join(launcher[-1:]) or 'the container'} would run a program named "
                f"{words[0].text!r}: a shell keyword or assignment outside a shell"
            )
            return None
        head = words[0].text
        if head in _SHELLS or head.endswith("/sh") or head.endswith("/bash"):
            at = _shell_script(words)
            if at is None:
                return None
            for cmd in self.shell(words[at].traced):
                found = self.run(cmd.words, launcher + [w.text for w in words[:at]], in_shell=True)
                if found:
                    return found
            return None
        if head in ("mpirun", "mpiexec") or head.endswith("/mpirun"):
            i = 1
            while i < len(words) and words[i].text.startswith("-"):
                i += 1 + _MPIRUN_ARITY.get(words[i].text, 0)
            return self.run(words[i:], launcher + [w.text for w in words[:i]])
        if head == "trtllm-llmapi-launch":
            return self.run(words[1:], launcher + [head])
        if is_python_command(head):
            return _Engine(words, launcher)
        return None


def _shell_script(words: list[Word]) -> int | None:
    """The index of the script of `sh [-opts] -c SCRIPT ...`."""
    for i, w in enumerate(words[1:], 1):
        if w.text.startswith("-") and "c" in w.text[1:] and not w.text.startswith("--"):
            return i + 1 if i + 1 < len(words) else None
        if not w.text.startswith("-"):
            return None
    return None


def _engine(
    command: list[Traced], args: list[Traced], env: dict[str, str], uid: int, notes: list[str] | None = None
) -> _Engine | None:
    """What the container's process tree finally runs: kubelet expansion, then shells and launchers."""
    argv = [kubelet_expand(t, env) for t in command + args]
    words = [Word(t.text, t.origins, t.origins[0] if t.origins else None) for t in argv]
    runner = _Runner(env, uid)
    found = runner.run(words, [])
    if notes is not None:
        notes.extend(runner.notes)
    return found


def _written_words(command: list[Traced], args: list[Traced], env: dict[str, str], uid: int) -> list[Word] | None:
    """What the author meant: the container's command line as a single-node pod runs it."""
    found = _engine(command, args, env, uid)
    return found.argv if found else None


def _token_loc(raw: list[Token], origin: tuple[int, int]) -> Loc:
    """The line an argument was written on; inside a block-scalar script, the script's own line."""
    tok = raw[origin[0]]
    before = tok.value[: origin[1]]
    if "\n" in tok.value.rstrip("\n"):
        return Loc(tok.loc.file, tok.loc.line + 1 + before.count("\n"), 1)
    return tok.loc


def _compare(raw: list[Token], written: list[Word], received: list[Word]) -> list[Mangled]:
    """Manifest arguments the engine receives differently from how the author wrote them."""

    def by_key(words: list[Word]) -> dict[tuple[int, int], list[str]]:
        out: dict[tuple[int, int], list[str]] = {}
        for w in words:
            if w.origin is not None:
                out.setdefault(w.origin, []).append(w.text)
        return out

    want, got = by_key(written), by_key(received)
    per_token: dict[int, tuple[list[str], list[str]]] = {}
    for key in sorted(set(want) | set(got)):
        if want.get(key, []) != got.get(key, []):
            w, g = per_token.setdefault(key[0], ([], []))
            w.extend(want.get(key, []))
            g.extend(got.get(key, []))
    out = []
    for index, (w, g) in sorted(per_token.items()):
        key = min(k for k in set(want) | set(got) if k[0] == index and want.get(k, []) != got.get(k, []))
        tok = raw[index]
        out.append(Mangled(Token(tok.value, _token_loc(raw, key)), tuple(w), tuple(g)))
    return out


def _annotations(svc: Service) -> dict[str, str]:
    ann = mapping(svc.data.get("annotations")) or {}
    return {str(k): str(v) for k, v in ann.items()}


def _uid(svc: Service) -> int:
    for path in (
        ("extraPodSpec", "securityContext", "runAsUser"),
        ("extraPodSpec", "mainContainer", "securityContext", "runAsUser"),
        ("podTemplate", "spec", "securityContext", "runAsUser"),
    ):
        v = as_int(dig(svc.data, *path))
        if v is not None:
            return v
    return DEFAULT_UID


def _render(
    svc: Service, dgd_name: str, framework: str, spec: Any, role: str, nodes: int, multinode: str, namespace: str
) -> RenderedPod:
    c = _base_container(svc, dgd_name, spec, namespace)
    as_written = (list(c.command), list(c.args))
    deployer = _Deployer(multinode, svc.name.lower())
    if role != "single":
        if framework == "trtllm":
            _trtllm(c, svc, role, nodes, deployer)
        elif framework == "sglang":
            _sglang(c, role, nodes, deployer)
        elif framework == "vllm":
            _vllm(c, svc, role, nodes, deployer, _annotations(svc))
        else:
            c.notes.append(f"backend framework {framework!r}: the operator injects nothing for multinode")
    shm = _shm_mount(svc)
    if shm is not None:
        c.mounts.append(shm)
    env_list = list(c.env)
    if role != "single":
        env_list += deployer.runtime_env(dgd_name, namespace, role, nodes)
    # runtime-only values (downward API, secrets) are shown as {NAME}: safe inside any shell word
    resolved = kubelet_env(
        [
            (e.name, e.value if e.value is not None else (("{" + e.name + "}") if e.value_from else None))
            for e in env_list
        ]
    )
    uid = _uid(svc)
    notes = list(c.notes)
    launch_error = ""
    launch_notes: list[str] = []
    try:
        engine = _engine(c.command, c.args, resolved, uid, launch_notes)
    except ShellSyntaxError as exc:
        engine = None
        launch_notes.append(f"the container's shell command does not parse: {exc}")
    notes.extend(launch_notes)
    if engine is None and launch_notes and role != "single":
        launch_error = launch_notes[0]
    engine_argv: list[EngineArg] | None = None
    mangled: list[Mangled] = []
    if engine is not None:
        fallback = svc.data.loc_of("multinode") if "multinode" in svc.data else svc.loc
        engine_argv = [
            EngineArg(
                w.text, _token_loc(c.raw, w.origin) if w.origin is not None else fallback, injected=w.origin is None
            )
            for w in engine.argv
        ]
        if role != "single" and c.raw:
            try:
                written = _written_words(*as_written, resolved, uid)
            except ShellSyntaxError:
                written = None
            if written is not None:
                mangled = _compare(c.raw, written, engine.argv)
    return RenderedPod(
        service=svc.name,
        role=role,
        pods=1 if role in ("single", "leader") else nodes - 1,
        command=[t.text for t in c.command],
        args=[t.text for t in c.args],
        env=env_list,
        mounts=c.mounts,
        ports=c.ports,
        engine_argv=engine_argv,
        launcher=engine.launcher if engine else [],
        mangled=mangled,
        notes=notes,
        multinode=multinode if role != "single" else None,
        launch_error=launch_error,
        launch_loc=c.raw[0].loc if c.raw else svc.loc,
    )


def render_all(recipe: Recipe, namespace: str = "default") -> Iterator[tuple[str, list[RenderedPod]]]:
    """Grove and LWS renders of a recipe (single-node services render the same under both)."""
    for kind in MULTINODE_DEPLOYERS:
        yield kind, render_recipe(recipe, kind, namespace)
