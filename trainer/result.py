"""TrainResult: what one trial returns, and the curve row handed to ``on_step``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrainResult", "CURVE_COLUMNS", "STATUSES", "OUTCOMES", "RISE", "curve_rise",
           "curve_rises", "outcome"]

STATUSES = ("completed", "diverged", "failed")
OUTCOMES = ("stable", "stalled", "blew_up", "diverged", "failed")
RISE = 0.10
"""Default blow-up threshold on ``rise``; docs/design.md, "Stable", says why 10%."""

# One row per outer step, as docs/design.md names the curve columns (trial_id is added by the store).
CURVE_COLUMNS = (
    "outer_step",        # t, the round just finished (0-based, as in `t % R == 0`)
    "tokens",            # tokens consumed by all workers so far
    "eval_loss",         # held-out loss of the global model after this round
    "train_loss",        # mean inner loss over the round's H steps and M workers
    "pseudo_grad_norm",  # ||Δ||
    "momentum_norm",     # ||m|| after the update
    "momentum_cos",      # cos(m, Δ) before the update; NaN when m was zero (just restarted)
    "wall_s",            # seconds since the trial started
)


@dataclass
class TrainResult:
    """The outcome of one trial. A diverged trial is a result, not an exception."""

    status: str
    """completed or diverged (the sweep service adds failed for crashes)."""
    initial_loss: float
    """Eval loss of the initial model, before the first round."""
    final_loss: float
    """Eval loss after the last round run (non-finite when the trial diverged that way)."""
    best_loss: float
    """Lowest eval loss seen after any round."""
    peak_loss: float
    """Highest eval loss after the first round: a spike that recovered shows here."""
    outer_steps_done: int
    """Rounds completed (fewer than outer_steps when the trial diverged)."""
    tokens: int
    """Training tokens consumed by all workers."""
    wall_s: float
    """Wall-clock seconds of the trial, data and model set-up included."""
    n_params: int = 0
    """Parameters of the model (or dimension of the toy problem)."""
    reason: str | None = None
    """Why a trial diverged, in words; None otherwise."""
    curve: list[dict[str, Any]] = field(default_factory=list)
    """One dict per outer step with CURVE_COLUMNS."""
    rise: float = field(init=False)
    """Largest relative rise of the eval loss over its running minimum (docs/design.md,
    "Stable"): max_t L_t / min_{s<=t} L_s - 1 over the curve; 0 when it never went up."""

    def __post_init__(self) -> None:
        self.rise = curve_rise([row["eval_loss"] for row in self.curve])

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for a trial row or a summary line."""
        return {k: v for k, v in self.__dict__.items() if k != "curve"}


def curve_rise(losses: list[float]) -> float:
    """max_t L_t / min_{s<=t} L_s - 1 over the finite losses of an eval curve, 0.0 if none.

    Measured against the running minimum, not the initial loss, so a late blow-up from a low
    loss counts in full and an early transient counts only by how far it climbed. Non-finite
    losses are left out: such a trial is diverged, which outranks any rise.
    """
    return float(curve_rises(np.asarray([losses], dtype=np.float64).reshape(1, -1))[0])


def curve_rises(losses: np.ndarray) -> np.ndarray:
    """``curve_rise`` of each row of a (K, T) array of eval curves (NaN pads a short one)."""
    finite = np.isfinite(losses)
    low = np.fmin.accumulate(np.where(finite, losses, np.nan), axis=1)   # running min, NaN-blind
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(finite & (low > 0), losses / low - 1.0, 0.0)
    return np.maximum(rel.max(axis=1, initial=0.0), 0.0)


def outcome(status: str | None, final_loss: float | None, initial_loss: float | None,
            rise: float | None, rise_threshold: float = RISE, peak_loss: float | None = None,
            diverge: float | None = None) -> str:
    """The one word for a trial, from the trial alone (docs/design.md, "Stable"), in this order:

    ``failed`` (it crashed); ``diverged`` (stopped by the trainer, a non-finite final loss, or
    with ``diverge=f`` a final or peak loss above f × initial); ``blew_up`` (rise above
    ``rise_threshold``; an unknown rise never counts); ``stalled`` (did not end below its
    initial loss, when that is known); else ``stable``.
    """
    if status == "failed":
        return "failed"
    final, initial, peak = (_num(final_loss), _num(initial_loss), _num(peak_loss))
    if status == "diverged" or not math.isfinite(final) or (
            diverge is not None and (final > diverge * initial or peak > diverge * initial)):
        return "diverged"
    if _num(rise) > rise_threshold:
        return "blew_up"
    if math.isfinite(initial) and not final < initial:
        return "stalled"
    return "stable"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
