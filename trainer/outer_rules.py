"""Outer update rules: a registry, each rule's update beside its linear theory model.

A rule turns the pseudo-gradient Δ and the momentum m (already updated, m ← β·m + Δ) into the
direction u of θ ← θ − α·u (docs/design.md, "One trial"). Its ``matrix`` is the same step on
one eigen-mode of a squared loss, as the 2×2 map A on (e, m) that ``analysis.theory`` takes
powers of; a rule without one (``matrix=None``) is trained as any other, and the theory and the
report draw no prediction for it.

This module holds numbers only: updates use tensor methods, so it imports neither torch nor
anything of the trainer, and ``analysis`` can read the matrices without loading torch. A new
rule is one ``register_outer_rule(OuterRule(...))`` here (plus a config field if it needs one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .registry import Registry

__all__ = ["OuterRule", "OUTER_RULES", "register_outer_rule", "outer_rule"]

Direction = Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], Sequence[Any]]
"""(Δ per parameter, m per parameter after m ← β·m + Δ, β per parameter) -> u per parameter.

Each is a (K, *shape) stack of K trials; β is a (K, 1, ..., 1) tensor per parameter, one value
per trial, so a rule is written once for one trial and for a pack (trainer.outer)."""
Matrix = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(μ, α, β) broadcast alike -> A of shape (*shape, 2, 2) on the state (e, m)."""


@dataclass(frozen=True)
class OuterRule:
    """One outer update rule."""

    name: str
    """The value of TrainConfig.outer that selects it."""
    direction: Direction
    """The update direction u; θ ← θ − α·u."""
    matrix: Matrix | None
    """The linearized step on one mode, or None when the rule has no theory model."""
    summary: str
    """One line for --help and docs: the update in the words of docs/design.md."""


OUTER_RULES: Registry[OuterRule] = Registry(
    "outer rule", lambda name, known: ValueError(f"outer: expected one of {', '.join(known)}, "
                                                 f"got {name!r}"))
register_outer_rule = OUTER_RULES.register
outer_rule = OUTER_RULES.lookup
"""The registered rule called ``name``; ValueError naming the known ones otherwise."""


def _a(mu: np.ndarray, a00: np.ndarray, a01: np.ndarray, beta: np.ndarray) -> np.ndarray:
    A = np.empty(mu.shape + (2, 2))
    A[..., 0, 0], A[..., 0, 1] = a00, a01
    A[..., 1, 0], A[..., 1, 1] = mu, beta
    return A


register_outer_rule(OuterRule(
    name="nesterov",
    direction=lambda delta, m, beta: [d.addcmul(mi, b) for d, mi, b in zip(delta, m, beta)],
    # on a mode Δ = μe, m' = βm + μe, u = Δ + βm': e' = (1 − αμ(1+β))e − αβ²m
    matrix=lambda mu, alpha, beta: _a(mu, 1 - alpha * mu * (1 + beta), -alpha * beta ** 2, beta),
    summary="θ ← θ − α·(Δ + β·m), torch.optim.SGD(nesterov=True)",
))

register_outer_rule(OuterRule(
    name="heavy_ball",
    direction=lambda delta, m, beta: m,
    # on a mode Δ = μe, u = m' = βm + μe: e' = (1 − αμ)e − αβm
    matrix=lambda mu, alpha, beta: _a(mu, 1 - alpha * mu, -alpha * beta, beta),
    summary="θ ← θ − α·m",
))
