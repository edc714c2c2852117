"""Map search against the full grid of its lattice: trials spent, cell agreement, edges, time.

Toy (default): the 512 × 512 slice of sweeps/specs/toy_map.yaml, H = 4, R = 0, one seed. The
grid runs as the spec says (packs of 4,096, one batched computation each); the map search runs
on the same lattice through the same sweep service, each round of probes as packs too. Printed: both
trial counts and their ratio, the share of the grid the map measured, the cells on which the
filled map and the grid agree (stable or not, at the search's threshold), the largest
difference of the α edge per β in lattice steps, the audits and how many agreed, and both wall
times. Goal: at most 2% of the grid's trials, at least 99.5% of cells the same.

``--lm``: a slice of the main job (sweeps/specs/restart_cpu.yaml's trial settings, H = 4, R = 0,
seed 0) on an ``--lm-size`` lattice (default 33 × 17: α from 0.7 to 11.2 on a log scale, β
from 0.8 to 0.99), grid and map both run here. Goal: at least 5x fewer trials. On 2 cores the
33 × 17 grid alone takes about 16 minutes (load 2); ``--lm-size 17x9`` is the quick one.

``--grid PATH``: compare with a grid already stored at PATH (the same spec's store) instead of
running it again; the printed line says so.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis import load_trials
from analysis.lines import line_edges
from analysis.map_report import filled_trials, map_cells, rebuild_maps
from analysis.stability import label
from sweeps.tune.local_ray import local_ray
from sweeps.tune.runner import run_sweep
from sweeps.spec.parse import load_spec, parse_spec

__all__ = ["main", "compare"]

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["alpha", "beta"]


def _run(spec: dict, out: str) -> float:
    t = time.perf_counter()
    run_sweep(parse_spec(spec), output=out, stream=io.StringIO())
    return time.perf_counter() - t


def compare(grid_dir: Path, map_dir: Path) -> dict[str, float]:
    """The map store against the grid store of the same lattice (one slice or several)."""
    meta = json.loads((map_dir / "sweep.json").read_text())
    search = meta["search"]
    probes = load_trials(map_dir)
    maps = rebuild_maps(probes, search)
    cells = map_cells(maps, search)
    others = [k for k in search["others"] if k in cells]
    grid = label(load_trials(grid_dir), rise=float(search["rise"]))
    grid = grid[grid["alpha"].isin(search["lattice"]["alpha"])
                & grid["beta"].isin(search["lattice"]["beta"])]
    both = cells.merge(grid[others + KEYS + ["stable"]], on=others + KEYS,
                       suffixes=("", "_grid"))
    agree = float((both["stable"] == both["stable_grid"].astype(float)).mean())
    keys = [k for k in others + ["beta"] if k != "alpha"]
    eg = line_edges(grid).set_index(keys).sort_index()
    em = line_edges(filled_trials(cells)).set_index(keys).sort_index()
    alphas = np.sort(np.asarray(search["lattice"]["alpha"], dtype=float))
    steps = np.abs(np.searchsorted(alphas, em["edge"].fillna(0).to_numpy()) -
                   np.searchsorted(alphas, eg["edge"].reindex(em.index).fillna(0).to_numpy()))
    audits = [m.audit_agreed() for _, m in maps]
    return {"grid": float(len(grid)), "map": float(len(probes)), "agree": agree,
            "cells": float(len(both)), "edge_steps": float(steps.max()) if len(steps) else 0.0,
            "audits": float(sum(a for a, _ in audits)),
            "audits_agreed": float(sum(b for _, b in audits))}


def _line(what: str, r: dict, t_grid: float | None, t_map: float) -> str:
    grid_t = "stored, not timed" if t_grid is None else f"{t_grid:.1f} s"
    return (f"map ({what}): grid {r['grid']:.0f} trials ({grid_t}), map {r['map']:.0f} trials in "
            f"{t_map:.1f} s = {r['map'] / r['grid']:.2%} of the grid; cells the same "
            f"{r['agree']:.3%} of {r['cells']:.0f}; α edge per β within {r['edge_steps']:.0f} lattice "
            f"step(s); audits {r['audits_agreed']:.0f}/{r['audits']:.0f} agreed; trials ratio "
            f"{r['grid'] / r['map']:.1f}x")


def toy(out: str, grid: str | None, size: str = "512x512") -> dict[str, float]:
    base = load_spec(ROOT / "sweeps/specs/toy_map.yaml").to_dict()
    base["output"] = out
    na, nb = (int(x) for x in size.lower().split("x"))
    for axis, n in (("alpha", na), ("beta", nb)):  # the spec's (linear) ranges, n points
        values = base["space"][axis]
        if len(values) != n:
            base["space"][axis] = {"low": min(values), "high": max(values), "num": n}
    t_grid = None
    if grid is None:
        t_grid = _run(base, out)
        grid = f"{out}/{base['name']}"
    m = {**base, "name": "toy-map-adaptive", "search": {"kind": "map"}}  # packed, as the grid
    t_map = _run(m, out)
    r = compare(Path(grid), Path(out) / m["name"])
    print(_line(f"toy {na} × {nb}, H=4, R=0", r, t_grid, t_map), flush=True)
    return {**r, "t_map": t_map, "t_grid": t_grid or float("nan")}


def lm(out: str, size: str, grid: str | None, coarse: int | None = None) -> dict[str, float]:
    na, nb = (int(x) for x in size.lower().split("x"))
    base = load_spec(ROOT / "sweeps/specs/restart_cpu.yaml").to_dict()
    space = {"alpha": {"low": 0.7, "high": 11.2, "num": na, "log": True},
             "beta": {"low": 0.8, "high": 0.99, "num": nb}, "H": [4], "R": [0], "seed": [0]}
    g = {**base, "name": f"lm-grid-{size}", "space": space, "output": out,
         "search": {"kind": "grid"}}
    t_grid = None
    if grid is None:
        t_grid = _run(g, out)
        grid = f"{out}/{g['name']}"
    if coarse is None:  # a 3 × 3 to 5 × 5 start: 2 on 33 × 17
        coarse = max(1, int(np.log2(max(na, nb) - 1)) - 3)
    m = {**g, "name": f"lm-map-{size}", "search": {"kind": "map", "coarse": coarse,
                                                   "audits": 4}}
    t_map = _run(m, out)
    r = compare(Path(grid), Path(out) / m["name"])
    print(_line(f"LM {na} × {nb}, H=4, R=0, seed 0, coarse {coarse}", r, t_grid, t_map),
          flush=True)
    return {**r, "t_map": t_map}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks map")
    ap.add_argument("--lm", action="store_true", help="also the LM slice (grid and map)")
    ap.add_argument("--lm-only", action="store_true", help="only the LM slice")
    ap.add_argument("--lm-size", default="33x17", help="α × β lattice of the LM slice")
    ap.add_argument("--lm-coarse", type=int, help="coarse halvings of the LM map (default: "
                    "2 on 33x17; see docs/performance.md for what a coarse start misses)")
    ap.add_argument("--toy-size", default="512x512", help="α × β lattice of the toy slice "
                    "(toy_map.yaml's ranges; the goal is stated at 512x512)")
    ap.add_argument("--grid", help="a stored grid of toy_map.yaml to compare with")
    ap.add_argument("--lm-grid", help="a stored grid of the LM slice to compare with")
    ap.add_argument("--out", help="keep the stores here (default: a temporary folder)")
    args = ap.parse_args(argv)
    res: dict[str, float] = {}
    with local_ray(), tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        if not args.lm_only:
            res.update(toy(out, args.grid, args.toy_size))
        if args.lm or args.lm_only:
            res.update({f"lm_{k}": v for k, v in lm(out, args.lm_size, args.lm_grid,
                                                          args.lm_coarse).items()})
    return res


if __name__ == "__main__":
    main()
