"""Keep the driver's memory flat over thousands of trials (docs/performance.md, "Driver memory").

Ray Tune keeps every trial it ran for the whole ``Tuner.fit``, and with each trial a running
window of its last 5 and last 10 values of every number it reported (two ``deque`` objects a
metric, for the 14 numbers a trial reports) and a min/max/avg/last summary of each. The run
reads neither (the searcher and the progress line get the result itself; the rows are the
record), and a finished trial reports nothing more, so :func:`lean_trials` drops both when a
trial completes (its last result stays). A trial that errs keeps them: Tune may retry it, and
a retry appends to them. The runner also turns off what it never reads (sweeps/tune/runner.py):
Tune's default CSV/JSON/TensorBoard loggers (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``) and the
periodic experiment-state checkpoint (``TUNE_GLOBAL_CHECKPOINT_S``), which kept a JSON copy of
every trial's state for a ``Tuner.restore`` the run never does (a rerun resumes from the store).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["lean_trials", "KEEP_WINDOWS_ENV"]

KEEP_WINDOWS_ENV = "DILOCO_TUNE_KEEP_WINDOWS"
"""Set to 1, completed trials keep them: the baseline of ``benchmarks.driver_memory``."""


def lean_trials() -> Any:
    """A Tune callback that frees a completed trial's per-metric windows and summaries."""
    from ray.tune import Callback

    keep = os.environ.get(KEEP_WINDOWS_ENV) == "1"

    class LeanTrials(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if keep:
                return
            meta = getattr(trial, "run_metadata", None)
            for name in ("metric_n_steps", "metric_analysis"):
                kept = getattr(meta, name, None)
                if isinstance(kept, dict):
                    kept.clear()

    return LeanTrials()
