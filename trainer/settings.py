"""TrialSettings: what every trial kind reads, the first section of trainer.config.TrainConfig.

Its own module so that the outer step (trainer.outer) can read the defaults of the outer
rules' settings without importing the trial kinds, which import the trainer's loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import SEED_MAX, ConfigError
from .checks import check_choice as _check_choice
from .checks import check_int as _check_int
from .checks import check_number as _check_number
from .outer_rules import OUTER_RULES

__all__ = ["TrialSettings", "DEVICES", "OUTER_STEPS_DEFAULT"]

DEVICES = ("auto", "cpu", "cuda")
OUTER_STEPS_DEFAULT = 15
"""TrialSettings.outer_steps' default: beside a budget it stands for "not set"."""


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
    outer_steps: int = OUTER_STEPS_DEFAULT
    """T, outer steps (rounds) per trial, >= 1. With a budget (``inner_steps_budget``) it is
    derived, T = ⌊budget / H⌋, and a config that sets both is refused."""
    inner_steps_budget: int = 0
    """Inner steps per worker a trial may spend, or 0 (off: T = outer_steps). When set, T =
    ⌊inner_steps_budget / H⌋ (docs/design.md, "One trial"), so every H gets the budget to
    within one round (T·H > budget − H) and a sweep over H compares equal compute; it must be
    at least H. The row's ``outer_steps`` is the derived T, ``inner_steps_done`` and ``tokens``
    what ran."""
    seed: int = 0
    """Seeds the model init and every worker's data stream."""
    outer: str = "nesterov"
    """Outer update rule, a name in trainer.outer_rules.OUTER_RULES: nesterov (torch SGD
    nesterov=True convention), heavy_ball, adam (Adam on Δ, β as its β1), nesterov_normalized
    (m ← β·m + (1 − β)·Δ: at α it is nesterov at α·(1 − β)), or any rule registered there."""
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
        _check_int(self, "inner_steps_budget", 0)
        self.check_budget()
        _check_int(self, "seed", 0, SEED_MAX)
        _check_choice(self, "outer", tuple(OUTER_RULES))  # the registry, read when checked
        _check_number(self, "outer_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_number(self, "outer_eps", lambda v: v > 0, "a finite number > 0")
        _check_choice(self, "device", DEVICES)
        _check_number(self, "lr", lambda v: v > 0, "a finite number > 0")
        _check_number(self, "diverge_factor", lambda v: v > 1, "a number > 1")
        _check_int(self, "threads", 0)
        _check_int(self, "diverge_check_every", 0)

    def budget_rounds(self) -> int:
        """T of docs/design.md: ⌊inner_steps_budget / H⌋ with a budget, else outer_steps."""
        if self.inner_steps_budget:
            return self.inner_steps_budget // self.H
        return self.outer_steps

    def check_budget(self) -> None:
        """A budget is at least H, and outer_steps beside it is its default or the T it makes
        (what a config built from a budget carries); ConfigError naming the field otherwise."""
        budget = self.inner_steps_budget
        if not budget:
            return
        if budget < self.H:
            raise ConfigError(f"inner_steps_budget: {budget} is below H = {self.H}, so T = "
                              f"⌊budget / H⌋ would be 0 rounds; give at least H inner steps, "
                              f"or 0 (off: T = outer_steps)")
        rounds = budget // self.H
        if self.outer_steps not in (rounds, OUTER_STEPS_DEFAULT):
            raise ConfigError(f"outer_steps: {self.outer_steps} set beside inner_steps_budget "
                              f"{budget}, which makes T = ⌊{budget} / {self.H}⌋ = {rounds}; set "
                              f"one of the two")
