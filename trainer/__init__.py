"""trainer: one DiLoCo trial (DESIGN.md), knowing nothing of Ray."""
from .config import ConfigError, TrainConfig
from .model import PRESETS, ModelConfig, count_params
from .outer import OuterOptimizer, pseudo_gradient
from .result import CURVE_COLUMNS, TrainResult
from .train import train

__all__ = ["TrainConfig", "ConfigError", "TrainResult", "CURVE_COLUMNS", "PRESETS", "ModelConfig",
           "count_params", "OuterOptimizer", "pseudo_gradient", "train"]
