"""Memory a trial will need, estimated before anything is allocated, and a refusal with numbers.

fp32 state per parameter: the global θ, the outer momentum m, Δ and the workers' mean
(4 copies), plus per worker θ_i, its gradient and AdamW's two moments (4 copies each).
Activations kept for backward, per worker and per layer, for B sequences of T tokens:
about 10·d + 4·d_ff floats per token, plus the n_head·T² attention probabilities of the
math attention kernel; and 3·V floats per token for the logits and their softmax grad.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import ConfigError, TrainConfig
from .model_config import count_params, resolve_model

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
    if cfg.kind == "toy":
        n = cfg.toy_dim
        return MemoryEstimate(n, 8 * n * (4 + 4 * cfg.workers), 8 * n * max(cfg.toy_batch, 1))
    m = resolve_model(cfg.model, cfg.vocab_size)
    p = count_params(m)
    state = 4 * p * (4 + 4 * cfg.workers)
    tokens = cfg.batch_size * cfg.seq_len
    per_layer = tokens * (10 * m.d_model + 4 * m.d_ff)
    if device != "cuda":  # CUDA's fused attention kernels never store the T x T probabilities
        per_layer += cfg.batch_size * m.n_head * cfg.seq_len ** 2
    per_worker = 4 * (m.n_layer * per_layer + 3 * tokens * m.vocab_size)
    # batched workers hold every worker's activations at once; sequential ones, one at a time
    at_once = cfg.workers if cfg.batched_on(device) else 1
    return MemoryEstimate(p, state, per_worker * at_once)


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
        raise ConfigError(
            f"model: {cfg.model!r} with workers={cfg.workers}, batch_size={cfg.batch_size}, "
            f"seq_len={cfg.seq_len} needs about {est.total_bytes / GiB:.2f} GiB ({est.describe()}), "
            f"but {device} has {free / GiB:.2f} GiB free; use a smaller model, fewer workers, "
            f"a smaller batch_size or seq_len, or a bigger machine")
    return est
