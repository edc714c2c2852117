"""TrainConfig: every setting of one DiLoCo trial, typed, documented and validated.

Field names follow the words of docs/design.md: alpha, beta, H, R, workers, outer_steps, seed.
A config is flat on purpose: one trial row in Parquet carries every field as a column.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

from .outer_rules import OUTER_RULES

__all__ = ["TrainConfig", "ConfigError", "INT_MAX", "SEED_MAX", "TRIAL_KINDS", "KIND_ONLY",
           "SPLITS", "DTYPES", "DEVICES", "BATCHED", "BATCHED_ON_CPU", "nearest"]

TRIAL_KINDS = ("lm", "toy")
KIND_ONLY: dict[str, tuple[str, ...]] = {
    "lm": ("model", "corpus", "vocab_size", "split", "seq_len", "batch_size", "warmup_steps",
           "min_lr_ratio", "weight_decay", "adam_beta1", "adam_beta2", "grad_clip",
           "eval_batches", "dtype", "batched"),
    "toy": ("toy_dim", "toy_power", "toy_noise", "toy_batch"),
}
"""Fields only one trial kind reads (trainer/lm.py, trainer/toy.py); the other kind ignores
them, so a report of a sweep of one kind does not list the other's."""
SPLITS = ("iid", "by_file")
DTYPES = ("float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
BATCHED = ("auto", "on", "off")
BATCHED_ON_CPU = True
"""batched=auto on CPU: stacked M=4 tiny workers measured 1.17-1.49x the sequential inner-step
rate on 2 cores (docs/performance.md), never slower; flip here if a machine says otherwise."""


INT_MAX = 2**31 - 1
"""Upper bound of every integer setting but the seed: counts and sizes torch and numpy index
with 32-bit integers; anything near it is refused by the memory check or runs for ever."""
SEED_MAX = 2**63 - 1
"""Upper bound of the seed: the largest value a Parquet int64 column stores and
``torch.manual_seed`` takes (a larger seed used to train, then fail to be stored)."""


class ConfigError(ValueError):
    """A setting is out of range; the message names the field and what is allowed."""


@dataclass
class TrainConfig:
    """One trial: the DiLoCo loop of docs/design.md on one model, one corpus, one seed."""

    # --- the outer loop (swept) ---
    alpha: float = 0.7
    """α, outer learning rate (> 0)."""
    beta: float = 0.9
    """β, outer momentum, in [0, 1)."""
    H: int = 10
    """Inner AdamW steps per outer step (communication period), >= 1."""
    R: int = 0
    """Restart period of the outer momentum in outer steps; 0 means never."""
    workers: int = 4
    """M, number of DiLoCo workers, >= 1."""
    outer_steps: int = 15
    """T, outer steps (rounds) per trial, >= 1."""
    seed: int = 0
    """Seeds the model init and every worker's data stream."""
    outer: str = "nesterov"
    """Outer update rule, a name in trainer.outer_rules.OUTER_RULES: nesterov (torch SGD
    nesterov=True convention), heavy_ball, adam (Adam on Δ, β as its β1), or any rule
    registered there."""
    outer_beta2: float = 0.999
    """β₂ of outer=adam, the decay of its second moment, in [0, 1); default 0.999, torch
    Adam's. The other rules ignore it."""
    outer_eps: float = 1e-8
    """ε of outer=adam, added to √v̂ (outside the root, as torch), a finite number > 0; default
    1e-8, torch Adam's. The other rules ignore it."""

    # --- what is trained ---
    kind: str = "lm"
    """lm: the transformer LM trial; toy: the linear-regression model of the theory."""
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

    # --- the inner optimizer (AdamW, one global warmup+cosine schedule over T*H steps) ---
    lr: float = 3e-3
    """Peak inner learning rate."""
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

    # --- evaluation and divergence ---
    eval_batches: int = 4
    """Fixed held-out batches for eval loss (the same for every trial and seed)."""
    diverge_factor: float = 2.0
    """Diverged when eval loss exceeds diverge_factor * initial loss (or is non-finite)."""
    diverge_check_every: int = 0
    """Also diverged, mid-round, when the workers' mean train loss over the last k inner steps
    exceeds diverge_factor * initial loss, checked every k steps (0: off). Free: reuses losses."""

    # --- toy trial (kind: toy) ---
    toy_dim: int = 2000
    """Toy: dimension of the linear-regression problem."""
    toy_power: float = 1.0
    """Toy: eigenvalues follow lambda_k = k^-toy_power (power-law spectrum)."""
    toy_noise: float = 0.0
    """Toy: label-noise standard deviation (0: noiseless, the linearized theory's setting)."""
    toy_batch: int = 0
    """Toy: samples per inner SGD step; 0 means full-batch gradient descent."""

    # --- runtime ---
    device: str = "auto"
    """auto (CUDA when available), cpu or cuda."""
    dtype: str = "float32"
    """Autocast compute dtype on CUDA: float32 or bfloat16 (CPU always computes float32)."""
    threads: int = 0
    """torch intra-op threads for this trial; 0 leaves torch's default."""
    batched: str = "auto"
    """LM workers as one stacked computation: on, off (sequential reference), or auto (where
    measured faster; see ``batched_on``). Same math either way."""

    def __post_init__(self) -> None:
        self.validate()

    def batched_on(self, device_type: str) -> bool:
        """Whether the workers run stacked on a device of this type ('cpu', 'cuda'): on/off as
        asked; auto: for M > 1 on CUDA, and on CPU if BATCHED_ON_CPU. Batched workers hold all
        M workers' activations at once (sequential ones, one worker's): set batched=off where
        memory is short. The trainer and the memory estimate both ask here."""
        if self.batched != "auto":
            return self.batched == "on"
        return self.workers > 1 and (device_type == "cuda" or BATCHED_ON_CPU)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range."""
        _check_number(self, "alpha", lambda v: v > 0, "a finite number > 0")
        _check_number(self, "beta", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_int(self, "H", 1)
        _check_int(self, "R", 0)
        _check_int(self, "workers", 1)
        _check_int(self, "outer_steps", 1)
        _check_int(self, "seed", 0, SEED_MAX)
        _check_choice(self, "outer", tuple(OUTER_RULES))  # the registry, read when checked
        _check_number(self, "outer_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_number(self, "outer_eps", lambda v: v > 0, "a finite number > 0")
        _check_choice(self, "kind", TRIAL_KINDS)
        _check_choice(self, "split", SPLITS)
        _check_choice(self, "device", DEVICES)
        _check_choice(self, "dtype", DTYPES)
        _check_int(self, "vocab_size", 2)
        _check_int(self, "seq_len", 2)
        _check_int(self, "batch_size", 1)
        _check_number(self, "lr", lambda v: v > 0, "a finite number > 0")
        _check_int(self, "warmup_steps", 0)
        _check_number(self, "min_lr_ratio", lambda v: 0 <= v <= 1, "a number in [0, 1]")
        _check_number(self, "weight_decay", lambda v: v >= 0, "a number >= 0")
        _check_number(self, "adam_beta1", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_number(self, "adam_beta2", lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_number(self, "grad_clip", lambda v: v >= 0, "a number >= 0 (0: no clipping)")
        _check_int(self, "eval_batches", 1)
        _check_number(self, "diverge_factor", lambda v: v > 1, "a number > 1")
        _check_int(self, "toy_dim", 1)
        _check_number(self, "toy_power", lambda v: v >= 0, "a number >= 0")
        _check_number(self, "toy_noise", lambda v: v >= 0, "a number >= 0")
        _check_int(self, "toy_batch", 0)
        _check_int(self, "threads", 0)
        _check_int(self, "diverge_check_every", 0)
        _check_choice(self, "batched", BATCHED)
        if not isinstance(self.model, (str, dict)):
            raise ConfigError(f"model: expected a preset name or a mapping of model fields, "
                              f"got {type(self.model).__name__}")
        if not isinstance(self.corpus, str) or not self.corpus:
            raise ConfigError("corpus: expected 'stdlib' or a path to a text or .bin token file")

    # ------------------------------------------------------------- conversion
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys are refused with the nearest known name."""
        known = set(cls.field_names())
        for key in d:
            if key not in known:
                raise ConfigError(f"{key}: not a trainer setting{_suggest(key, known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar but ``model``, which may be a mapping: copy that one deeply
        # (dataclasses.asdict deep-copies every field, the cost of planning a large grid)
        d = {name: getattr(self, name) for name in _FIELDS}
        if isinstance(d["model"], dict):
            d["model"] = copy.deepcopy(d["model"])
        return d

    def flat(self) -> dict[str, Any]:
        """Scalar columns for a Parquet row: a model mapping becomes its JSON text."""
        d = self.to_dict()
        if isinstance(d["model"], dict):
            d["model"] = json.dumps(d["model"], sort_keys=True)
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def nearest(key: object, known: Iterable[str]) -> str | None:
    """The known name closest to a mistyped ``key``, if any is close (the one spelling hint
    of every "unknown key" message, here and in the sweep spec). A name that differs only in
    case comes first (``r`` is ``R``, not ``lr``); else difflib's closest."""
    known = list(known)
    same = [k for k in known if k.casefold() == str(key).casefold()]
    if same:
        return same[0]
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(key: str, known: set[str]) -> str:
    close = nearest(key, sorted(known))
    return f" (did you mean '{close}'?)" if close else f"; known: {', '.join(sorted(known))}"


def _check_number(cfg: TrainConfig, name: str, ok, allowed: str) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name}: expected {allowed}, got {v!r}")
    if not math.isfinite(v) or not ok(v):
        raise ConfigError(f"{name}: expected {allowed}, got {v!r}")


def _check_int(cfg: TrainConfig, name: str, low: int, high: int = INT_MAX) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {v!r}")
    if v > high:
        raise ConfigError(f"{name}: expected an integer from {low} to {high}, got {v!r}")


def _check_choice(cfg: TrainConfig, name: str, allowed: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {v!r}")
