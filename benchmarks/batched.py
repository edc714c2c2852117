"""Batched M=4 workers against sequential M=4: the same trial, tokens and evals, two paths.

Both paths train the same config (tiny preset, M=4, batch 8, seq 64 unless told) with
`batched=off` (the sequential reference, one worker after another) and `batched=on` (the
workers stacked, trainer.batched). Runs alternate; each path's median trial wall time over
the repeats is compared. Goal: speedup >= 1.3 on 2 CPU cores, >= 3 on a GPU.

Also home of the helpers the other trainer benchmarks share (`median_runs`, `line`, `base_config`,
and the two timed paths `trial_path` and `steps_path`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from trainer import TrainConfig, train
from trainer.lm import LMProblem

__all__ = ["main", "median_runs", "line", "base_config", "add_common_args", "trial_path",
           "steps_path"]


def line(bench: str, label: str, detail: str, ratio: float) -> str:
    """One result line; every line of the suite ends in a ratio."""
    text = f"{bench:<14}{label:<46}{detail:>24}   ratio {ratio:.3f}"
    print(text, flush=True)
    return text


def add_common_args(p: argparse.ArgumentParser, outer_steps: int = 4, repeats: int = 3) -> None:
    p.add_argument("--model", default="tiny", help="model preset")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--H", type=int, default=10)
    p.add_argument("--outer-steps", type=int, default=outer_steps)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def base_config(args: argparse.Namespace, **kw) -> TrainConfig:
    """The benchmarked trial shape; every path of one benchmark trains this shape."""
    return TrainConfig(model=args.model, workers=args.workers, H=args.H,
                       outer_steps=args.outer_steps, batch_size=args.batch_size,
                       seq_len=args.seq_len, eval_batches=2, threads=args.threads,
                       device=args.device, **kw)


def median_runs(paths: dict[str, Callable[[], tuple[float, int]]], repeats: int
                ) -> dict[str, tuple[float, int]]:
    """Run every path once to warm up, then `repeats` times alternating; (median s, tokens)."""
    for fn in paths.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            secs, tokens[name] = fn()
            times[name].append(secs)
    return {name: (statistics.median(times[name]), tokens[name]) for name in paths}


def trial_path(cfg: TrainConfig) -> Callable[[], tuple[float, int]]:
    """One whole trial of cfg per call: (its wall s, its tokens)."""
    def run() -> tuple[float, int]:
        r = train(cfg)
        return r.wall_s, r.tokens
    return run


def steps_path(cfg: TrainConfig, n: int) -> Callable[[], tuple[float, int]]:
    """n inner steps of the trial's worker group alone (no set-up, eval or outer step)."""
    problem = LMProblem(cfg)
    group = problem.make_group()
    group.load(problem.params)
    sync = torch.cuda.synchronize if problem.device.type == "cuda" else (lambda: None)

    def run() -> tuple[float, int]:
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or threads)
        try:
            sync()
            t0 = time.perf_counter()
            for _ in range(n):
                group.inner_step(cfg.lr)
            sync()
            return time.perf_counter() - t0, n * cfg.workers * problem.tokens_per_step
        finally:
            torch.set_num_threads(threads)
    return run


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p)
    args = p.parse_args(argv)
    cfg = base_config(args)
    gpu = torch.cuda.is_available() and args.device != "cpu"
    where = "GPU" if gpu else f"{args.threads or torch.get_num_threads()} CPU threads"
    M, goal, out = cfg.workers, 3.0 if gpu else 1.3, {}
    for what, make in (("inner steps", lambda c: steps_path(c, cfg.H)),
                      ("whole trial", trial_path)):
        res = median_runs({"sequential": make(cfg.replace(batched="off")),
                           "batched": make(cfg.replace(batched="on"))}, args.repeats)
        (t_seq, tok), (t_bat, _) = res["sequential"], res["batched"]
        out[what] = t_seq / t_bat
        out[f"{what}: sequential tokens/s"] = tok / t_seq
        out[f"{what}: batched tokens/s"] = tok / t_bat
        line("batched", f"{what}: sequential M={M} {cfg.model} ({where})",
             f"{tok / t_seq:.0f} tokens/s", 1.0)
        line("batched", f"{what}: batched    M={M} {cfg.model} ({where})",
             f"{tok / t_bat:.0f} tokens/s", t_seq / t_bat)
    line("batched", f"speedup batched/sequential, whole trial (goal >= {goal:g})",
         "met" if out["whole trial"] >= goal else "not met", out["whole trial"])
    return out


if __name__ == "__main__":
    main()
