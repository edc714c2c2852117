"""The user's data: ``points.csv`` beside this file, split into a training set sharded over the
workers and a held-out set for evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

__all__ = ["load", "worker_batches", "HELD_OUT"]

CSV = Path(__file__).with_name("points.csv")
HELD_OUT = 128
"""The last rows of the file: never trained on."""


def load() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_eval, y_eval) as float32 tensors."""
    table = np.loadtxt(CSV, delimiter=",", skiprows=1, dtype=np.float32)
    x, y = torch.from_numpy(table[:, :-1]), torch.from_numpy(table[:, -1])
    return x[:-HELD_OUT], y[:-HELD_OUT], x[-HELD_OUT:], y[-HELD_OUT:]


def worker_batches(x: torch.Tensor, y: torch.Tensor, worker: int, workers: int, seed: int,
                   batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Worker ``worker``'s endless stream: minibatches drawn from its own shard (every
    ``workers``-th row), its own RNG seeded by (seed, worker)."""
    xs, ys = x[worker::workers], y[worker::workers]
    gen = torch.Generator().manual_seed(seed * 1000 + worker)
    while True:
        idx = torch.randint(len(xs), (batch,), generator=gen)
        yield xs[idx], ys[idx]
