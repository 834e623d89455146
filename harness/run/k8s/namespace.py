"""The run's namespace and the secrets the recipe reads, created before anything else."""

from __future__ import annotations

import base64
import re

from harness.recipe.model import dig
from harness.run.k8s.base import MANAGED_BY, DeployerBase
from harness.run.k8s.client import KubeError
from harness.run.k8s.settings import fmt_duration


class NamespaceSteps(DeployerBase):
    def _wait_terminated(self) -> None:
        """A namespace being deleted (by a person, or a run before the cache moved) refuses new content with 403
        until the namespace controller has emptied it: wait for it to go, then create it afresh."""
        start = self.clock()
        timeout, _ = self.budget(self.settings.fetch_timeout)
        while True:
            ns = self.kube.get("v1", "Namespace", self.namespace)
            if ns is None or not dig(ns, "metadata", "deletionTimestamp"):
                return
            if self.clock() - start >= timeout:
                raise self.fail(
                    f"namespace {self.namespace} is still Terminating after {fmt_duration(timeout)}: "
                    f"see `kubectl get namespace {self.namespace} -o yaml` (status.conditions name what blocks it)"
                )
            self.progress(f"namespace {self.namespace} is Terminating; waiting for it to go")
            self.sleep(self.settings.poll_interval)

    def ensure_namespace(self) -> None:
        if self.namespace_ready:
            return
        self._wait_terminated()
        if self.kube.get("v1", "Namespace", self.namespace) is None:
            model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.recipe.model)[:63].strip("_-.")
            labels = dict(MANAGED_BY, **({"recipe-harness/model": model} if model else {}))
            try:
                self.kube.apply(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}},
                    None,
                )
            except KubeError as exc:
                raise self.fail(f"cannot create namespace {self.namespace}: {exc}") from None
            self.owns_namespace = True
            self.progress(f"namespace {self.namespace} created (it stays: it holds the model cache for the next run)")
        self.namespace_ready = True
        for name, plan in self._secret_plan.items():
            if plan == "present":
                continue
            secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": dict(MANAGED_BY)}}
            if plan == "from-env":
                token = self.env.get(self.settings.hf_token_env, "")
                secret.update(
                    type="Opaque", data={self.settings.hf_secret_key: base64.b64encode(token.encode()).decode()}
                )
                source = f"${self.settings.hf_token_env}"
            elif plan == "placeholder":
                # the mocker loads a public tokenizer: an empty token is "no token" to huggingface_hub, and the
                # workers' envFromSecret finds its Secret (a missing one is CreateContainerConfigError)
                secret.update(type="Opaque", data={self.settings.hf_secret_key: ""})
                source = "nothing (an empty token: --engine mocker needs none)"
            else:
                found = self.kube.secret(self.settings.secret_source_namespace, name)
                if found is None:
                    raise self.fail(f"secret {name} disappeared from namespace {self.settings.secret_source_namespace}")
                # type and bytes as they are: a docker config stays a docker config, binary values stay binary
                secret.update(type=found[0], data=found[1])
                source = f"namespace {self.settings.secret_source_namespace} ({found[0]})"
            try:
                self.kube.apply(secret, self.namespace, keep_existing=True)
            except KubeError as exc:
                raise self.fail(f"cannot create secret {name}: {exc}") from None
            self.created.append(("v1", "Secret", name))
            self.progress(f"secret {name} created from {source}")
