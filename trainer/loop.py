"""The DiLoCo trial loop of docs/design.md, over any `Problem` (the LM, or the toy regression).

    θ ← init(seed);  m ← 0;  each worker keeps its own inner-optimizer state across rounds
    for t = 0 .. T-1:
        if R > 0 and t % R == 0:  m ← 0
        for each worker i:  θ_i ← θ;  H inner steps on worker i's data
        Δ ← θ − mean_i(θ_i);  outer step (trainer.outer)
        eval θ; stop at once if diverged
        (optional, cfg.diverge_check_every = k: every k inner steps, stop when the train loss
         already shows the blow-up)
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol

import torch

from .config import TrainConfig
from .outer import OuterOptimizer, average
from .result import TrainResult

__all__ = ["Problem", "Worker", "WorkerGroup", "SequentialGroup", "run_diloco", "inner_lr",
           "train_divergence"]


class Worker(Protocol):
    params: list[torch.Tensor]
    """This worker's copy θ_i of the parameters (same order as Problem.params)."""

    def inner_step(self, lr: float) -> float:
        """One inner step on this worker's next batch at learning rate lr; returns its loss."""


class WorkerGroup(Protocol):
    """The M workers of a trial, stepped together (one after another, or as one batch)."""

    def load(self, theta: list[torch.Tensor]) -> None:
        """θ_i ← θ for every worker."""

    def inner_step(self, lr: float) -> list[float]:
        """One inner step on every worker; returns the M losses."""

    def mean_params(self) -> list[torch.Tensor]:
        """mean_i θ_i, one tensor per parameter."""


class SequentialGroup:
    """The reference group: a list of independent workers, each stepped in turn."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers

    @torch.no_grad()
    def load(self, theta: list[torch.Tensor]) -> None:
        for w in self.workers:
            torch._foreach_copy_(w.params, theta)

    def inner_step(self, lr: float) -> list[float]:
        return [w.inner_step(lr) for w in self.workers]

    @torch.no_grad()
    def mean_params(self) -> list[torch.Tensor]:
        return average([w.params for w in self.workers])


class Problem(Protocol):
    params: list[torch.Tensor]
    """The global parameters θ, updated in place by the outer step."""
    n_params: int
    tokens_per_step: int
    """Tokens (or samples) one worker consumes per inner step."""
    scheduled: bool
    """True: the inner LR follows warmup+cosine; False: constant cfg.lr (the toy theory)."""

    def make_worker(self, i: int) -> Worker: ...

    # optional: def make_group(self) -> WorkerGroup  (a batched group; else SequentialGroup)

    def evaluate(self) -> float:
        """Held-out loss of the global parameters."""

    def extra_row(self) -> dict[str, Any]:
        """Problem-specific curve columns (the toy's per-mode error); {} for none."""


def inner_lr(cfg: TrainConfig, k: int) -> float:
    """Inner LR at global inner step k of T·H: linear warmup, then cosine to lr·min_lr_ratio."""
    total = cfg.outer_steps * cfg.H
    if k < cfg.warmup_steps:
        return cfg.lr * (k + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps - 1)
    progress = min(1.0, (k - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def train_divergence(cfg: TrainConfig, losses: list[float], h: int, per_step: int,
                     initial: float, t: int) -> tuple[float, str] | None:
    """The cfg.diverge_check_every rule after inner step h of round t, else None.

    `losses` holds this round's inner losses, `per_step` of them per step. Every k steps, the
    mean over the last k steps is compared with diverge_factor x initial: a blow-up inside a
    round stops the trial before the round's eval, at no extra cost (the losses exist already).
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


def run_diloco(problem: Problem, cfg: TrainConfig,
               on_step: Callable[[dict[str, Any]], None] | None = None,
               t_start: float | None = None) -> TrainResult:
    """Run one trial; divergence ends it with status 'diverged' (a result, never raised)."""
    t_start = time.perf_counter() if t_start is None else t_start
    theta = problem.params
    outer = OuterOptimizer(theta, cfg.alpha, cfg.beta, cfg.outer, cfg.R)
    make_group = getattr(problem, "make_group", None)
    group = make_group() if make_group else SequentialGroup(
        [problem.make_worker(i) for i in range(cfg.workers)])
    initial = problem.evaluate()
    best, peak, last = math.inf, -math.inf, initial
    curve: list[dict[str, Any]] = []
    status, reason, tokens = "completed", None, 0
    if not math.isfinite(initial):
        status, reason = "diverged", f"initial eval loss is {initial}"

    for t in range(cfg.outer_steps if status == "completed" else 0):
        outer.maybe_restart(t)
        group.load(theta)                                        # θ_i ← θ
        losses: list[float] = []
        early = None
        for h in range(cfg.H):
            k = t * cfg.H + h
            step_losses = group.inner_step(inner_lr(cfg, k) if problem.scheduled else cfg.lr)
            losses.extend(step_losses)
            tokens += problem.tokens_per_step * len(step_losses)
            if not all(map(math.isfinite, step_losses)):
                break
            early = train_divergence(cfg, losses, h, len(step_losses), initial, t)
            if early is not None:
                break
        train_loss = sum(losses) / len(losses)
        if not math.isfinite(train_loss):
            status, reason, last = "diverged", f"inner train loss turned {train_loss} in round {t}", train_loss
            break
        if early is not None:
            status, (last, reason) = "diverged", early
            break

        stats = outer.step(torch._foreach_sub(theta, group.mean_params()))  # Δ = θ − mean θ_i
        last = problem.evaluate()
        best = min(best, last)
        if t > 0:
            peak = max(peak, last)
        row = {"outer_step": t, "tokens": tokens, "eval_loss": last, "train_loss": train_loss,
               **stats, "wall_s": time.perf_counter() - t_start, **problem.extra_row()}
        curve.append(row)
        if on_step is not None:
            on_step(row)
        if not math.isfinite(last):
            status, reason = "diverged", f"eval loss turned {last} after round {t}"
        elif last > cfg.diverge_factor * initial:
            status, reason = "diverged", (f"eval loss {last:.4g} > diverge_factor {cfg.diverge_factor:g}"
                                          f" x initial {initial:.4g} after round {t}")
        if status == "diverged":
            break

    return TrainResult(
        status=status, initial_loss=initial, final_loss=last,
        best_loss=best if curve else initial,
        peak_loss=peak if len(curve) > 1 else (curve[0]["eval_loss"] if curve else initial),
        outer_steps_done=len(curve),  # rounds whose outer step ran
        tokens=tokens, wall_s=time.perf_counter() - t_start, n_params=problem.n_params,
        reason=reason, curve=curve)
