"""K toy trials of one shape as one batched tensor computation (a stack for trainer.packed).

The K trials share the spectrum (toy_dim, toy_power), the noise, the batch, η, H, M and T; they
differ in α, β, R and the seed. Global θ is one (K, d) float64 stack; each trial's workers
take the steps ``trainer.toy.ToyWorker`` takes, elementwise over the stack, so a trial's θ
follows the same arithmetic as when it runs alone (tests/test_packed.py compares them):

- full batch (toy_batch = 0): every worker of a trial computes the same deterministic step, so
  one (K, d) copy stands for all M, and the mean over workers is taken over M references to it
  (summed one by one and divided, as ``trainer.outer.average`` does: the same rounding);
- SGD (toy_batch > 0): one (K·M, d) row per worker, each drawing from its own (seed, worker)
  stream, one slot after another (a generator per stream cannot be batched), the rest batched.

Losses are per-row reductions over d (``sum(1)``), where the single trial uses ``torch.dot``:
the eval and train losses may differ from a trial run alone in the last bits, θ does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .toy import ToyProblem, _stream

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["ToyStack"]


class ToyStack:
    """Global θ of K toy trials, their workers, and their evals; slots are dropped as trials
    finish (``keep``)."""

    name = "toy"
    scheduled = False

    CHUNK_BYTES = 8 * 2**20
    """θ of at most this many bytes per stack: a (K, d) float64 stack much larger than the
    cache (and than glibc's 32 MB mmap threshold, above which every temporary is fresh
    page-faulted memory) ran 3.6 ms a trial at K = 4096 against 1.0 ms at K = 512 (d = 2000)."""

    @classmethod
    def trials_per_stack(cls, cfg: TrainConfig) -> int:
        """How many trials of this shape one stack takes; a larger pack runs as several."""
        rows = cfg.workers if cfg.toy_batch > 0 else 1
        return max(1, cls.CHUNK_BYTES // (8 * cfg.toy_dim * rows))

    def __init__(self, configs: list[TrainConfig]):
        cfg = configs[0]
        first = ToyProblem(cfg)                       # spectrum, tracked modes, trial 0's w*
        self.lam, self.sqrt_lam = first.lam, first.sqrt_lam          # (d,)
        self.noise, self.noise_floor, self.batch = first.noise, first.noise_floor, first.batch
        self.n_params, self.tokens_per_step = first.n_params, first.tokens_per_step
        self.M = cfg.workers
        self.mode_idx = torch.tensor(first.mode_idx)
        thetas = [first.theta] + [ToyProblem.start(c.seed, first.dim) for c in configs[1:]]
        self.theta = [torch.stack(thetas)]                           # (K, d): e = w − w*
        self.gens = ([_stream(c.seed, i) for c in configs for i in range(self.M)]
                     if self.batch > 0 else None)
        self.w = self.theta[0].clone()

    @property
    def rows_per_trial(self) -> int:
        return self.M if self.gens is not None else 1

    @torch.no_grad()
    def load(self, theta: list[torch.Tensor]) -> None:
        """θ_i ← θ_k for every worker i of every trial k."""
        self.w = theta[0].repeat_interleave(self.rows_per_trial, dim=0)

    @torch.no_grad()
    def step(self, lr: float) -> np.ndarray:
        """One GD (or SGD) step of every worker; (K'·M,) losses before it, trial-major."""
        w = self.w
        if self.gens is None:
            grad = self.lam * w                                       # ∇L, (K', d)
            loss = 0.5 * (grad * w).sum(1) + self.noise_floor         # (K',)
            w.sub_(grad, alpha=lr)
            losses = loss.numpy().repeat(self.M)
        else:
            losses = np.empty(w.shape[0])
            for s, gen in enumerate(self.gens):                       # as ToyWorker.inner_step
                x = torch.randn(self.batch, w.shape[1], generator=gen).double() * self.sqrt_lam
                resid = x @ w[s]                                      # (B,)
                if self.noise > 0:
                    resid -= self.noise * torch.randn(self.batch, generator=gen).double()
                losses[s] = 0.5 * float(torch.dot(resid, resid)) / self.batch
                w[s].sub_(x.T @ resid / self.batch, alpha=lr)
        return np.where(np.isfinite(losses), losses, np.inf)

    @torch.no_grad()
    def group_mean(self, groups: int) -> list[torch.Tensor]:
        """mean_i θ_i per trial, (K', d), summed worker by worker and then divided."""
        v = self.w.view(groups, self.rows_per_trial, -1)
        acc = v[:, 0].clone()
        for i in range(1, self.M):
            acc.add_(v[:, i if self.gens is not None else 0])
        if self.M > 1:
            acc.div_(float(self.M))
        return [acc]

    @torch.no_grad()
    def evaluate(self, theta: list[torch.Tensor]) -> np.ndarray:
        """(K',) population losses ½ Σ λ_k θ_k² + ½ σ²."""
        t = theta[0]
        value = (0.5 * ((self.lam * t) * t).sum(1) + self.noise_floor).numpy()
        return np.where(np.isfinite(value), value, np.inf)

    def keep(self, slots: list[int]) -> None:
        """Keep the worker slots ``slots`` (trial-major, M per trial) of the trials going on."""
        per = self.rows_per_trial
        rows = [s for s in slots if s % self.M < per]                # full batch: one row a trial
        self.w = self.w[torch.tensor([r // self.M * per + r % self.M for r in rows])]
        if self.gens is not None:
            self.gens = [self.gens[s] for s in slots]

    def extra(self, theta: list[torch.Tensor]) -> dict[str, Any]:
        """The toy's curve columns per trial: mode_idx and the signed errors θ_k, (K', 8)."""
        t = theta[0]
        return {"mode_idx": np.broadcast_to(self.mode_idx.numpy(), (t.shape[0], len(self.mode_idx))),
                "mode_err": t[:, self.mode_idx].numpy().copy()}
