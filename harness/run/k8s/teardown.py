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
            diag = Diagnostics(self.kube, self.namespace, self.diagnostics_dir, self.redactor,
                               (self.dgd_api_version, self.dgd_name) if self.dgd_name else None, self.settings.log_tail_lines)
            path = diag.collect(step, reason)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never hide the failure they describe
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
            except Exception:  # noqa: BLE001
                pass
        if not self.namespace_ready:
            return
        try:
            if self.settings.keep:
                self.progress(f"kept namespace {self.namespace} (--keep); remove it with: kubectl delete namespace {self.namespace}")
            elif self.owns_namespace:
                self.kube.delete("v1", "Namespace", self.namespace)
                self.progress(f"namespace {self.namespace} deleted")
            else:
                # a namespace the user named: remove what the run made, keep the model cache for next time
                cache = {(str(d.get("kind")), str(dig(d, "metadata", "name"))) for d in self._cache_docs()}
                for api_version, kind, name in reversed(self.created):
                    if (kind, name) not in cache:
                        self.kube.delete(api_version, kind, name, self.namespace)
                self.progress(f"removed {len(self.created)} object(s) this run created in namespace {self.namespace}")
        except Exception as exc:  # noqa: BLE001 - teardown reports, it does not raise
            self.progress(f"teardown incomplete: {type(exc).__name__}: {exc}; delete namespace {self.namespace} by hand")
        finally:
            self.kube.close()
