"""After the run: diagnostics of a failure, and undoing what the run created."""

from __future__ import annotations

from pathlib import Path

from harness.recipe.model import dig
from harness.run.k8s.base import DeployerBase
from harness.run.k8s.diagnostics import Diagnostics


class TeardownSteps(DeployerBase):
    def collect_diagnostics(self, step: str, reason: str) -> Path | None:
        if not self.namespace_ready:
            return None
        try:
            diag = Diagnostics(
                self.kube,
                self.namespace,
                self.diagnostics_dir,
                self.redactor,
                (self.dgd_api_version, self.dgd_name) if self.dgd_name else None,
                self.settings.log_tail_lines,
            )
            path = diag.collect(step, reason)
        except Exception as exc:
            self.progress(f"diagnostics incomplete: {type(exc).__name__}: {exc}")
            return None
        self.progress(f"diagnostics written to {path}")
        return path

    def teardown(self) -> None:
        """Undo what this run created. Idempotent; never raises."""
        if self.closed:
            return
        self.closed = True
        if self.access is not None:
            try:
                self.access.close()
            except Exception:
                pass
        if not self.namespace_ready:
            return
        cache = {
            ("PersistentVolumeClaim", str(dig(d, "metadata", "name")))
            for d in self._cache_docs()
            if d.get("kind") == "PersistentVolumeClaim"
        }
        if self.settings.keep:
            self.progress(
                f"kept what the run made in namespace {self.namespace} (--keep); remove it with: "
                f"kubectl delete -n {self.namespace} "
                + " ".join(f"{k.lower()}/{n}" for _, k, n in self.created if (k, n) not in cache)
            )
            self.kube.close()
            return
        # the deployment, its Jobs, helper pods and copied secrets go; the namespace and the filled model cache stay
        left: list[str] = []
        removed = 0
        for api_version, kind, name in reversed(self.created):
            if (kind, name) in cache:
                continue
            try:
                self.kube.delete(api_version, kind, name, self.namespace)
                removed += 1
            except Exception as exc:
                left.append(f"{kind.lower()}/{name} ({type(exc).__name__}: {str(exc)[:120]})")
        kept = ", ".join(f"PVC {n}" for _, n in sorted(cache)) or "nothing"
        self.progress(
            f"removed {removed} object(s) this run applied in namespace {self.namespace}; kept {kept} for the next run"
        )
        if left:
            self.progress(
                f"teardown incomplete: could not delete {', '.join(left)}; delete them with kubectl -n {self.namespace}"
            )
        self.kube.close()
