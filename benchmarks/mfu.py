"""Model FLOPs utilization: achieved 6·params·tokens/s against measured dense matmul FLOP/s.

The peak is measured in this run, on this device, in the trial's compute dtype: the best of
several square matmuls (2·n³ FLOPs each). The achieved figure is the trial's training
throughput (whole trial wall time: set-up, evals and outer steps included) times 6·params, the
usual dense-transformer estimate (attention's T² term left out, so small models read low).
Lines: the sequential path, batched workers, and K packed trials, each as a fraction of peak.
"""

from __future__ import annotations

import argparse
import time

import torch

from trainer import train
from trainer.device import resolve_device
from trainer.packed import train_packed

from .batched import add_common_args, base_config, line
from .packed import grid

__all__ = ["main", "matmul_peak"]


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 0,
                seconds: float = 1.0) -> float:
    """Best dense n×n matmul rate in FLOP/s over about `seconds` of repeats."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best, deadline = 0.0, time.perf_counter() + seconds
    (a @ b).sum().item()                                   # warm the kernels
    while True:
        sync()
        t0 = time.perf_counter()
        for _ in range(4):
            c = a @ b
        sync()
        best = max(best, 4 * 2 * n ** 3 / (time.perf_counter() - t0))
        del c
        if time.perf_counter() > deadline:
            return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p, outer_steps=3, repeats=1)
    p.add_argument("--K", type=int, default=4, help="trials in the packed run")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--peak-seconds", type=float, default=1.0,
                   help="how long the matmul peak is measured")
    args = p.parse_args(argv)
    cfg = base_config(args, dtype=args.dtype)
    device = resolve_device(cfg)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        compute = torch.bfloat16 if device.type == "cuda" and args.dtype == "bfloat16" else torch.float32
        peak = matmul_peak(device, compute, seconds=args.peak_seconds)
    finally:
        torch.set_num_threads(threads)

    out = {"peak_flops": peak}
    train(cfg.replace(outer_steps=1))                      # warm the corpus and the kernels
    for name, batched in (("sequential", "off"), ("batched", "on")):
        best = 0.0
        for _ in range(args.repeats):
            r = train(cfg.replace(batched=batched))
            best = max(best, 6 * r.n_params * r.tokens / r.wall_s)
        out[name] = best / peak
        line("mfu", f"{name} M={cfg.workers} {cfg.model} ({r.n_params / 1e6:.2f}M params)",
             f"{best / 1e9:.2f} GFLOP/s", best / peak)
    best = 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        results = train_packed(grid(cfg, args.K))
        tokens = sum(r.tokens for r in results)
        best = max(best, 6 * results[0].n_params * tokens / (time.perf_counter() - t0))
    out["packed"] = best / peak
    line("mfu", f"packed K={args.K} x M={cfg.workers} {cfg.model}", f"{best / 1e9:.2f} GFLOP/s",
         best / peak)
    line("mfu", f"peak: dense {str(compute).split('.')[-1]} matmul on {device.type}",
         f"{peak / 1e9:.1f} GFLOP/s", 1.0)
    return out


if __name__ == "__main__":
    main()
