"""The knobs of one gpu run (timeouts, engine, secrets), declared once: the pytest options of the gpu stage
are generated from this class (`add_options`) and read back into it (`from_pytest`); and how durations are shown.

Light on purpose: the plugin imports it at start, before any cluster client."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_TIMEOUT = 2.0  # seconds for one /version call: the stage's availability probe and preflight's first call


@dataclass(frozen=True)
class Option:
    """How a setting is offered on the pytest command line (`pytest --engine mocker`)."""

    flag: str
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    scale: float = 1.0  # the flag's unit in the field's unit (--time-budget MIN -> seconds: 60)


def option(default: Any, flag: str, help: str, **kw: Any) -> Any:
    """A field with a default that is also a pytest option."""
    return field(default=default, metadata={"option": Option(flag, help, **kw)})


@dataclass
class DeploySettings:
    """Knobs of one gpu run. Timeouts and graces are seconds. Every wait is also cut to what is left of
    `time_budget` minus `teardown_reserve`, so the harness reports its own timeout (with diagnostics and a
    teardown) before the CI job's limit kills it."""

    report_dir: Path
    namespace: str | None = option(
        None, "--namespace", "gpu stage: use this namespace instead of the model's own (rh-<model>)"
    )
    keep: bool = option(False, "--keep", "gpu stage: keep the namespace after the run")
    missing_gpus: str = option(
        "skip",
        "--missing-gpus",
        "gpu stage: when no node offers the recipe's GPUs now: skip the recipe, fail it, or deploy and wait for the "
        "cluster's autoscaler (a pool scaled to zero)",
        choices=("skip", "fail", "wait"),
    )
    engine: str = option(
        "real",
        "--engine",
        "gpu stage: real engines, or the Dynamo mocker on a CPU cluster",
        choices=("real", "mocker"),
    )
    perf_mode: str = option(
        "job",
        "--perf-mode",
        "gpu stage: run perf.yaml in the cluster, or AIPerf locally through the port-forward",
        choices=("job", "local"),
    )
    kubeconfig: str | None = option(
        None,
        "--kubeconfig",
        "gpu stage: kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster)",
        metavar="PATH",
    )
    api_timeout: float = 15.0
    poll_interval: float = 5.0
    progress_every: float = 30.0
    cache_timeout: float = 4 * 3600.0
    # 0: what the recipe's startup probes allow its slowest container, plus a margin (rollout.ready_timeout)
    ready_timeout: float = 0.0
    model_timeout: float = 300.0  # frontend up -> served model listed
    perf_timeout: float = 2 * 3600.0
    fetch_timeout: float = 300.0
    # A GPU node from a cluster autoscaler or Karpenter takes 5-10 min to join; a scale-up event restarts the grace.
    unschedulable_grace: float = 600.0
    # After a scale-up event for a pod: how long its node may take. The cluster-autoscaler's own limit,
    # --max-node-provision-time, defaults to 15 min (cluster-autoscaler/FAQ.md, "What are the parameters to CA?").
    scale_up_timeout: float = 900.0
    image_pull_grace: float = 600.0  # ErrImagePull/ImagePullBackOff that may clear (registry 429s, slow mirrors)
    config_grace: float = 180.0  # CreateContainerConfigError: a Secret or ConfigMap may still be on its way
    failed_grace: float = 300.0  # the operator's `failed` is one pass's error; it retries with back-off
    stale_status_grace: float = (
        120.0  # no observedGeneration: how long an unchanged `successful` must hold with all pods Ready
    )
    crashloop_restarts: int = 2
    time_budget: float = option(  # the whole run (preflight to teardown), seconds; 0: no budget
        0.0,
        "--time-budget",
        "gpu stage: finish each recipe's run, diagnostics and teardown included, within MIN minutes "
        "(set it below the CI job's limit)",
        metavar="MIN",
        scale=60.0,
    )
    teardown_reserve: float = 180.0  # kept from the budget for diagnostics and teardown
    repeats: int = 1  # benchmark runs on one deployment (median and CV)
    hf_secret: str = "hf-token-secret"
    hf_secret_key: str = "HF_TOKEN"
    hf_token_env: str = "HF_TOKEN"
    secret_source_namespace: str = "default"
    dynamo_release: str | None = None
    mocker_speedup: float | None = None
    frontend_url: str | None = None
    log_tail_lines: int = 2000

    @classmethod
    def from_pytest(cls, option: Any, report_dir: Path, repeats: int = 1) -> DeploySettings:
        """The settings from pytest's parsed options (`config.option`): each flag `add_options` made, then
        every `--gpu-option KEY=VALUE` (an unknown key or a malformed pair is a ValueError, not a no-op)."""
        values: dict[str, Any] = {}
        for f, opt in _options():
            given = getattr(option, f.name, None)
            if given is not None:
                values[f.name] = float(given) * opt.scale if opt.scale != 1.0 else given
        settings = cls(report_dir=Path(report_dir), repeats=max(1, int(repeats or 1)), **values)
        for item in getattr(option, "gpu_option", None) or []:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--gpu-option {item!r}: expected KEY=VALUE")
            settings = settings.with_setting(key.strip(), value.strip())
        return settings

    def with_setting(self, key: str, value: str) -> DeploySettings:
        """A copy with one numeric or text field set from its command-line text."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        if key not in fields or key in ("report_dir",):
            known = ", ".join(sorted(k for k in fields if k != "report_dir"))
            raise ValueError(f"--gpu-option {key}: not a gpu setting (known: {known})")
        current = getattr(self, key)
        try:
            typed: Any = (
                type(current)(value) if isinstance(current, (int, float)) and not isinstance(current, bool) else value
            )
        except ValueError:
            raise ValueError(f"--gpu-option {key}={value}: expected a {type(current).__name__}") from None
        return dataclasses.replace(self, **{key: typed})


def _options() -> list[tuple[dataclasses.Field, Option]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(DeploySettings) if "option" in f.metadata]


def add_options(addoption: Callable[..., Any]) -> None:
    """Register the gpu stage's pytest options (a pytest option group's `addoption`): one flag per
    setting declared with `option(...)`, and `--gpu-option KEY=VALUE` for every other field."""
    for f, opt in _options():
        if isinstance(f.default, bool):
            addoption(opt.flag, action="store_true", dest=f.name, default=None, help=opt.help)
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": opt.help}
        if opt.choices:
            kw["choices"] = opt.choices
        if opt.metavar:
            kw["metavar"] = opt.metavar
        if opt.scale != 1.0:
            kw["type"] = float
        addoption(opt.flag, **kw)
    addoption(
        "--gpu-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gpu stage: set any other setting of harness/run/k8s/settings.py DeploySettings, "
        "e.g. unschedulable_grace=900 or poll_interval=2; repeatable",
    )


def fmt_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
