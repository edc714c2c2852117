"""The LM trial (kind: lm): a small byte-level transformer on a corpus, AdamW workers.

Its settings, its memory and FLOP models; the Problem is ``trainer.lm.LMProblem`` and the
packed stack ``trainer.packed.LMStack``, imported when asked for (they import torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..checks import ConfigError, check_choice, check_int, check_number
from ..memory import MemoryEstimate
from ..model_config import count_params, resolve_model
from .base import FlopModel, TrialKind

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = ["LMSettings", "LMKind", "LM", "SPLITS", "DTYPES", "BATCHED"]

SPLITS = ("iid", "by_file")
DTYPES = ("float32", "bfloat16")
BATCHED = ("auto", "on", "off")


@dataclass
class LMSettings:
    """The settings only an LM trial reads."""

    # --- what is trained ---
    model: str | dict = "tiny"
    """A preset name from trainer.PRESETS, or a mapping of ModelConfig fields."""
    corpus: str = "stdlib"
    """stdlib (Python's own source), a text file, or a uint16 token file (*.bin)."""
    vocab_size: int = 256
    """Vocabulary size; 256 for byte tokens, set it to the tokenizer's for a .bin corpus."""
    split: str = "iid"
    """How workers' shards differ: iid (same distribution) or by_file (contiguous files)."""
    seq_len: int = 64
    """Tokens per training sequence."""
    batch_size: int = 8
    """Sequences per inner step, per worker."""
    micro_batches: int = 1
    """Gradient accumulation: each inner step's batch_size sequences run as this many equal
    micro-batches whose gradients add up before the one AdamW step, so a step holds one
    micro-batch's activations at a time. The same step up to float rounding, so a runtime
    setting (records.identity.RUNTIME_FIELDS): it never enters a trial id. batch_size must
    divide by it."""

    # --- the inner optimizer (AdamW, one global warmup+cosine schedule over T*H steps) ---
    warmup_steps: int = 10
    """Linear warmup length in inner steps, counted over the whole trial."""
    min_lr_ratio: float = 0.1
    """Cosine decays the inner LR to lr * min_lr_ratio at the last inner step."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms)."""
    adam_beta1: float = 0.9
    """AdamW first-moment decay."""
    adam_beta2: float = 0.95
    """AdamW second-moment decay."""
    grad_clip: float = 1.0
    """Clip each inner gradient to this global norm; 0 turns clipping off."""

    # --- evaluation ---
    eval_batches: int = 4
    """Fixed held-out batches for eval loss (the same for every trial and seed)."""

    # --- runtime ---
    dtype: str = "float32"
    """Autocast compute dtype on CUDA: float32 or bfloat16 (CPU always computes float32)."""
    batched: str = "auto"
    """LM workers as one stacked computation: on, off (sequential reference), or auto (where
    measured faster; see ``TrainConfig.batched_on``). Same math either way."""

    def check(self) -> None:
        """Raise ConfigError naming the first of these settings that is out of range."""
        check_choice(self, "split", SPLITS)
        check_choice(self, "dtype", DTYPES)
        check_int(self, "vocab_size", 2)
        check_int(self, "seq_len", 2)
        check_int(self, "batch_size", 1)
        check_int(self, "micro_batches", 1)
        if self.batch_size % self.micro_batches:
            raise ConfigError(f"micro_batches: {self.micro_batches} does not divide batch_size "
                              f"{self.batch_size}; micro-batches are equal, so pick a divisor")
        check_int(self, "warmup_steps", 0)
        check_number(self, "min_lr_ratio", lambda v: 0 <= v <= 1, "a number in [0, 1]")
        check_number(self, "weight_decay", lambda v: v >= 0, "a number >= 0")
        check_number(self, "adam_beta1", lambda v: 0 <= v < 1, "a number in [0, 1)")
        check_number(self, "adam_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)")
        check_number(self, "grad_clip", lambda v: v >= 0, "a number >= 0 (0: no clipping)")
        check_int(self, "eval_batches", 1)
        check_choice(self, "batched", BATCHED)
        if not isinstance(self.model, (str, dict)):
            raise ConfigError(f"model: expected a preset name or a mapping of model fields, "
                              f"got {type(self.model).__name__}")
        if not isinstance(self.corpus, str) or not self.corpus:
            raise ConfigError("corpus: expected 'stdlib' or a path to a text or .bin token file")


class LMKind(TrialKind):
    name = "lm"
    settings = LMSettings
    memory_keys = ("model", "vocab_size", "workers", "batch_size", "micro_batches", "seq_len",
                   "batched", "device")
    cost_keys = ("model", "vocab_size", "seq_len", "batch_size", "H", "workers", "outer_steps",
                 "inner_steps_budget", "eval_batches")

    def problem(self, cfg: "TrainConfig"):
        from ..lm import LMProblem

        return LMProblem(cfg)

    def stack(self):
        from ..packed import LMStack

        return LMStack

    def memory(self, cfg: "TrainConfig", device: str) -> MemoryEstimate:
        """fp32 state per parameter: the global θ, the outer momentum m, Δ and the workers'
        mean (4 copies), plus per worker θ_i, its gradient and AdamW's two moments (4 copies
        each). Activations kept for backward, per worker and per layer, for B sequences of T
        tokens: about 10·d + 4·d_ff floats per token, plus the n_head·T² attention
        probabilities of the math attention kernel; and 3·V floats per token for the logits
        and their softmax grad."""
        m = resolve_model(cfg.model, cfg.vocab_size)
        p = count_params(m)
        state = 4 * p * (4 + 4 * cfg.workers)
        micro = cfg.batch_size // cfg.micro_batches      # sequences whose activations are held
        tokens = micro * cfg.seq_len
        per_layer = tokens * (10 * m.d_model + 4 * m.d_ff)
        if device != "cuda":  # CUDA's fused attention kernels never store the T x T probabilities
            per_layer += micro * m.n_head * cfg.seq_len ** 2
        per_worker = 4 * (m.n_layer * per_layer + 3 * tokens * m.vocab_size)
        # batched workers hold every worker's activations at once; sequential ones, one at a time
        at_once = cfg.workers if cfg.batched_on(device) else 1
        return MemoryEstimate(p, state, per_worker * at_once)

    def too_big(self, cfg: "TrainConfig") -> tuple[str, str]:
        return (f"model: {cfg.model!r} with workers={cfg.workers}, batch_size={cfg.batch_size}, "
                f"seq_len={cfg.seq_len}",
                "a smaller model, fewer workers, more micro_batches, a smaller batch_size or "
                "seq_len")

    flop_formula = ("FLOP = (6·N + 12·L·d·T) per training token + (2·N + 4·L·d·T) per eval "
                    "token; N = weights that multiply, L·d·T = layers · width · seq_len")

    def flops(self, cfg: "TrainConfig") -> FlopModel:
        """PaLM's model FLOPs (sweeps/estimate/cost.py's docstring): 6·N + 12·L·d·T per training token,
        (2·N + 4·L·d·T) per eval token, N the weights that multiply."""
        m = resolve_model(cfg.model, cfg.vocab_size)
        n = count_params(m, non_embedding=True)
        if m.tie_embeddings:
            n += m.vocab_size * m.d_model  # the head multiplies by the shared embedding matrix
        attn = m.n_layer * m.d_model * cfg.seq_len  # L·d·T
        eval_tokens = cfg.eval_batches * cfg.batch_size * cfg.seq_len
        return FlopModel(params=count_params(m), flop_params=n,
                         train_flops_per_token=6.0 * n + 12.0 * attn,
                         eval_flops=(2.0 * n + 4.0 * attn) * eval_tokens,
                         tokens_per_round=cfg.workers * cfg.H * cfg.batch_size * cfg.seq_len)


LM = LMKind()
