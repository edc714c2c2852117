"""What a run says while Tune runs: one line per finished trial on stderr (counts, elapsed time
and an estimate of what is left), trials left pending for long (a cluster too small for what
each trial asks), and the guard that stops the run once the results store fails.

Elapsed time counts from the command's start, Ray's start-up included (the runner says when
Ray is up). The estimate comes from the trials' own measured times, not from the elapsed time:
Ray's start (tens of seconds on a busy laptop), divided by the first finished trial, once
predicted two hours for a 26-minute sweep. ``Estimate`` keeps each trial's start and end; what
is left is the work not yet done (trial time × trials not finished, less what the running ones
have already spent) over the slots (the most trials seen running at once). The trial time is a
mean that weighs recent trials more (a trial's weight halves every ``half_life`` trials since),
so when the machine gets busier or quieter the estimate follows within a few slots' worth of
trials instead of averaging over the whole sweep. It says "rough" until twice that many
trials, and at least 3, have finished.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Hashable, TextIO

__all__ = ["make_progress", "make_store_guard", "format_line", "hms", "Estimate",
           "PENDING_NOTE_S"]

PENDING_NOTE_S = 60.0
"""Trials pending this long with none running get a line saying what they wait for."""


def hms(s: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour."""
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Estimate:
    """Time left in a sweep of ``total`` trials, from the trials' measured durations.

    Call ``started(key, t)`` and ``finished(key, t)`` as trials start and end (``timed=False``
    for one that did no work, e.g. a row stored before: it counts as done but not as a
    duration); ``left(now)`` is seconds left or None before any trial has been timed.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.starts: dict[Hashable, float] = {}
        self.durations: list[float] = []
        self.done = 0
        self.slots = 1
        self._sum = 0.0      # the durations, each weighted 2^(-trials finished after it / half_life)
        self._weights = 0.0  # the weights themselves

    @property
    def half_life(self) -> float:
        """Trials after which a duration counts half: four rounds of the slots, at least 4."""
        return float(max(4 * self.slots, 4))

    def started(self, key: Hashable, t: float) -> None:
        self.starts[key] = t
        self.slots = max(self.slots, len(self.starts))

    def finished(self, key: Hashable, t: float, timed: bool = True) -> None:
        start = self.starts.pop(key, None)
        self.done += 1
        if timed and start is not None:
            d = max(t - start, 0.0)
            self.durations.append(d)
            keep = 0.5 ** (1.0 / self.half_life)
            self._sum = self._sum * keep + d
            self._weights = self._weights * keep + 1.0

    @property
    def trial_s(self) -> float | None:
        """A trial's duration now: the durations' mean, recent ones weighing more."""
        return self._sum / self._weights if self._weights else None

    @property
    def rough(self) -> bool:
        """True until enough trials have been timed to trust the mean (2 per slot, >= 3)."""
        return len(self.durations) < min(max(2 * self.slots, 3), self.total)

    def left(self, now: float) -> float | None:
        if self.done >= self.total:
            return 0.0
        mean = self.trial_s
        if mean is None:
            return None
        # the running trials have done part of their mean; a trial past the mean counts 0 left
        spent = sum(min(now - s, mean) for s in self.starts.values())
        work = mean * (self.total - self.done) - spent
        return max(work, 0.0) / self.slots


def format_line(total: int, counts: dict[str, int], running: int, elapsed: float,
                last: str, left: float | None = None, rough: bool = False,
                at_most: bool = False) -> str:
    """The progress line; ``left`` is the estimate of :class:`Estimate` (None: not yet).
    ``at_most``: an adaptive search, whose ``total`` is the most trials it may spend, so the
    count and the estimate are bounds ("≤"), not a forecast."""
    finished = sum(counts.values())
    bound = "≤" if at_most else ""
    if left is None:
        eta = "ETA ?"
    elif rough and finished < total:
        eta = f"ETA {bound or '~'}{hms(left)} (rough until more trials finish)"
    else:
        eta = f"ETA {bound}{hms(left)}"
    if at_most and finished < total:
        eta += " (an adaptive search: it may stop sooner)"
    return (f"[diloco-sweep] {finished}/{bound}{total} trials · {counts.get('completed', 0)} done, "
            f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed, "
            f"{running} running · elapsed {hms(elapsed)}, {eta} · {last}")


def make_progress(total: int, stream: TextIO, name_of: Callable[[dict], str] | None = None,
                  t0: float | None = None, at_most: bool = False):
    """A ray.tune Callback printing format_line after every finished or failed trial.

    ``name_of(config)`` names a trial that reported nothing (one that crashed before its one
    report); picklable, as Tune saves callbacks. ``t0``: when the command started (time.time();
    default now), what "elapsed" counts from. ``at_most``: ``total`` is an adaptive search's
    most (``format_line``)."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self, total: int, stream: TextIO) -> None:
            self.name_of = name_of
            self.t0 = time.time() if t0 is None else t0
            self.total = total
            self.counts = {"completed": 0, "diverged": 0, "failed": 0}
            self.estimate = Estimate(total)
            self.at_most = at_most
            self.stream = stream

            self.pending_since: float | None = None
            self.noted = 0.0

        def __getstate__(self):  # Tune saves callbacks with its experiment state
            return {k: v for k, v in self.__dict__.items() if k != "stream"}

        def __setstate__(self, state):
            self.__dict__.update(state, stream=sys.stderr)

        def _emit(self, trials, trial, what: str) -> None:
            running = sum(1 for t in trials if t.status == "RUNNING" and t is not trial)
            res = trial.last_result or {}
            desc = ", ".join(f"{k}={v}" for k, v in _params(trial.config).items())
            tid = res.get("sweep_trial_id")
            if tid is None:
                try:
                    tid = self.name_of(trial.config) if self.name_of else "?"
                except Exception:  # noqa: BLE001 - a name must never stop the run
                    tid = "?"
            now = time.time()
            print(format_line(self.total, self.counts, running, now - self.t0,
                              f"{what} {tid} ({desc})", self.estimate.left(now),
                              self.estimate.rough, self.at_most), file=self.stream,
                  flush=True)

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.estimate.started(trial.trial_id, time.time())

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            res = trial.last_result or {}
            if res.get("store_error"):  # trained, but its row could not be written
                self._emit(trials, trial, f"NOT STORED: {res['store_error']}")
                return
            status = res.get("status", "completed")
            status = status if status in self.counts else "completed"
            self.counts[status] += 1
            self.estimate.finished(trial.trial_id, time.time(), timed=not res.get("skipped"))
            what = status + (" (stored before)" if res.get("skipped") else "")
            self._emit(trials, trial, what)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.counts["failed"] += 1
            self.estimate.finished(trial.trial_id, time.time())
            self._emit(trials, trial, "failed")

        def on_step_begin(self, iteration, trials, **info) -> None:
            pending = [t for t in trials if t.status == "PENDING"]
            if not pending or any(t.status == "RUNNING" for t in trials):
                self.pending_since = None
                return
            now = time.time()
            self.pending_since = self.pending_since or now
            waited = now - self.pending_since
            if waited >= PENDING_NOTE_S and now - self.noted >= PENDING_NOTE_S * 5:
                self.noted = now
                try:
                    note = pending_note(len(pending), waited, pending[0])
                except Exception as e:  # noqa: BLE001 - a note must never stop the run
                    note = f"{len(pending)} trial(s) pending for {hms(waited)} ({e})"
                print(f"[diloco-sweep] {note}", file=self.stream, flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            print(f"[diloco-sweep] trial crashed, retrying: {_params(trial.config)}",
                  file=self.stream, flush=True)

    return Progress(total, stream)


def pending_note(n: int, waited: float, trial) -> str:
    """Why trials have not started: what one asks for, what the cluster has and has free."""
    import ray

    need = {k: v for k, v in (trial.placement_group_factory.required_resources or {}).items()
            if v}
    total, free = ray.cluster_resources(), ray.available_resources()
    have = ", ".join(f"{k} {free.get(k, 0):g} free of {total.get(k, 0):g}" for k in need)
    return (f"{n} trial(s) pending for {hms(waited)} with none running: each asks for "
            f"{', '.join(f'{k} {v:g}' for k, v in need.items())}; the cluster has {have}. "
            f"They start when a node with room joins (an autoscaler may be adding one); "
            f"otherwise lower `resources` in the spec")


def make_store_guard(stream: TextIO):
    """A ray.tune Stopper that ends the run once a trial could not store its row.

    A trial whose row cannot be written reports ``store_error`` and returns (it is not
    retried: retrying would train it again only to fail again). From then on the store is
    taken for gone (disk full, S3 down): no further trial is started, running ones stop, and
    what is stored stays. ``failures`` lists (trial_id, error) for the driver to name.
    """
    from ray.tune import Stopper

    class StoreGuard(Stopper):
        def __init__(self, stream: TextIO) -> None:
            self.failures: list[tuple[str, str]] = []
            self.stream = stream

        def __getstate__(self):
            return {k: v for k, v in self.__dict__.items() if k != "stream"}

        def __setstate__(self, state):
            self.__dict__.update(state, stream=sys.stderr)

        def __call__(self, trial_id: str, result: dict) -> bool:
            err = result.get("store_error")
            if not err:
                return False
            if not self.failures:
                print(f"[diloco-sweep] the results store failed ({err}); starting no more "
                      f"trials and stopping those running; the rows stored so far are kept, "
                      f"and a rerun runs the rest", file=self.stream, flush=True)
            self.failures.append((str(result.get("sweep_trial_id", trial_id)), str(err)))
            return True

        def stop_all(self) -> bool:
            return bool(self.failures)

    return StoreGuard(stream)


def _params(config: dict) -> dict:
    if "pack" in config:
        return {"packed trials": len(config["pack"])}
    p = config.get("params", config)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}
