"""The LM trial as a `Problem` for the DiLoCo loop: a GPT, byte corpora, AdamW workers."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from .batched import BatchedGroup
from .data import Sampler, eval_batches, load_corpus
from .device import autocast_for, resolve_device
from .memory import check_memory
from .model import GPT
from .model_config import resolve_model

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["LMProblem", "LMWorker", "adamw_for", "init_model"]


def adamw_for(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (norm gains are not decayed)."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             foreach=True)


def init_model(cfg: TrainConfig, device: torch.device) -> GPT:
    """The trial's initial global model: GPT init from cfg.seed, the global RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return GPT(resolve_model(cfg.model, cfg.vocab_size)).to(device)


class LMWorker:
    """One DiLoCo worker: its own model copy θ_i, its own AdamW state, its own data stream."""

    def __init__(self, model: GPT, sampler: Sampler, cfg: TrainConfig, autocast):
        self.model, self.sampler, self.cfg, self.autocast = model, sampler, cfg, autocast
        self.params = list(model.parameters())
        self.opt = adamw_for(model, cfg)

    def inner_step(self, lr: float) -> float:
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y = self.sampler.next()
        n = self.cfg.micro_batches
        if n == 1:
            with self.autocast:
                loss = self.model(x, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        else:  # gradient accumulation: the batch's mean loss, a micro-batch at a time
            self.opt.zero_grad(set_to_none=True)
            loss = 0.0
            for xs, ys in zip(x.chunk(n), y.chunk(n)):
                with self.autocast:
                    part = self.model(xs, ys) / n
                part.backward()
                loss = loss + part.detach()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip, foreach=True)
        self.opt.step()
        return loss.item()


class LMProblem:
    """Global model θ, fixed held-out batches, and a factory of workers."""

    scheduled = True

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg)
        check_memory(cfg, self.device.type)  # refuse with numbers before allocating anything
        self.corpus = load_corpus(cfg.corpus, cfg.vocab_size, min_tokens=cfg.seq_len + 2)
        self.model = init_model(cfg, self.device)
        self.params = list(self.model.parameters())
        self.n_params = sum(p.numel() for p in self.params)
        self.tokens_per_step = cfg.batch_size * cfg.seq_len
        self.eval_data = eval_batches(self.corpus, cfg.eval_batches, cfg.batch_size, cfg.seq_len,
                                      self.device)

    def make_worker(self, i: int) -> LMWorker:
        cfg = self.cfg
        sampler = Sampler(self.corpus, i, cfg.workers, cfg.split, cfg.seed, cfg.batch_size,
                          cfg.seq_len, self.device)
        return LMWorker(copy.deepcopy(self.model), sampler, cfg, autocast_for(cfg, self.device))

    def make_group(self):
        """The M workers: stacked into one computation where cfg.batched says so, else in turn."""
        from .loop import SequentialGroup

        if self.cfg.batched_on(self.device.type):
            return BatchedGroup(self)
        return SequentialGroup([self.make_worker(i) for i in range(self.cfg.workers)])

    @torch.no_grad()
    def evaluate(self) -> float:
        total = 0.0
        with autocast_for(self.cfg, self.device):
            for x, y in self.eval_data:
                total += self.model(x, y).item()
        return total / len(self.eval_data)

    def extra_row(self) -> dict:
        return {}
