"""The API-server tier's control plane for one test session: a running `recipe-harness cluster up` one when there is
one (`default`, or the name in RECIPE_HARNESS_CLUSTER), else one started for the session (etcd and kube-apiserver: a
dry run schedules nothing) and always stopped at the session's end, on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil

from harness.run.cluster import build, crds
from harness.run.cluster.api import Client
from harness.run.cluster.build import cache_root
from harness.run.cluster.control_plane import (
    ClusterError,
    ClusterOptions,
    ClusterState,
    ControlPlane,
    find_running,
    state_dir,
    state_root,
)

CLUSTER_ENV = "RECIPE_HARNESS_CLUSTER"  # use this running cluster (a `cluster up --name`), never start one
SETUP_HINT = "or use a running one (`recipe-harness cluster up`)"  # missing_reason() names the setup command


class Unavailable(RuntimeError):
    """No control plane for the tier: the message is the skip reason, with the command that fixes it."""


def _remove_orphans() -> None:
    """State directories of earlier test sessions whose process is gone (killed with SIGKILL): their components
    died with them (parent-death signal), only the files remain."""
    root = state_root()
    if not root.is_dir():
        return
    for d in root.glob("pytest-*"):
        state = ClusterState.load(d)
        owner = state.owner_pid if state else 0
        gone = owner and owner != os.getpid() and not os.path.exists(f"/proc/{owner}")
        if gone and not any(state.alive().values()):
            shutil.rmtree(d, ignore_errors=True)


class ApiServerSession:
    """Opens (lazily, once) the control plane the tier applies to, and closes what it opened."""

    _opened = 0  # control planes started by sessions of this process, for unique state names

    def __init__(self) -> None:
        self._client: Client | None = None
        self._plane: ControlPlane | None = None
        self._error: str | None = None
        self.description = ""
        self.cluster_name = ""  # the state name of the cluster in use (RECIPE_HARNESS_CLUSTER picks a running one)
        self.cache_base = cache_root().parent  # what RECIPE_HARNESS_CACHE must be for another process to find it

    def client(self) -> Client:
        if self._client is not None:
            return self._client
        if self._error is not None:
            raise Unavailable(self._error)
        try:
            self._client = self._open()
        except Unavailable as exc:
            self._error = str(exc)
            raise
        except (ClusterError, crds.CrdError) as exc:
            self._error = f"the control plane did not start: {exc}"
            raise Unavailable(self._error) from None
        return self._client

    def _open(self) -> Client:
        name = os.environ.get(CLUSTER_ENV) or "default"
        running = find_running(name)
        if running is None and os.environ.get(CLUSTER_ENV):
            raise Unavailable(
                f"{CLUSTER_ENV}={name}: no such cluster is running in {state_dir(name)} "
                f"(`recipe-harness cluster status --name {name}`)"
            )
        if running is not None:
            self.cluster_name = name
            client = running.client()
            crds.install(client)  # idempotent (server-side apply): the recipes' kinds must be served
            self.description = f"running cluster at {running.server} ({running.directory})"
            return client
        binaries = build.find_binaries()
        if binaries is None:
            raise Unavailable(f"{build.missing_reason()}; {SETUP_HINT}")
        _remove_orphans()
        # A dry run schedules nothing and the tier creates the ServiceAccounts it needs: etcd and the API server
        # are enough, and start in seconds.
        # one process can hold several sessions (the tier's own and a test module's): each gets its own state dir
        ApiServerSession._opened += 1
        self.cluster_name = f"pytest-{os.getpid()}-{ApiServerSession._opened}"
        self._plane = ControlPlane(binaries, ClusterOptions(name=self.cluster_name, extras=()))
        state = self._plane.start()
        client = state.client()
        crds.install(client)
        self.description = f"control plane started for this session ({binaries.source})"
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._plane is not None:
            with contextlib.suppress(Exception):
                self._plane.stop()
            self._plane = None
