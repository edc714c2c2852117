"""SIGTERM and SIGHUP end a run the way Ctrl-C does (docs/reliability.md, "Faults tried").

Kubernetes and KubeRay stop a pod with SIGTERM, then SIGKILL after a grace period (30 s by
default); a closed terminal or ssh session sends SIGHUP. Left to their defaults, SIGHUP killed
the driver at once, and Ray's own SIGTERM handler (``sys.exit`` from ``ray.init``) ended in
a C++ abort: nothing recorded in ``sweep.json``, no resume line, Ray's agents left behind.

``stop_signals()`` turns the first SIGTERM or SIGHUP into ``Terminated``, a
``KeyboardInterrupt``, which the runner already handles for Ctrl-C: it records
``interrupted: true`` and ``ended_at``, prints the resume line, shuts Ray down, and the command
exits ``128 + signal`` (143, 129). Later signals are only noted: the run is already ending and
must finish recording it. Outside the main thread nothing is installed (``signal.signal`` can
only be called there).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Callable, Iterator

__all__ = ["Terminated", "StopSignals", "stop_signals", "reinstall", "defer_if_stopping",
           "STOP_SIGNALS", "SHUTDOWN_S"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""The signals that end a run as Ctrl-C does (SIGINT is Python's own KeyboardInterrupt)."""
SHUTDOWN_S = 15.0
"""How long Ray's shutdown may take after a stop signal before the driver exits anyway.
With its processes already sent SIGTERM (a signal to the process group) ``ray.shutdown``
waits on each in turn: 8 s on a 2-core VM at load 10, over a minute at load 18. The end is
recorded before it starts, and Kubernetes' SIGKILL comes 30 s after the SIGTERM."""


class Terminated(KeyboardInterrupt):
    """A run stopped by SIGTERM or SIGHUP; the command exits ``exit_code`` (128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopSignals:
    """The handler while a run is on: the first stop signal raises ``Terminated`` (when
    ``armed``); every signal is remembered in ``signum`` (the first one)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = True
        self.deferred: list[Callable[[], object]] = []
        """Work put off until the run's end is recorded (Ray's shutdown)."""
        self._saved: dict[int, object] = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.armed:
            self.armed = False  # once: a second signal must not cut the recording short
            raise Terminated(signum)

    def install(self) -> None:
        """(Re)install the handler: ``ray.init`` sets its own SIGTERM handler."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in STOP_SIGNALS:
            old = signal.signal(s, self.handle)
            self._saved.setdefault(s, old)

    def restore(self) -> None:
        for s, old in self._saved.items():
            signal.signal(s, old)  # type: ignore[arg-type]
        self._saved.clear()

    def raise_if_stopped(self) -> None:
        """After a stop signal: run the deferred work (Ray's shutdown), then raise
        ``Terminated``. Should it outlast SHUTDOWN_S, a watchdog ends the process with the
        same exit code (the end is recorded already; Kubernetes would SIGKILL it soon)."""
        if self.signum is None:
            return
        work, self.deferred = self.deferred, []
        code, finished = 128 + self.signum, threading.Event()

        def watchdog() -> None:
            if not finished.wait(SHUTDOWN_S):
                print(f"[diloco-sweep] Ray's shutdown took more than {SHUTDOWN_S:g} s; exiting "
                      f"without it (its processes end with the driver)", file=sys.stderr,
                      flush=True)
                os._exit(code)

        threading.Thread(target=watchdog, name="diloco-sweep-shutdown", daemon=True).start()
        try:
            for fn in work:
                fn()
        finally:
            finished.set()
        raise Terminated(self.signum)


_active: StopSignals | None = None


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """SIGTERM and SIGHUP raise ``Terminated`` inside the block; the old handlers after."""
    global _active
    stop, outer = StopSignals(), _active
    stop.install()
    _active = stop
    try:
        yield stop
    finally:
        _active = outer
        stop.restore()


def defer_if_stopping(fn: Callable[[], object]) -> bool:
    """Put ``fn`` off until the run's end is recorded when a stop signal has come (True);
    False when none has (the caller runs it now)."""
    if _active is None or _active.signum is None:
        return False
    _active.deferred.append(fn)
    return True


def reinstall() -> None:
    """Put the active run's handler back (after ``ray.init`` replaced Ray's over it)."""
    if _active is not None:
        _active.install()
