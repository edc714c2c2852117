"""One run per sweep at a time: ``<output>/<name>/.lock``.

Two runs of the same sweep at once would plan the same missing trials and run each twice.
``run`` takes the sweep's lock before it reads or writes anything and gives it back at the end;
a second run of the same sweep is refused with the holder's pid, host and start time.
Different sweeps (different names) have different folders and never meet.

- A filesystem (local or shared): an ``flock`` on ``.lock``, which also holds the holder's
  pid/host/time as JSON. The kernel drops the flock when its process dies, however it dies
  (SIGKILL included), so a lock left by a killed run is stale by construction: the next run
  takes it over and says so. On NFS, flock works across clients (NFSv4, or v3 with lockd);
  on a shared filesystem without working locks it only guards one machine.
- S3 (and any other pyarrow filesystem): a ``.lock`` object, best effort. S3 through pyarrow
  has no create-if-absent, so two runs that start within the same second can both pass the
  check (the second one's read-back usually catches it); trials are keyed, so that costs
  duplicate work, never duplicate rows. A lock object whose holder is on this host and no
  longer alive is stale and taken over; one from another host is only removed by hand (the
  message says how).

The file starts with a dot, so the Parquet readers skip it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

from sweeps.store.errors import StoreError, SweepBusyError
from sweeps.store.uri import store_hint

__all__ = ["SweepLock", "pid_alive", "describe_holder", "parse_holder"]


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` of this host is alive (a pid that is not a number: assume so)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(info: dict[str, Any] | None, nobody: str = "another run") -> str:
    """Who holds a lock, from what its holder wrote (pid, host, start): the words of every
    refusal that names one (this sweep's lock, an Optuna study's)."""
    if not info:
        return nobody
    return (f"pid {info.get('pid')} on host {info.get('host')} (started "
            f"{info.get('started_at')})")


class SweepLock:
    """``with SweepLock(store):`` around a run. ``taken_over`` tells of a stale lock replaced."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.path = f"{store.root}/.lock"
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "token": uuid.uuid4().hex}
        self.taken_over: dict[str, Any] | None = None
        self._fd: int | None = None
        self._local = store.fs.type_name == "local"

    def __enter__(self) -> "SweepLock":
        if self._local:
            self._acquire_flock()
        else:
            self._acquire_object()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _busy(self, info: dict[str, Any] | None, hint: str) -> SweepBusyError:
        return SweepBusyError(f"sweep {self.store.name!r} at {self.store.uri} is already being "
                              f"run by {describe_holder(info)}; {hint}")

    # ------------------------------------------------------------------ a filesystem
    def _acquire_flock(self) -> None:
        import fcntl

        try:
            os.makedirs(self.store.root, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    info = parse_holder(os.pread(fd, 4096, 0))
                    os.close(fd)
                    raise self._busy(info, "wait for it to finish or stop it (two runs of one "
                                           "sweep would run its trials twice)") from None
                try:  # the file we locked may have been released and unlinked meanwhile
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            self._fd = fd  # held from here on: release() undoes what follows if it fails
            self.taken_over = parse_holder(os.pread(fd, 4096, 0))  # left by a run that was killed
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.info).encode(), 0)
        except SweepBusyError:
            raise
        except OSError as e:
            self.release()
            raise StoreError(f"cannot write to {self.store.uri}: {e.strerror or e}") from None

    # ------------------------------------------------------------------ S3
    def _read_object(self) -> dict[str, Any] | None:
        try:
            with self.store.fs.open_input_stream(self.path) as f:
                return parse_holder(f.read())
        except FileNotFoundError:
            return None

    def _acquire_object(self) -> None:
        try:
            info = self._read_object()
            if info is not None:
                if info.get("host") == self.info["host"] and isinstance(info.get("pid"), int) \
                        and not pid_alive(info["pid"]):
                    self.taken_over = info
                else:
                    raise self._busy(info, f"wait for it to finish; if that run is gone, "
                                           f"delete {self.store.uri}/.lock")
            with self.store.fs.open_output_stream(self.path) as f:
                f.write(json.dumps(self.info).encode())
            back = self._read_object()
        except SweepBusyError:
            raise
        except OSError as e:
            raise StoreError(f"cannot use the results store {self.store.uri}: {e}"
                             f"{store_hint(self.store.output, e)}") from None
        if not back or back.get("token") != self.info["token"]:
            raise self._busy(back, "it started at the same moment as this one")
        self._fd = -1

    # ------------------------------------------------------------------ release
    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self._local:
                if (self._read_object() or {}).get("token") == self.info["token"]:
                    self.store.fs.delete_file(self.path)
            else:
                os.unlink(self.path)  # while still holding the flock: no one can slip in
        except OSError:
            pass  # a lock file left behind is stale (flock dropped / pid gone): harmless
        finally:
            if fd >= 0:
                os.close(fd)


def parse_holder(data: bytes) -> dict[str, Any] | None:
    """What a lock's holder wrote (a JSON object), or None when it is not that."""
    try:
        info = json.loads(data.decode() or "null")
    except (ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None
