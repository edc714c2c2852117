"""nesterov_normalized: Nesterov on a normalized momentum, the convention of codebases that
average Δ into m rather than sum it (docs/design.md, "One trial"):

    m_new ← β·m + (1 − β)·Δ
    θ ← θ − α·((1 + β)·m_new − β·m)          # = θ − α·(β²·m + (1 − β²)·Δ)
    a restart zeroes m

Its m is (1 − β) times the m of ``nesterov`` (torch.optim.SGD(nesterov=True)) fed the same Δ,
and its step (1 − β) times that one's, so it at α is exactly ``nesterov`` at α·(1 − β): grids of
the two conventions differ in α by the factor 1/(1 − β) (``effective_lr``). On one mode Δ = μe:
m' = βm + (1 − β)μe, u = β²m + (1 − β²)μe, so

    A = [[1 − αμ(1 − β²), −αβ²], [(1 − β)μ, β]]

the similarity transform of nesterov's A at α·(1 − β) by diag(1, 1 − β): the same rates, and
the same c_R (a restart zeroes m in both).
"""

from __future__ import annotations

from .rule import OuterRule, linear_map


def init(zeros):
    return {"m": zeros()}


def update(delta, state, hp):
    u = []
    for d, m, b in zip(delta, state["m"], hp["beta"]):
        old = m.clone()
        m.lerp_(d, 1 - b)                                            # m ← β·m + (1 − β)·Δ
        u.append(m.mul(1 + b).sub_(old.mul_(b)))                     # (1 + β)·m_new − β·m
    return u


RULE = OuterRule(
    name="nesterov_normalized", init=init, update=update, restart=("m",),
    # on a mode Δ = μe: m' = βm + (1 − β)μe, u = β²m + (1 − β²)μe: e' = (1 − αμ(1−β²))e − αβ²m
    matrix=lambda mu, alpha, beta: linear_map(mu, 1 - alpha * mu * (1 - beta ** 2),
                                              -alpha * beta ** 2, beta, gain=1 - beta),
    summary="m ← β·m + (1 − β)·Δ; θ ← θ − α·((1 + β)·m − β·m_old), normalized momentum",
    effective_lr=lambda alpha, beta: alpha,
)
