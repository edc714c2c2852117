"""Run a validated spec through Ray Tune: plan, start or join Ray, tune, record failures.

Ray joins the cluster at ``address`` (or RAY_ADDRESS) when one is given, else starts an
embedded local Ray bound to 127.0.0.1 with no dashboard. When the process already has Ray
initialized (tests, notebooks) that runtime is used and left running.

An embedded run prints only diloco-sweep's own lines unless ``verbose``: Tune's and Optuna's
warnings and notes are for someone tuning Ray, not for someone reading a sweep's progress. A
run against a cluster address keeps them (a cluster user needs Tune's slow-step warnings).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

from sweeps.store.compact import expand, finish_interrupted
from sweeps.estimate.cpu_time import long_run_warning
from sweeps.store.errors import StoreError, UnwrittenError
from sweeps.spec.history import ALLOW_FLAG, check_settings, describe_changes, record_spec
from sweeps.store.lock import SweepLock
from sweeps.tune.loggers import check_loggers
from sweeps.estimate.preflight import preflight
from sweeps.tune.progress import hms, make_store_guard
from sweeps.store.redact import redact, redact_data
from sweeps.search import Plan
from sweeps.tune.signals import StopSignals, Terminated, stop_signals
from sweeps.spec.parse import SpecError, SweepSpec
from sweeps.store.store import Store, now, trial_id
from sweeps.tune.trainable import failed_row
from sweeps.tune.tuner import library_logs, log, one_line, run_trials
from sweeps.store.uri import check_uri, with_endpoint
from sweeps.spec.usercode import other_code_note, spec_code

__all__ = ["run_sweep", "RunSummary", "resolve_output", "resume_command", "runs_locally"]


@dataclass
class RunSummary:
    store_uri: str
    total: int
    skipped: int
    ran: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    folder: str = ""
    """store_uri with the output's query (an S3 endpoint), for reading the results back."""


def resolve_output(output: str) -> str:
    """An output every node can use: an absolute local path, or the URI with its endpoint.
    BadUriError (exit 2) for a scheme or form the store does not support."""
    check_uri(output)
    if "://" not in output:
        return os.path.abspath(os.path.expanduser(output))
    return with_endpoint(output)


