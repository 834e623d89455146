"""Turn a recipe's DynamoGraphDeployment into a local plan: one frontend and one mocker per worker replica."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import yaml

from harness.recipe.commandline import Flags, Token
from harness.recipe.model import Recipe
from harness.recipe.service import DEFAULT_ROUTER_MODE, Service, router_mode_of
from harness.recipe.yamlsrc import dig
from harness.run.sim.flagmap import (
    CONTROLLED_ENV,
    DEFAULT_DROP_REASON,
    DROP_REASONS,
    ENGINE_TYPES,
    FRONTEND_CONTROLLED,
    IDENTITY_FLAGS,
    MOCKER_BOOLEAN,
    MOCKER_CHOICES,
    MOCKER_EQUIVALENTS,
    MOCKER_INTEGER,
    TRTLLM_CONFIG_EQUIVALENTS,
)


class PlanError(ValueError):
    """The recipe cannot be rehearsed as written (no frontend, no workers, conflicting served names)."""


@dataclass(frozen=True)
class FlagNote:
    """One recipe flag the sim dropped, translated or capped, and why (goes into plan.json)."""

    service: str
    flag: str
    value: str
    action: str  # dropped | translated | capped
    reason: str
    where: str = ""
    replacement: str = ""


@dataclass(frozen=True)
class ProcessPlan:
    """One local process. Ports, the model dir and discovery are added by the deployer."""

    name: str
    module: str
    args: tuple[str, ...]
    role: str
    service: str = ""
    replica: int = 0
    env: tuple[tuple[str, str], ...] = ()
    data_parallel_size: int = 1

    @property
    def component(self) -> str:
        """The discovery component the process registers its `generate` endpoint under."""
        return "prefill" if self.role == "prefill" else "backend"


@dataclass(frozen=True)
class SimPlan:
    recipe_id: str
    served_model_name: str
    model_id: str
    backend: str
    router_mode: str
    frontend: ProcessPlan
    workers: tuple[ProcessPlan, ...]
    notes: tuple[FlagNote, ...] = ()
    skipped_services: tuple[str, ...] = ()

    @property
    def expected_instances(self) -> dict[str, int]:
        """`generate` instances per discovery component once every worker has registered."""
        counts: dict[str, int] = {}
        for w in self.workers:
            counts[w.component] = counts.get(w.component, 0) + 1
        return counts

    @property
    def is_disaggregated(self) -> bool:
        return any(w.role == "prefill" for w in self.workers)

    def serving_workers(self) -> list[ProcessPlan]:
        """Workers that receive routed requests from the frontend (decode or aggregated)."""
        return [w for w in self.workers if w.role != "prefill"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["expected_instances"] = self.expected_instances
        return out


@dataclass(frozen=True)
class FrontendCli:
    """What the installed `dynamo.frontend` accepts: option strings, which take no value, choices."""

    flags: frozenset[str]
    no_value: frozenset[str] = frozenset()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


def frontend_cli_from(data: dict) -> FrontendCli:
    """A FrontendCli from the option data another interpreter's parser printed (harness/run/sim/runtime.py)."""
    return FrontendCli(
        frozenset(data.get("flags") or ()),
        frozenset(data.get("no_value") or ()),
        {k: tuple(v) for k, v in (data.get("choices") or {}).items()},
    )


@lru_cache(maxsize=1)
def installed_frontend_cli() -> FrontendCli:
    """Read the installed frontend's own argument parser (0.7 s, no process)."""
    from dynamo.frontend.frontend_args import FrontendArgGroup

    parser = argparse.ArgumentParser(add_help=False)
    FrontendArgGroup().add_arguments(parser)
    actions = parser._option_string_actions  # argparse has no public accessor for this
    no_value = {flag for flag, act in actions.items() if act.nargs == 0}
    choices = {flag: tuple(str(c) for c in act.choices) for flag, act in actions.items() if act.choices}
    return FrontendCli(frozenset(actions), frozenset(no_value), choices)


