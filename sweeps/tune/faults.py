"""Fault injection for the reliability tests: kill a trial's process for real, once.

Inert unless the driver's environment sets ``DILOCO_FAULT_KILL_AT`` (or, for ``compact``,
``DILOCO_FAULT_COMPACT_PAUSE``: ``compact_deleted``)::

    DILOCO_FAULT_KILL_AT="<match>:<point>:<marker_dir>[,<match>:<point>:<marker_dir>...]"

- ``match``: a prefix of the trial_id to hit, or ``*`` for every trial;
- ``point``: an outer step (``2``: after the curve row of outer step 2 is reported), or
  ``write`` (after the trial's row is written to its hidden temporary, before the rename
  that publishes it);
- ``marker_dir``: a local folder; before killing, the trial creates ``<trial_id>.<point>``
  there exclusively, and a trial that finds its marker does not kill itself, so only the
  first attempt dies and Tune's retry runs through.

The trial sends itself SIGKILL: no Python cleanup, no ``finally``, exactly like the OOM killer
or a lost machine. The variable is read once in the driver (``make_trainable``) and travels with
the trainable, so it reaches trials on every node of a test cluster on one machine.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV", "KillPlan", "KillPlans", "from_env", "COMPACT_ENV", "compact_deleted"]

ENV = "DILOCO_FAULT_KILL_AT"
COMPACT_ENV = "DILOCO_FAULT_COMPACT_PAUSE"
"""``<marker file>``: ``compact`` creates the file after its first delete and then waits (up to
10 minutes), so that a test can SIGKILL it in the middle of its delete phase."""


@dataclass(frozen=True)
class KillPlan:
    match: str
    point: str
    marker_dir: str

    def hits(self, tid: str) -> bool:
        return self.match == "*" or tid.startswith(self.match)

    def _first_time(self, tid: str) -> bool:
        os.makedirs(self.marker_dir, exist_ok=True)
        try:
            fd = os.open(os.path.join(self.marker_dir, f"{tid}.{self.point}"),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        return True

    def _die(self, tid: str) -> None:
        if self.hits(tid) and self._first_time(tid):
            os.kill(os.getpid(), signal.SIGKILL)

    def at_step(self, tid: str, outer_step: int) -> None:
        if self.point == str(outer_step):
            self._die(tid)

    def arm(self, tid: str, store: Any) -> None:
        """For point ``write``: die between writing the row's temporary and renaming it."""
        if self.point != "write" or not self.hits(tid):
            return
        plan, real = self, store.fs

        class DieBeforeRename:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def move(self, src: str, dst: str) -> None:
                if dst.endswith(f"/trials/{tid}.parquet"):
                    plan._die(tid)
                real.move(src, dst)

        store.fs = DieBeforeRename()


@dataclass(frozen=True)
class KillPlans:
    plans: tuple[KillPlan, ...]

    def at_step(self, tid: str, outer_step: int) -> None:
        for p in self.plans:
            p.at_step(tid, outer_step)

    def arm(self, tid: str, store: Any) -> None:
        for p in self.plans:
            p.arm(tid, store)


def compact_deleted(n: int) -> None:
    """Called by ``compact`` after its n-th delete; inert unless COMPACT_ENV is set."""
    marker = os.environ.get(COMPACT_ENV)
    if marker and n == 1:
        import time

        with open(marker, "w") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(600)


def from_env() -> KillPlans | None:
    """The plans in DILOCO_FAULT_KILL_AT (several separated by commas), or None."""
    text = os.environ.get(ENV)
    if not text:
        return None
    plans = []
    for item in text.split(","):
        parts = item.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{ENV}={text!r}: expected <trial_id prefix or *>:<outer step or "
                             f"write>:<marker folder>[,...]")
        plans.append(KillPlan(*parts))
    return KillPlans(tuple(plans))
