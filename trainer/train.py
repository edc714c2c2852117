"""`train(config)`: one trial of docs/design.md, on the Problem its kind builds (trainer/kinds/)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from .loop import run_diloco
from .result import TrainResult

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["train", "build_problem"]


def build_problem(cfg: TrainConfig):
    """The trial as a Problem: its kind's (trainer/kinds/) builds it."""
    return cfg.trial_kind.problem(cfg)


def train(config: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Run one trial. `on_step(row)` gets each outer step's curve row as it happens.

    Divergence is returned as status='diverged'; bad settings raise ConfigError before any
    training starts; anything else that goes wrong propagates (the sweep records it as failed).
    """
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return run_diloco(build_problem(config), config, on_step, t_start=t0)
    finally:
        torch.set_num_threads(threads)
