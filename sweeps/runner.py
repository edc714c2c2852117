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
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterator, TextIO

from .compact import expand, finish_interrupted
from .errors import StoreError, UnwrittenError
from .lock import SweepLock
from .loggers import check_loggers, logger_callbacks
from .preflight import preflight
from .progress import hms, make_progress, make_store_guard
from .ray_private import AUTH_LOGGER, loopback_only
from .redact import redact, redact_data
from .search import Plan
from .spec import SpecError, SweepSpec
from .store import Store, now, trial_id
from .trainable import failed_row, make_trainable
from .trial import display_id, pack_configs
from .uri import check_uri, with_endpoint
from .usercode import other_code_note, spec_code

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


def _log(stream: TextIO, msg: str) -> None:
    print(f"[diloco-sweep] {msg}", file=stream, flush=True)


def run_sweep(spec: SweepSpec, output: str | None = None, max_concurrent: int | None = None,
              address: str | None = None, force: bool = False,
              stream: TextIO | None = None, verbose: bool = False,
              started: float | None = None) -> RunSummary:
    """Run every trial of ``spec`` not yet stored (all with ``force``); return the counts.

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
    with SweepLock(store) as lock:
        if lock.taken_over:
            _log(stream, f"lock of an earlier run that ended without releasing it taken over "
                         f"(pid {lock.taken_over.get('pid')} on {lock.taken_over.get('host')})")
        return _run_locked(spec, store, out, max_concurrent, address, force, stream, verbose,
                           started)


def _run_locked(spec: SweepSpec, store: Store, out: str, max_concurrent: int | None,
                address: str | None, force: bool, stream: TextIO,
                verbose: bool, t0: float) -> RunSummary:
    try:
        meta = store.read_meta() or {}  # first: a damaged one stops the run before any change
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
    for f, why in store.skipped.items():
        _log(stream, f"skipped a file that is not a trustworthy trial row (its trial runs "
                     f"again): {f}: {why}")
    note = None if force else other_code_note(spec, rows)  # kind python: sweeps/usercode.py
    if note:
        _log(stream, note)
    p = spec.search_kind.plan(spec, rows, force)
    summary = RunSummary(store_uri=store.uri, total=p.total, skipped=p.done, folder=store.folder)

    # sweep.json keeps no secret: the command line and the spec's output go in redacted
    run_info = {"started_at": now(), "ended_at": None, "force": force,
                "planned": p.to_sample, "skipped": p.done, "argv": redact_data(sys.argv),
                "search": spec.search_kind.about(spec), "code": spec_code(spec)}
    meta.update(name=spec.name, spec=redact_data(spec.to_dict()), spec_file=spec.source,
                search=spec.search_kind.about(spec),
                versions=versions(), git_commit=git_commit(), code=run_info["code"])
    meta.setdefault("created_at", run_info["started_at"])
    meta["runs"] = (meta.get("runs") or []) + [run_info]
    try:
        store.write_meta(meta)
    except OSError as e:
        raise StoreError(f"cannot write to {store.uri}: {e}") from None

    _log(stream, f"sweep {spec.name}: {p.total} trials, {p.done} already stored, "
                 f"{p.to_sample} to run → {store.uri}")
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
            with _library_logs(quiet=not verbose and runs_locally(address)):
                errors = _tune(spec, p, out, max_concurrent or spec.search.max_concurrent,
                               address, force, stream, guard, t0)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException as e:  # Ray itself failed: record the run's end, then say why
        _end_run(store, meta, run_info, summary, t0, [], stream, outcome=_one_line(e))
        raise
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
        _log(stream, f"sweep {spec.name} interrupted after {hms(summary.wall_s)}: {missing} "
                     f"of {summary.total} trials missing; what is stored is kept. Resume (runs "
                     f"only the missing ones): {resume_command(spec, out)}")
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


def _init_ray(address: str | None) -> bool:
    """Connect or start Ray; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True,
                                  logging_level="WARNING", configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        loopback_only()
        ray.init(address="local", _node_ip_address="127.0.0.1", **kwargs)
    return True


# Driver-side loggers that talk to someone tuning Ray or Optuna, not to someone reading a
# sweep: Tune's slow-step warnings ("The `process_trial_result` operation took 1.4 s ...",
# ray.tune.utils.util.warn_if_slow, past TUNE_WARN_THRESHOLD_S = 0.5 s, common on a loaded
# laptop) and its trial-runner notes; Ray 2.60's "Token authentication is enabled for this Ray
# cluster" on every new local cluster (token auth stays on: it is the default we want); and
# Optuna's "A new study created" and sampler notes.
_QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air", AUTH_LOGGER)


@contextmanager
def _library_logs(quiet: bool) -> Iterator[None]:
    """While ``quiet``, only errors from the loggers above and Optuna, and no Optuna
    ExperimentalWarning ("QMCSampler is experimental"); levels and filters restored after.

    Optuna is set through its own verbosity API: it resets its logger's level when first
    imported, which for a grid search is after this point (45 ms to import it here).
    """
    import logging
    import warnings

    if not quiet:
        yield
        return
    import optuna

    saved = {n: logging.getLogger(n).level for n in _QUIET_LOGGERS}
    saved_optuna = optuna.logging.get_verbosity()
    for n in _QUIET_LOGGERS:
        logging.getLogger(n).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
        optuna.logging.set_verbosity(saved_optuna)


def _tune(spec: SweepSpec, p: Plan, out: str, max_concurrent: int | None,
          address: str | None, force: bool, stream: TextIO,
          guard: Any, t0: float) -> list[tuple[Any, str]]:
    """Run the planned trials; return (TrainConfig, error text) for trials that still failed.
    ``t0``: when the command started."""
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative corpus paths keep working
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = _init_ray(address)
    if started:  # the first minute of a run on a busy laptop: say where it went
        _log(stream, f"Ray is up after {hms(time.time() - t0)}")
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    workdir = tempfile.mkdtemp(prefix="diloco-sweep-tune-")
    try:
        trainable = tune.with_resources(make_trainable(spec, out, force=force),
                                        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        setup = spec.search_kind.tune(spec, p, out)
        # Tune keeps one trial pending for a searcher unless a limiter says more
        limit = max_concurrent or _slots(spec, ray.cluster_resources())
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                num_samples=setup.num_samples, reuse_actors=True,
                search_alg=ConcurrencyLimiter(setup.searcher, max_concurrent=limit)),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=workdir, verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
                callbacks=[make_progress(setup.n_tune, stream, partial(display_id, spec), t0)]
                + logger_callbacks(spec, out),
                stop=guard,
                log_to_file=False),
        )
        grid = tuner.fit()
        errors = []
        for r in grid:
            if r.error is None:
                continue
            for cfg in pack_configs(spec, r.config):  # every member of a failed pack fails
                errors.append((cfg, _one_line(r.error)))
        return errors
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started:
            ray.shutdown()


def _slots(spec: SweepSpec, cluster: dict[str, float]) -> int:
    """How many trials of this spec the cluster holds at once now (at least 1)."""
    n = cluster.get("CPU", 0.0) / spec.resources.cpu
    if spec.resources.gpu:
        n = min(n, cluster.get("GPU", 0.0) / spec.resources.gpu)
    return max(1, int(n + 1e-9))


def _one_line(err: BaseException) -> str:
    """The error a trial died of: the root cause's type and message (no Ray wrapping)."""
    cause = getattr(err, "cause", None) or err
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    text = f"{type(cause).__name__}: {cause}"
    return text if len(text) < 4000 else text[:4000] + " …"
