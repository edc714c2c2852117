"""Overhead of the sweep service: the same N small trials through `diloco-sweep run` (embedded
Ray + Tune + Parquet rows) and run back to back by plain Python, at equal parallelism.

    python -m benchmarks sweep_overhead [--trials N]     # default N=8 tiny trials

Prints one line per comparison, each ending in the ratio service / plain:
  1 at a time:  --max-concurrent 1 (Ray started by the command)  vs  a plain loop in one process
  1 at a time:  the same, with Ray already running (what Tune itself adds)
  2 at a time:  --max-concurrent 2  vs  two plain worker processes (multiprocessing, spawn)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

from sweeps.tune.local_ray import local_ray
from sweeps.tune.runner import run_sweep
from sweeps.spec.space import grid_points
from sweeps.spec.parse import SweepSpec, parse_spec
from sweeps.tune.trial import trial_config
from trainer import TrainConfig, train

__all__ = ["main", "TRIAL"]

TRIAL = {"model": "tiny", "workers": 2, "H": 4, "outer_steps": 3, "batch_size": 8,
         "seq_len": 64, "eval_batches": 2, "warmup_steps": 2, "threads": 1}


def _spec(n: int) -> SweepSpec:
    return parse_spec({"name": "overhead", "trial": TRIAL, "space": {"seed": list(range(n))},
                       "resources": {"cpu": 1, "gpu": 0}})


def _configs(n: int) -> list[TrainConfig]:
    spec = _spec(n)
    return [trial_config(spec, p) for p in grid_points(spec.space)]


def _train_one(cfg: TrainConfig) -> float:
    return train(cfg).final_loss


def plain_serial(n: int) -> float:
    t = time.perf_counter()
    for cfg in _configs(n):
        _train_one(cfg)
    return time.perf_counter() - t


def plain_parallel(n: int, procs: int) -> float:
    t = time.perf_counter()  # process start-up (torch import) counts, as Ray's worker start-up does
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_train_one, _configs(n), chunksize=1)
    return time.perf_counter() - t


def service(n: int, max_concurrent: int) -> float:
    with tempfile.TemporaryDirectory() as out, open(os.devnull, "w") as quiet:
        t = time.perf_counter()
        s = run_sweep(_spec(n), output=out, max_concurrent=max_concurrent, stream=quiet)
        dt = time.perf_counter() - t
    assert s.counts["completed"] == n, s.counts
    return dt


def _line(label: str, plain: float, svc: float, n: int) -> str:
    return (f"{label}: plain {plain:6.1f} s, service {svc:6.1f} s, "
            f"overhead {(svc - plain) / n:+5.2f} s/trial, ratio {svc / plain:.2f}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m benchmarks sweep_overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="tiny trials per comparison")
    n = p.parse_args(argv).trials
    _train_one(_configs(1)[0])  # warm the corpus cache and imports for both sides
    print(f"# {n} trials of {TRIAL}, {os.cpu_count()} CPUs", flush=True)

    p1 = plain_serial(n)
    s1 = service(n, 1)
    print(_line("1 at a time, Ray started by run ", p1, s1, n), flush=True)

    with local_ray():  # run_sweep finds it running and leaves it up
        s1w = service(n, 1)
    print(_line("1 at a time, Ray already running", p1, s1w, n), flush=True)

    p2 = plain_parallel(n, 2)
    s2 = service(n, 2)
    print(_line("2 at a time, Ray started by run ", p2, s2, n), flush=True)
    return {"ratio_ray_started": s1 / p1, "ratio_ray_running": s1w / p1,
            "ratio_two_at_a_time": s2 / p2, "overhead_s_per_trial": (s1w - p1) / n}


if __name__ == "__main__":
    main()
