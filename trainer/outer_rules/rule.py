"""What an outer rule is: an update with its own state, what a restart resets, and its theory.

A rule is optax's ``GradientTransformation(init, update)`` pair for the outer step of
docs/design.md ("One trial"): ``init`` makes its state, ``update(Δ, state, hp)`` advances the
state in place and returns the direction u of θ ← θ − α·u, and ``restart`` names the entries a
restart zeroes. ``matrix`` is the same step on one eigen-mode of a squared loss, as the 2×2 map A
on (e, m) that ``analysis.theory`` takes powers of; a rule without one (``matrix=None``) is
trained as any other, and the theory and the report draw no prediction for it.

Every tensor a rule sees is a stack of K trials, one row each: Δ and the state's entries are
(K, *shape) per parameter, each setting a (K, 1, ..., 1) tensor per parameter, one value per
trial. So a rule is written once for one trial (K = 1) and for a pack, and trainer.outer drops,
restarts and keeps trials row by row without knowing what the entries mean. Numbers only: the
updates use tensor methods, so this package imports neither torch nor the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["OuterRule", "State", "Hyper", "EffectiveLR", "linear_map"]

State = dict[str, list[Any]]
"""Entry name -> one tensor per parameter, (K, *) with one row per trial (a per-trial count is
(K, 1, ..., 1)); in θ's dtype, never below float32."""
Hyper = Mapping[str, Sequence[Any]]
"""TrainConfig field (one of the rule's ``settings``) -> one (K, 1, ..., 1) tensor per
parameter, one value per trial, in the state's dtype."""
Init = Callable[[Callable[[], list[Any]]], State]
"""zeros -> the state before the first step; ``zeros()`` is a fresh list of zero (K, *shape)
tensors, one per parameter, in the state's dtype (call it once per entry)."""
Update = Callable[[Sequence[Any], State, Hyper], Sequence[Any]]
"""(Δ per parameter, state, hp) -> u per parameter; the state is updated in place."""
Matrix = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(μ, α, β) broadcast alike -> A of shape (*shape, 2, 2) on the state (e, m)."""
EffectiveLR = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(α, β) broadcast alike -> the effective outer learning rate, elementwise."""


@dataclass(frozen=True)
class OuterRule:
    """One outer optimizer: θ ← θ − α·update(Δ, state, hp)."""

    name: str
    """The value of TrainConfig.outer that selects it."""
    init: Init
    """Its state at the start of a trial."""
    update: Update
    """One step: advances the state in place, returns the direction u; θ ← θ − α·u."""
    restart: tuple[str, ...]
    """The state entries a restart (every R outer steps) zeroes; the others carry on."""
    matrix: Matrix | None
    """The linearized step on one mode, or None when the rule has no theory model."""
    summary: str
    """One line for --help and docs: the update in the words of docs/design.md."""
    settings: tuple[str, ...] = ("beta",)
    """The TrainConfig fields ``update`` reads from hp, one value per trial (α and R are the
    optimizer's). Trials of a pack may differ in them (trainer.packed.PACKABLE)."""
    momentum: str = "m"
    """The state entry the curve's momentum columns report (norm after, cosine with Δ before)."""
    effective_lr: EffectiveLR | None = None
    """(α, β) -> the rule's effective outer learning rate: the multiple of Δ a step moves θ by
    once Δ is constant and the state has settled (nesterov and heavy_ball α/(1 − β), the
    normalized nesterov α), so grids of different momentum conventions share an axis
    (docs/analysis.md); None where no such multiple exists (adam divides by √v)."""


def linear_map(mu: np.ndarray, a00: np.ndarray, a01: np.ndarray, beta: np.ndarray,
               gain: np.ndarray | float = 1.0) -> np.ndarray:
    """A on (e, m) of a rule whose momentum is m' = β·m + gain·μ·e: rows (a00, a01) and
    (gain·μ, β); gain 1 sums Δ into m (nesterov, heavy_ball), 1 − β averages it."""
    A = np.empty(mu.shape + (2, 2))
    A[..., 0, 0], A[..., 0, 1] = a00, a01
    A[..., 1, 0], A[..., 1, 1] = gain * mu, beta
    return A
