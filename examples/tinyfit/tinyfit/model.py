"""The user's model: a small MLP regressor, as wide and deep as its parameters say."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP"]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


class MLP(nn.Module):
    def __init__(self, inputs: int, width: int, depth: int, activation: str = "tanh"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(inputs if i == 0 else width, width), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(width if depth else inputs, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
