"""Boundary search against a grid of the same α resolution: trials spent, time, edges found.

Toy lines (run here, both searches, in this invocation, through the real sweep service on Ray):
β ∈ {0, 0.5, 0.8} × R ∈ {0, 3} at H = 4, α in [0.25, 4] to 5%. The grid is every α of the
log grid with that step on every line; the boundary search brackets and bisects. Printed: the
trials and wall time of each, their ratio, and the largest relative difference between the
edges the two find on one line (both are "the largest stable α below the first unstable one",
so they should agree to within one step of the resolution).

The LM question at the main job's size (36 lines) is too slow to rerun as a grid here; with
``--lm`` the committed stores are read instead: docs/results/restart-boundary (the boundary
search of sweeps/specs/restart_boundary.yaml) against docs/results/restart-cpu (the main
job's grid), and the trials a grid as fine as the boundary search would need are counted.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import load_trials
from analysis.lines import line_edges
from sweeps.tune.local_ray import local_ray
from sweeps.tune.runner import run_sweep
from sweeps.spec.parse import parse_spec

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 200, "toy_power": 1.0, "toy_noise": 0.0, "toy_batch": 0,
       "lr": 0.5, "outer": "nesterov", "workers": 1, "outer_steps": 100,
       "diverge_factor": 10.0, "threads": 1}
SPACE = {"beta": [0.0, 0.5, 0.8], "H": [4], "R": [0, 3], "seed": [0]}
LOW, HIGH, RES, RISE = 0.25, 4.0, 0.05, 5.0
KEYS = ["beta", "H", "R", "seed"]


def _grid_alphas(res: float) -> list[float]:
    n = math.ceil(math.log(HIGH / LOW) / math.log1p(res))
    return [float(f"{LOW * (HIGH / LOW) ** (i / n):.6g}") for i in range(n + 1)]


def _run(spec: dict, out: str) -> tuple[pd.DataFrame, float]:
    import io

    t = time.perf_counter()
    run_sweep(parse_spec(spec), output=out, stream=io.StringIO())
    wall = time.perf_counter() - t
    trials = load_trials(f"{out}/{spec['name']}")
    return trials, wall


def _edges(trials: pd.DataFrame) -> pd.DataFrame:
    return line_edges(trials, rise=RISE).set_index(KEYS).sort_index()


def toy(res: float = RES) -> dict[str, float]:
    # one private embedded Ray for both searches, so neither's time includes Ray's start
    with local_ray(), tempfile.TemporaryDirectory() as out:
        grid, t_grid = _run({"name": "grid", "trial": TOY, "output": out,
                             "space": {"alpha": _grid_alphas(res), **SPACE}}, out)
        bnd, t_bnd = _run({"name": "boundary", "trial": TOY, "output": out, "space": SPACE,
                           "search": {"kind": "boundary", "low": LOW, "high": HIGH,
                                      "resolution": res, "rise": RISE}}, out)
    eg, eb = _edges(grid), _edges(bnd)
    diff = float(np.nanmax(np.abs(eb["edge"] / eg["edge"] - 1)))
    print(f"boundary (toy, {len(eb)} lines, α to {res:.0%}): grid {len(grid)} trials in "
          f"{t_grid:.1f} s, boundary {len(bnd)} trials in {t_bnd:.1f} s; trials ratio "
          f"{len(grid) / len(bnd):.2f}x, time ratio {t_grid / t_bnd:.2f}x; largest edge "
          f"difference on a line {diff:.1%} (one grid step: {res:.0%})")
    return {"trials_ratio": len(grid) / len(bnd), "time_ratio": t_grid / t_bnd, "edge_diff": diff}


def lm() -> dict[str, float]:
    from sweeps.spec.parse import load_spec

    bnd = load_trials(ROOT / "docs/results/restart-boundary")
    grid = load_trials(ROOT / "docs/results/restart-cpu")
    spec = load_spec(ROOT / "sweeps/specs/restart_boundary.yaml")
    fine = spec.search_kind.grid_equivalent(spec)
    rise = spec.search.settings.rise
    eb = line_edges(bnd, rise=rise).set_index(KEYS).sort_index()
    eg = line_edges(grid, rise=rise).set_index(KEYS).sort_index()
    both = eb.join(eg, rsuffix="_grid", how="inner")
    lo = both["edge_grid"].fillna(0.0)
    hi = both["first_unstable_grid"].fillna(np.inf)
    inside = (both["edge"] >= lo) & (both["edge"] <= hi)
    ratio = (both["edge"] / both["edge_grid"]).replace([np.inf, -np.inf], np.nan)
    print(f"boundary (LM, {len(eb)} lines, committed results): boundary {len(bnd)} trials, a grid "
          f"as fine {fine} trials: ratio {fine / len(bnd):.2f}x; the main job's "
          f"{grid['alpha'].nunique()}-α grid "
          f"{len(grid)} trials. Boundary edge inside the grid's bracket [edge, next α] on "
          f"{int(inside.sum())} of {len(both)} lines; boundary edge / grid edge: median "
          f"{np.nanmedian(ratio):.2f}, range [{np.nanmin(ratio):.2f}, {np.nanmax(ratio):.2f}]")
    return {"trials_ratio": fine / len(bnd), "inside": float(inside.mean())}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks boundary")
    ap.add_argument("--lm", action="store_true",
                    help="also compare the committed LM boundary results with the main grid")
    ap.add_argument("--resolution", type=float, default=RES,
                    help=f"relative α step of the toy grid and search (default {RES}; 0.5 "
                         "is a quick run of a few dozen trials)")
    args = ap.parse_args(argv)
    out = toy(args.resolution)
    if args.lm or (ROOT / "docs/results/restart-boundary").exists():
        out.update({f"lm_{k}": v for k, v in lm().items()})
    return out


if __name__ == "__main__":
    main()
