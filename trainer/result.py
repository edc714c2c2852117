"""TrainResult: what one trial returns, and the curve row handed to ``on_step``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrainResult", "CURVE_COLUMNS", "STATUSES", "OUTCOMES", "RISE", "curve_rise",
           "curve_rises", "end_rise", "end_rises", "first_spike_round", "outcome", "spiked"]

STATUSES = ("completed", "diverged", "failed")
OUTCOMES = ("stable", "stalled", "blew_up", "diverged", "failed")
RISE = 0.10
"""Default threshold: blew up when ``end_rise`` is above it, spiked when ``rise`` is
(docs/design.md, "Stable: the run settles", says why 10%)."""

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
    inner_steps_done: int = 0
    """Inner steps each worker ran: outer_steps_done · H, and the steps of a round a divergence
    stopped (what a budget, ``inner_steps_budget``, was spent on)."""
    reason: str | None = None
    """Why a trial diverged, in words; None otherwise."""
    curve: list[dict[str, Any]] = field(default_factory=list)
    """One dict per outer step with CURVE_COLUMNS."""
    rise: float = field(init=False)
    """Largest relative rise of the eval loss over its running minimum on the way
    (docs/design.md, "Stable"): max_t L_t / min_{s<=t} L_s - 1 over the curve; 0 when it never
    went up. Above the threshold on a stable trial, it marks a spike that recovered."""
    end_rise: float = field(init=False)
    """How far above its best the trial ended: final_loss / best_loss - 1 (docs/design.md,
    "Stable"). Above the threshold, the trial blew up: it did not come back down."""

    def __post_init__(self) -> None:
        self.rise = curve_rise([row["eval_loss"] for row in self.curve])
        self.end_rise = end_rise(self.final_loss, self.best_loss)

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for a trial row or a summary line."""
        return {k: v for k, v in self.__dict__.items() if k != "curve"}


def curve_rise(losses: list[float]) -> float:
    """max_t L_t / min_{s<=t} L_s - 1 over the finite losses of an eval curve, 0.0 if none.

    Measured against the running minimum, not the initial loss, so a late climb from a low loss
    counts in full and an early transient only by how far it climbed. It marks a spike on a
    stable trial (``spiked``); whether a trial blew up is ``end_rise``'s question. Non-finite
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


def end_rise(final_loss: Any, best_loss: Any) -> float:
    """final / best - 1, the ``end_rise`` column; NaN when either is unknown, not finite, or
    best is not positive. Stored rows that lack the column get it from these two columns."""
    return float(end_rises(np.array([_num(final_loss)]), np.array([_num(best_loss)]))[0])


def end_rises(final: np.ndarray, best: np.ndarray) -> np.ndarray:
    """``end_rise`` of each element of two float arrays (K trials, or a column of rows)."""
    final, best = np.asarray(final, dtype=np.float64), np.asarray(best, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(final) & np.isfinite(best) & (best > 0),
                        final / best - 1.0, np.nan)


def first_spike_round(losses: list[float], threshold: float) -> int | None:
    """The first round t at which the running rise max_{s<=t} L_s / min_{u<=s} L_u - 1 of an
    eval curve passes ``threshold``; None when it never does. A spike "came within the first R
    rounds", which a restarted run shares with its unrestarted twin, when this is below R."""
    low = math.inf
    for t, loss in enumerate(losses):
        if not math.isfinite(loss):
            continue
        low = min(low, loss)
        if low > 0 and loss / low - 1.0 > threshold:
            return t
    return None


def outcome(status: str | None, final_loss: float | None, initial_loss: float | None,
            rise_at_end: float | None, rise_threshold: float = RISE,
            peak_loss: float | None = None, diverge: float | None = None,
            best_loss: float | None = None) -> str:
    """The one word for a trial, from the trial alone (docs/design.md, "Stable: the run
    settles"), in this order:

    ``failed`` (it crashed); ``diverged`` (stopped by the trainer, a non-finite final loss, or
    with ``diverge=f`` a final or peak loss above f × initial); ``blew_up`` (``rise_at_end``,
    the end rise, how far above its best it ended, is above ``rise_threshold``: it did not come
    back down; a row written before that column gets it from ``best_loss``; unknown, it never
    counts); ``stalled`` (did not end below its initial loss, when that is known); else
    ``stable``. A stable trial may have spiked on the way: :func:`spiked`.
    """
    if status == "failed":
        return "failed"
    final, initial, peak = (_num(final_loss), _num(initial_loss), _num(peak_loss))
    if status == "diverged" or not math.isfinite(final) or (
            diverge is not None and (final > diverge * initial or peak > diverge * initial)):
        return "diverged"
    ends = _num(rise_at_end)
    if math.isnan(ends):
        ends = end_rise(final, best_loss)
    if ends > rise_threshold:
        return "blew_up"
    if math.isfinite(initial) and not final < initial:
        return "stalled"
    return "stable"


def spiked(word: str, rise: float | None, rise_threshold: float = RISE) -> bool:
    """The mark on a stable trial whose loss rose more than ``rise_threshold`` above its
    running minimum on the way and came back down (docs/design.md, "spiked")."""
    return word == "stable" and _num(rise) > rise_threshold


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
