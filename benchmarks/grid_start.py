"""How long a grid of N points takes to start its first trial, and the driver's memory.

The grid kind plans in time linear in its points and hands Tune one point at a time (a
``Searcher``), where ``tune.grid_search`` deep-copies its whole list for every point it makes.
Here: ``diloco-sweep run`` as a user runs it (its own process, its own embedded Ray) on a toy
grid of N points (default 100,000) and, as the baseline in the same invocation, of 1,000
points; for each, the seconds until the first trial row is stored and the driver's peak
resident memory until then, then the run is stopped (its process group). Printed: both, and
the ratio of the start times (1.0 would be "size does not matter").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]


def _spec(n: int, out: str) -> dict:
    alphas = [round(0.05 + 0.01 * i, 4) for i in range(100)]
    betas = [round(0.001 * i, 4) for i in range(max(1, n // 1000))]
    rs = list(range(10))
    return {"name": f"start-{n}", "output": out,
            "trial": {"kind": "toy", "toy_dim": 16, "outer_steps": 3, "workers": 1,
                      "threads": 1},
            "space": {"alpha": alphas, "beta": betas, "R": rs}}


def _start(n: int) -> tuple[float, float]:
    import ray  # noqa: F401 - puts Ray's bundled psutil on the path
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(n, tmp)
        path = Path(tmp) / "spec.yaml"
        path.write_text(json.dumps(spec))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(path), "--no-report"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        trials = Path(tmp) / spec["name"] / "trials"
        peak = 0
        try:
            while not (trials.exists() and any(trials.glob("*.parquet"))):
                if p.poll() is not None:
                    raise RuntimeError(f"the run of {n} points ended before a trial was stored")
                try:
                    peak = max(peak, psutil.Process(p.pid).memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)
            first = time.perf_counter() - t0
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=60)
        return first, peak / 2**20


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks grid_start")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--baseline", type=int, default=1_000)
    args = ap.parse_args(argv)
    small, small_mb = _start(args.baseline)
    big, big_mb = _start(args.points)
    print(f"grid_start: first trial stored after {small:.1f} s for {args.baseline:,} points "
          f"(driver {small_mb:.0f} MB) and {big:.1f} s for {args.points:,} points (driver "
          f"{big_mb:.0f} MB); ratio {big / small:.2f}x")
    return {"ratio": big / small, "first_s": big, "driver_mb": big_mb}


if __name__ == "__main__":
    main()
