"""The stacked forward of trainer.batched against the model's own forward under torch.func.vmap.

Why trainer/batched.py writes the stacked forward out instead of deriving it from GPT: both
give the same losses (checked here, to the bit), and the baseline, ``vmap(functional_call(
model, ...))`` over the S slots, runs the same model code once. It is slower on CPU because
PyTorch has no vmap batching rule for scaled_dot_product_attention there and falls back to a
per-slot loop. Forward + backward per step, S slots of the tiny model, medians of repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from trainer.batched import stacked_loss
from trainer.config import TrainConfig
from trainer.lm import init_model

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks stacked_forward")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _compare(args.slots, args.steps, args.repeats)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process keeps its own


def _compare(S: int, steps: int, repeats: int) -> dict[str, float]:
    cfg = TrainConfig(model="tiny", seq_len=64, batch_size=8)
    model = init_model(cfg, torch.device("cpu"))
    V = model.cfg.vocab_size
    params = {n: p.detach().unsqueeze(0).repeat(S, *([1] * p.dim())).requires_grad_()
              for n, p in model.named_parameters()}
    idx = torch.randint(0, V, (S, cfg.batch_size, cfg.seq_len))
    tgt = torch.randint(0, V, (S, cfg.batch_size, cfg.seq_len))

    def one(p, i, t):
        logits = functional_call(model, p, (i,))
        return F.cross_entropy(logits.float().reshape(-1, V), t.reshape(-1))

    derived = vmap(one)
    hand = lambda: stacked_loss(model, params, idx, tgt)  # noqa: E731
    via_vmap = lambda: derived(params, idx, tgt)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap's "performance drop" note for SDPA on CPU
        same = bool(torch.equal(hand(), via_vmap()))
        times = {}
        for name, f in (("vmap(functional_call)", via_vmap), ("stacked_loss", hand)):
            runs = []
            for _ in range(repeats):
                f().sum().backward()
                t = time.perf_counter()
                for _ in range(steps):
                    f().sum().backward()
                runs.append((time.perf_counter() - t) / steps)
            times[name] = statistics.median(runs)
    ratio = times["vmap(functional_call)"] / times["stacked_loss"]
    print(f"stacked_forward: S={S} tiny, forward+backward per step: vmap(functional_call) "
          f"{times['vmap(functional_call)'] * 1e3:.1f} ms, stacked_loss "
          f"{times['stacked_loss'] * 1e3:.1f} ms; losses identical: {same}; "
          f"speed-up of the written-out forward {ratio:.2f}x")
    return {"ratio": ratio, "same": float(same)}


if __name__ == "__main__":
    main()
