"""The entry diloco-sweep calls (``entry: "tinyfit.problem:make"``): this project's model, data,
loss and eval for one trial. The tool owns the inner AdamW, its schedule and the DiLoCo loop."""

from __future__ import annotations

import torch

from trainer.user import UserProblem

from .data import load, worker_batches
from .model import MLP

__all__ = ["make"]


def make(trial, width: int = 16, depth: int = 2, activation: str = "tanh",
         batch: int = 32) -> UserProblem:
    """One trial: ``trial`` is its TrainConfig (seed, workers, ...); the rest are this project's
    own parameters, swept or fixed in the spec under ``params``."""
    x, y, x_eval, y_eval = load()
    model = MLP(x.shape[1], width, depth, activation)  # torch is seeded with trial.seed here

    def loss(m: torch.nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = b
        return torch.nn.functional.mse_loss(m(xb), yb)

    def evaluate(m: torch.nn.Module) -> float:
        p = next(m.parameters())
        return torch.nn.functional.mse_loss(m(x_eval.to(p.device)), y_eval.to(p.device)).item()

    return UserProblem(
        model=model,
        batches=lambda i: worker_batches(x, y, i, trial.workers, trial.seed, batch),
        loss=loss, evaluate=evaluate, tokens_per_batch=batch, eval_tokens=len(y_eval))
