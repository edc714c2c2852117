"""The trials of a planned run through Ray Tune: Ray started or joined, the Tuner built and run.

``sweeps.tune.runner`` plans, holds the locks and records the run; this module is what happens
between: the embedded or joined Ray (``init_ray``), the libraries' own log lines kept quiet
(``library_logs``), and ``run_trials``, which returns the trials that still failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator, TextIO

from sweeps.search import Plan
from sweeps.spec.parse import SweepSpec
from sweeps.tune.lean import lean_trials
from sweeps.tune.loggers import logger_callbacks
from sweeps.tune.progress import hms, make_progress
from sweeps.tune.ray_private import AUTH_LOGGER, loopback_only
from sweeps.tune.signals import defer_if_stopping, reinstall
from sweeps.tune.trainable import make_trainable
from sweeps.tune.trial import display_id, pack_configs

__all__ = ["run_trials", "init_ray", "library_logs", "one_line", "log"]


def log(stream: TextIO, msg: str) -> None:
    print(f"[diloco-sweep] {msg}", file=stream, flush=True)


def init_ray(address: str | None) -> bool:
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
def library_logs(quiet: bool) -> Iterator[None]:
    """While ``quiet``, only errors from the loggers above and Optuna, and no Optuna
    ExperimentalWarning ("QMCSampler is experimental"); levels and filters restored after.

    Optuna is set through its own verbosity API: it resets its logger's level when first
    imported, which for a grid search is after this point (45 ms to import it here).
    """
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


def run_trials(spec: SweepSpec, p: Plan, out: str, max_concurrent: int | None,
          address: str | None, force: bool, stream: TextIO,
          guard: Any, t0: float) -> list[tuple[Any, str]]:
    """Run the planned trials; return (TrainConfig, error text) for trials that still failed.
    ``t0``: when the command started."""
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative corpus paths keep working
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default CSV, JSON and TensorBoard loggers write into its trial folders, which the
    # run deletes at the end, and cost the driver memory per trial (docs/performance.md,
    # "Driver memory"); the loggers a spec asks for are passed as callbacks and still run
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # and its experiment-state checkpoint (a JSON copy of every trial, for a Tuner.restore
    # of a folder deleted at the end) only once at the start and once at the end
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(10**9))
    # without those loggers there is no result.json for Tune's ResultGrid to read back, and it
    # warns "Failed to fetch metrics" naming every trial; the run reads only errors and configs
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    started = init_ray(address)
    reinstall()  # ray.init sets its own SIGTERM handler (sys.exit, then a C++ abort)
    if started:  # the first minute of a run on a busy laptop: say where it went
        log(stream, f"Ray is up after {hms(time.time() - t0)}")
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
                callbacks=[make_progress(setup.n_tune, stream, partial(display_id, spec), t0,
                                         at_most=spec.search_kind.adaptive)]
                + logger_callbacks(spec, out) + [lean_trials()],
                stop=guard,
                log_to_file=False),
        )
        grid = tuner.fit()
        errors = []
        for r in grid:
            if r.error is None:
                continue
            for cfg in pack_configs(spec, r.config):  # every member of a failed pack fails
                errors.append((cfg, one_line(r.error)))
        return errors
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        # after SIGTERM or SIGHUP the end is recorded first: shutting Ray down can outlast the
        # 30 s before Kubernetes' SIGKILL when its processes got the signal too
        if started and not defer_if_stopping(ray.shutdown):
            ray.shutdown()


def _slots(spec: SweepSpec, cluster: dict[str, float]) -> int:
    """How many trials of this spec the cluster holds at once now (at least 1)."""
    n = cluster.get("CPU", 0.0) / spec.resources.cpu
    if spec.resources.gpu:
        n = min(n, cluster.get("GPU", 0.0) / spec.resources.gpu)
    return max(1, int(n + 1e-9))


def one_line(err: BaseException) -> str:
    """The error a trial died of: the root cause's type and message (no Ray wrapping)."""
    cause = getattr(err, "cause", None) or err
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    text = f"{type(cause).__name__}: {cause}"
    return text if len(text) < 4000 else text[:4000] + " …"
