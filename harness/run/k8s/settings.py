"""The knobs of one gpu run (timeouts, engine, secrets) and how durations are shown."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.run.stage import StageOptions


@dataclass
class DeploySettings:
    """Knobs of one gpu run. Timeouts and graces are seconds. Every wait is also cut to what is left of
    `time_budget` minus `teardown_reserve`, so the harness reports its own timeout (with diagnostics and a
    teardown) before the CI job's limit kills it."""

    report_dir: Path
    namespace: str | None = None
    keep: bool = False
    engine: str = "real"  # real | mocker
    perf_mode: str = "job"  # job | local
    kubeconfig: str | None = None
    api_timeout: float = 15.0
    probe_timeout: float = 2.0
    poll_interval: float = 5.0
    progress_every: float = 30.0
    cache_timeout: float = 4 * 3600.0
    ready_timeout: float = 45 * 60.0
    model_timeout: float = 300.0  # frontend up -> served model listed
    perf_timeout: float = 2 * 3600.0
    fetch_timeout: float = 300.0
    # A GPU node from a cluster autoscaler or Karpenter takes 5-10 min to join; a scale-up event restarts the grace.
    unschedulable_grace: float = 600.0
    image_pull_grace: float = 600.0  # ErrImagePull/ImagePullBackOff that may clear (registry 429s, slow mirrors)
    config_grace: float = 180.0  # CreateContainerConfigError: a Secret or ConfigMap may still be on its way
    failed_grace: float = 300.0  # the operator's `failed` is one pass's error; it retries with back-off
    stale_status_grace: float = (
        120.0  # no observedGeneration: how long an unchanged `successful` must hold with all pods Ready
    )
    crashloop_restarts: int = 2
    time_budget: float = 0.0  # the whole run (preflight to teardown); 0: no budget
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
    def from_options(cls, options: StageOptions) -> DeploySettings:
        """The gpu stage's typed options; `--gpu-option KEY=VALUE` overrides one field of this class (a
        timeout, a grace) and an unknown key is an error, not a silent no-op."""
        gpu = options.gpu
        settings = cls(
            report_dir=Path(options.report_dir),
            namespace=gpu.namespace,
            keep=gpu.keep,
            engine=gpu.engine,
            perf_mode=gpu.perf_mode,
            kubeconfig=gpu.kubeconfig,
            repeats=max(1, int(options.repeats or 1)),
            time_budget=gpu.time_budget,
        )
        for key, value in gpu.settings:
            settings = settings.with_setting(key, value)
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


def fmt_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
