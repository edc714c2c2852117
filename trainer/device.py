"""Where and how a trial computes: its device, autocast, and whether workers run stacked.

Shared by the sequential and the batched worker paths and by the memory estimate, so none of
them imports another for it.
"""

from __future__ import annotations

import contextlib

import torch

from .config import ConfigError, TrainConfig

__all__ = ["resolve_device", "autocast_for", "use_batched", "BATCHED_ON_CPU"]

BATCHED_ON_CPU = True
"""batched=auto on CPU: stacked M=4 tiny workers measured 1.17-1.49x the sequential inner-step
rate on 2 cores (docs/performance.md), never slower; flip here if a machine says otherwise."""


def use_batched(cfg: TrainConfig, device: torch.device) -> bool:
    """cfg.batched on/off as asked; auto: batched for M > 1 on CUDA, and on CPU if BATCHED_ON_CPU.

    Batched workers hold all M workers' activations at once (sequential ones, one worker's):
    set batched=off where memory is short.
    """
    if cfg.batched != "auto":
        return cfg.batched == "on"
    return cfg.workers > 1 and (device.type == "cuda" or BATCHED_ON_CPU)


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
