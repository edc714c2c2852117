"""trainer: one DiLoCo trial (docs/design.md), knowing nothing of Ray.

Names that need torch load on first use, so that reading a config (`sweeps check`) stays fast.
"""
from importlib import import_module

from .config import ConfigError, TrainConfig
from .model_config import PRESETS, ModelConfig, count_params
from .result import CURVE_COLUMNS, TrainResult

_LAZY = {"OuterOptimizer": "outer", "pseudo_gradient": "outer", "train": "train",
         "train_packed": "packed"}

__all__ = ["TrainConfig", "ConfigError", "TrainResult", "CURVE_COLUMNS", "PRESETS", "ModelConfig",
           "count_params", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
