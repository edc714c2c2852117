"""Memory a trial will need, estimated before anything is allocated, and a refusal with numbers.

Each trial kind models its own (``TrialKind.memory`` in ``trainer/kinds/``: the LM's state
and activations, the toy's vectors); this module asks it and compares with the free memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .checks import ConfigError

if TYPE_CHECKING:  # types only: the kinds' memory models build a MemoryEstimate
    from .config import TrainConfig

__all__ = ["MemoryEstimate", "estimate_memory", "available_memory", "check_memory"]

GiB = 1024 ** 3


@dataclass
class MemoryEstimate:
    """Bytes a trial needs, by part."""

    params: int
    """Parameters per model copy (count, not bytes)."""
    state_bytes: int
    """Parameters, gradients, AdamW moments and outer buffers of all workers."""
    activation_bytes: int
    """Activations all workers keep for backward at once (batched workers) or one at a time."""

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes

    def describe(self) -> str:
        return (f"{self.params / 1e6:.1f}M parameters; state {self.state_bytes / GiB:.2f} GiB + "
                f"activations {self.activation_bytes / GiB:.2f} GiB = {self.total_bytes / GiB:.2f} GiB")


def estimate_memory(cfg: TrainConfig, device: str = "cpu") -> MemoryEstimate:
    """The trial's kind's estimate, on a device of this type ('cpu', 'cuda')."""
    return cfg.trial_kind.memory(cfg, device)


def available_memory(device: str) -> int | None:
    """Free bytes on the device a trial will use: CUDA's free memory, or MemAvailable."""
    if device == "cuda":
        import torch  # only for a GPU trial: the estimate and a CPU check need no torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(cfg: TrainConfig, device: str = "cpu", available: int | None = None,
                 headroom: float = 0.9) -> MemoryEstimate:
    """Refuse a trial that cannot fit in `headroom` of the free memory, with the numbers."""
    est = estimate_memory(cfg, device)
    free = available_memory(device) if available is None else available
    if free is not None and est.total_bytes > headroom * free:
        what, smaller = cfg.trial_kind.too_big(cfg)
        raise ConfigError(
            f"{what} needs about {est.total_bytes / GiB:.2f} GiB ({est.describe()}), "
            f"but {device} has {free / GiB:.2f} GiB free; use {smaller}, or a bigger machine")
    return est
