"""DiLoCo trial (M=1) against a plain AdamW loop: the same model, tokens and eval work.

Both paths train the tiny preset for T·H inner steps on the same data stream and evaluate on
the same held-out batches every H steps; what differs is only DiLoCo's per-round work (copy
θ into the worker, the pseudo-gradient, the outer step). Runs alternate, and each path's
median over the repeats is compared. Goal: a tokens/s ratio of at least 0.97, median of several runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainer import TrainConfig, train
from trainer.lm import LMProblem
from trainer.loop import inner_lr

__all__ = ["plain_adamw", "main"]


def plain_adamw(cfg: TrainConfig) -> tuple[float, int]:
    """nanoGPT-style loop: one model, one AdamW, eval every H steps. Returns (seconds, tokens)."""
    t0 = time.perf_counter()
    problem = LMProblem(cfg)
    worker = problem.make_worker(0)   # its own model copy, AdamW and data stream
    problem.evaluate()
    for k in range(cfg.outer_steps * cfg.H):
        worker.inner_step(inner_lr(cfg, k))
        if (k + 1) % cfg.H == 0:
            with torch.no_grad():
                torch._foreach_copy_(problem.params, worker.params)
            problem.evaluate()
    return time.perf_counter() - t0, cfg.outer_steps * cfg.H * problem.tokens_per_step


def diloco(cfg: TrainConfig) -> tuple[float, int]:
    r = train(cfg)
    return r.wall_s, r.tokens


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--outer-steps", type=int, default=10)
    p.add_argument("--H", type=int, default=20)
    args = p.parse_args(argv)
    cfg = TrainConfig(model="tiny", workers=1, H=args.H, outer_steps=args.outer_steps,
                      eval_batches=2, threads=0)
    train(cfg.replace(outer_steps=1))  # warm the corpus cache and torch's kernels
    times = {"plain": [], "diloco": []}
    tokens = 0
    for _ in range(args.repeats):
        for name, fn in (("plain", plain_adamw), ("diloco", diloco)):
            secs, tokens = fn(cfg)
            times[name].append(secs)
    plain, dl = statistics.median(times["plain"]), statistics.median(times["diloco"])
    ratio = (tokens / dl) / (tokens / plain)
    print(f"trainer  plain AdamW loop   {tokens / plain:10.0f} tokens/s  (median of {args.repeats})")
    print(f"trainer  DiLoCo M=1 H={cfg.H:<4d}   {tokens / dl:10.0f} tokens/s")
    print(f"trainer  DiLoCo/plain tokens/s ratio: {ratio:.3f}  (goal >= 0.97)")
    return {"plain_tok_s": tokens / plain, "diloco_tok_s": tokens / dl, "ratio": ratio}


if __name__ == "__main__":
    main()
