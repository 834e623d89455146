"""Where the cluster config comes from (a kubeconfig path or in-cluster),
decided from files alone so a machine without a cluster answers at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
NO_CLUSTER = "no Kubernetes cluster reachable (KUBECONFIG unset, ~/.kube/config missing): set KUBECONFIG or use -m sim"


@dataclass(frozen=True)
class ConfigSource:
    """Where the cluster credentials come from (a path or in-cluster), never their contents."""

    kind: str  # "kubeconfig" | "in-cluster"
    path: str = ""
    context: str | None = None

    def describe(self) -> str:
        return f"kubeconfig {self.path}" if self.kind == "kubeconfig" else "in-cluster service account"


def find_config(
    kubeconfig: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> ConfigSource | str:
    """The config to use, or one line saying what is missing. Only looks at files: no network."""
    env = os.environ if env is None else env
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if path.is_file():
            return ConfigSource("kubeconfig", str(path))
        return (
            f"no Kubernetes cluster reachable (--kubeconfig {kubeconfig} does not exist): "
            "pass an existing kubeconfig or use -m sim"
        )
    raw = env.get("KUBECONFIG", "")
    if raw:
        existing = [p for p in raw.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if existing:
            return ConfigSource("kubeconfig", os.pathsep.join(existing))
        return f"no Kubernetes cluster reachable (KUBECONFIG={raw} does not exist): fix KUBECONFIG or use -m sim"
    default = (home or Path(env.get("HOME") or Path.home())) / ".kube" / "config"
    if default.is_file():
        return ConfigSource("kubeconfig", str(default))
    if env.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.is_file():
        return ConfigSource("in-cluster")
    return NO_CLUSTER
