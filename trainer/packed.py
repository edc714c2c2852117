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

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .batched import StackedLM
from .config import ConfigError, TrainConfig
from .data import Sampler
from .device import autocast_for, resolve_device
from .lm import LMProblem, init_model
from .loop import inner_lr, train_divergence
from .memory import check_memory
from .outer import OuterOptimizer
from .result import TrainResult

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
    """One packed trial's state: the bookkeeping of trainer.loop.run_diloco, per trial."""

    k: int
    cfg: TrainConfig
    outer: OuterOptimizer
    initial: float
    n_params: int
    t0: float
    status: str = "completed"
    reason: str | None = None
    last: float = math.nan
    best: float = math.inf
    peak: float = -math.inf
    tokens: int = 0
    wall_s: float = 0.0
    done: bool = False
    losses: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last = self.initial

    def finish(self, status: str, reason: str | None = None, last: float | None = None) -> None:
        self.status, self.reason, self.done = status, reason, True
        if last is not None:
            self.last = last
        self.wall_s = time.perf_counter() - self.t0

    def result(self) -> TrainResult:
        c = self.curve
        return TrainResult(
            status=self.status, initial_loss=self.initial, final_loss=self.last,
            best_loss=self.best if c else self.initial,
            peak_loss=self.peak if len(c) > 1 else (c[0]["eval_loss"] if c else self.initial),
            outer_steps_done=len(c), tokens=self.tokens, wall_s=self.wall_s,
            n_params=self.n_params, reason=self.reason, curve=c)


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
        self.active = [_Member(k, c, OuterOptimizer([t[k] for t in self.theta], c.alpha, c.beta,
                                                    c.outer, c.R), initial[k], first.n_params, t0)
                       for k, c in enumerate(configs)]
        self.members = list(self.active)

    def drop_done(self) -> None:
        """Remove finished members from θ and from the worker stack; rebind the others' views."""
        keep = [j for j, m in enumerate(self.active) if not m.done]
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
    cfg, pack = configs[0], _Pack(configs, t0)
    M = pack.M
    for m in pack.active:
        if not math.isfinite(m.initial):
            m.finish("diverged", f"initial eval loss is {m.initial}", m.initial)
    pack.drop_done()

    for t in range(cfg.outer_steps):
        if not pack.active:
            break
        for m in pack.active:
            m.outer.maybe_restart(t)
            m.losses = []
        pack.stack.load(pack.theta)                                     # θ_i ← θ_k, per trial
        for h in range(cfg.H):
            step = pack.stack.step(inner_lr(cfg, t * cfg.H + h))          # (K'·M,) losses
            for j, m in enumerate(pack.active):
                mine = step[j * M:(j + 1) * M]
                m.losses.extend(mine)
                m.tokens += pack.tokens_per_step * M
                if not all(map(math.isfinite, mine)):
                    train_loss = sum(m.losses) / len(m.losses)
                    m.finish("diverged", f"inner train loss turned {train_loss} in round {t}", train_loss)
                elif (early := train_divergence(m.cfg, m.losses, h, M, m.initial, t)) is not None:
                    m.finish("diverged", early[1], early[0])
            pack.drop_done()
            if not pack.active:
                break
        if not pack.active:
            break

        deltas = torch._foreach_sub(pack.theta, pack.stack.group_mean(len(pack.active)))  # Δ_k
        stats = [m.outer.step([d[j] for d in deltas]) for j, m in enumerate(pack.active)]
        evals = pack.stack.evaluate(pack.theta, pack.eval_data)
        for m, st, last in zip(pack.active, stats, evals):
            m.last, m.best = last, min(m.best, last)
            if t > 0:
                m.peak = max(m.peak, last)
            row = {"outer_step": t, "tokens": m.tokens, "eval_loss": last,
                   "train_loss": sum(m.losses) / len(m.losses), **st,
                   "wall_s": time.perf_counter() - t0}
            m.curve.append(row)
            if on_step is not None:
                on_step(m.k, row)
            if not math.isfinite(last):
                m.finish("diverged", f"eval loss turned {last} after round {t}")
            elif last > m.cfg.diverge_factor * m.initial:
                m.finish("diverged", f"eval loss {last:.4g} > diverge_factor {m.cfg.diverge_factor:g}"
                                     f" x initial {m.initial:.4g} after round {t}")
        pack.drop_done()

    for m in pack.active:
        m.finish("completed")
    return [m.result() for m in pack.members]
