"""Processes the harness starts (the sim's frontend and mockers, AIPerf): each in its own process
group, logging to a file, dying with the harness, and always torn down (atexit and SIGTERM/SIGHUP too)."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

TERM_GRACE_S = 8.0  # a frontend or mocker shuts down in 2-4 s on SIGTERM


class Stoppable(Protocol):
    def stop(self) -> None: ...


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the harness dies, even by SIGKILL (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn(
    argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None, die_with_parent: bool = True
) -> subprocess.Popen:
    """Start a process in its own session (so its whole group can be signalled) logging to a file.

    `die_with_parent=False` is for daemons that must outlive the command starting them (`recipe-harness cluster
    up`): their owner is a state file, and `cluster down` stops them."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115  # closed in `finally` once Popen has passed it on
    log.write(f"$ {' '.join(argv)}\n".encode())
    # The parent-death signal is tied to the spawning thread: only set it from the main thread,
    # where the thread lives as long as the harness.
    preexec = (
        _die_with_parent
        if die_with_parent
        and sys.platform.startswith("linux")
        and threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
            cwd=cwd,
        )
    finally:
        log.close()  # the child has its own copy of the descriptor


def spawn_logged(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """`spawn`, and tracked: torn down at exit even if its owner never stops it (AIPerf)."""
    popen = spawn(argv, env, log_path, cwd)
    _track(popen)
    return popen


def terminate_groups(popens: list[subprocess.Popen], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM each process group, wait up to grace_s in total, then SIGKILL the groups still alive."""
    live = [p for p in popens if p.poll() is None]
    for p in live:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in popens:
        # Also kill the group of a leader that already exited: its children may still run.
        _signal_group(p, signal.SIGKILL)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _untrack(p)


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # start_new_session made pid the group id
    except (ProcessLookupError, PermissionError):
        pass


# ---- safety net: atexit and SIGTERM/SIGHUP -----------------------------------------------------

_LIVE: set[Stoppable] = set()
_LIVE_POPENS: set[subprocess.Popen] = set()
_LOCK = threading.Lock()
_INSTALLED = False


def register(dep: Stoppable) -> None:
    with _LOCK:
        _LIVE.add(dep)
    _install_safety_net()


def unregister(dep: Stoppable) -> None:
    with _LOCK:
        _LIVE.discard(dep)


def _track(p: subprocess.Popen) -> None:
    with _LOCK:
        _LIVE_POPENS.add(p)
    _install_safety_net()


def _untrack(p: subprocess.Popen) -> None:
    with _LOCK:
        _LIVE_POPENS.discard(p)


def teardown_all() -> None:
    """Stop every deployment and tracked process this interpreter started (atexit, signals)."""
    with _LOCK:
        deps, popens = list(_LIVE), list(_LIVE_POPENS)
    for dep in deps:
        dep.stop()
    terminate_groups(popens, grace_s=3.0)


def _on_signal(signum: int, frame: object) -> None:
    teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_safety_net() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    atexit.register(teardown_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Only where nobody else handles it: pytest and the CLI keep their own handlers.
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
