"""Batched workers: S model copies stacked on a leading dim and trained as one computation.

The M workers of one trial (``BatchedGroup``), or the K·M workers of K packed trials
(``trainer.packed``), are S *slots*. Every parameter is one tensor of shape (S, *shape); the
forward pass is GPT.forward with each nn.Linear turned into a batched matmul (bmm) and the
attention batch widened from B to S·B. Summing the S losses before backward gives each slot
exactly its own gradient, because no slot's loss depends on another slot's weights.

Each slot keeps the sequential path's math: its own Sampler stream, its own gradient-norm clip
(clip_grad_norm_ over its own parameters) and its own AdamW state, updated with the op sequence
of torch.optim.AdamW(foreach=True). Only reduction orders inside matmuls differ, so curves
agree with the sequential reference to float rounding (tests/test_batched.py).

Why a second copy of GPT.forward and of AdamW stays here: ``vmap(functional_call(model, ...))``
derives the same forward from the one model and gives bit-identical losses, but PyTorch has no
vmap batching rule for scaled_dot_product_attention and falls back to a loop over the slots:
one attention call per slot instead of one for all. On 2 quiet CPU cores the written-out
forward is 0.98x to 1.18x as fast at 4 slots and 1.28x at 16, the gap growing with the slots
(``python -m benchmarks stacked_forward``; docs/performance.md); on a GPU, where packs reach
K·M = 64 slots, the fallback is one kernel launch per slot (not measured here). torch.optim.AdamW over the stacked tensors would do the same elementwise math,
but packed trials drop finished slots mid-run (``keep``), which its per-parameter state cannot
follow without being rebuilt. tests/test_batched.py holds both copies equal to the model's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .data import Sampler
from .device import autocast_for
from .model import GPT, _rope

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["stacked_loss", "clip_per_slot_", "StackedAdamW",
           "StackedLM", "BatchedGroup"]

def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # x: (S, N, in), w: (S, out, in) as nn.Linear stores it -> (S, N, out)
    return torch.bmm(x, w.transpose(1, 2))


def _norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    # RMSNorm per slot: x (S, N, C), gains w (S, C); rms_norm(x, w) computes (x * rsqrt) * w too
    return F.rms_norm(x, (x.shape[-1],), None, eps) * w.unsqueeze(1)


def stacked_loss(model: GPT, params: dict[str, torch.Tensor], idx: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each slot: GPT.forward on slot s's weights and batch.

    params: model.named_parameters() names -> (S, *shape); idx, targets: (S, B, T) int64.
    Returns (S,) losses. `model` only lends its config and rotary tables.
    """
    cfg = model.cfg
    S, B, T = idx.shape
    V, C, nh = cfg.vocab_size, cfg.d_model, cfg.n_head
    embed = params["embed.weight"]                                   # (S, V, C)
    head = params.get("head.weight", embed)                          # tied: the same tensor
    offset = (torch.arange(S, device=idx.device) * V).view(S, 1, 1)  # slot s reads rows s·V..
    x = F.embedding((idx + offset).view(S, B * T), embed.reshape(S * V, C))  # (S, B·T, C)
    cos, sin = model._rope_tables(T, idx.device, x.dtype)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        qkv = _linear(_norm(x, params[p + "attn_norm.weight"], cfg.norm_eps), params[p + "qkv.weight"])
        # (S, B·T, C) each -> (S·B, n_head, T, head_dim): the slots widen the attention batch
        q, k, v = (t.reshape(S * B, T, nh, C // nh).transpose(1, 2) for t in qkv.split(C, dim=-1))
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + _linear(y.transpose(1, 2).reshape(S, B * T, C), params[p + "attn_out.weight"])
        h = _linear(_norm(x, params[p + "mlp_norm.weight"], cfg.norm_eps), params[p + "gate_up.weight"])
        gate, up = h.chunk(2, dim=-1)
        x = x + _linear(F.silu(gate) * up, params[p + "down.weight"])
    logits = _linear(_norm(x, params["norm.weight"], cfg.norm_eps), head)       # (S, B·T, V)
    ce = F.cross_entropy(logits.float().reshape(S * B * T, V), targets.reshape(-1), reduction="none")
    return ce.view(S, B * T).mean(dim=1)


@torch.no_grad()
def clip_per_slot_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_(foreach=True) for every slot over its own parameters; returns (S,) norms."""
    S = grads[0].shape[0]
    # (S, P): each slot's norm of each parameter; one reduction per parameter, not per slot
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(S, -1), dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, dim=1)                                       # (S,)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(S, *([1] * (g.dim() - 1))))
    return total


class StackedAdamW:
    """Per-slot AdamW state on stacked tensors; step() is torch.optim.AdamW(foreach=True)'s math.

    Decay on parameters that are matrices per slot (stacked dim >= 3), none on norm gains, as
    trainer.lm.adamw_for groups them. All slots step together, so one step count serves all.
    """

    def __init__(self, params: list[torch.Tensor], cfg: TrainConfig, eps: float = 1e-8):
        self.beta1, self.beta2, self.eps, self.wd = cfg.adam_beta1, cfg.adam_beta2, eps, cfg.weight_decay
        self.decay = [p.dim() >= 3 for p in params]
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: float) -> None:
        self.steps += 1
        b1, b2, step = self.beta1, self.beta2, float(self.steps)
        for decay, wd in ((True, self.wd), (False, 0.0)):
            idx = [i for i, d in enumerate(self.decay) if d == decay]
            if not idx:
                continue
            p, g = [params[i] for i in idx], [grads[i] for i in idx]
            m, v = [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx]
            if wd != 0:
                torch._foreach_mul_(p, 1 - lr * wd)                       # decoupled decay
            torch._foreach_lerp_(m, g, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, g, g, 1 - b2)
            step_size = (lr / (1 - b1 ** step)) * -1
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, (1 - b2 ** step) ** 0.5)
            torch._foreach_add_(denom, self.eps)                        # eps after the bias fix
            torch._foreach_addcdiv_(p, m, denom, step_size)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the slots in `index` (a 1-D long tensor), in that order."""
        self.exp_avg = [t.index_select(0, index) for t in self.exp_avg]
        self.exp_avg_sq = [t.index_select(0, index) for t in self.exp_avg_sq]


class StackedLM:
    """S slots of one model shape: stacked parameters, AdamW states and data streams."""

    def __init__(self, model: GPT, cfg: TrainConfig, samplers: list[Sampler], device: torch.device,
                 autocast):
        self.model, self.cfg, self.samplers = model, cfg, samplers
        self.device, self.autocast = device, autocast
        named = list(model.named_parameters())       # remove_duplicate: a tied head is not listed
        self.names = [n for n, _ in named]
        S = len(samplers)
        self.params = [p.detach().unsqueeze(0).repeat(S, *([1] * p.dim())).requires_grad_()
                       for _, p in named]
        self.opt = StackedAdamW(self.params, cfg)

    @property
    def slots(self) -> int:
        return len(self.samplers)

    @torch.no_grad()
    def load(self, theta: list[torch.Tensor]) -> None:
        """Slot s ← member s // (S/G) of θ, where θ's tensors are (G, *shape), G dividing S."""
        for p, t in zip(self.params, theta):
            G = t.shape[0]
            p.view(G, -1, *t.shape[1:]).copy_(t.unsqueeze(1).expand(G, p.shape[0] // G, *t.shape[1:]))

    def step(self, lr: float) -> list[float]:
        """One inner step on every slot's next batch; returns the S losses before the step."""
        xs, ys = zip(*(s.next() for s in self.samplers))
        idx = torch.stack(xs).to(self.device, non_blocking=True)        # (S, B, T)
        tgt = torch.stack(ys).to(self.device, non_blocking=True)
        named = dict(zip(self.names, self.params))
        n = self.cfg.micro_batches
        if n == 1:
            with self.autocast:
                losses = stacked_loss(self.model, named, idx, tgt)
            for p in self.params:
                p.grad = None
            losses.sum().backward()
        else:  # gradient accumulation (TrainConfig.micro_batches): a micro-batch at a time
            for p in self.params:
                p.grad = None
            losses = 0.0
            for i_, t_ in zip(idx.chunk(n, 1), tgt.chunk(n, 1)):
                with self.autocast:
                    part = stacked_loss(self.model, named, i_, t_) / n
                part.sum().backward()
                losses = losses + part.detach()
        grads = [p.grad for p in self.params]
        if self.cfg.grad_clip > 0:
            clip_per_slot_(grads, self.cfg.grad_clip)
        self.opt.step(self.params, grads, lr)
        return losses.detach().tolist()

    @torch.no_grad()
    def group_mean(self, groups: int) -> list[torch.Tensor]:
        """Mean over each run of S/groups consecutive slots: (groups, *shape) per parameter.

        Summed slot by slot, then divided, as trainer.outer.average does for the sequential
        workers, so the mean carries the same rounding.
        """
        out = []
        for p in self.params:
            v = p.detach().view(groups, -1, *p.shape[1:])
            acc = v[:, 0].clone()
            for i in range(1, v.shape[1]):
                acc.add_(v[:, i])
            if v.shape[1] > 1:
                acc.div_(float(v.shape[1]))
            out.append(acc)
        return out

    @torch.no_grad()
    def evaluate(self, theta: list[torch.Tensor], batches) -> list[float]:
        """Held-out loss of each of the G stacked models θ ((G, *shape) tensors) on `batches`."""
        G = theta[0].shape[0]
        totals = [0.0] * G
        named = dict(zip(self.names, theta))
        with self.autocast:
            for x, y in batches:
                losses = stacked_loss(self.model, named, x.expand(G, *x.shape), y.expand(G, *y.shape))
                totals = [a + b for a, b in zip(totals, losses.tolist())]
        return [t / len(batches) for t in totals]

    def keep(self, slots: list[int]) -> None:
        """Drop every slot not in `slots`: a diverged trial stops costing compute."""
        index = torch.tensor(slots, dtype=torch.long, device=self.device)
        self.params = [p.detach().index_select(0, index).requires_grad_() for p in self.params]
        self.opt.keep(index)
        self.samplers = [self.samplers[s] for s in slots]


class BatchedGroup:
    """The WorkerGroup of one LM trial with its M workers stacked (trainer.loop.WorkerGroup)."""

    def __init__(self, problem):
        cfg = problem.cfg

        # CPU samplers: the same streams as the sequential workers', moved to the device as one batch
        samplers = [Sampler(problem.corpus, i, cfg.workers, cfg.split, cfg.seed, cfg.batch_size,
                            cfg.seq_len, torch.device("cpu")) for i in range(cfg.workers)]
        self.stack = StackedLM(problem.model, cfg, samplers, problem.device,
                               autocast_for(cfg, problem.device))

    def load(self, theta: list[torch.Tensor]) -> None:
        self.stack.load([t.unsqueeze(0) for t in theta])

    def inner_step(self, lr: float) -> list[float]:
        return self.stack.step(lr)

    def mean_params(self) -> list[torch.Tensor]:
        return [m[0] for m in self.stack.group_mean(1)]
