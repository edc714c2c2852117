"""Where and how a trial computes: its device and autocast.

Shared by the sequential and the batched worker paths, so neither imports the other for it.
Whether workers run stacked is ``TrainConfig.batched_on``, which the memory estimate asks too.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from .checks import ConfigError

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["resolve_device", "autocast_for"]


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device; use auto or cpu")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_for(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA when asked; float32 everywhere else."""
    if device.type == "cuda" and cfg.dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
