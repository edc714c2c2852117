"""K packed trials against the same K trials one after another: the grid's throughput.

K trials of one shape (tiny, M=4 unless told) that differ in α, β, R and seed, as a sweep slice
has them. Baselines, each in this invocation: the K trials run one by one with sequential
workers (batched=off) and with the trainer's default path (batched=auto); then
trainer.packed.train_packed runs all K as one stacked computation of K·M workers. The headline
is packed against the default path. Medians over the repeats.
"""

from __future__ import annotations

import argparse
import time

from trainer import TrainConfig, train
from trainer.packed import train_packed

from .batched import add_common_args, base_config, line, median_runs

__all__ = ["main", "grid"]


def grid(cfg: TrainConfig, k: int) -> list[TrainConfig]:
    """K stable members of a slice: α, β, R and seed vary, the shape does not."""
    alphas, betas, restarts = (0.5, 0.7, 0.9, 1.1), (0.8, 0.9), (0, 3)
    return [cfg.replace(alpha=alphas[i % 4], beta=betas[i % 2], R=restarts[(i // 2) % 2], seed=i)
            for i in range(k)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p, outer_steps=3, repeats=2)
    p.add_argument("--K", type=int, default=4, help="trials packed together")
    args = p.parse_args(argv)
    configs = grid(base_config(args), args.K)

    def one_by_one(batched: str):
        def run() -> tuple[float, int]:
            t0 = time.perf_counter()
            results = [train(c.replace(batched=batched)) for c in configs]
            return time.perf_counter() - t0, sum(r.tokens for r in results)
        return run

    def packed() -> tuple[float, int]:
        t0 = time.perf_counter()
        results = train_packed(configs)
        assert all(r.status == "completed" for r in results), [r.reason for r in results]
        return time.perf_counter() - t0, sum(r.tokens for r in results)

    res = median_runs({"sequential": one_by_one("off"), "default": one_by_one("auto"),
                       "packed": packed}, args.repeats)
    (t_seq, tok), (t_def, _), (t_pack, _) = res["sequential"], res["default"], res["packed"]
    K, M = args.K, args.workers
    line("packed", f"{K} trials one by one (batched=off)", f"{tok / t_seq:.0f} tokens/s", 1.0)
    line("packed", f"{K} trials one by one (default, batched=auto)", f"{tok / t_def:.0f} tokens/s",
         t_seq / t_def)
    line("packed", f"{K} trials packed ({K}x{M} workers stacked)", f"{tok / t_pack:.0f} tokens/s",
         t_seq / t_pack)
    line("packed", f"speedup packed / one by one (default), K={K}", f"{t_def:.1f}s -> {t_pack:.1f}s",
         t_def / t_pack)
    return {"speedup_vs_default": t_def / t_pack, "speedup_vs_sequential": t_seq / t_pack,
            "sequential_tok_s": tok / t_seq, "default_tok_s": tok / t_def,
            "packed_tok_s": tok / t_pack}


if __name__ == "__main__":
    main()
