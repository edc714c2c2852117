"""One trial's bookkeeping, shared by the single-trial loop and packed trials.

The loop of docs/design.md decides three things per trial that must not depend on how the
trial was run (alone, or as one of K stacked trials): when it has diverged and why, what each
curve row holds, and what its result is. ``TrialTracker`` is that, once; ``trainer.loop``
drives one, ``trainer.packed`` drives K of them over one stacked computation.

Divergence, in the order it is checked:

- the initial eval loss is not finite;
- an inner loss of the round is not finite (the round stops at that step);
- with ``diverge_check_every = k``: every k inner steps, the mean train loss of the last k
  steps exceeds ``diverge_factor × initial`` (the losses exist already: no extra cost);
- after the outer step, the eval loss is not finite or exceeds ``diverge_factor × initial``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .config import TrainConfig
from .result import TrainResult

__all__ = ["TrialTracker", "train_divergence"]


def train_divergence(cfg: TrainConfig, losses: list[float], h: int, per_step: int,
                     initial: float, t: int) -> tuple[float, str] | None:
    """The cfg.diverge_check_every rule after inner step h of round t, else None.

    `losses` holds this round's inner losses, `per_step` of them per step. Every k steps, the
    mean over the last k steps is compared with diverge_factor x initial.
    """
    k = cfg.diverge_check_every
    if not k or (h + 1) % k:
        return None
    window = losses[-k * per_step:]
    value = sum(window) / len(window)
    if value > cfg.diverge_factor * initial:
        return value, (f"inner train loss {value:.4g} over the last {k} steps > diverge_factor "
                       f"{cfg.diverge_factor:g} x initial {initial:.4g} in round {t}")
    return None


class TrialTracker:
    """Curve rows, divergence and the result of one trial, fed round by round."""

    def __init__(self, cfg: TrainConfig, initial: float, n_params: int, tokens_per_step: int,
                 t0: float) -> None:
        self.cfg, self.initial, self.n_params, self.t0 = cfg, initial, n_params, t0
        self.tokens_per_step = tokens_per_step
        self.status, self.reason, self.done = "completed", None, False
        self.last, self.best, self.peak = initial, math.inf, -math.inf
        self.tokens, self.wall_s = 0, 0.0
        self.losses: list[float] = []
        self.curve: list[dict[str, Any]] = []
        if not math.isfinite(initial):
            self.finish("diverged", f"initial eval loss is {initial}")

    def finish(self, status: str, reason: str | None = None, last: float | None = None) -> None:
        self.status, self.reason, self.done = status, reason, True
        if last is not None:
            self.last = last
        self.wall_s = time.perf_counter() - self.t0

    def start_round(self) -> None:
        self.losses = []

    def inner(self, t: int, h: int, step_losses: list[float]) -> bool:
        """Record inner step h of round t (one loss per worker); True when the trial is over."""
        self.losses.extend(step_losses)
        self.tokens += self.tokens_per_step * len(step_losses)
        if not all(map(math.isfinite, step_losses)):
            loss = sum(self.losses) / len(self.losses)
            self.finish("diverged", f"inner train loss turned {loss} in round {t}", loss)
        elif (early := train_divergence(self.cfg, self.losses, h, len(step_losses),
                                        self.initial, t)) is not None:
            self.finish("diverged", early[1], early[0])
        return self.done

    def end_round(self, t: int, stats: dict[str, float], eval_loss: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record round t's outer step (its stats) and eval; returns the curve row."""
        self.last, self.best = eval_loss, min(self.best, eval_loss)
        if t > 0:
            self.peak = max(self.peak, eval_loss)
        row = {"outer_step": t, "tokens": self.tokens, "eval_loss": eval_loss,
               "train_loss": sum(self.losses) / len(self.losses), **stats,
               "wall_s": time.perf_counter() - self.t0, **(extra or {})}
        self.curve.append(row)
        f = self.cfg.diverge_factor
        if not math.isfinite(eval_loss):
            self.finish("diverged", f"eval loss turned {eval_loss} after round {t}")
        elif eval_loss > f * self.initial:
            self.finish("diverged", f"eval loss {eval_loss:.4g} > diverge_factor {f:g} x initial "
                                    f"{self.initial:.4g} after round {t}")
        return row

    def result(self) -> TrainResult:
        if not self.done:
            self.finish("completed")
        c = self.curve
        return TrainResult(
            status=self.status, initial_loss=self.initial, final_loss=self.last,
            best_loss=self.best if c else self.initial,
            peak_loss=self.peak if len(c) > 1 else (c[0]["eval_loss"] if c else self.initial),
            outer_steps_done=len(c),  # rounds whose outer step ran
            tokens=self.tokens, wall_s=self.wall_s, n_params=self.n_params,
            reason=self.reason, curve=c)
