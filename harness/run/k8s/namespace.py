"""The run's namespace and the secrets the recipe reads, created before anything else."""

from __future__ import annotations

from harness.run.k8s.base import MANAGED_BY, DeployerBase
from harness.run.k8s.client import KubeError


class NamespaceSteps(DeployerBase):
    def ensure_namespace(self) -> None:
        if self.namespace_ready:
            return
        if self.kube.get("v1", "Namespace", self.namespace) is None:
            labels = dict(MANAGED_BY, **{"recipe-harness/recipe": self.slug[:63].strip("_-.")})
            try:
                self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}}, None)
            except KubeError as exc:
                raise self.fail(f"cannot create namespace {self.namespace}: {exc}") from None
            self.owns_namespace = True
            self.progress(f"namespace {self.namespace} created")
        self.namespace_ready = True
        for name, plan in self._secret_plan.items():
            if plan == "present":
                continue
            if plan == "from-env":
                data = {self.settings.hf_secret_key: self.env.get(self.settings.hf_token_env, "")}
                source = f"${self.settings.hf_token_env}"
            else:
                data = self.kube.secret_values(self.settings.secret_source_namespace, name) or {}
                source = f"namespace {self.settings.secret_source_namespace}"
            secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "labels": dict(MANAGED_BY)},
                      "stringData": data}
            try:
                self.kube.apply(secret, self.namespace, keep_existing=True)
            except KubeError as exc:
                raise self.fail(f"cannot create secret {name}: {exc}") from None
            self.created.append(("v1", "Secret", name))
            self.progress(f"secret {name} created from {source}")
