"""Packed trials: K LM trials of one shape trained in one process as one stacked computation.

The K trials share the model, workers, H, outer_steps and data settings, and differ in α, β, R,
seed and the outer rule (PACKABLE). Their K·M workers are the slots of one trainer.batched
StackedLM; each trial keeps its own global θ_k (a slice of a (K, *shape) stack), its own outer
optimizer, its own eval loss, curve and result. Each trial runs the loop of trainer.loop
exactly, so its result matches the same config run alone (tests/test_packed.py).

A trial that diverges is finished at once, with the reason the single-trial loop would give,
and its M slots are dropped from the stack (mid-round when an inner loss shows it), so it
costs nothing from then on while the others go on.

    results = train_packed([cfg.replace(alpha=a, beta=b) for a, b in grid],
                           on_step=lambda k, row: print(k, row["eval_loss"]))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .batched import StackedLM
from .config import ConfigError, TrainConfig
from .data import Sampler
from .device import autocast_for, resolve_device
from .lm import LMProblem, init_model
from .loop import inner_lr
from .memory import check_memory
from .outer import OuterOptimizer, pseudo_gradient
from .result import TrainResult
from .tracker import TrialTracker

__all__ = ["train_packed", "check_packable", "PACKABLE"]

PACKABLE = ("alpha", "beta", "R", "seed", "outer", "diverge_factor", "batched")
"""The settings packed trials may differ in (batched is moot: packing always stacks)."""


def check_packable(configs: list[TrainConfig]) -> None:
    """Raise ConfigError naming the first setting, outside PACKABLE, that the trials differ in."""
    if not configs:
        raise ConfigError("configs: expected at least one trial to pack")
    for k, c in enumerate(configs):
        if c.kind != "lm":
            raise ConfigError(f"kind: packed trials must be lm trials; trial {k} has {c.kind!r}")
    base = configs[0].to_dict()
    for k, c in enumerate(configs[1:], start=1):
        d = c.to_dict()
        for name in TrainConfig.field_names():
            if name not in PACKABLE and d[name] != base[name]:
                raise ConfigError(
                    f"{name}: packed trials must share it, but trial 0 has {base[name]!r} and "
                    f"trial {k} has {d[name]!r}; only {', '.join(PACKABLE)} may differ")


@dataclass
class _Member:
    """One packed trial: its index, its outer optimizer (over its slice of θ) and its tracker."""

    k: int
    outer: OuterOptimizer
    track: TrialTracker


def train_packed(configs: list[TrainConfig],
                 on_step: Callable[[int, dict[str, Any]], None] | None = None) -> list[TrainResult]:
    """Train K trials of one shape together; results[k] is trial k's, as train(configs[k]) gives.

    `on_step(k, row)` gets trial k's curve row after each of its rounds. Settings that differ
    outside PACKABLE raise ConfigError before anything is built.
    """
    check_packable(configs)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if configs[0].threads:
        torch.set_num_threads(configs[0].threads)
    try:
        return _run(configs, on_step, t0)
    finally:
        torch.set_num_threads(threads)


class _Pack:
    """The active members, their stacked global θ (K', *shape) and their K'·M worker slots."""

    def __init__(self, configs: list[TrainConfig], t0: float):
        cfg = configs[0]
        self.M, cpu = cfg.workers, torch.device("cpu")
        # all K·M workers are stacked at once: check memory for that many, before building
        check_memory(cfg.replace(workers=len(configs) * cfg.workers, batched="on"),
                     resolve_device(cfg).type)
        first = LMProblem(cfg)                            # corpus, eval batches, trial 0's init
        inits = [first.params] + [list(init_model(c, first.device).parameters()) for c in configs[1:]]
        self.eval_data, self.tokens_per_step = first.eval_data, first.tokens_per_step
        self.theta = [torch.stack([p[j].detach() for p in inits]) for j in range(len(first.params))]
        samplers = [Sampler(first.corpus, i, self.M, c.split, c.seed, c.batch_size, c.seq_len, cpu)
                    for c in configs for i in range(self.M)]
        self.stack = StackedLM(first.model, cfg, samplers, first.device,
                               autocast_for(cfg, first.device))
        initial = self.stack.evaluate(self.theta, self.eval_data)
        self.active = [_Member(k, OuterOptimizer([t[k] for t in self.theta], c.alpha, c.beta,
                                                 c.outer, c.R),
                               TrialTracker(c, initial[k], first.n_params,
                                            self.tokens_per_step, t0))
                       for k, c in enumerate(configs)]
        self.members = list(self.active)

    def drop_done(self) -> None:
        """Remove finished members from θ and from the worker stack; rebind the others' views."""
        keep = [j for j, m in enumerate(self.active) if not m.track.done]
        if len(keep) == len(self.active):
            return
        self.active = [self.active[j] for j in keep]
        if not keep:
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.theta[0].device)
        self.theta = [t.index_select(0, index) for t in self.theta]
        self.stack.keep([j * self.M + i for j in keep for i in range(self.M)])
        for j, m in enumerate(self.active):
            m.outer.params = [t[j] for t in self.theta]   # the outer step updates θ_j in place


def _run(configs: list[TrainConfig], on_step, t0: float) -> list[TrainResult]:
    """trainer.loop.run_diloco over the pack: the same steps, each trial's own tracker."""
    cfg, pack = configs[0], _Pack(configs, t0)
    M = pack.M
    pack.drop_done()                                  # a non-finite initial loss: done already
    for t in range(cfg.outer_steps):
        if not pack.active:
            break
        for m in pack.active:
            m.outer.maybe_restart(t)
            m.track.start_round()
        pack.stack.load(pack.theta)                                     # θ_i ← θ_k, per trial
        for h in range(cfg.H):
            step = pack.stack.step(inner_lr(cfg, t * cfg.H + h))          # (K'·M,) losses
            for j, m in enumerate(pack.active):
                m.track.inner(t, h, step[j * M:(j + 1) * M])
            pack.drop_done()                          # a diverged trial costs nothing more
            if not pack.active:
                break
        if not pack.active:
            break
        deltas = pseudo_gradient(pack.theta, pack.stack.group_mean(len(pack.active)))  # Δ_k
        stats = [m.outer.step([d[j] for d in deltas]) for j, m in enumerate(pack.active)]
        evals = pack.stack.evaluate(pack.theta, pack.eval_data)
        for m, st, last in zip(pack.active, stats, evals):
            row = m.track.end_round(t, st, last)
            if on_step is not None:
                on_step(m.k, row)
        pack.drop_done()
    return [m.track.result() for m in pack.members]