def runs_locally(address: str | None = None) -> bool:
    """Whether the trials will run on this machine: an embedded Ray, not a cluster's address
    and not a Ray this process already joined (tests, notebooks; it may span several nodes)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    return not (ray is not None and getattr(ray, "is_initialized", lambda: False)())


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("diloco-sweep", "ray", "torch", "optuna", "pandas", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


_log = log


def run_sweep(spec: SweepSpec, output: str | None = None, max_concurrent: int | None = None,
              address: str | None = None, force: bool = False,
              stream: TextIO | None = None, verbose: bool = False,
              started: float | None = None, allow_other_settings: bool = False) -> RunSummary:
    """Run every trial of ``spec`` not yet stored (all with ``force``); return the counts.

    A spec whose fixed trial settings differ from those of every spec the stored sweep has
    run is refused (SpecError) unless ``allow_other_settings`` (sweeps/spec/history.py).

    ``verbose`` lets Ray Tune's and Optuna's own log lines through in an embedded run (a run
    against a cluster always shows them). ``started``: when the command began (time.time();
    default now): the progress lines' elapsed time and the run's wall time count from it.

    Refuses before Ray starts a trial that cannot fit in memory or a corpus it cannot read
    (SpecError); holds the sweep's lock throughout (SweepBusyError when another run has it);
    raises StoreError when the store cannot be read or written, and UnwrittenError at the end
    when some trial rows or sweep.json could not be stored (everything else is).
    """
    stream = stream or sys.stderr
    started = time.time() if started is None else started
    spec.search_kind.check(spec)
    out = resolve_output(output or spec.output)
    preflight(spec, local=runs_locally(address))
    check_loggers(spec, out, SpecError)
    store = Store(out, spec.name)
    store.check_links()  # before the lock: it writes .lock
    # SIGTERM (Kubernetes) and SIGHUP end the run as Ctrl-C does (sweeps/tune/signals.py); a shared
    # Optuna study first: a second driver on it is refused before it writes here
    with stop_signals() as stop, \
            spec.search_kind.hold(spec, redact(store.uri), partial(_log, stream)), \
            SweepLock(store) as lock:
        if lock.taken_over:
            _log(stream, f"lock of an earlier run that ended without releasing it taken over "
                         f"(pid {lock.taken_over.get('pid')} on {lock.taken_over.get('host')})")
        return _run_locked(spec, store, out, max_concurrent, address, force, stream, verbose,
                           started, stop, allow_other_settings)


def _run_locked(spec: SweepSpec, store: Store, out: str, max_concurrent: int | None,
                address: str | None, force: bool, stream: TextIO,
                verbose: bool, t0: float, stop: StopSignals,
                allow_other_settings: bool = False) -> RunSummary:
    try:
        meta = store.read_meta() or {}  # first: a damaged one stops the run before any change
        # another experiment under this name is refused here, before anything changes
        changes = check_settings(spec, meta, store.uri, allow_other_settings)
        finished = finish_interrupted(store)  # a compact killed among its deletes
        gone = store.remove_temporaries()  # left by writers killed in an earlier run
        if force and store.compacted_ids():  # a rerun's rows replace one file per trial
            _log(stream, f"expanded {expand(store)} compacted trial(s) back into their own files")
        rows = store.read_trials().to_pylist()
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read the results store {store.uri}: {e}") from None
    if finished is not None:
        _log(stream, f"finished a compaction that was interrupted: the own files of "
                     f"{finished} compacted trial(s) removed")
    if gone:
        _log(stream, f"removed {len(gone)} temporary file(s) left by a killed writer")
    if changes:
        _log(stream, f"adding trials with other fixed settings to this sweep ({ALLOW_FLAG}): "
                     f"{describe_changes(changes)}")
    for f, why in store.skipped.items():
        _log(stream, f"skipped a file that is not a trustworthy trial row (its trial runs "
                     f"again): {f}: {why}")
    note = None if force else other_code_note(spec, rows)  # kind python: sweeps/spec/usercode.py
    if note:
        _log(stream, note)
    p = spec.search_kind.plan(spec, rows, force)
    summary = RunSummary(store_uri=store.uri, total=p.total, skipped=p.done, folder=store.folder)

    # sweep.json keeps no secret: the command line and the spec's output go in redacted
    run_info = {"started_at": now(), "ended_at": None, "force": force,
                "planned": p.to_sample, "skipped": p.done, "argv": redact_data(sys.argv),
                "search": spec.search_kind.about(spec), "code": spec_code(spec)}
    run_info["spec"] = record_spec(meta, redact_data(spec.to_dict()))  # every spec run kept
    meta.update(name=spec.name, spec_file=spec.source, search=spec.search_kind.about(spec),
                versions=versions(), git_commit=git_commit(), code=run_info["code"])
    meta.setdefault("created_at", run_info["started_at"])
    meta["runs"] = (meta.get("runs") or []) + [run_info]
    try:
        store.write_meta(meta)
    except OSError as e:
        raise StoreError(f"cannot write to {store.uri}: {e}") from None

    _log(stream, f"sweep {spec.name}: {p.total} trials, {p.done} already stored, "
                 f"{p.to_sample} to run → {store.uri}")
    long = runs_locally(address) and long_run_warning(
        spec, p.to_sample, rows, max_concurrent or spec.search.max_concurrent)
    if long:  # a CPU sweep of days (sweeps/estimate/cpu_time.py): said before it starts
        _log(stream, long)
    # Ctrl-C reaches us as KeyboardInterrupt instead of Tune's own handler, which would end
    # the run as if it had finished and point at a Tuner.restore folder deleted a moment later
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    errors: list[tuple[Any, str]] = []
    guard = None
    interrupted = False
    try:
        if p.to_sample > 0:
            summary.ran = p.to_sample
            guard = make_store_guard(stream)
            with library_logs(quiet=not verbose and runs_locally(address)):
                errors = run_trials(spec, p, out, max_concurrent or spec.search.max_concurrent,
                               address, force, stream, guard, t0)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException as e:
        if stop.signum is None:  # Ray itself failed: record the run's end, then say why
            _end_run(store, meta, run_info, summary, t0, [], stream, outcome=one_line(e))
            raise
        interrupted = True  # Ray went down with the signal sent to the whole process group
    stop.armed = False  # from here a SIGTERM or SIGHUP is only noted: the end gets recorded
    interrupted = interrupted or stop.signum is not None
    if stop.signum is not None:
        run_info["signal"] = Terminated(stop.signum).name
    unwritten = [] if interrupted else _store_failures(spec, store, errors)
    lost = list(guard.failures) if guard is not None else []
    if lost:  # the store failed: the trials never started after it are missing too
        named = {t for t, _ in lost} | {t for t, _ in unwritten}
        lost += [(t, "not run: no trial was started after the results store failed")
                 for t in _planned_ids(spec, p) if t not in named]
    unwritten = _end_run(store, meta, run_info, summary, t0, unwritten + lost, stream,
                         outcome="interrupted" if interrupted else None)
    if interrupted:
        try:
            rows = store.read_trials().to_pylist()
            missing = str(spec.search_kind.plan(spec, rows, False).to_sample)
        except Exception:  # noqa: BLE001 - the store is unreadable: say so, still resumable
            missing = "an unknown number of (the store cannot be read)"
        by = f" by {run_info['signal']}" if stop.signum is not None else ""
        _log(stream, f"sweep {spec.name} interrupted{by} after {hms(summary.wall_s)}: {missing} "
                     f"of {summary.total} trials missing; what is stored is kept. Resume (runs "
                     f"only the missing ones): {resume_command(spec, out)}")
        stop.raise_if_stopped()
        raise KeyboardInterrupt
    _log(stream, f"sweep {spec.name} {'stopped' if lost else 'finished'} in "
                 f"{hms(summary.wall_s)}: "
                 + ", ".join(f"{v} {k}" for k, v in summary.counts.items()))
    for what, err in unwritten:
        _log(stream, f"NOT STORED: {what}: {err}")
    if unwritten:
        raise UnwrittenError(store.uri, unwritten)
    return summary


def resume_command(spec: SweepSpec, out: str) -> str:
    """The command that carries on with this sweep (a rerun runs only what is missing)."""
    if not spec.source:
        return "run_sweep() again with the same spec and output"
    return f"diloco-sweep run {shlex.quote(spec.source)} --output {shlex.quote(redact(out))}"


def _planned_ids(spec: SweepSpec, p: Plan) -> list[str]:
    """trial_ids this run set out to store (a grid's points; other kinds choose as they go)."""
    return list(p.ids) if spec.search_kind.grid else []


def _store_failures(spec: SweepSpec, store: Store, errors: list[tuple[Any, str]]
                    ) -> list[tuple[str, str]]:
    """Write a failed row for every trial that still crashed; return what could not be
    written. Any exception is caught here and named with its trial: the run must go on to
    record its end (an int64 overflow once killed the driver at this point)."""
    unwritten = []
    try:  # one look for all (a failed pack has thousands of members), not one per trial
        done = store.done_among(trial_id(cfg) for cfg, _ in errors)
        stored = done.__contains__
    except Exception:  # noqa: BLE001 - then each is asked on its own below
        stored = lambda tid: store.done_row(tid) is not None  # noqa: E731
    for cfg, err in errors:
        tid = "?"
        try:
            tid = trial_id(cfg)
            if stored(tid):
                continue  # a member its pack stored before the pack crashed: keep its row
            store.write_trial(failed_row(spec, cfg, err))
        except Exception as e:  # noqa: BLE001 - reported below, not dropped
            unwritten.append((tid, f"{err}; its failed row: {type(e).__name__}: {e}"))
    return unwritten


def _end_run(store: Store, meta: dict, run_info: dict, summary: RunSummary, t0: float,
             lost: list[tuple[str, str]], stream: TextIO,
             outcome: str | None) -> list[tuple[str, str]]:
    """Record the run's end in sweep.json (counts, what is missing, how it ended); return
    what could not be stored: the trials of ``lost`` (rows the store refused) that are still
    not there and, when it cannot be written, sweep.json. Never raises: this runs after a
    crash too."""
    try:
        gone = store.remove_temporaries()  # left by trials killed mid-write in this run
        if gone:
            _log(stream, f"removed {len(gone)} temporary file(s) left by killed trials")
    except Exception as e:  # noqa: BLE001
        _log(stream, f"could not remove temporary files: {e}")
    try:
        statuses = store.statuses()
    except Exception as e:  # noqa: BLE001
        statuses = None
        lost.append(("sweep.json", f"cannot read the rows back: {e}"))
    unwritten = [(t, why) for t, why in lost if statuses is None or t not in statuses]
    summary.counts = {s: sum(1 for v in (statuses or {}).values() if v == s)
                      for s in ("completed", "diverged", "failed")}
    summary.wall_s = time.time() - t0
    run_info.update(ended_at=now(), counts=summary.counts,
                    unwritten=[w for w, _ in unwritten if w != "sweep.json"] or None)
    run_info["outcome"] = outcome or ("store failed" if unwritten else "finished")
    run_info["interrupted"] = outcome == "interrupted"
    try:
        store.write_meta(meta)
    except Exception as e:  # noqa: BLE001
        unwritten.append(("sweep.json", str(e)))
    return unwritten
