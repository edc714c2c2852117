"""Packed trials: K trials of one shape trained in one process as one stacked computation.

The K trials share everything but α, β, R, the seed and the divergence factor (PACKABLE). A
stack holds their global θ as (K, *shape) tensors and their K·M workers as its slots: an LM
stack (``LMStack`` below, over trainer.batched.StackedLM) or a toy stack
(trainer.toy_stack.ToyStack), each its trial kind's ``stack()`` (trainer/kinds/). Each trial
keeps its own α, β and restarts (one stacked outer optimizer, per-trial coefficients), its own
eval loss, curve and result; the loop is trainer.loop's, and one
``TrialTracker`` holds the bookkeeping of all K, so each result matches the same config run
alone (tests/test_packed.py).

A trial that diverges is finished at once, with the reason the single-trial loop would give,
and its M slots are dropped from the stack (mid-round when an inner loss shows it), so it
costs nothing from then on while the others go on.

    results = train_packed([cfg.replace(alpha=a, beta=b) for a, b in grid],
                           on_step=lambda k, row: print(k, row["eval_loss"]))
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import numpy as np
import torch

from .batched import StackedLM
from .checks import ConfigError
from .data import Sampler
from .device import autocast_for, resolve_device
from .lm import LMProblem, init_model
from .loop import inner_lr
from .memory import check_memory
from .outer import OuterOptimizer, pseudo_gradient
from .outer_rules import rule_settings
from .result import TrainResult
from .tracker import TrialTracker

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["train_packed", "run_packed", "check_packable", "PACKABLE", "Stack",
           "LMStack"]

PACKABLE = tuple(dict.fromkeys(("alpha", "beta", "R", "seed", "diverge_factor", "batched")
                               + rule_settings()))
"""The settings packed trials may differ in (batched is moot: packing always stacks): α, R and
every setting an outer rule reads (β...) are per trial. The outer rule is shared: a pack takes
one stacked outer step."""


def check_packable(configs: list[TrainConfig]) -> None:
    """Raise ConfigError naming the first setting, outside PACKABLE, that the trials differ in."""
    if not configs:
        raise ConfigError("configs: expected at least one trial to pack")
    for k, c in enumerate(configs):
        if c.trial_kind.stack() is None:
            raise ConfigError(f"kind: {c.kind} trials do not pack (their kind has no stack); "
                              f"trial {k} is one")
    base = configs[0].to_dict()
    for k, c in enumerate(configs[1:], start=1):
        d = c.to_dict()
        for name in base:
            if name not in PACKABLE and d[name] != base[name]:
                raise ConfigError(
                    f"{name}: packed trials must share it, but trial 0 has {base[name]!r} and "
                    f"trial {k} has {d[name]!r}; only {', '.join(PACKABLE)} may differ")


class Stack(Protocol):
    """K trials' global θ and their workers as the slots of one computation."""

    name: str
    """The trial kind (TrainConfig.kind) it trains; ``TrialKind.stack`` returns the class."""
    theta: list[torch.Tensor]
    """The initial global parameters of the K trials, (K, *shape) each."""
    n_params: int
    tokens_per_step: int
    scheduled: bool
    """True: the inner LR follows warmup+cosine; False: constant cfg.lr (the toy theory)."""

    def load(self, theta: list[torch.Tensor]) -> None:
        """Every worker of trial k ← θ_k."""

    def step(self, lr: float) -> Any:
        """One inner step of every slot; (K'·M,) losses, trial-major."""

    def group_mean(self, groups: int) -> list[torch.Tensor]:
        """mean_i θ_i of each of the ``groups`` trials, (groups, *shape) each."""

    def evaluate(self, theta: list[torch.Tensor]) -> Any:
        """(K',) held-out losses of the stacked global models."""

    def keep(self, slots: list[int]) -> None:
        """Keep only these worker slots (those of the trials going on)."""

    def extra(self, theta: list[torch.Tensor]) -> dict[str, Any] | None:
        """Problem-specific curve columns per trial ((K', ...) arrays), or None."""

    # optional: trials_per_stack(cfg) -> int, the most trials one stack takes (a larger pack
    # runs as several stacks, one after another); else the whole pack is one stack