def build_plan(
    recipe: Recipe, *, speedup_ratio: float = 1.0, max_data_parallel: int = 32, frontend_cli: FrontendCli | None = None
) -> SimPlan:
    """The local plan for a recipe: pure, no processes (the frontend CLI is read from the installed package)."""
    dep = recipe.deployment
    if dep is None:
        raise PlanError(f"{recipe.id}: deploy.yaml has no DynamoGraphDeployment")
    cli = frontend_cli or installed_frontend_cli()
    backend = dep.backend_framework or recipe.framework
    workers = dep.workers
    if not workers:
        raise PlanError(f"{recipe.id}: the DynamoGraphDeployment has no worker service")
    frontends = dep.frontends
    notes: list[FlagNote] = []
    served, model_id = _served_name(recipe, workers)
    frontend_args, frontend_env, router_mode = _frontend(frontends[0] if frontends else None, cli, notes, recipe)
    configmaps = _configmaps(recipe)
    procs: list[ProcessPlan] = []
    for svc in workers:
        base_args, dp = _mocker_args(svc, backend, configmaps, max_data_parallel, notes, recipe)
        for replica in range(svc.replicas):
            args = ("--model-name", served, *base_args, "--speedup-ratio", _fmt(speedup_ratio))
            procs.append(
                ProcessPlan(
                    _proc_name(svc.name, replica),
                    "dynamo.mocker",
                    args,
                    svc.role,
                    svc.name,
                    replica,
                    data_parallel_size=dp,
                )
            )
        if svc.node_count > 1:
            notes.append(
                FlagNote(
                    svc.name,
                    "multinode.nodeCount",
                    str(svc.node_count),
                    "translated",
                    "the ranks of one multinode replica run in one mocker process",
                    _where(svc.loc, recipe),
                    "1 process per replica",
                )
            )
    skipped = tuple(f"{s.name} ({s.role})" for s in dep.services if not s.is_worker and s.role != "frontend")
    frontend = ProcessPlan(
        "frontend",
        "dynamo.frontend",
        tuple(frontend_args),
        "frontend",
        frontends[0].name if frontends else "frontend",
        env=tuple(sorted(frontend_env.items())),
    )
    return SimPlan(recipe.id, served, model_id, backend, router_mode, frontend, tuple(procs), tuple(notes), skipped)


def _served_name(recipe: Recipe, workers: list[Service]) -> tuple[str, str]:
    """(served name, HF model id). Every worker must serve the same name: the frontend lists one model."""
    names: dict[str, str] = {}
    model_id = ""
    for svc in workers:
        flags = _worker_flags(svc)
        model = flags.get("--model") or flags.get("--model-path")
        served = flags.get("--served-model-name") or model
        if model and not model_id:
            model_id = model.value
        if served:
            names[svc.name] = served.value
    if not names:
        raise PlanError(f"{recipe.id}: no worker names its model (--served-model-name, --model or --model-path)")
    distinct = set(names.values())
    if len(distinct) > 1:
        listing = ", ".join(f"{svc}={name}" for svc, name in names.items())
        raise PlanError(
            f"{recipe.id}: workers serve different model names ({listing}); the frontend would list several models"
        )
    served_name = distinct.pop()
    return served_name, model_id or served_name


def _worker_flags(svc: Service) -> dict[str, Token]:
    return svc.flags.last() if svc.module is not None else {}


def _frontend(
    svc: Service | None, cli: FrontendCli, notes: list[FlagNote], recipe: Recipe
) -> tuple[list[str], dict[str, str], str]:
    """Frontend args and env kept from the recipe, and the router mode they select."""
    if svc is None or svc.main is None:
        return [], {}, DEFAULT_ROUTER_MODE
    flags = svc.flags if svc.module is not None else Flags()
    for tok in flags.positionals:
        notes.append(
            FlagNote(
                svc.name,
                tok.value,
                "",
                "dropped",
                "positional argument the frontend does not take",
                _where(tok.loc, recipe),
            )
        )
    kept: list[str] = []
    kept_flags = []
    for f in flags:
        flag = f.name
        # the frontend's own parser decides whether a known flag takes a value
        takes_value = flag not in cli.no_value if flag in cli.flags else not f.bare
        value = "" if f.bare else f.value.value
        where = _where(f.flag.loc, recipe)
        if flag in FRONTEND_CONTROLLED:
            notes.append(FlagNote(svc.name, flag, value, "dropped", FRONTEND_CONTROLLED[flag], where))
        elif flag not in cli.flags:
            notes.append(
                FlagNote(svc.name, flag, value, "dropped", "not accepted by the installed dynamo.frontend", where)
            )
        elif flag in cli.choices and takes_value and value not in cli.choices[flag]:
            notes.append(
                FlagNote(svc.name, flag, value, "dropped", f"not one of {', '.join(cli.choices[flag])}", where)
            )
        else:
            kept.extend([flag, value] if takes_value else [flag])
            kept_flags.append(f)
    env = {k: v for k, v in svc.main.env.items() if k.startswith("DYN_") and not CONTROLLED_ENV.match(k)}
    for k in sorted(set(svc.main.env) - set(env)):
        if k.startswith("DYN_"):
            notes.append(
                FlagNote(
                    svc.name,
                    f"env {k}",
                    svc.main.env[k],
                    "dropped",
                    "set by the sim deployer",
                    _where(svc.main.env_locs.get(k), recipe),
                )
            )
    # the router of the flags and env the sim's frontend really gets (a dropped flag does not count)
    router_mode = router_mode_of(Flags(tuple(kept_flags)), env, svc.main.env_locs).value
    return kept, env, router_mode


