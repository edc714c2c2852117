"""adam: Adam on the pseudo-gradient, bias-corrected, β as its β1 (torch.optim.Adam's update).

    t ← t + 1
    m ← β·m + (1 − β)·Δ;   v ← β₂·v + (1 − β₂)·Δ²          (β₂ = outer_beta2, ε = outer_eps)
    θ ← θ − α·(m / (1 − β^t)) / (√(v / (1 − β₂^t)) + ε)    # ε outside the root, as torch
    a restart zeroes m, v and t

No theory matrix: the step divides by √v, so it is not linear on (e, m); a linear model would
have to freeze v, and the theory would then describe another optimizer.
"""

from __future__ import annotations

from .rule import OuterRule


def init(zeros):
    m = zeros()
    step = [z.new_zeros((z.shape[0],) + (1,) * (z.dim() - 1)) for z in m]   # t, per trial
    return {"m": m, "v": zeros(), "step": step}


def update(delta, state, hp):
    u = []
    for d, m, v, t, b1, b2, eps in zip(delta, state["m"], state["v"], state["step"], hp["beta"],
                                       hp["outer_beta2"], hp["outer_eps"]):
        t.add_(1)                                                   # t ← t + 1
        m.lerp_(d, 1 - b1)                                          # m ← β·m + (1 − β)·Δ
        v.mul_(b2).addcmul_(d, d * (1 - b2))                        # v ← β₂·v + (1 − β₂)·Δ²
        m_hat = m / (1 - b1.pow(t))
        u.append(m_hat / ((v / (1 - b2.pow(t))).sqrt() + eps))      # m̂ / (√v̂ + ε)
    return u


RULE = OuterRule(
    name="adam", init=init, update=update, restart=("m", "v", "step"), matrix=None,
    summary="θ ← θ − α·m̂ / (√v̂ + ε), Adam on Δ with β₁ = β (outer_beta2, outer_eps)",
    settings=("beta", "outer_beta2", "outer_eps"),
)
