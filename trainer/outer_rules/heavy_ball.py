"""heavy_ball: m ← β·m + Δ;  θ ← θ − α·m."""

from __future__ import annotations

from .rule import OuterRule, linear_map


def init(zeros):
    return {"m": zeros()}


def update(delta, state, hp):
    m = state["m"]
    for mi, d, b in zip(m, delta, hp["beta"]):
        mi.mul_(b).add_(d)                                           # m ← β·m + Δ
    return m                                                         # u = m


RULE = OuterRule(
    name="heavy_ball", init=init, update=update, restart=("m",),
    # on a mode Δ = μe, u = m' = βm + μe: e' = (1 − αμ)e − αβm
    matrix=lambda mu, alpha, beta: linear_map(mu, 1 - alpha * mu, -alpha * beta, beta),
    summary="θ ← θ − α·m",
    effective_lr=lambda alpha, beta: alpha / (1 - beta),             # m settles at Δ/(1 − β)
)