def _mocker_args(
    svc: Service,
    backend: str,
    configmaps: dict[str, dict[str, str]],
    max_dp: int,
    notes: list[FlagNote],
    recipe: Recipe,
) -> tuple[tuple[str, ...], int]:
    """Mocker flags for one worker service, and its data-parallel size (after the profile cap)."""
    flags = _worker_flags(svc)
    table = MOCKER_EQUIVALENTS.get(backend, {})
    chosen: dict[str, tuple[str, Token | None]] = {}
    for flag, tok in flags.items():
        where = _where(tok.loc, recipe)
        if flag in IDENTITY_FLAGS:
            continue
        target = table.get(flag)
        if target is None:
            notes.append(FlagNote(svc.name, flag, tok.value, "dropped", _drop_reason(flag), where))
            continue
        problem = _invalid_value(target, tok.value)
        if problem:
            notes.append(FlagNote(svc.name, flag, tok.value, "dropped", problem, where))
            continue
        chosen[target] = (tok.value, tok)
        if target != flag:
            notes.append(
                FlagNote(svc.name, flag, tok.value, "translated", "same setting under the mocker's name", where, target)
            )
    if backend == "trtllm":
        _trtllm_engine_config(svc, flags, configmaps, chosen, notes, recipe)
    dp = int(chosen.pop("--data-parallel-size", ("1", None))[0])
    if dp > max_dp:
        notes.append(
            FlagNote(
                svc.name,
                "--data-parallel-size",
                str(dp),
                "capped",
                f"the sim profile allows at most {max_dp} DP ranks per mocker",
                _where(svc.loc, recipe),
                str(max_dp),
            )
        )
        dp = max_dp
    args: list[str] = ["--engine-type", ENGINE_TYPES.get(backend, "vllm")]
    if svc.role in ("prefill", "decode"):
        args += ["--disaggregation-mode", svc.role]
    if dp > 1:
        args += ["--data-parallel-size", str(dp)]
    for target, (value, _) in sorted(chosen.items()):
        args += [target] if target in MOCKER_BOOLEAN else [target, value]
    return tuple(args), dp


def _trtllm_engine_config(
    svc: Service,
    flags: dict[str, Token],
    configmaps: dict[str, dict[str, str]],
    chosen: dict[str, tuple[str, Token | None]],
    notes: list[FlagNote],
    recipe: Recipe,
) -> None:
    """TRT-LLM keeps engine settings in a YAML file (usually a ConfigMap): read what the mocker models."""
    config: dict = {}
    path_tok = flags.get("--extra-engine-args")
    if path_tok is not None:
        config = _parse_engine_config(engine_config_text(svc, path_tok.value, configmaps))
        if not config:
            notes.append(
                FlagNote(
                    svc.name,
                    "--extra-engine-args",
                    path_tok.value,
                    "dropped",
                    "no ConfigMap volume of the recipe provides this file; engine defaults apply",
                    _where(path_tok.loc, recipe),
                )
            )
    where = _where(path_tok.loc, recipe) if path_tok else ""
    for key, target in TRTLLM_CONFIG_EQUIVALENTS.items():
        value = _dig_dotted(config, key)
        if value is not None and target not in chosen and not _invalid_value(target, str(value)):
            chosen[target] = (str(value), None)
            notes.append(
                FlagNote(
                    svc.name,
                    f"engine config {key}",
                    str(value),
                    "translated",
                    "read from the engine config",
                    where,
                    target,
                )
            )
    tp = (
        _int(flags["--tensor-parallel-size"].value)
        if "--tensor-parallel-size" in flags
        else _int(config.get("tensor_parallel_size"))
    )
    attention_dp = "--enable-attention-dp" in flags or config.get("enable_attention_dp") is True
    if attention_dp and tp and tp > 1:
        # With attention DP every TP rank runs its own attention batch: that is what the mocker's DP ranks model.
        chosen["--data-parallel-size"] = (str(tp), None)
        notes.append(
            FlagNote(
                svc.name,
                "enable_attention_dp",
                "true",
                "translated",
                f"attention DP over TP {tp} = {tp} DP ranks",
                where,
                f"--data-parallel-size {tp}",
            )
        )
    for key in ("tensor_parallel_size", "moe_expert_parallel_size", "pipeline_parallel_size"):
        if key in config:
            notes.append(
                FlagNote(svc.name, f"engine config {key}", str(config[key]), "dropped", DROP_REASONS[0][1], where)
            )


