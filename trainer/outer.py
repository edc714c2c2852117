"""The DiLoCo outer step with momentum restarting, exactly as docs/design.md writes it.

    if R > 0 and t % R == 0:  m ← 0
    Δ ← θ − mean_i(θ_i)                 # pseudo-gradient: old minus new
    m ← β·m + Δ
    nesterov:    θ ← θ − α·(Δ + β·m)    # torch.optim.SGD(nesterov=True) convention
    heavy_ball:  θ ← θ − α·m

It works on any list of tensors, so the LM trial and the toy trial share it.
"""

from __future__ import annotations

import math

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


class OuterOptimizer:
    """Outer SGD with momentum (a rule of trainer.outer_rules) and a restart every R steps."""

    def __init__(self, params: list[torch.Tensor], alpha: float, beta: float,
                 kind: str = "nesterov", restart_every: int = 0):
        self.rule = outer_rule(kind)
        self.params = params
        self.alpha, self.beta, self.R = alpha, beta, restart_every
        # m follows θ's dtype (float64 for the toy theory), but never below float32
        self.m = [torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
                  for p in params]

    @torch.no_grad()
    def maybe_restart(self, t: int) -> bool:
        """Zero m at the start of outer step t when t % R == 0; only m is touched."""
        if self.R > 0 and t % self.R == 0:
            torch._foreach_zero_(self.m)
            return True
        return False

    @torch.no_grad()
    def step(self, delta: list[torch.Tensor]) -> dict[str, float]:
        """Apply one outer update along Δ; return ||Δ||, ||m|| after, cos(m, Δ) before."""
        delta = [d.to(m.dtype) for d, m in zip(delta, self.m)]
        d_norm = _norm(delta)
        m_norm_before = _norm(self.m)
        dot = sum(float(torch.sum(m * d)) for m, d in zip(self.m, delta))
        cos = dot / (m_norm_before * d_norm) if m_norm_before > 0 and d_norm > 0 else math.nan

        torch._foreach_mul_(self.m, self.beta)
        torch._foreach_add_(self.m, delta)                       # m ← β·m + Δ
        update = self.rule.direction(delta, self.m, self.beta)    # u, per the rule
        for p, u in zip(self.params, update):
            p.sub_(u.to(p.dtype), alpha=self.alpha)              # θ ← θ − α·update
        return {"pseudo_grad_norm": d_norm, "momentum_norm": _norm(self.m), "momentum_cos": cos}


def _norm(tensors: list[torch.Tensor]) -> float:
    if not tensors:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))))
