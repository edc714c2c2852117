"""The DiLoCo outer step with restarting, exactly as docs/design.md writes it.

    if R > 0 and t % R == 0:  reset the rule's restarted state (m; Adam's m, v and t)
    Δ ← θ − mean_i(θ_i)                 # pseudo-gradient: old minus new
    u ← rule.update(Δ, state, hp)        # nesterov: m ← β·m + Δ;  u = Δ + β·m
    θ ← θ − α·u

The rule (trainer.outer_rules) owns its state and update; this module owns what every rule
shares: α, the restart schedule, the curve's statistics, and K trials at once. It works on any
list of tensors, so the LM trial and the toy trial share it, and on stacks of K trials
(``OuterOptimizer.stacked``: each parameter (K, *shape), α, R and the rule's settings one per
trial), which is how packed trials take their outer steps. A single trial is the stack K = 1;
the per-trial coefficients enter through ``addcmul`` with a broadcast tensor, which rounds
exactly as ``add(alpha=β)`` with the Python float does, so a trial's θ does not depend on its
pack.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .settings import TrialSettings

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which import this
    from .config import TrainConfig
from .outer_rules import outer_rule

__all__ = ["OuterOptimizer", "pseudo_gradient", "average"]

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrialSettings)}
"""The outer rules' settings are TrialSettings' (β, adam's outer_beta2 and outer_eps)."""


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
    """An outer rule of trainer.outer_rules, its state, α, and a restart every R steps.

    ``OuterOptimizer(θ, α, β, kind, R, **settings)`` is one trial over its parameter list;
    ``stacked`` is K trials whose parameters are (K, *shape) stacks (views are updated in
    place). ``settings`` are the rule's other TrainConfig fields (Adam's ``outer_beta2``...);
    one left out takes TrainConfig's default. ``for_trial`` and ``for_pack`` read them all from
    the configs, so a rule with new settings needs no change to the loops."""

    def __init__(self, params: list[torch.Tensor], alpha: float, beta: float = _DEFAULTS["beta"],
                 kind: str = "nesterov", restart_every: int = 0, **settings: float):
        self.single = True
        self._setup([p.unsqueeze(0) for p in params], alpha, kind, restart_every,
                    {"beta": beta, **settings})

    @classmethod
    def stacked(cls, params: list[torch.Tensor], alpha: Sequence[float],
                beta: Sequence[float] | float = _DEFAULTS["beta"], kind: str = "nesterov",
                restart_every: Sequence[int] | int = 0,
                **settings: Sequence[float] | float) -> "OuterOptimizer":
        """K trials at once: params[j] is (K, *shape); α, β, R and each setting one per trial
        (or shared)."""
        self = cls.__new__(cls)
        self.single = False
        self._setup(params, alpha, kind, restart_every, {"beta": beta, **settings})
        return self

    @classmethod
    def for_trial(cls, params: list[torch.Tensor], cfg: TrainConfig) -> "OuterOptimizer":
        """The outer optimizer of one trial, as ``cfg`` sets it."""
        rule = outer_rule(cfg.outer)
        return cls(params, cfg.alpha, kind=cfg.outer, restart_every=cfg.R,
                   **{s: getattr(cfg, s) for s in rule.settings})

    @classmethod
    def for_pack(cls, params: list[torch.Tensor], configs: Sequence[TrainConfig]) -> "OuterOptimizer":
        """The stacked outer optimizer of a pack: one rule, each trial's own α, R and settings."""
        kind = configs[0].outer
        return cls.stacked(params, [c.alpha for c in configs], kind=kind,
                           restart_every=[c.R for c in configs],
                           **{s: [getattr(c, s) for c in configs]
                              for s in outer_rule(kind).settings})

    def _setup(self, params, alpha, kind, restart_every, settings: dict[str, Any]) -> None:
        self.rule = outer_rule(kind)
        unknown = sorted(set(settings) - set(_DEFAULTS))
        if unknown:
            raise TypeError(f"OuterOptimizer: {', '.join(unknown)} not a TrialSettings setting")
        self.params = params
        k = params[0].shape[0]
        self.alpha = _per_trial(alpha, k)
        self.R = _per_trial(restart_every, k).astype(np.int64)
        self.settings = {s: _per_trial(settings.get(s, _DEFAULTS[s]), k)
                         for s in self.rule.settings}
        # the state follows θ's dtype (float64 for the toy theory), but never below float32
        self._dtypes = [torch.promote_types(p.dtype, torch.float32) for p in params]
        self.state = self.rule.init(
            lambda: [torch.zeros_like(p, dtype=dt) for p, dt in zip(params, self._dtypes)])
        self._coef()

    @property
    def m(self) -> list[torch.Tensor]:
        """The state entry the curve reports as the momentum (the rule's ``momentum``)."""
        return self.state[self.rule.momentum]

    def _coef(self) -> None:
        """α and the settings as tensors that broadcast over each parameter: (K, 1, ..., 1);
        α in θ's dtype, the settings in the state's."""
        def shaped(v: np.ndarray, p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(v, dtype=dtype, device=p.device).view(-1, *[1] * (p.dim() - 1))
        self._alpha = [shaped(-self.alpha, p, p.dtype) for p in self.params]
        self._hp = {s: [shaped(v, p, dt) for p, dt in zip(self.params, self._dtypes)]
                    for s, v in self.settings.items()}

    def keep(self, index: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Go on with the trials at ``index`` only; ``params`` are their (K', *shape) stacks."""
        rows = index.cpu().numpy()
        self.params = params
        self.alpha, self.R = self.alpha[rows], self.R[rows]
        self.settings = {s: v[rows] for s, v in self.settings.items()}
        self.state = {name: [t.index_select(0, index) for t in entry]
                      for name, entry in self.state.items()}
        self._coef()

    @torch.no_grad()
    def maybe_restart(self, t: int) -> bool | np.ndarray:
        """At the start of outer step t where t % R == 0 (R > 0), zero the state the rule's
        restart resets (the momentum m; Adam's m, v and step count); nothing else is touched.
        Returns whether it did (one trial), or the (K,) mask of the trials it did it for."""
        mask = (self.R > 0) & (t % np.maximum(self.R, 1) == 0)
        reset = [x for name in self.rule.restart for x in self.state[name]]
        if not reset or not mask.any():
            pass
        elif mask.all():
            torch._foreach_zero_(reset)
        else:
            rows = torch.as_tensor(np.flatnonzero(mask), device=reset[0].device)
            for x in reset:
                x.index_fill_(0, rows, 0)
        return bool(mask[0]) if self.single else mask

    @torch.no_grad()
    def step(self, delta: list[torch.Tensor]) -> dict[str, float | np.ndarray]:
        """Apply one outer update along Δ; return ||Δ||, ||m|| after, cos(m, Δ) before, per
        trial (floats for one trial, (K,) arrays for a stack), read back in one host sync.
        m is the rule's ``momentum`` entry (Adam's first moment)."""
        if self.single:
            delta = [d.unsqueeze(0) for d in delta]
        delta = [d.to(dt) for d, dt in zip(delta, self._dtypes)]
        d_sq, m_sq, dot = _sq(delta), _sq(self.m), _dot(self.m, delta)

        update = self.rule.update(delta, self.state, self._hp)    # u and the new state
        for p, u, a in zip(self.params, update, self._alpha):
            p.addcmul_(u.to(p.dtype), a)                           # θ ← θ − α·u
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
