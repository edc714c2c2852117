"""The toy trial (kind: toy): high-dimensional linear regression, the theory's model, as a Problem.

Data: x ~ N(0, diag λ) with λ_k = k^−toy_power (largest 1), y = x·w* + toy_noise·ξ, w* ~ N(0, I)
drawn from the seed, training starts at w = 0. We work in the eigenbasis and in coordinates
centred at the target, θ = w − w*, so θ_k *is* mode k's error e_k: no cancellation against w*
when an error has decayed by many orders, and the per-mode curve is exact. The loop, the
pseudo-gradient and the outer optimizers are the LM trial's (everything there is
translation-equivariant, so the shift changes nothing but rounding).

Inner optimizer: plain GD at constant step η = cfg.lr (``scheduled = False``).
- toy_batch == 0: full-batch GD on the population loss L(θ) = ½ Σ λ_k θ_k² + ½ σ², so one step is
  θ ← θ − η λ ⊙ θ, deterministic; every worker computes the same thing.
- toy_batch = B > 0: SGD on B fresh samples per step, ∇ = Xᵀ(Xθ − σξ)/B, each worker its own
  RNG stream seeded by (seed, worker), kept across rounds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig


__all__ = ["ToyProblem", "ToyWorker", "tracked_modes", "N_TRACKED"]

N_TRACKED = 8
"""Modes whose error goes into each curve row (log-spaced over the spectrum)."""


def tracked_modes(dim: int, n: int = N_TRACKED) -> list[int]:
    """About n log-spaced 0-based mode indices from 0 (λ = 1) to dim − 1 (the smallest λ)."""
    return sorted({int(round(v)) - 1 for v in np.geomspace(1, dim, n)})


def _stream(seed: int, worker: int) -> torch.Generator:
    """An independent torch RNG for (seed, worker); -1 is the problem's own stream."""
    state = np.random.SeedSequence([seed, worker + 1]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class ToyWorker:
    """One worker: its copy θ_i of the error vector and, for SGD, its own sample stream."""

    def __init__(self, problem: "ToyProblem", i: int):
        self.problem = problem
        self.params = [torch.zeros_like(problem.theta)]
        self.gen = _stream(problem.cfg.seed, i) if problem.batch > 0 else None

    @torch.no_grad()
    def inner_step(self, lr: float) -> float:
        """One GD (or SGD) step; returns the population (or minibatch) loss before it."""
        p = self.problem
        theta = self.params[0]
        if self.gen is None:
            grad = p.lam * theta                                           # ∇L, (d,)
            loss = 0.5 * float(torch.dot(grad, theta)) + p.noise_floor
        else:
            # float32 draws, widened: torch's float64 normal sampler is ~5x slower
            x = torch.randn(p.batch, p.dim, generator=self.gen).double() * p.sqrt_lam  # (B, d)
            resid = x @ theta                                              # (B,): x·w − x·w*
            if p.noise > 0:
                resid -= p.noise * torch.randn(p.batch, generator=self.gen).double()
            grad = x.T @ resid / p.batch                                   # (d,)
            loss = 0.5 * float(torch.dot(resid, resid)) / p.batch
        theta.sub_(grad, alpha=lr)
        return loss if math.isfinite(loss) else math.inf


class ToyProblem:
    """The global error vector θ = w − w* (float64), its spectrum, and the tracked modes."""

    scheduled = False

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.dim = cfg.toy_dim
        self.batch = cfg.toy_batch
        self.noise = float(cfg.toy_noise)
        self.noise_floor = 0.5 * self.noise ** 2                # the population loss at w = w*
        k = torch.arange(1, self.dim + 1, dtype=torch.float64)
        self.lam = k ** -float(cfg.toy_power)                   # (d,), λ_1 = 1 is the largest
        self.sqrt_lam = self.lam.sqrt()
        self.theta = self.start(cfg.seed, self.dim)
        self.params = [self.theta]
        self.n_params = self.dim
        # samples per inner step; full batch is one exact population gradient, counted as 1
        self.tokens_per_step = self.batch if self.batch > 0 else 1
        self.mode_idx = tracked_modes(self.dim)
        self._idx = torch.tensor(self.mode_idx)

    @staticmethod
    def start(seed: int, dim: int) -> torch.Tensor:
        """The initial error (d,) of a trial: training starts at w = 0, so e = −w*, w* drawn
        from the seed's own stream."""
        return -torch.randn(dim, generator=_stream(seed, -1), dtype=torch.float64)

    def make_worker(self, i: int) -> ToyWorker:
        return ToyWorker(self, i)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Population loss ½ Σ λ_k θ_k² + ½ σ² (the expected squared error on fresh data)."""
        value = 0.5 * float(torch.dot(self.lam * self.theta, self.theta)) + self.noise_floor
        return value if math.isfinite(value) else math.inf

    def extra_row(self) -> dict[str, Any]:
        """mode_idx (0-based, λ = (idx+1)^−toy_power) and mode_err: signed θ_k = w_k − w*_k."""
        return {"mode_idx": list(self.mode_idx), "mode_err": self.theta[self._idx].tolist()}
