"""Trials' bookkeeping, shared by the single-trial loop and packed trials.

The loop of docs/design.md decides three things per trial that must not depend on how the
trial was run (alone, or as one of K stacked trials): when it has diverged and why, what each
curve row holds, and what its result is. ``TrialTracker`` is that, once, for K trials held as
arrays: ``trainer.loop`` drives K = 1, ``trainer.packed`` K of them over one stacked
computation (thousands for the toy, so nothing here loops over trials in Python but to word
the reason of one that just diverged).

Divergence, in the order it is checked:

- the initial eval loss is not finite;
- an inner loss of the round is not finite (the round stops at that step);
- with ``diverge_check_every = k``: every k inner steps, the mean train loss of the last k
  steps exceeds ``diverge_factor × initial`` (the losses exist already: no extra cost);
- after the outer step, the eval loss is not finite or exceeds ``diverge_factor × initial``.

Means are summed left to right, loss by loss, as a Python ``sum`` over the round's list would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .result import TrainResult, curve_rises, end_rises

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["TrialTracker", "train_divergence"]


def train_divergence(cfg: TrainConfig, steps: list[np.ndarray], h: int, idx: np.ndarray,
                     initial: np.ndarray, factor: np.ndarray) -> np.ndarray | None:
    """The cfg.diverge_check_every rule after inner step h: (n,) window means of trials
    ``idx``, NaN where the rule does not fire, or None when it is not checked at this step.

    `steps` holds this round's inner losses so far, one (K, M) array per step. Every k steps,
    the mean over the last k steps is compared with diverge_factor x initial (both (n,))."""
    k = cfg.diverge_check_every
    if not k or (h + 1) % k:
        return None
    window = np.stack(steps[h + 1 - k:h + 1])[:, idx]           # (k, n, M)
    total = np.zeros(window.shape[1])
    for step in window:
        for col in step.T:
            total = total + col
    value = total / (window.shape[0] * window.shape[2])
    return np.where(value > factor * initial, value, np.nan)


class TrialTracker:
    """Curve rows, divergence and results of K trials of one shape, fed round by round.

    Trials are addressed by their index 0..K-1; each call names the still-running ones it
    has values for (``idx``, increasing), as the stacked computation drops finished trials."""

    def __init__(self, cfgs: list[TrainConfig], initial: np.ndarray, n_params: int,
                 tokens_per_step: int, t0: float) -> None:
        self.cfg, self.t0 = cfgs[0], t0
        self.K = len(cfgs)
        self.n_params, self.tokens_per_step = n_params, tokens_per_step
        self.initial = np.asarray(initial, dtype=np.float64).reshape(self.K)
        self.factor = np.array([c.diverge_factor for c in cfgs], dtype=np.float64)
        self.status = ["completed"] * self.K
        self.reason: list[str | None] = [None] * self.K
        self.done = np.zeros(self.K, dtype=bool)
        self.last = self.initial.copy()
        self.best = np.full(self.K, np.inf)
        self.peak = np.full(self.K, -np.inf)
        self.tokens = np.zeros(self.K, dtype=np.int64)
        self.inner_steps = np.zeros(self.K, dtype=np.int64)   # per worker
        self.wall_s = np.zeros(self.K)
        self.rows = np.zeros(self.K, dtype=np.int64)
        self._rounds: list[tuple[np.ndarray, dict[str, Any]]] = []
        bad = np.flatnonzero(~np.isfinite(self.initial))
        self._finish(bad, "diverged", [f"initial eval loss is {self.initial[k]}" for k in bad])

    # ------------------------------------------------------------------ feeding
    @property
    def active(self) -> np.ndarray:
        """Indices of the trials still running."""
        return np.flatnonzero(~self.done)

    def _finish(self, ks: np.ndarray, status: str, reasons: list[str | None],
                last: np.ndarray | None = None) -> None:
        if len(ks) == 0:
            return
        for k, why in zip(ks.tolist(), reasons):
            self.status[k], self.reason[k] = status, why
        self.done[ks] = True
        if last is not None:
            self.last[ks] = last
        self.wall_s[ks] = time.perf_counter() - self.t0

    def start_round(self) -> None:
        self._steps: list[np.ndarray] = []           # per inner step: (K, M), NaN for others
        self._sum = np.zeros(self.K)                 # this round's inner losses, summed in order
        self._count = np.zeros(self.K, dtype=np.int64)

    def inner(self, t: int, h: int, idx: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """Record inner step h of round t: ``losses`` (n, M), one per worker of trials ``idx``
        (the n still running). Returns the (n,) mask of those that are over now."""
        losses = np.asarray(losses, dtype=np.float64)
        n, M = losses.shape
        if self.cfg.diverge_check_every:  # the window rule's losses, kept only where it runs
            step = np.full((self.K, M), np.nan)
            step[idx] = losses
            self._steps.append(step)
        acc = self._sum[idx]
        for col in losses.T:
            acc = acc + col
        self._sum[idx], self._count[idx] = acc, self._count[idx] + M
        self.tokens[idx] += self.tokens_per_step * M
        self.inner_steps[idx] += 1
        over = np.zeros(n, dtype=bool)
        bad = ~np.isfinite(losses).all(axis=1)
        if bad.any():
            mean = self._sum[idx[bad]] / self._count[idx[bad]]
            self._finish(idx[bad], "diverged",
                         [f"inner train loss turned {v} in round {t}" for v in mean.tolist()],
                         mean)
            over |= bad
        early = train_divergence(self.cfg, self._steps, h, idx, self.initial[idx],
                                 self.factor[idx])
        if early is not None:
            fired = ~over & ~np.isnan(early)
            ks, vs = idx[fired], early[fired]
            k = self.cfg.diverge_check_every
            self._finish(ks, "diverged", [
                f"inner train loss {v:.4g} over the last {k} steps > diverge_factor "
                f"{self.factor[j]:g} x initial {self.initial[j]:.4g} in round {t}"
                for j, v in zip(ks.tolist(), vs.tolist())], vs)
            over |= fired
        return over

    def end_round(self, t: int, idx: np.ndarray, stats: dict[str, np.ndarray],
                  eval_loss: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        """Record round t's outer step (per-trial stats) and eval of trials ``idx``."""
        ev = np.asarray(eval_loss, dtype=np.float64)
        self.last[idx] = ev
        self.best[idx] = np.fmin(self.best[idx], ev)      # NaN-blind, as min(best, nan) is
        if t > 0:
            self.peak[idx] = np.fmax(self.peak[idx], ev)
        row = {"outer_step": t, "tokens": self.tokens[idx].copy(), "eval_loss": ev,
               "train_loss": self._sum[idx] / self._count[idx],
               **{k: np.asarray(v, dtype=np.float64) for k, v in stats.items()},
               "wall_s": time.perf_counter() - self.t0, **(extra or {})}
        self._rounds.append((np.asarray(idx).copy(), row))
        self.rows[idx] += 1
        with np.errstate(invalid="ignore"):
            nonfinite, high = ~np.isfinite(ev), ev > self.factor[idx] * self.initial[idx]
        ks = idx[nonfinite]
        self._finish(ks, "diverged", [f"eval loss turned {self.last[k]} after round {t}"
                                      for k in ks.tolist()])
        ks = idx[high & ~nonfinite]
        self._finish(ks, "diverged", [
            f"eval loss {self.last[k]:.4g} > diverge_factor {self.factor[k]:g} x initial "
            f"{self.initial[k]:.4g} after round {t}" for k in ks.tolist()])

    # ------------------------------------------------------------------ reading
    def curve_row(self, k: int) -> dict[str, Any]:
        """Trial k's last curve row as a dict (what ``on_step`` gets after its round)."""
        idx, row = next(x for x in reversed(self._rounds) if _has(x[0], k))
        j = int(np.searchsorted(idx, k))
        return {key: _item(v, j) for key, v in row.items()}

    def curve_columns(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Every curve row of every trial, ordered by trial then round: (trial index (N,),
        column -> (N,) values, (N, ...) for a problem's per-row vectors)."""
        if not self._rounds:
            return np.zeros(0, dtype=np.int64), {}
        trial = np.concatenate([idx for idx, _ in self._rounds])
        order = np.argsort(trial, kind="stable")       # rounds are in order already
        cols = {key: np.concatenate([np.full(len(idx), row[key]) if key in _SCALARS
                                     else np.asarray(row[key]) for idx, row in self._rounds])[order]
                for key in self._rounds[0][1]}
        return trial[order], cols

    def summary(self) -> dict[str, np.ndarray | list]:
        """TrainResult's scalar fields for all K trials, as (K,) arrays or lists."""
        self._finish(self.active, "completed", [None] * len(self.active))
        evals = np.full((self.K, max(1, int(self.rows.max(initial=0)))), np.nan)
        if self._rounds:
            pos = np.zeros(self.K, dtype=np.int64)
            for idx, row in self._rounds:
                evals[idx, pos[idx]] = row["eval_loss"]
                pos[idx] += 1
        first = evals[:, 0]
        best = np.where(self.rows > 0, self.best, self.initial)
        return {"status": list(self.status), "initial_loss": self.initial,
                "final_loss": self.last, "best_loss": best,
                "peak_loss": np.where(self.rows > 1, self.peak,
                                      np.where(self.rows == 1, first, self.initial)),
                "outer_steps_done": self.rows.copy(), "tokens": self.tokens.copy(),
                "wall_s": self.wall_s.copy(), "n_params": np.full(self.K, self.n_params),
                "inner_steps_done": self.inner_steps.copy(),
                "reason": list(self.reason), "rise": curve_rises(evals),
                "end_rise": end_rises(self.last, best)}

    def summaries(self) -> list[dict[str, Any]]:
        """``summary`` trial by trial: what ``TrainResult.summary()`` of each trial gives."""
        s = self.summary()
        return [{f: _item(v, k) for f, v in s.items()} for k in range(self.K)]

    def results(self) -> list[TrainResult]:
        """One TrainResult per trial, curves as lists of dicts (for tens of trials, not
        thousands: ``summary`` and ``curve_columns`` are the columnar form)."""
        trial, cols = self.curve_columns()
        out = []
        for k, s in enumerate(self.summaries()):
            rows = np.flatnonzero(trial == k)
            curve = [{key: _item(v, j) for key, v in cols.items()} for j in rows]
            s.pop("rise"), s.pop("end_rise")                # TrainResult derives them
            out.append(TrainResult(**s, curve=curve))
        return out


_SCALARS = ("outer_step", "wall_s")
"""Curve columns one value of which holds for every trial of a round."""


def _has(idx: np.ndarray, k: int) -> bool:
    j = np.searchsorted(idx, k)
    return j < len(idx) and idx[j] == k


def _item(v: Any, j: int) -> Any:
    """Element j of a column as a Python value (a list for a per-row vector)."""
    if isinstance(v, list):
        return v[j]
    if np.ndim(v) == 0:
        return v.item() if hasattr(v, "item") else v
    x = v[j]
    return x.tolist() if np.ndim(x) else x.item()
