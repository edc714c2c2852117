"""What the service costs as grids grow: planning per point, service per trial, slots busy.

Lines, each ending in a ratio against a baseline run in the same invocation:

- planning: seconds per point to plan a grid (trial ids, stored rows skipped, packs) at 100,000
  points against 1,000 (1.0 is linear);
- service per trial: N small toy trials run by ``diloco-sweep run`` (its own process, its own
  embedded Ray) two at a time, one Ray trial each and then as packs. From the stored rows:
  the window W from the first trial's start to the last one's end, the trials' own compute C
  (their ``wall_s``; a pack's, its longest member's), S = 2 slots: service per trial = (W·S − C) / N, slots busy = C / (W·S).
  The ratio is packed service against one-trial-per-Ray-trial service;
- the driver at 100,000 points: ``benchmarks.grid_start`` (first trial stored, peak memory);
- reading a store of one file per trial (4,096 trials): ``diloco-sweep status`` against
  ``pd.read_parquet`` of its ``trials/`` folder (goal: within 3x; docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

__all__ = ["main", "plan_seconds", "service", "store_read"]

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 4000, "lr": 0.5, "H": 4, "workers": 4, "outer_steps": 100,
       "threads": 1}
"""About 45 ms of compute a trial alone on this machine's cores: a small trial."""


def _grid(n: int) -> dict:
    """A toy grid of about n points: 100 α × n/1000 β × 10 R."""
    return {"alpha": [round(0.05 + 0.01 * i, 4) for i in range(100)],
            "beta": [round(0.001 * i, 4) for i in range(max(1, n // 1000))],
            "R": list(range(10))}


def plan_seconds(n: int, pack: int = 1) -> tuple[float, int]:
    """Seconds to plan (and, with pack > 1, to pack) a fresh n-point grid; the points."""
    from sweeps.search.grid import packs
    from sweeps.spec.parse import parse_spec

    spec = parse_spec({"name": "plan", "trial": dict(TOY), "space": _grid(n),
                       "resources": {"cpu": 1, "gpu": 0, "pack": pack}})
    t0 = time.perf_counter()
    plan = spec.search_kind.plan(spec, [], False)
    if pack > 1:
        packs(spec, plan.todo, pack)
    return time.perf_counter() - t0, plan.total


def service(n: int, pack: int) -> dict[str, float]:
    """Run n toy trials (packs of ``pack``) through ``diloco-sweep run``; service figures."""
    import pandas as pd

    space = {"alpha": [round(0.1 + 0.05 * i, 3) for i in range(n // 4)], "R": [0, 1, 2, 3]}
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"name": "svc", "output": tmp, "trial": dict(TOY), "space": space,
                "resources": {"cpu": 1, "gpu": 0, "pack": pack}}
        path = Path(tmp) / "spec.yaml"
        path.write_text(json.dumps(spec))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sweeps", "run", str(path), "--no-report",
                        "--max-concurrent", "2"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        total = time.perf_counter() - t0
        rows = pd.read_parquet(Path(tmp) / "svc" / "trials")
    start = rows["started_at"].map(datetime.fromisoformat).min()
    end = rows["finished_at"].map(datetime.fromisoformat).max()
    # a pack's members share their start, and each member's wall_s runs from its stack's start:
    # the pack's compute is its longest member's (one stack a pack at these sizes)
    compute = float(rows.groupby("started_at")["wall_s"].max().sum()) if pack > 1 \
        else float(rows["wall_s"].sum())
    window, slots = (end - start).total_seconds(), 2
    return {"trials": len(rows), "window_s": window, "compute_s": compute, "total_s": total,
            "service_s": (window * slots - compute) / len(rows),
            "busy": compute / (window * slots)}


def store_read(n: int) -> dict[str, float]:
    """Seconds for ``status`` (in process, the command's own code) and for ``pd.read_parquet``
    of ``trials/``, on a fresh store of n toy trials, one file each as the store writes them."""
    import pandas as pd

    from sweeps.store.status import status
    from sweeps.store.store import Store, trial_id
    from trainer.config import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, "read")
        for i in range(n):
            cfg = TrainConfig(**{**TOY, "alpha": round(0.05 + 0.01 * (i % 100), 4),
                                 "seed": i // 100})
            store.write_trial({"sweep": "read", "trial_id": trial_id(cfg), **cfg.flat(),
                               "status": "completed", "initial_loss": 5.0, "final_loss": 3.0,
                               "best_loss": 3.0, "peak_loss": 3.5, "rise": 0.0,
                               "end_rise": 0.0, "outer_steps_done": 100, "tokens": 0,
                               "wall_s": 0.05},
                              [{"outer_step": t, "tokens": 0, "eval_loss": 3.0}
                               for t in range(3)])
        store.write_meta({"name": "read", "runs": []})
        folder = f"{tmp}/read"
        t0 = time.perf_counter()
        rows = len(pd.read_parquet(f"{folder}/trials"))
        raw = time.perf_counter() - t0
        t0 = time.perf_counter()
        text = status(folder)
        ours = time.perf_counter() - t0
    assert rows == n and re.search(rf"completed\s+{n}\n", text), text
    return {"trials": n, "pandas_s": raw, "status_s": ours}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks scale")
    ap.add_argument("--points", type=int, default=100_000, help="the large grid")
    ap.add_argument("--trials", type=int, default=200, help="toy trials of the service lines")
    ap.add_argument("--no-driver", action="store_true", help="skip the 100k driver line")
    ap.add_argument("--store-trials", type=int, default=4096,
                    help="trials (one file each) of the store-read line")
    args = ap.parse_args(argv)

    r = store_read(args.store_trials)
    print(f"scale store read, {r['trials']:,} trials one file each: status "
          f"{r['status_s']:.1f} s, pd.read_parquet of trials/ {r['pandas_s']:.1f} s; ratio "
          f"{r['status_s'] / r['pandas_s']:.2f}x (goal <= 3x)", flush=True)

    small, n_small = plan_seconds(1_000)
    big, n_big = plan_seconds(args.points)
    per_small, per_big = small / n_small, big / n_big
    print(f"scale planning: {per_big * 1e6:.0f} µs a point at {n_big:,} points ({big:.1f} s) vs "
          f"{per_small * 1e6:.0f} µs at {n_small:,}; ratio {per_big / per_small:.2f}x", flush=True)

    one = service(args.trials, 1)
    packed = service(args.trials, max(1, args.trials // 2))
    for name, s in (("one per Ray trial", one), ("packs of two halves", packed)):
        print(f"scale service, {s['trials']:.0f} toy trials, 2 slots, {name}: "
              f"{s['service_s']:.3f} s a trial of service, slots busy {s['busy']:.0%} "
              f"(window {s['window_s']:.1f} s, compute {s['compute_s']:.1f} s, whole run "
              f"{s['total_s']:.1f} s)", flush=True)
    ratio = packed["service_s"] / one["service_s"] if one["service_s"] > 0 else float("nan")
    print(f"scale service: packed / one per Ray trial ratio {ratio:.3f}", flush=True)
    out = {"store_read_ratio": r["status_s"] / r["pandas_s"], "plan_ratio": per_big / per_small, "plan_us_per_point": per_big * 1e6,
           "service_s": one["service_s"], "busy": one["busy"],
           "packed_service_s": packed["service_s"], "packed_busy": packed["busy"]}
    if not args.no_driver:
        from . import grid_start

        out.update({f"driver_{k}": v for k, v in grid_start.main(
            ["--points", str(args.points)]).items()})
    return out


if __name__ == "__main__":
    main()
