"""The DiLoCo trial loop of docs/design.md, over any `Problem` (the LM, or the toy regression).

    θ ← init(seed);  outer state ← 0;  each worker keeps its own inner-optimizer state
    for t = 0 .. T-1:
        if R > 0 and t % R == 0:  m ← 0   (what the outer rule's restart resets)
        for each worker i:  θ_i ← θ;  H inner steps on worker i's data
        Δ ← θ − mean_i(θ_i);  outer step (trainer.outer)
        eval θ; stop at once if diverged
        (optional, cfg.diverge_check_every = k: every k inner steps, stop when the train loss
         already shows the blow-up)
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch

from .outer import OuterOptimizer, average, pseudo_gradient
from .result import TrainResult
from .tracker import TrialTracker

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["Problem", "Worker", "WorkerGroup", "SequentialGroup", "run_diloco", "inner_lr"]


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


def run_diloco(problem: Problem, cfg: TrainConfig,
               on_step: Callable[[dict[str, Any]], None] | None = None,
               t_start: float | None = None) -> TrainResult:
    """Run one trial; divergence ends it with status 'diverged' (a result, never raised)."""
    t_start = time.perf_counter() if t_start is None else t_start
    theta = problem.params
    outer = OuterOptimizer.for_trial(theta, cfg)
    make_group = getattr(problem, "make_group", None)
    group = make_group() if make_group else SequentialGroup(
        [problem.make_worker(i) for i in range(cfg.workers)])
    track = TrialTracker([cfg], np.array([problem.evaluate()]), problem.n_params,
                         problem.tokens_per_step, t_start)
    one = np.zeros(1, dtype=np.int64)                            # the trial's index in track
    for t in range(cfg.outer_steps):
        if track.done[0]:
            break
        outer.maybe_restart(t)
        group.load(theta)                                        # θ_i ← θ
        track.start_round()
        for h in range(cfg.H):
            lr = inner_lr(cfg, t * cfg.H + h) if problem.scheduled else cfg.lr
            if track.inner(t, h, one, np.array([group.inner_step(lr)]))[0]:
                break
        if track.done[0]:
            break
        stats = outer.step(pseudo_gradient(theta, group.mean_params()))
        extra = {k: np.array([v]) for k, v in problem.extra_row().items()}
        track.end_round(t, one, {k: np.array([v]) for k, v in stats.items()},
                        np.array([problem.evaluate()]), extra)
        if on_step is not None:
            on_step(track.curve_row(0))
    return track.results()[0]