def _configmaps(recipe: Recipe) -> dict[str, dict[str, str]]:
    """ConfigMap name -> {file name: text} for every ConfigMap in the recipe."""
    out: dict[str, dict[str, str]] = {}
    for doc in recipe.documents("ConfigMap"):
        data = doc.data.get("data")
        if isinstance(data, dict):
            out[doc.name] = {str(k): str(v) for k, v in data.items()}
    return out


def engine_config_text(svc: Service, path: str, configmaps: dict[str, dict[str, str]]) -> str | None:
    """The text of the file at `path` inside the worker's container, when a ConfigMap volume provides it.

    Follows volumeMounts -> pod volumes -> ConfigMap (name, items, subPath); falls back to a file
    name that only one ConfigMap carries."""
    main = svc.main.data if svc.main else {}
    pod = dig(svc.data, "extraPodSpec") or dig(svc.data, "podTemplate", "spec") or {}
    volumes = {str(v.get("name")): v for v in (pod.get("volumes") or []) if isinstance(v, dict)}
    target = PurePosixPath(path)
    for mount in sorted(
        (m for m in main.get("volumeMounts") or [] if isinstance(m, dict)),
        key=lambda m: -len(str(m.get("mountPath") or "")),
    ):
        mount_path = PurePosixPath(str(mount.get("mountPath") or "/"))
        if target != mount_path and mount_path not in target.parents:
            continue
        source = dig(volumes.get(str(mount.get("name"))), "configMap") or {}
        files = configmaps.get(str(source.get("name")))
        if files is None:
            continue
        rel = str(mount.get("subPath") or "") if target == mount_path else str(target.relative_to(mount_path))
        for item in source.get("items") or []:  # items remap keys to paths
            if isinstance(item, dict) and item.get("path") == rel:
                rel = str(item.get("key"))
        return files.get(rel)
    carriers = [files[target.name] for files in configmaps.values() if target.name in files]
    return carriers[0] if len(carriers) == 1 else None


def _parse_engine_config(text: str | None) -> dict:
    try:
        parsed = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _drop_reason(flag: str) -> str:
    return next((reason for pattern, reason in DROP_REASONS if pattern.search(flag)), DEFAULT_DROP_REASON)


def _invalid_value(target: str, value: str) -> str:
    if target in MOCKER_CHOICES and value not in MOCKER_CHOICES[target]:
        return f"value not supported by the mocker's {target} ({', '.join(sorted(MOCKER_CHOICES[target]))})"
    if target in MOCKER_INTEGER and (_int(value) is None or _int(value) < 1):
        return f"not a positive integer for the mocker's {target}"
    if target in MOCKER_BOOLEAN and value.lower() not in ("true", "1", ""):
        return "a negated boolean: the mocker default applies"
    return ""


def _dig_dotted(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _fmt(x: float) -> str:
    return f"{x:g}"


def _proc_name(service: str, replica: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", service.lower()) + f"-{replica}"


def _where(loc: Any, recipe: Recipe) -> str:
    if loc is None:
        return ""
    path = getattr(loc, "file", None)
    try:
        rel = path.relative_to(recipe.root) if path else None
    except ValueError:
        rel = path
    line = getattr(loc, "line", 0)
    return f"{rel}:{line}" if rel and line else str(rel or "")
