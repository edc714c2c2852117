"""TrialSettings: what every trial kind reads, the first section of trainer.config.TrainConfig.

Its own module so that the outer step (trainer.outer) can read the defaults of the outer
rules' settings without importing the trial kinds, which import the trainer's loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import SEED_MAX
from .checks import check_choice as _check_choice
from .checks import check_int as _check_int
from .checks import check_number as _check_number
from .outer_rules import OUTER_RULES

__all__ = ["TrialSettings", "DEVICES"]

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrialSettings:
    """What every trial kind reads: the DiLoCo loop of docs/design.md, its inner learning rate,
    divergence, and where it runs."""

    # --- the outer loop (swept) ---
    alpha: float = 0.7
    """α, outer learning rate (> 0)."""
    beta: float = 0.9
    """β, outer momentum, in [0, 1)."""
    H: int = 10
    """Inner AdamW steps per outer step (communication period), >= 1."""
    R: int = 0
    """Restart period of the outer momentum in outer steps; 0 means never."""
    workers: int = 4
    """M, number of DiLoCo workers, >= 1."""
    outer_steps: int = 15
    """T, outer steps (rounds) per trial, >= 1."""
    seed: int = 0
    """Seeds the model init and every worker's data stream."""
    outer: str = "nesterov"
    """Outer update rule, a name in trainer.outer_rules.OUTER_RULES: nesterov (torch SGD
    nesterov=True convention), heavy_ball, adam (Adam on Δ, β as its β1), or any rule
    registered there."""
    outer_beta2: float = 0.999
    """β₂ of outer=adam, the decay of its second moment, in [0, 1); default 0.999, torch
    Adam's. The other rules ignore it."""
    outer_eps: float = 1e-8
    """ε of outer=adam, added to √v̂ (outside the root, as torch), a finite number > 0; default
    1e-8, torch Adam's. The other rules ignore it."""

    # --- what is trained ---
    kind: str = "lm"
    """A name in trainer.kinds.TRIAL_KINDS: lm, the transformer LM trial; toy, the
    linear-regression model of the theory."""

    # --- the inner optimizer ---
    lr: float = 3e-3
    """Peak inner learning rate (the LM's AdamW warmup+cosine schedule); the toy's GD step."""
    diverge_factor: float = 2.0
    """Diverged when eval loss exceeds diverge_factor * initial loss (or is non-finite)."""
    diverge_check_every: int = 0
    """Also diverged, mid-round, when the workers' mean train loss over the last k inner steps
    exceeds diverge_factor * initial loss, checked every k steps (0: off). Free: reuses losses."""

    # --- runtime ---
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    threads: int = 0
    """torch intra-op threads for this trial; 0 leaves torch's default."""

    def check(self) -> None:
        """Raise ConfigError naming the first of these settings that is out of range."""
        _check_number(self, "alpha", lambda v: v > 0, "a finite number > 0")
        _check_number(self, "beta", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_int(self, "H", 1)
        _check_int(self, "R", 0)
        _check_int(self, "workers", 1)
        _check_int(self, "outer_steps", 1)
        _check_int(self, "seed", 0, SEED_MAX)
        _check_choice(self, "outer", tuple(OUTER_RULES))  # the registry, read when checked
        _check_number(self, "outer_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_number(self, "outer_eps", lambda v: v > 0, "a finite number > 0")
        _check_choice(self, "device", DEVICES)
        _check_number(self, "lr", lambda v: v > 0, "a finite number > 0")
        _check_number(self, "diverge_factor", lambda v: v > 1, "a number > 1")
        _check_int(self, "threads", 0)
        _check_int(self, "diverge_check_every", 0)
