"""A small Llama-style decoder-only LM: RMSNorm, rotary attention, SwiGLU, tied embeddings.

Tokens are bytes by default (vocab 256), so nothing is downloaded. Presets go from `tiny`
(tests and laptop demos) to `paper150m` (about the paper's 150M parameters, for GPUs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import INT_MAX, ConfigError, nearest

__all__ = ["ModelConfig", "PRESETS", "GPT", "resolve_model", "count_params"]


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


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _rope(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # q: (B, n_head, T, head_dim); rotate pairs (first half, second half) of head_dim
    q1, q2 = q.chunk(2, dim=-1)
    return torch.cat((q1 * cos - q2 * sin, q2 * cos + q1 * sin), dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.attn_out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, T, C))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            std = 0.02
            if name.endswith(("attn_out.weight", "down.weight")):
                std /= math.sqrt(2 * self.cfg.n_layer)
            nn.init.normal_(p, mean=0.0, std=std)

    def _rope_tables(self, T: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (T, device, dtype)
        if key not in self._rope_cache:
            hd = self.cfg.d_model // self.cfg.n_head
            inv = 1.0 / self.cfg.rope_base ** (torch.arange(0, hd, 2, device=device).float() / hd)
            ang = torch.outer(torch.arange(T, device=device).float(), inv)  # (T, hd/2)
            self._rope_cache[key] = (ang.cos().to(dtype), ang.sin().to(dtype))
        return self._rope_cache[key]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T) int64. Returns logits (B, T, V), or the mean CE loss."""
        x = self.embed(idx)
        cos, sin = self._rope_tables(idx.shape[1], idx.device, x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def count_params(cfg: ModelConfig, non_embedding: bool = False) -> int:
    """Parameter count without building the weights (meta device)."""
    with torch.device("meta"):
        model = GPT(cfg)
    n = sum(p.numel() for p in model.parameters())
    return n - model.embed.weight.numel() if non_embedding else n
