"""A user's own trial (kind: python): their model, data, loss and eval; the tool's DiLoCo.

``entry: "mypkg.problem:make"`` names a function ``make(trial, **params)`` that returns a
``trainer.user.UserProblem`` (the model, a batch stream per worker, the loss and an eval).
The inner AdamW (the LM's settings: weight_decay, adam_beta1/2, grad_clip), its warmup+cosine
schedule (lr, warmup_steps, min_lr_ratio), the outer step, restarts and divergence stay the
tool's. ``params`` are the user's own settings: swept and fixed as ``params.<name>`` (a
typed column each), part of the trial_id when set. docs/user-kind.md has the contract.

Nothing here imports torch: the memory and FLOP models build the user's model once (on the
meta device, else the CPU) when asked, through ``trainer.user``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..checks import ConfigError
from ..memory import MemoryEstimate
from ..user_entry import ENTRY_RE, code_hash
from .base import FlopModel, TrialKind

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = ["PythonSettings", "PythonKind", "PYTHON", "PARAM_PREFIX", "PARAMS_FIELD",
           "fold_params"]

PARAMS_FIELD = "params"
"""The TrainConfig field that holds the user's parameters (a mapping; JSON text in a row)."""
PARAM_PREFIX = "params."
"""A user parameter as a spec key (``space: {params.width: [8, 16]}``) and as a typed column."""


def fold_params(d: dict) -> dict:
    """``d`` with its ``params.<name>`` keys moved into its ``params`` mapping (an empty
    mapping is no mapping: None), the form TrainConfig takes."""
    loose = {k[len(PARAM_PREFIX):]: v for k, v in d.items() if k.startswith(PARAM_PREFIX)}
    if not loose and PARAMS_FIELD not in d:
        return d
    out = {k: v for k, v in d.items() if not k.startswith(PARAM_PREFIX)}
    merged = {**(out.get(PARAMS_FIELD) or {}), **loose} \
        if isinstance(out.get(PARAMS_FIELD) or {}, dict) else out[PARAMS_FIELD]
    out[PARAMS_FIELD] = merged or None
    return out


@dataclass
class PythonSettings:
    """The settings only a user's own trial (kind: python) reads."""

    entry: str = ""
    """kind python: the user's function as 'module.path:function', imported from the working
    directory or sys.path; it takes the trial's settings and the user's parameters by name
    and returns a trainer.user.UserProblem."""
    params: dict | None = None
    """kind python: the user's parameters, name -> int, float, str or bool, passed to the entry
    by name; a row has each as a typed column params.<name> (and this mapping as JSON)."""

    def check(self) -> None:
        """Raise ConfigError naming the first of these settings that is malformed (whether the
        entry imports and takes these parameters is the spec's check: it imports user code)."""
        if not isinstance(self.entry, str) or (self.entry and not ENTRY_RE.fullmatch(self.entry)):
            raise ConfigError(f"entry: expected 'module.path:function', got {self.entry!r}")
        if self.params is None:
            return
        if not isinstance(self.params, dict):
            raise ConfigError(f"params: expected a mapping of parameter name to an int, float, "
                              f"str or bool, got {type(self.params).__name__}")
        for k, v in self.params.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise ConfigError(f"params.{k}: not a Python parameter name")
            if not isinstance(v, (bool, int, float, str)) or (
                    isinstance(v, float) and not math.isfinite(v)):
                raise ConfigError(f"params.{k}: expected an int, float, str or bool (finite), "
                                  f"got {v!r}")


class PythonKind(TrialKind):
    name = "python"
    settings = PythonSettings
    takes_entry = True
    packs = False
    reads = ("warmup_steps", "min_lr_ratio", "weight_decay", "adam_beta1", "adam_beta2",
             "grad_clip")  # the tool's inner AdamW and its schedule (trainer.loop.inner_lr)
    memory_keys = ("entry", "params", "workers")
    cost_keys = ("entry", "params", "workers", "H", "outer_steps")

    def problem(self, cfg: "TrainConfig"):
        from ..user import user_problem

        return user_problem(cfg)

    def _shape(self, cfg: "TrainConfig"):
        from ..user import shape_of

        return shape_of(cfg)

    def memory(self, cfg: "TrainConfig", device: str) -> MemoryEstimate:
        """fp32 θ, m, Δ and the mean, and per worker θ_i, its gradient and AdamW's two moments
        (the LM's count), of the user's model as built once; activations are the user's and
        not modelled (0). No entry: nothing to build, 0 (``check`` refuses that first)."""
        if not cfg.entry:
            return MemoryEstimate(0, 0, 0)
        n = self._shape(cfg).params
        return MemoryEstimate(n, 4 * n * (4 + 4 * cfg.workers), 0)

    def too_big(self, cfg: "TrainConfig") -> tuple[str, str]:
        return (f"workers: {cfg.workers} with entry {cfg.entry} and params {cfg.params}",
                "fewer workers, or params that make a smaller model")

    flop_formula = ("FLOP = 6·N per training sample + 2·N per eval sample; N = the entry's "
                    "model's parameters as built once, a sample as its UserProblem counts them")

    def flops(self, cfg: "TrainConfig") -> FlopModel | None:
        """6·N per training sample (token) and 2·N per eval sample, N the model's parameters
        as built once; samples per batch and per eval are the UserProblem's own counts."""
        if not cfg.entry:
            return None
        s = self._shape(cfg)
        return FlopModel(params=s.params, flop_params=s.params,
                         train_flops_per_token=6.0 * s.params,
                         eval_flops=2.0 * s.params * s.eval_tokens,
                         tokens_per_round=cfg.workers * cfg.H * s.tokens_per_batch)

    def code_version(self, cfg: "TrainConfig") -> str | None:
        return code_hash(cfg.entry) if cfg.entry else None


PYTHON = PythonKind()
