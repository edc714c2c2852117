"""One driver per Optuna study at a time (docs/sweeps.md, "Optuna storage"; docs/reliability.md).

Two drivers on one study (``search.storage`` names the same journal or database and the sweeps
share a name, their outputs differ) would each draw from a sampler that cannot see the other's
running trials: they trained the same parameters twice. So a run holds its study for as long as
it runs, and a second driver is refused at once, before Ray starts and before it writes in its
own output, naming the holder and what to do (exit 1, as a second run of one sweep is).

- A journal file or a SQLite file: an ``flock`` on ``<file>.<study>.driver-lock`` beside it,
  holding the holder's pid, host, start time and output. The kernel drops it when its holder
  dies (SIGKILL included), so a killed driver's lock is taken over by the next one.
- A database server (PostgreSQL, MySQL): a lease in the study's system attributes
  (``diloco_driver``: pid, host, token, a beat renewed every ``BEAT_S`` seconds). A lease not
  renewed for ``STALE_S`` seconds, or whose pid on this host is gone, is taken over. Best
  effort, as the S3 sweep lock: two drivers starting within the same moment can both pass.

Whoever holds the study has it alone: every trial still RUNNING in it when the lock is taken
was left by a driver that died (a killed driver's trial stayed RUNNING for ever). Those are
marked FAIL at once, so the sampler and ``optuna-dashboard`` see them as ended.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sweeps.store.errors import StoreError, StudyBusyError
from sweeps.store.lock import describe_holder, parse_holder, pid_alive
from sweeps.store.redact import redact

__all__ = ["hold_study", "storage_file", "fail_running", "BEAT_S", "STALE_S", "LEASE_KEY"]

BEAT_S = 10.0
"""How often a lease on a database server is renewed."""
STALE_S = 60.0
"""A lease not renewed for this long belongs to a driver that is gone."""
LEASE_KEY = "diloco_driver"


def storage_file(uri: str) -> str | None:
    """The local file a storage lives in (a journal, a SQLite database), absolute; None for a
    database server or an in-memory SQLite."""
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    scheme = uri.split("://", 1)[0].split("+", 1)[0]
    if scheme != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    db = make_url(uri).database
    if not db or db == ":memory:":
        return None
    return os.path.abspath(os.path.expanduser(db))


def _holder(info: dict[str, Any] | None) -> str:
    out = f" for the sweep at {info['output']}" if info and info.get("output") else ""
    return describe_holder(info, nobody="another driver") + out


def _busy(study: str, uri: str, info: dict[str, Any] | None, extra: str = "") -> StudyBusyError:
    return StudyBusyError(
        f"search.storage: the optuna study {study!r} in {redact(uri)} is already being driven by "
        f"{_holder(info)}; two drivers on one study would train the same parameters twice. "
        f"Wait for it to finish, or give this run a study of its own (another search.storage, "
        f"or another sweep name){extra}")


def fail_running(storage: Any, study: str) -> int:
    """Mark every RUNNING trial of ``study`` FAIL (its driver is gone); how many. Only for
    the holder of the study's lock."""
    import optuna
    from optuna.trial import TrialState

    if study not in optuna.study.get_all_study_names(storage):
        return 0
    sid = storage.get_study_id_from_name(study)
    n = 0
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                n += 1
        except RuntimeError:  # it ended meanwhile: not ours to fail
            pass
    return n


@contextmanager
def hold_study(uri: str, study: str, output: str, log: Callable[[str], None],
               storage_factory: Callable[[str], Any], lease: bool | None = None
               ) -> Iterator[None]:
    """Hold the study ``study`` in ``uri`` for the block (StudyBusyError when a live driver
    has it); fail the RUNNING trials left by a dead one. ``lease`` forces the lease (True) or
    the file lock (False); default: the file lock for a file, else the lease."""
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "output": output,
            "token": uuid.uuid4().hex}
    path = storage_file(uri)
    use_lease = path is None if lease is None else lease
    if not use_lease and path is None:
        yield  # an in-memory SQLite lives in this process only
        return
    if use_lease:
        with _lease(uri, study, info, log, storage_factory):
            yield
    else:
        with _flock(f"{path}.{study}.driver-lock", uri, study, info, log, storage_factory):
            yield


def _after_taking(uri: str, study: str, log: Callable[[str], None],
                  storage_factory: Callable[[str], Any], taken: dict[str, Any] | None,
                  storage: Any = None) -> None:
    n = fail_running(storage if storage is not None else storage_factory(uri), study)
    if taken:
        log(f"optuna study {study!r}: the lock of a driver that ended without releasing it "
            f"taken over ({_holder(taken)})")
    if n:
        log(f"optuna study {study!r}: {n} trial(s) left RUNNING by a driver that died marked "
            f"FAIL")


@contextmanager
def _flock(lock: str, uri: str, study: str, info: dict[str, Any],
           log: Callable[[str], None], storage_factory: Callable[[str], Any]) -> Iterator[None]:
    import fcntl

    try:
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = parse_holder(os.pread(fd, 4096, 0))
                os.close(fd)
                raise _busy(study, uri, held) from None
            try:  # the file we locked may have been released and unlinked meanwhile
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
    except StudyBusyError:
        raise
    except OSError as e:
        raise StoreError(f"search.storage: cannot write the study's lock {lock}: "
                         f"{e.strerror or e}") from None
    try:
        taken = parse_holder(os.pread(fd, 4096, 0))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _after_taking(uri, study, log, storage_factory, taken)
        yield
    finally:
        try:
            os.unlink(lock)  # while still holding the flock: no one can slip in
        except OSError:
            pass
        os.close(fd)


@contextmanager
def _lease(uri: str, study: str, info: dict[str, Any], log: Callable[[str], None],
           storage_factory: Callable[[str], Any]) -> Iterator[None]:
    import optuna

    storage = storage_factory(uri)
    sid = optuna.create_study(storage=storage, study_name=study, direction="minimize",
                              load_if_exists=True)._study_id
    held = storage.get_study_system_attrs(sid).get(LEASE_KEY)
    taken = None
    if isinstance(held, dict) and held.get("token") != info["token"]:
        age = time.time() - float(held.get("beat") or 0)
        dead = held.get("host") == info["host"] and not pid_alive(held.get("pid"))
        if age < STALE_S and not dead:
            raise _busy(study, uri, held, f" (if that driver is gone, this study is free "
                                          f"{STALE_S - age:.0f} s from now)")
        taken = held
    mine = {**info, "beat": time.time()}
    storage.set_study_system_attr(sid, LEASE_KEY, mine)
    time.sleep(0.5)  # a driver that wrote at the same moment: the last write wins, both see it
    back = storage.get_study_system_attrs(sid).get(LEASE_KEY)
    if not isinstance(back, dict) or back.get("token") != info["token"]:
        raise _busy(study, uri, back, " (it started at the same moment as this one)")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT_S):
            try:
                storage.set_study_system_attr(sid, LEASE_KEY, {**info, "beat": time.time()})
            except Exception:  # noqa: BLE001 - the next beat tries again
                pass

    th = threading.Thread(target=beat, name="diloco-study-lease", daemon=True)
    th.start()
    try:
        _after_taking(uri, study, log, storage_factory, taken, storage)
        yield
    finally:
        stop.set()
        th.join(timeout=5)
        try:
            if (storage.get_study_system_attrs(sid).get(LEASE_KEY) or {}).get("token") \
                    == info["token"]:
                storage.set_study_system_attr(sid, LEASE_KEY, None)
        except Exception:  # noqa: BLE001 - a lease left behind goes stale by itself
            pass
