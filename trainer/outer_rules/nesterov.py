"""nesterov (the default): m ← β·m + Δ;  θ ← θ − α·(Δ + β·m), torch.optim.SGD(nesterov=True)."""

from __future__ import annotations

from .rule import OuterRule, linear_map


def init(zeros):
    return {"m": zeros()}


def update(delta, state, hp):
    m, beta = state["m"], hp["beta"]
    for mi, d, b in zip(m, delta, beta):
        mi.mul_(b).add_(d)                                           # m ← β·m + Δ
    # addcmul with the (K, 1, ..., 1) β rounds as add(alpha=β) with the float does
    return [d.addcmul(mi, b) for d, mi, b in zip(delta, m, beta)]    # u = Δ + β·m


RULE = OuterRule(
    name="nesterov", init=init, update=update, restart=("m",),
    # on a mode Δ = μe, m' = βm + μe, u = Δ + βm': e' = (1 − αμ(1+β))e − αβ²m
    matrix=lambda mu, alpha, beta: linear_map(mu, 1 - alpha * mu * (1 + beta),
                                              -alpha * beta ** 2, beta),
    summary="θ ← θ − α·(Δ + β·m), torch.optim.SGD(nesterov=True)",
    # a constant Δ settles m at Δ/(1 − β), and u = Δ + β·m at Δ/(1 − β)
    effective_lr=lambda alpha, beta: alpha / (1 - beta),
)