class LMStack:
    """K LM trials: their θ stacked, their K·M workers the slots of one StackedLM."""

    name = "lm"
    scheduled = True

    def __init__(self, configs: list[TrainConfig]):
        cfg = configs[0]
        self.M, cpu = cfg.workers, torch.device("cpu")
        # all K·M workers are stacked at once: check memory for that many, before building
        check_memory(cfg.replace(workers=len(configs) * cfg.workers, batched="on"),
                     resolve_device(cfg).type)
        first = LMProblem(cfg)                            # corpus, eval batches, trial 0's init
        inits = [first.params] + [list(init_model(c, first.device).parameters()) for c in configs[1:]]
        self.eval_data, self.tokens_per_step = first.eval_data, first.tokens_per_step
        self.n_params = first.n_params
        self.theta = [torch.stack([p[j].detach() for p in inits]) for j in range(len(first.params))]
        samplers = [Sampler(first.corpus, i, self.M, c.split, c.seed, c.batch_size, c.seq_len, cpu)
                    for c in configs for i in range(self.M)]
        self.stack = StackedLM(first.model, cfg, samplers, first.device,
                               autocast_for(cfg, first.device))
        self.load, self.step, self.keep = self.stack.load, self.stack.step, self.stack.keep
        self.group_mean = self.stack.group_mean

    def evaluate(self, theta: list[torch.Tensor]) -> list[float]:
        return self.stack.evaluate(theta, self.eval_data)

    def extra(self, theta: list[torch.Tensor]) -> None:
        return None


def train_packed(configs: list[TrainConfig],
                 on_step: Callable[[int, dict[str, Any]], None] | None = None) -> list[TrainResult]:
    """Train K trials of one shape together; results[k] is trial k's, as train(configs[k]) gives.

    `on_step(k, row)` gets trial k's curve row after each of its rounds. Settings that differ
    outside PACKABLE raise ConfigError before anything is built.
    """
    def each(t: int, idx: np.ndarray, track: TrialTracker) -> None:
        for k in idx.tolist():
            on_step(k, track.curve_row(k))

    results: list[TrainResult] = []
    for start, track in run_packed(configs, each if on_step is not None else None):
        results += track.results()
    return results


def run_packed(configs: list[TrainConfig],
               on_round: Callable[[int, np.ndarray, TrialTracker], None] | None = None
               ) -> Iterator[tuple[int, TrialTracker]]:
    """Train K trials of one shape together, as one stack or, past the stack's
    ``trials_per_stack``, as several one after another. Yields (index of the stack's first
    trial in ``configs``, its tracker), which holds every result and curve, in columns
    (``summary``, ``curve_columns``) for thousands of trials or as ``results()``.

    `on_round(t, idx, tracker)` is called after round t with the trials (of that stack) that
    took it. Settings that differ outside PACKABLE raise ConfigError before anything runs."""
    check_packable(configs)
    per = getattr(configs[0].trial_kind.stack(), "trials_per_stack", None)
    size = per(configs[0]) if per is not None else len(configs)
    for start in range(0, len(configs), size):
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        if configs[0].threads:
            torch.set_num_threads(configs[0].threads)
        try:
            track = _run(configs[start:start + size], on_round, t0)
        finally:
            torch.set_num_threads(threads)
        yield start, track


def _run(configs: list[TrainConfig], on_round, t0: float) -> TrialTracker:
    """trainer.loop.run_diloco over the stack: the same steps, each trial's own bookkeeping."""
    cfg = configs[0]
    stack = cfg.trial_kind.stack()(configs)
    M, theta = cfg.workers, stack.theta
    outer = OuterOptimizer.for_pack(theta, configs)
    track = TrialTracker(configs, np.asarray(stack.evaluate(theta)), stack.n_params,
                         stack.tokens_per_step, t0)
    idx = np.arange(len(configs))

    def drop_done() -> None:
        """Remove finished trials from θ, the outer state and the worker slots."""
        nonlocal idx, theta
        keep = np.flatnonzero(~track.done[idx])
        if len(keep) == len(idx):
            return
        idx = idx[keep]
        if len(idx) == 0:
            return
        index = torch.as_tensor(keep, dtype=torch.long, device=theta[0].device)
        theta = [t.index_select(0, index) for t in theta]
        outer.keep(index, theta)
        stack.keep([j * M + i for j in keep.tolist() for i in range(M)])

    drop_done()                                       # a non-finite initial loss: done already
    for t in range(cfg.outer_steps):
        if not len(idx):
            break
        outer.maybe_restart(t)
        track.start_round()
        stack.load(theta)                                              # θ_i ← θ_k, per trial
        for h in range(cfg.H):
            lr = inner_lr(cfg, t * cfg.H + h) if stack.scheduled else cfg.lr
            losses = np.asarray(stack.step(lr), dtype=np.float64).reshape(len(idx), M)
            track.inner(t, h, idx, losses)
            drop_done()                               # a diverged trial costs nothing more
            if not len(idx):
                break
        if not len(idx):
            break
        stats = outer.step(pseudo_gradient(theta, stack.group_mean(len(idx))))    # Δ_k
        track.end_round(t, idx, stats, np.asarray(stack.evaluate(theta)), stack.extra(theta))
        if on_round is not None:
            on_round(t, idx, track)
        drop_done()
    return track
