"""The toy trial (kind: toy): the theory's linear regression with a power-law spectrum.

Its settings, its memory model and the linear theory's inputs; the Problem is
``trainer.toy.ToyProblem`` and the packed stack ``trainer.toy_stack.ToyStack``, imported when
asked for (they import torch). It has no FLOP model: a toy trial takes seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..checks import check_int, check_number
from ..memory import MemoryEstimate
from .base import TrialKind

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = ["ToySettings", "ToyKind", "TOY"]


@dataclass
class ToySettings:
    """The settings only a toy trial reads (its inner step is plain GD at η = lr)."""

    toy_dim: int = 2000
    """Toy: dimension of the linear-regression problem."""
    toy_power: float = 1.0
    """Toy: eigenvalues follow lambda_k = k^-toy_power (power-law spectrum)."""
    toy_noise: float = 0.0
    """Toy: label-noise standard deviation (0: noiseless, the linearized theory's setting)."""
    toy_batch: int = 0
    """Toy: samples per inner SGD step; 0 means full-batch gradient descent."""

    def check(self) -> None:
        """Raise ConfigError naming the first of these settings that is out of range."""
        check_int(self, "toy_dim", 1)
        check_number(self, "toy_power", lambda v: v >= 0, "a number >= 0")
        check_number(self, "toy_noise", lambda v: v >= 0, "a number >= 0")
        check_int(self, "toy_batch", 0)


class ToyKind(TrialKind):
    name = "toy"
    settings = ToySettings
    memory_keys = ("workers", "toy_dim", "toy_batch")
    theory_keys = ("lr", "toy_dim", "toy_power")

    def problem(self, cfg: "TrainConfig"):
        from ..toy import ToyProblem

        return ToyProblem(cfg)

    def stack(self):
        from ..toy_stack import ToyStack

        return ToyStack

    def memory(self, cfg: "TrainConfig", device: str) -> MemoryEstimate:
        """float64 θ, m, Δ and mean, and each worker's θ_i and its gradient; a (B, d) batch."""
        n = cfg.toy_dim
        return MemoryEstimate(n, 8 * n * (4 + 4 * cfg.workers), 8 * n * max(cfg.toy_batch, 1))

    def too_big(self, cfg: "TrainConfig") -> tuple[str, str]:
        return (f"toy_dim: {cfg.toy_dim} with workers={cfg.workers}, toy_batch={cfg.toy_batch}",
                "a smaller toy_dim or toy_batch, fewer workers")

    def linear_model(self, settings: Mapping[str, Any], modes: Any = None):
        """λ_k = k^−toy_power (k = mode + 1, largest 1) and η = lr: plain GD at a constant step."""
        import numpy as np

        k = (np.arange(1, int(settings["toy_dim"]) + 1, dtype=float) if modes is None
             else np.asarray(modes, dtype=int) + 1.0)
        return k ** -float(settings["toy_power"]), float(settings["lr"])


TOY = ToyKind()
