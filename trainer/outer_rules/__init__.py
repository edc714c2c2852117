"""Outer optimizers: a registry of rules, each one module with its state beside its theory.

A rule (``OuterRule``, in ``rule.py``) is an ``init`` for its state, an ``update(Δ, state, hp)``
that returns the direction u of θ ← θ − α·u (docs/design.md, "One trial"), the state entries a
restart zeroes, the TrainConfig settings it reads, and its linear theory matrix where it has
one (``analysis.theory``). trainer.outer steps any of them, for one trial or a pack.

Numbers only: the rules use tensor methods, so this package imports neither torch nor anything
of the trainer, and ``analysis`` can read the matrices without loading torch. A new rule is one
module here that defines ``RULE`` and its line below (plus a TrainConfig field per new setting).
"""

from __future__ import annotations

import numpy as np

from ..registry import Registry
from . import adam, heavy_ball, nesterov, nesterov_normalized
from .rule import Hyper, OuterRule, State, linear_map

__all__ = ["OuterRule", "State", "Hyper", "OUTER_RULES", "register_outer_rule", "outer_rule",
           "rule_settings", "linear_map", "effective_lr"]

OUTER_RULES: Registry[OuterRule] = Registry(
    "outer rule", lambda name, known: ValueError(f"outer: expected one of {', '.join(known)}, "
                                                 f"got {name!r}"))
register_outer_rule = OUTER_RULES.register
outer_rule = OUTER_RULES.lookup
"""The registered rule called ``name``; ValueError naming the known ones otherwise."""

# the order of --help and of the docs
for _module in (nesterov, heavy_ball, adam, nesterov_normalized):
    register_outer_rule(_module.RULE)


def effective_lr(outer: str, alpha, beta):
    """The effective outer learning rate of rule ``outer`` at (α, β) (``OuterRule.effective_lr``),
    elementwise over arrays; NaN where the rule has none; ValueError for an unknown rule."""
    rule = outer_rule(outer)
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, dtype=float),
                                      np.asarray(beta, dtype=float))
    if rule.effective_lr is None:
        return np.full(alpha.shape, np.nan)
    return np.asarray(rule.effective_lr(alpha, beta), dtype=float)


def rule_settings() -> tuple[str, ...]:
    """Every setting some registered rule reads per trial, in registry order, once each."""
    return tuple(dict.fromkeys(s for rule in OUTER_RULES.values() for s in rule.settings))
