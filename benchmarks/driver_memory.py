"""The driver's memory per finished trial over a long sweep of tiny toy trials, one per Ray trial.

    python -m benchmarks driver_memory [--trials N] [--baseline-trials M]

Each run is ``diloco-sweep run`` in its own process (its own embedded Ray, two trials at a
time, ``resources.pack: 1``). A thread in that driver process samples, every ``--every``
seconds, its resident memory (``VmRSS``), Python's allocated blocks
(``sys.getallocatedblocks``) and the trial rows stored so far. The slope is the least-squares fit of RSS (and of the heap) against finished
trials while trials finish, past the warm-up (the first ``--warmup`` of the trials: Ray's
workers start, caches fill), in KB per trial. After the last trial Tune writes its final
experiment checkpoint and builds its result grid, once, in proportion to the trials: that is
the line's "after the last one" RSS, not part of the slope.

Lines, the last one a ratio against the baseline measured in the same invocation:

- ours: the runner as it is (Tune's default CSV/JSON/TensorBoard logger callbacks off,
  docs/performance.md "Driver memory");
- baseline: the same runner with Tune's default logger callbacks put back
  (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0``), on ``--baseline-trials`` trials;
- ratio baseline slope / our slope.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["main", "fit", "run_driver", "TOY"]

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 16, "lr": 0.5, "H": 1, "workers": 1, "outer_steps": 2,
       "eval_batches": 1, "threads": 1}
"""A trial of a few milliseconds: what is measured is the driver's work per trial."""
BASELINE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0", "TUNE_GLOBAL_CHECKPOINT_S": "auto",
                "DILOCO_TUNE_KEEP_WINDOWS": "1"}
"""Tune's defaults, which the runner turns off unless these are set (sweeps/tune/lean.py)."""


def fit(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys against xs (0.0 with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _sampler(trials: Path, log: Path, every: float, stop: threading.Event) -> None:
    """In the driver: append {t, n, rss, blocks} to ``log`` every ``every`` seconds."""
    t0 = time.time()
    with open(log, "a") as f:
        while True:
            try:
                n = sum(1 for e in os.scandir(trials) if e.name.endswith(".parquet"))
            except FileNotFoundError:
                n = 0
            # no gc.get_objects() here: from a second thread it holds references to tuples
            # the main thread is still building, whose resize then fails ("SystemError:
            # Objects/tupleobject.c: bad argument to internal function")
            f.write(json.dumps({"t": time.time() - t0, "n": n, "rss": _rss(),
                                "blocks": sys.getallocatedblocks()}) + "\n")
            f.flush()
            if stop.wait(every):
                return


def driver_main(spec: str, log: str, every: float) -> int:
    """The driver process: ``diloco-sweep run SPEC`` with the sampling thread beside it."""
    from sweeps.cli import main as cli_main
    from sweeps.spec.parse import load_spec

    s = load_spec(spec)
    trials = Path(s.output) / s.name / "trials"
    stop = threading.Event()
    th = threading.Thread(target=_sampler, args=(trials, Path(log), every, stop), daemon=True)
    th.start()
    try:
        return int(cli_main(["run", spec, "--no-report", "--max-concurrent", "2"]) or 0)
    finally:
        stop.set()
        th.join()


def run_driver(n: int, every: float, default_loggers: bool) -> dict[str, float]:
    """One sweep of ``n`` toy trials in a driver process of its own; its samples and wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"name": "mem", "output": tmp, "trial": dict(TOY),
                "space": {"seed": list(range(n))}, "resources": {"cpu": 1, "gpu": 0, "pack": 1}}
        path, log = Path(tmp) / "spec.yaml", Path(tmp) / "samples.jsonl"
        path.write_text(json.dumps(spec))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        for k, v in BASELINE_ENV.items():
            if default_loggers:
                env[k] = v
            else:
                env.pop(k, None)
        code = (f"import sys, benchmarks.driver_memory as d; "
                f"sys.exit(d.driver_main({str(path)!r}, {str(log)!r}, {every!r}))")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"driver_memory: the sweep exited {r.returncode}: "
                               f"{r.stderr[-3000:]}")
        samples = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {"wall_s": wall, "samples": samples}  # type: ignore[dict-item]


def slopes(samples: list[dict], warmup: int) -> dict[str, float]:
    """KB (and heap blocks) per finished trial, fitted over the samples taken while trials
    were finishing: past ``warmup`` trials and before the last one. What the driver does after
    the last trial (Tune's final experiment checkpoint and its result grid, once a run, in
    proportion to the trials) is ``rss_end_mb``, the most RSS after it, not a slope."""
    last = max((s["n"] for s in samples), default=0)
    past = [s for s in samples if warmup <= s["n"] < last] or \
        [s for s in samples if s["n"] >= warmup]
    xs = [float(s["n"]) for s in past]
    during = [s["rss"] for s in samples if s["n"] < last] or [0]
    return {"rss_kb": fit(xs, [s["rss"] / 1024 for s in past]),
            "blocks": fit(xs, [float(s["blocks"]) for s in past]),
            "points": float(len(past)),
            "trials": float(last),
            "rss_run_mb": max(during) / 2**20,
            "rss_end_mb": max((s["rss"] for s in samples), default=0) / 2**20}


def _line(label: str, r: dict[str, float], wall: float) -> str:
    return (f"driver_memory {label}: {r['trials']:.0f} trials in {wall:.0f} s: "
            f"RSS {r['rss_kb']:+.2f} KB/trial, Python heap {r['blocks']:+.1f} blocks/trial "
            f"({r['points']:.0f} samples past warm-up; "
            f"RSS most {r['rss_run_mb']:.0f} MB while trials ran, {r['rss_end_mb']:.0f} MB "
            f"after the last one)")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks driver_memory",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5000, help="toy trials of our run")
    ap.add_argument("--baseline-trials", type=int, default=None,
                    help="toy trials of the baseline run (default: as --trials)")
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="the fraction of the trials left out of the fit (default 0.1)")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--samples", default=None,
                    help="write every sample of both runs here (JSON) for a look of your own")
    args = ap.parse_args(argv)
    nb = args.baseline_trials or args.trials
    out: dict[str, float] = {}
    res, raw = {}, {}
    for label, n, default in (("ours", args.trials, False), ("baseline", nb, True)):
        r = run_driver(n, args.every, default)
        raw[label] = r["samples"]
        if args.samples:
            Path(args.samples).write_text(json.dumps(raw))
        res[label] = s = slopes(r["samples"], int(n * args.warmup))  # type: ignore[arg-type]
        what = "Tune's defaults off" if not default else "Tune's defaults"
        print(_line(f"{label} ({what})", s, r["wall_s"]), flush=True)  # type: ignore[arg-type]
        out.update({f"{label}_{k}": float(v) for k, v in s.items()})
        out[f"{label}_wall_s"] = float(r["wall_s"])  # type: ignore[arg-type]
    ours, base = res["ours"]["rss_kb"], res["baseline"]["rss_kb"]
    ratio = base / ours if ours > 0 else float("inf")
    print(f"driver_memory: baseline / ours RSS slope ratio {ratio:.2f} "
          f"(goal: ours under 20 KB/trial: {'met' if ours < 20 else 'NOT met'})", flush=True)
    out["ratio"] = ratio if ratio != float("inf") else 1e9
    return out


if __name__ == "__main__":
    main()
