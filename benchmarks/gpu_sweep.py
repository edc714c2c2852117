"""Part (d) of the GPU run: a slice of the main job through the sweep runner, trials per minute
with a fractional `resources.gpu` (several trials share the card) against one GPU per trial.

The main job is sweeps/specs/restart_cpu.yaml (README, "shipped specs"). Its trial settings are
kept as they are (tiny model, 4 workers, 12 outer steps, B=8, T=64, one thread) and its space is
cut to 16 trials (2 α × 2 β × 2 H × 2 R, seed 0), a slice that runs in well under a minute per
share on one H200. The two runs use one private Ray (sweeps.tune.local_ray), started once, so Ray's
start-up is in neither wall time; each run starts its own trial workers (process start, torch
import and CUDA context count, as they do in a real sweep). The baseline, gpu: 1, runs first.

Rehearsal (--quick, on CPU): a Ray that declares 2 CPUs and 1 GPU it does not have, 4 trials of
a smaller trial shape per run, and gpu: 0.5 (two at once on the 2 cores) against gpu: 1; the
trials train on the CPU (device: cpu), the way tests/test_sweeps_ray.py checks GPU packing.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .batched import line

if TYPE_CHECKING:  # types only: the sweep modules load inside the part, after the Ray check
    from sweeps.spec.parse import SweepSpec

__all__ = ["main", "slice_spec", "SkipPart", "MAIN_JOB", "SLICE", "QUICK_SLICE", "QUICK_TRIAL"]

MAIN_JOB = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / "restart_cpu.yaml"
SLICE = {"alpha": [0.7, 1.4], "beta": [0.9, 0.99], "H": [4, 8], "R": [0, 3], "seed": [0]}
"""16 trials of the main job's grid: its α range ends (1.4 with β 0.99 may blow up, as in it)."""
QUICK_SLICE = {"alpha": [0.7, 1.4], "beta": [0.9], "H": [2], "R": [0, 3], "seed": [0]}
QUICK_TRIAL = {"workers": 2, "outer_steps": 2, "batch_size": 4, "seq_len": 32,
               "eval_batches": 1, "warmup_steps": 1, "diverge_check_every": 0}
"""The rehearsal's trial: the main job's settings with these smaller ones (4 trials, seconds)."""


class SkipPart(Exception):
    """The part cannot run on this machine (Ray or Optuna missing); the message says which."""


def slice_spec(share: float, quick: bool, device: str, output: str) -> "SweepSpec":
    """The main job's spec cut to the slice, with `resources.gpu: share`, writing to `output`."""
    from sweeps.spec.parse import load_spec, parse_spec

    main = load_spec(MAIN_JOB)
    trial = {**main.trial, **(QUICK_TRIAL if quick else {}), "device": device}
    return parse_spec({"name": main.name, "description": f"{main.name}, a slice at gpu {share:g}",
                       "trial": trial, "space": QUICK_SLICE if quick else SLICE,
                       "search": {"kind": "grid"}, "resources": {"cpu": 1, "gpu": share},
                       "output": output}, where=f"{MAIN_JOB.name} (slice)")


def _run(share: float, quick: bool, device: str, root: str) -> dict[str, Any]:
    """One run of the slice at `share` GPUs per trial, into a fresh folder; its throughput."""
    from sweeps.tune.runner import run_sweep

    log = io.StringIO()
    out = tempfile.mkdtemp(prefix=f"gpu{share:g}-", dir=root)
    s = run_sweep(slice_spec(share, quick, device, out), output=out, stream=log)
    n = sum(s.counts.values())
    if s.counts.get("failed"):
        raise RuntimeError(f"gpu {share:g}: {s.counts['failed']} of {n} trials failed; the "
                           f"runner said:\n{log.getvalue()[-2000:]}")
    return {"gpu": share, "trials": n, "counts": dict(s.counts), "wall_s": s.wall_s,
            "trials_per_min": 60 * n / s.wall_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"),
                   help="where the trials train; cpu declares a GPU Ray does not have")
    p.add_argument("--share", type=float, default=0.0,
                   help="resources.gpu per trial (default 0.25; 0.5 with --quick)")
    p.add_argument("--quick", action="store_true", help="the rehearsal's 4 small trials")
    args = p.parse_args(argv)
    share = args.share or (0.5 if args.quick else 0.25)
    missing = [m for m in ("ray", "optuna") if importlib.util.find_spec(m) is None]
    if missing:
        raise SkipPart(f"{' and '.join(missing)} not installed in this Python: the sweep part "
                       f"needs the project's dependencies (pip install -c constraints.txt -e .)")
    from sweeps.tune.local_ray import local_ray
    from trainer.data import load_corpus

    load_corpus("stdlib")  # build the token cache once, before the trial workers look for it
    declared = {"num_cpus": 2, "num_gpus": 1} if args.device == "cpu" else {}
    with tempfile.TemporaryDirectory(prefix="gpu-sweep-") as root, local_ray(**declared) as res:
        runs = [_run(s, args.quick, args.device, root) for s in (1.0, share)]
    base, shared = runs
    ratio = shared["trials_per_min"] / base["trials_per_min"]
    where = f"{res.get('GPU', 0):g} GPU, {res.get('CPU', 0):g} CPU" + (
        " declared, trials on CPU" if args.device == "cpu" else "")
    for r in runs:
        at_once = int(min(res.get("CPU", 1), res.get("GPU", 1) / r["gpu"]) + 1e-9)
        line("gpu-sweep", f"{MAIN_JOB.name} slice, {r['trials']} trials, gpu: {r['gpu']:g} "
                          f"({at_once} at once; {where})",
             f"{r['trials_per_min']:.1f} trials/min", r["trials_per_min"] / base["trials_per_min"])
    return {"ratio": ratio, "share": share, "spec": MAIN_JOB.name, "resources": res,
            "runs": {f"{r['gpu']:g}": r for r in runs}}


if __name__ == "__main__":
    main()
