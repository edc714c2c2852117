"""The DiLoCo outer step with momentum restarting, exactly as docs/design.md writes it.

    if R > 0 and t % R == 0:  m ← 0
    Δ ← θ − mean_i(θ_i)                 # pseudo-gradient: old minus new
    m ← β·m + Δ
    nesterov:    θ ← θ − α·(Δ + β·m)    # torch.optim.SGD(nesterov=True) convention
    heavy_ball:  θ ← θ − α·m

It works on any list of tensors, so the LM trial and the toy trial share it, and on stacks of
K trials at once (``OuterOptimizer.stacked``: each parameter (K, *shape), α, β and R one per
trial), which is how packed trials take their outer steps. A single trial is the stack K = 1;
the per-trial α and β enter through ``addcmul`` with a broadcast tensor, which rounds exactly
as ``add(alpha=β)`` with the Python float does, so a trial's θ does not depend on its pack.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .outer_rules import outer_rule

__all__ = ["OuterOptimizer", "pseudo_gradient", "average"]


@torch.no_grad()
def average(workers: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """mean_i θ_i, one tensor per parameter."""
    mean = [w.clone() for w in workers[0]]
    for other in workers[1:]:
        torch._foreach_add_(mean, other)
    if len(workers) > 1:
        torch._foreach_div_(mean, float(len(workers)))
    return mean


@torch.no_grad()
def pseudo_gradient(theta: list[torch.Tensor], mean: list[torch.Tensor]) -> list[torch.Tensor]:
    """Δ = θ − mean_i θ_i (``mean``): old minus new, so a positive α moves θ towards the
    workers. Works on stacks too: (K, *shape) θ and means give K trials' Δ at once."""
    return torch._foreach_sub(theta, mean)


def _per_trial(v: float | Sequence[float], k: int) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    return np.repeat(a, k) if a.size == 1 else a


class OuterOptimizer:
    """Outer SGD with momentum (a rule of trainer.outer_rules) and a restart every R steps.

    ``OuterOptimizer(θ, α, β, kind, R)`` is one trial over its parameter list; ``stacked`` is
    K trials whose parameters are (K, *shape) stacks (views are updated in place)."""

    def __init__(self, params: list[torch.Tensor], alpha: float, beta: float,
                 kind: str = "nesterov", restart_every: int = 0):
        self.single = True
        self._setup([p.unsqueeze(0) for p in params], alpha, beta, kind, restart_every)

    @classmethod
    def stacked(cls, params: list[torch.Tensor], alpha: Sequence[float], beta: Sequence[float],
                kind: str = "nesterov", restart_every: Sequence[int] | int = 0) -> "OuterOptimizer":
        """K trials at once: params[j] is (K, *shape); α, β and R one per trial (or shared)."""
        self = cls.__new__(cls)
        self.single = False
        self._setup(params, alpha, beta, kind, restart_every)
        return self

    def _setup(self, params, alpha, beta, kind, restart_every) -> None:
        self.rule = outer_rule(kind)
        self.params = params
        k = params[0].shape[0]
        self.alpha, self.beta = _per_trial(alpha, k), _per_trial(beta, k)
        self.R = _per_trial(restart_every, k).astype(np.int64)
        # m follows θ's dtype (float64 for the toy theory), but never below float32
        self.m = [torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
                  for p in params]
        self._coef()

    def _coef(self) -> None:
        """α and β as tensors that broadcast over each parameter: (K, 1, ..., 1)."""
        def shaped(v: np.ndarray, p: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(v, dtype=p.dtype, device=p.device).view(-1, *[1] * (p.dim() - 1))
        self._alpha = [shaped(-self.alpha, p) for p in self.params]
        self._beta = [shaped(self.beta, m) for m in self.m]

    def keep(self, index: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Go on with the trials at ``index`` only; ``params`` are their (K', *shape) stacks."""
        rows = index.cpu().numpy()
        self.params = params
        self.alpha, self.beta, self.R = self.alpha[rows], self.beta[rows], self.R[rows]
        self.m = [m.index_select(0, index) for m in self.m]
        self._coef()

    @torch.no_grad()
    def maybe_restart(self, t: int) -> bool | np.ndarray:
        """Zero m at the start of outer step t where t % R == 0 (R > 0); only m is touched.
        Returns whether it did (one trial), or the (K,) mask of the trials it did it for."""
        mask = (self.R > 0) & (t % np.maximum(self.R, 1) == 0)
        if mask.all():
            torch._foreach_zero_(self.m)
        elif mask.any():
            rows = torch.as_tensor(np.flatnonzero(mask), device=self.m[0].device)
            for m in self.m:
                m.index_fill_(0, rows, 0)
        return bool(mask[0]) if self.single else mask

    @torch.no_grad()
    def step(self, delta: list[torch.Tensor]) -> dict[str, float | np.ndarray]:
        """Apply one outer update along Δ; return ||Δ||, ||m|| after, cos(m, Δ) before, per
        trial (floats for one trial, (K,) arrays for a stack), read back in one host sync."""
        if self.single:
            delta = [d.unsqueeze(0) for d in delta]
        delta = [d.to(m.dtype) for d, m in zip(delta, self.m)]
        d_sq, m_sq, dot = _sq(delta), _sq(self.m), _dot(self.m, delta)

        for m, b in zip(self.m, self._beta):
            m.mul_(b)                                              # m ← β·m
        torch._foreach_add_(self.m, delta)                         #   + Δ
        update = self.rule.direction(delta, self.m, self._beta)    # u, per the rule
        for p, u, a in zip(self.params, update, self._alpha):
            p.addcmul_(u.to(p.dtype), a)                           # θ ← θ − α·update
        d_sq, m_before, dot, m_after = torch.stack([d_sq, m_sq, dot, _sq(self.m)]) \
            .double().cpu().numpy()
        d_norm, m_norm, m_before = np.sqrt(d_sq), np.sqrt(m_after), np.sqrt(m_before)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where((m_before > 0) & (d_norm > 0), dot / (m_before * d_norm), np.nan)
        out = {"pseudo_grad_norm": d_norm, "momentum_norm": m_norm, "momentum_cos": cos}
        return {k: float(v[0]) for k, v in out.items()} if self.single else out


def _sq(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(K,) sums of squares over every parameter of each trial."""
    return sum(torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1).double() ** 2
               for t in tensors)


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """(K,) inner products <a, b> over every parameter of each trial."""
    return sum((x * y).reshape(x.shape[0], -1).sum(1).double() for x, y in zip(a, b))
