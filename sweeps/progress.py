"""One line per finished trial on stderr: counts, elapsed time and an estimate of what is left."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["make_progress", "format_line"]


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def format_line(total: int, counts: dict[str, int], running: int, elapsed: float,
                last: str) -> str:
    finished = sum(counts.values())
    eta = "?" if finished == 0 else _hms(elapsed / finished * max(total - finished, 0))
    return (f"[diloco-sweep] {finished}/{total} trials · {counts.get('completed', 0)} done, "
            f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed, "
            f"{running} running · elapsed {_hms(elapsed)}, ETA {eta} · {last}")


def make_progress(total: int, stream: TextIO):
    """A ray.tune Callback printing format_line after every finished or failed trial."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self, total: int, stream: TextIO) -> None:
            self.t0 = time.time()
            self.total = total
            self.counts = {"completed": 0, "diverged": 0, "failed": 0}
            self.stream = stream

        def __getstate__(self):  # Tune saves callbacks with its experiment state
            return {k: v for k, v in self.__dict__.items() if k != "stream"}

        def __setstate__(self, state):
            self.__dict__.update(state, stream=sys.stderr)

        def _emit(self, trials, trial, what: str) -> None:
            running = sum(1 for t in trials if t.status == "RUNNING" and t is not trial)
            res = trial.last_result or {}
            desc = ", ".join(f"{k}={v}" for k, v in _params(trial.config).items())
            tid = res.get("sweep_trial_id", "?")
            print(format_line(self.total, self.counts, running, time.time() - self.t0,
                              f"{what} {tid} ({desc})"), file=self.stream, flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            res = trial.last_result or {}
            status = res.get("status", "completed")
            status = status if status in self.counts else "completed"
            self.counts[status] += 1
            what = status + (" (stored before)" if res.get("skipped") else "")
            self._emit(trials, trial, what)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.counts["failed"] += 1
            self._emit(trials, trial, "failed")

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            print(f"[diloco-sweep] trial crashed, retrying: {_params(trial.config)}",
                  file=self.stream, flush=True)

    return Progress(total, stream)


def _params(config: dict) -> dict:
    if "pack" in config:
        return {"packed trials": len(config["pack"])}
    p = config.get("params", config)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}
