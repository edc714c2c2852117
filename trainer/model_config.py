"""The LM's shape without torch: ModelConfig, the presets, and the parameter count.

Presets go from `tiny` (tests and laptop demos) to `paper150m` (about the paper's 150M
parameters, for GPUs). Reading a spec (`diloco-sweep check`: the model check, the cost estimate,
the memory estimate) needs these and not the model, so they import no torch. `count_params`
is written out from `trainer.model.GPT`'s layers; tests/test_trainer.py holds it equal to the
model's own parameter count for every preset.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .checks import INT_MAX, ConfigError, nearest

__all__ = ["ModelConfig", "PRESETS", "resolve_model", "count_params"]


@dataclass
class ModelConfig:
    """Shape of the transformer."""

    n_layer: int = 2
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads; d_model must divide by it."""
    d_model: int = 64
    """Residual stream width."""
    d_ff: int = 0
    """SwiGLU hidden width; 0 picks 8/3 * d_model rounded up to a multiple of 32."""
    vocab_size: int = 256
    """Vocabulary size (set from TrainConfig.vocab_size)."""
    rope_base: float = 10000.0
    """Rotary embedding base."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    tie_embeddings: bool = True
    """Share the input embedding and the output projection."""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "vocab_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= INT_MAX:
                raise ConfigError(f"model.{name}: expected an integer from 1 to {INT_MAX}, "
                                  f"got {v!r}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ConfigError(f"model.d_model: {self.d_model} must split into {self.n_head} heads "
                              f"of even size")
        if self.d_ff == 0:
            self.d_ff = 32 * math.ceil(8 * self.d_model / 3 / 32)


PRESETS: dict[str, ModelConfig] = {
    # ~0.1M params: a few ms per step on 2 CPU cores; tests and the laptop sweep
    "tiny": ModelConfig(n_layer=2, n_head=4, d_model=64),
    # ~0.8M
    "small": ModelConfig(n_layer=4, n_head=4, d_model=128),
    # ~6M
    "base": ModelConfig(n_layer=6, n_head=8, d_model=288),
    # ~40M
    "medium": ModelConfig(n_layer=8, n_head=8, d_model=640),
    # ~150M non-embedding parameters, the scale of the paper's LM runs
    "paper150m": ModelConfig(n_layer=12, n_head=16, d_model=1024),
}


def resolve_model(model: str | dict, vocab_size: int) -> ModelConfig:
    """A preset name or a mapping of ModelConfig fields (optionally with `preset`) → ModelConfig."""
    if isinstance(model, str):
        if model not in PRESETS:
            raise ConfigError(f"model: unknown preset {model!r}; presets: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[model], vocab_size=vocab_size)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    overrides = dict(model)
    base = overrides.pop("preset", "tiny")
    if base not in PRESETS:
        raise ConfigError(f"model.preset: unknown preset {base!r}; presets: {', '.join(PRESETS)}")
    for key in overrides:
        if key not in fields:
            close = nearest(key, sorted(fields | {"preset"}))
            hint = f"did you mean '{close}'? " if close else ""
            raise ConfigError(f"model.{key}: not a model field; {hint}fields: preset, "
                              f"{', '.join(sorted(fields))}")
    overrides.setdefault("vocab_size", vocab_size)
    cfg = dataclasses.asdict(PRESETS[base])
    cfg.update(overrides)
    if cfg.get("d_ff") == PRESETS[base].d_ff and "d_model" in overrides:
        cfg["d_ff"] = 0  # re-derive the hidden width for a new d_model
    return ModelConfig(**cfg)


def count_params(cfg: ModelConfig, non_embedding: bool = False) -> int:
    """Parameters of ``GPT(cfg)`` (a tied head counted once); ``non_embedding``: without the
    input embedding."""
    d, ff, V = cfg.d_model, cfg.d_ff, cfg.vocab_size
    block = 2 * d + 3 * d * d + d * d + 2 * d * ff + ff * d  # 2 norms, qkv, out, gate_up, down
    n = V * d + cfg.n_layer * block + d + (0 if cfg.tie_embeddings else V * d)
    return n - V * d if non_embedding else n
