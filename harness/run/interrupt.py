"""SIGTERM and SIGHUP unwind a run as Ctrl-C does: while installed, they raise KeyboardInterrupt in the main thread,
so the `finally` and pytest's session finish tear down what the run made (a cancelled CI job sends SIGTERM, a
closed terminal SIGHUP; their default action ends the process with no cleanup at all)."""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised where the main thread was."""

    def __init__(self, signum: int):
        super().__init__(f"{signal.Signals(signum).name}: stopping and cleaning up")
        self.signum = signum


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


class SignalsInterrupt:
    """install() makes SIGTERM/SIGHUP raise Interrupted; shield() ignores them while a teardown runs (a second
    signal must not cut it short); restore() puts back whatever handlers were there. Off the main thread (where
    Python cannot set handlers) it does nothing."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}

    def _set(self, handler: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, handler)
            self.saved.setdefault(sig, previous)

    def install(self) -> None:
        self._set(_raise)

    def shield(self) -> None:
        if self.saved:
            self._set(signal.SIG_IGN)

    def restore(self) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.saved = {}
