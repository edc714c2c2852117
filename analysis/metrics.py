"""The answer's numbers: α edges and the restart gain, by line and by area (docs/design.md).

A *line* is one (slice, β) of a grid; a *group* is the slices that differ only in R.

- stable α edge, per line (with ``edge_lo``/``edge_hi``, its bootstrap interval, 0 meaning
  below the grid): the largest α such that it and every smaller α of the grid are
  stable cells. ``edge_kind`` says what the number is: ``exact`` (the next α is not stable),
  ``lower_bound`` (the largest α of the grid is stable: the edge is at least this) or
  ``below_grid`` (the smallest α is not stable; ``edge`` is NaN).
- restart gain, per (group, β, R > 0): edge at R / edge at R=0. ``bound`` says how far the
  ratio is known: ``exact``, ``at_least`` (R's edge is a lower bound), ``at_most`` (R=0's is),
  ``unknown`` (both are). inf when nothing is stable at R=0 but some is at R.
- area gain, per (group, R > 0): stable area in (log α, β) at R over that at R=0, each cell
  weighted by its share of the grid (midpoints between neighbouring values).
- Both with a 95% percentile bootstrap over seeds: the seeds are drawn with replacement, the
  same draw for every R (a seed is one init and one data order in every arm), cells re-judged
  (stable when every drawn seed is), edges and areas recomputed. With two seeds there are
  three distinct draws: the interval is coarse, and says so by being wide.
- the paired effect and near-optimal cells: ``analysis.effects``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .effects import near_optimal_table, paired_diffs, paired_effect, sign_test, spike_table
from .stability import (RISE, RISES, TOLS, cells, group_by, is_grid, key_dict, label,
                        restart_groups, slice_keys, spike_rounds)

__all__ = ["summarize", "Curves", "alpha_edges", "restart_gain", "area_gain", "paired_effect",
           "near_optimal_table", "slice_table", "sign_test", "RISES", "TOLS"]

N_BOOT = 1000


def _edge_index(stable: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(..., n_alpha) bool, α ascending -> (...,) index of the edge; -1 when the first α that
    has trials is unstable or none has. α without trials (``present`` False) are skipped: they
    neither end the stable run nor are its edge."""
    run = np.cumprod(np.where(present, stable, True), axis=-1).astype(bool) & present
    return np.where(run, np.arange(stable.shape[-1]), -1).max(axis=-1)


def _edge_kind(idx: int, present: np.ndarray) -> str:
    """What the edge at ``idx`` of one line is, given which of its α have trials."""
    if not present.any():
        return "no_data"
    last = int(np.flatnonzero(present).max())
    return "below_grid" if idx < 0 else ("lower_bound" if idx == last else "exact")


def alpha_edges(cell_table: pd.DataFrame) -> pd.DataFrame:
    """One row per line (slice, β): ``edge``, ``edge_kind``, ``first_unstable`` (the α just
    past the edge, NaN for a lower bound), ``n_alpha``, ``n_stable``."""
    keys = slice_keys(cell_table)
    rows = []
    for key, grp in group_by(cell_table, keys + ["beta"]):
        grp = grp.sort_values("alpha")
        alphas = grp["alpha"].to_numpy(dtype=float)
        every = np.ones(len(alphas), dtype=bool)  # a cell table holds only cells with trials
        i = int(_edge_index(grp["stable"].to_numpy(dtype=bool), every))
        row = key_dict(keys + ["beta"], key)
        row.update(edge=alphas[i] if i >= 0 else np.nan, edge_kind=_edge_kind(i, every),
                   first_unstable=alphas[i + 1] if i + 1 < len(alphas) else np.nan,
                   n_alpha=len(alphas), n_stable=int(grp["stable"].sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def _widths(values: np.ndarray) -> np.ndarray:
    """Each grid value's share of its axis: half the distance to each neighbour."""
    if len(values) == 1:
        return np.ones(1)
    mids = (values[1:] + values[:-1]) / 2
    edges = np.concatenate([[2 * values[0] - mids[0]], mids, [2 * values[-1] - mids[-1]]])
    return np.diff(edges)


class _Cube:
    """Per-trial stability of one group as an array [R, seed, β, α] (NaN: no trial)."""

    def __init__(self, grp: pd.DataFrame):
        self.rs = np.sort(grp["R"].unique())
        self.seeds = np.sort(grp["seed"].unique())
        self.betas = np.sort(grp["beta"].unique())
        self.alphas = np.sort(grp["alpha"].unique())
        ok = grp[~grp["failed"]]
        self.s = np.full((len(self.rs), len(self.seeds), len(self.betas), len(self.alphas)),
                         np.nan)
        idx = tuple(np.searchsorted(ax, ok[c].to_numpy()) for ax, c in (
            (self.rs, "R"), (self.seeds, "seed"), (self.betas, "beta"), (self.alphas, "alpha")))
        self.s[idx] = ok["stable"].to_numpy(dtype=float)
        self.weight = np.outer(_widths(self.betas), _widths(np.log(self.alphas)))

    def judged(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, n_draw) seed indices -> (B, R, β, α) bool cells, stable when every drawn seed
        that ran is, and where at least one drawn seed ran (``present``)."""
        s = self.s[:, draws]                        # (R, B, n_draw, β, α)
        ran = ~np.isnan(s)
        cell = np.where(ran, s == 1, True).all(axis=2)
        return np.moveaxis(cell, 1, 0), np.moveaxis(ran.any(axis=2), 1, 0)

    def edges(self, idx: np.ndarray) -> np.ndarray:
        """(...,) edge indices -> edge α, NaN below the grid or with no trial."""
        return np.where(idx >= 0, self.alphas[np.clip(idx, 0, None)], np.nan)

    def areas(self, cell: np.ndarray, both: np.ndarray) -> np.ndarray:
        """Stable area over the cells ``both`` arms ran, so a missing cell tips neither way."""
        return (cell * both * self.weight).sum(axis=(-1, -2))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN (nothing stable) handled: x/NaN = inf, NaN/NaN = NaN."""
    num, den = np.nan_to_num(num, nan=0.0), np.nan_to_num(den, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((num == 0) & (den == 0), np.nan, out)


def _interval(x: np.ndarray) -> tuple[float, float]:
    x = x[~np.isnan(x)]
    if not len(x):
        return np.nan, np.nan
    lo, hi = np.quantile(x, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


def _bound(kind: str, kind0: str) -> str:
    if "no_data" in (kind, kind0):
        return "no_data"
    lb, lb0 = kind == "lower_bound", kind0 == "lower_bound"
    return {(False, False): "exact", (True, False): "at_least",
            (False, True): "at_most", (True, True): "unknown"}[(lb, lb0)]


def _gains(labelled: pd.DataFrame, rise: float, n_boot: int,
           rng: np.random.Generator) -> tuple[list[dict], list[dict], list[dict]]:
    """Rows of the edge-ratio, area-ratio and per-arm edge-interval tables of one threshold
    (blew up on end rise, spiked on rise)."""
    edge_rows, area_rows, arm_rows = [], [], []
    for settings, grp in restart_groups(labelled):
        cube = _Cube(grp)
        n = len(cube.seeds)
        draws = np.vstack([np.arange(n)[None, :], rng.integers(0, n, size=(n_boot, n))])
        cell, present = cube.judged(draws)          # (1 + B, R, β, α); row 0 is the data
        idx = _edge_index(cell, present)            # (1 + B, R, β)
        edges = cube.edges(idx)
        i0 = int(np.flatnonzero(cube.rs == 0)[0])
        below0 = np.nan_to_num(edges, nan=0.0)        # below the grid: 0 for the quantiles
        for ri, r in enumerate(cube.rs):
            for bi, beta in enumerate(cube.betas):
                lo, hi = _interval(below0[1:, ri, bi])
                arm_rows.append({**settings, "R": r, "beta": beta, "edge_lo": lo,
                                 "edge_hi": hi})
            if r == 0:
                continue
            eg = _ratio(edges[:, ri], edges[:, i0])            # (1 + B, β)
            both = present[:, ri] & present[:, i0]
            area, area0 = cube.areas(cell[:, ri], both), cube.areas(cell[:, i0], both)
            ag = _ratio(area, area0)
            lo, hi = _interval(ag[1:])
            area_rows.append({**settings, "R": r, "rise": rise, "gain": float(ag[0]),
                              "gain_lo": lo, "gain_hi": hi, "area": float(area[0]),
                              "area_R0": float(area0[0]), "n_seeds": n})
            for bi, beta in enumerate(cube.betas):
                k = _edge_kind(int(idx[0, ri, bi]), present[0, ri, bi])
                k0 = _edge_kind(int(idx[0, i0, bi]), present[0, i0, bi])
                lo, hi = _interval(eg[1:, bi])
                edge_rows.append({**settings, "beta": beta, "R": r, "rise": rise,
                                  "edge": float(edges[0, ri, bi]), "edge_kind": k,
                                  "edge_R0": float(edges[0, i0, bi]), "edge_kind_R0": k0,
                                  "gain": float(eg[0, bi]), "gain_lo": lo, "gain_hi": hi,
                                  "bound": _bound(k, k0), "n_seeds": n})
    return edge_rows, area_rows, arm_rows


_GAIN_COLS = ["beta", "R", "rise", "edge", "edge_kind", "edge_R0", "edge_kind_R0", "gain",
              "gain_lo", "gain_hi", "bound", "n_seeds"]
_AREA_COLS = ["R", "rise", "gain", "gain_lo", "gain_hi", "area", "area_R0", "n_seeds"]


def _frame(rows: list[dict], cols: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    return out[[c for c in out.columns if c not in cols] + cols]


def _gain_table(which: int, cols: list[str], trials: pd.DataFrame, rises: Sequence[float],
                diverge: float | None, n_boot: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [r for rise in rises for r in _gains(label(trials, rise, diverge=diverge),
                                                rise, n_boot, rng)[which]]
    return _frame(rows, cols)


def restart_gain(trials: pd.DataFrame, rises: Sequence[float] = RISES,
                 diverge: float | None = None, n_boot: int = N_BOOT,
                 seed: int = 0) -> pd.DataFrame:
    """Edge ratio per (group, β, R > 0) and per threshold (module docstring)."""
    return _gain_table(0, _GAIN_COLS, trials, rises, diverge, n_boot, seed)


def area_gain(trials: pd.DataFrame, rises: Sequence[float] = RISES,
              diverge: float | None = None, n_boot: int = N_BOOT,
              seed: int = 0) -> pd.DataFrame:
    """Stable-area ratio per (group, R > 0) and per threshold (module docstring)."""
    return _gain_table(1, _AREA_COLS, trials, rises, diverge, n_boot, seed)


def slice_table(cell_table: pd.DataFrame) -> pd.DataFrame:
    """One row per slice: cells and their outcomes, the best stable configuration."""
    keys = slice_keys(cell_table)
    rows = []
    for key, grp in group_by(cell_table, keys):
        pool = grp[grp["stable"] & grp["final_mean"].notna()]
        best = pool.loc[pool["final_mean"].idxmin()] if len(pool) else None
        row: dict[str, Any] = key_dict(keys, key)
        row.update(
            n_trials=int(grp["n"].sum() + grp["n_failed"].sum()), n_cells=len(grp),
            stable_cells=int(grp["stable"].sum()), stable_frac=float(grp["stable"].mean()),
            n_seeds=int(grp["n"].max()),
            **{f"n_{o}": int(grp[f"n_{o}"].sum()) for o in ("blew_up", "diverged", "stalled",
                                                            "failed", "spiked")},
            best_alpha=np.nan if best is None else float(best["alpha"]),
            best_beta=np.nan if best is None else float(best["beta"]),
            best_loss=np.nan if best is None else float(best["final_mean"]),
            initial_loss=float(grp["initial_loss"].mean()), grid=is_grid(grp))
        rows.append(row)
    return pd.DataFrame(rows)


Curves = pd.DataFrame | Callable[[list[str]], pd.DataFrame] | None
"""Eval curves, or a reader of the curves of given trial ids (``lambda ids: load_curves(path,
trial_ids=ids)``): only the spiked trials' are read."""


def summarize(trials: pd.DataFrame, rise: float = RISE, tol: float = 0.05,
              rises: Sequence[float] = RISES, tols: Sequence[float] = TOLS,
              diverge: float | None = None, n_boot: int = N_BOOT,
              seed: int = 0, curves: Curves = None) -> dict[str, Any]:
    """Every number of the module docstring for a trial frame (as from ``load_trials``).

    Returns a dict: ``rise`` and ``tol`` used, ``rises``, ``tols``, ``trials`` (labelled, with
    ``spike_round`` when ``curves`` are given), ``cells``, ``slices``, ``edges`` (per line),
    ``restart_gain`` (edge ratio per (group, β, R > 0) and threshold in ``rises``, ``rise``
    always included), ``area_gain``, ``pairs`` (one row per paired run), ``paired``,
    ``spikes`` (``effects.spike_table``: when each arm's spikes came needs ``curves``) and
    ``near_optimal`` (per slice and tolerance in ``tols``).
    """
    rises = tuple(sorted({float(r) for r in rises} | {float(rise)}))
    tols = tuple(sorted({float(t) for t in tols} | {float(tol)}))
    labelled = label(trials, rise, tol, diverge).reset_index(drop=True)  # rows by position
    # when a spike came matters only against a restarted twin: read the curves of the spiked
    # trials of restart groups alone (a fine map of one R has none to read)
    timed = [grp.index[grp["spiked"]] for _, grp in restart_groups(labelled)]
    timed = labelled.index.intersection(np.concatenate(timed)) if timed else labelled.index[:0]
    if curves is not None and len(timed) and "trial_id" in labelled:
        if callable(curves):
            curves = curves(labelled.loc[timed, "trial_id"].astype(str).tolist())
        labelled["spike_round"] = spike_rounds(labelled.loc[timed], curves, rise).reindex(
            labelled.index)
    cell_table = cells(labelled)
    pairs = paired_diffs(labelled)
    rng = np.random.default_rng(seed)
    edge_rows, area_rows = [], []
    edges = alpha_edges(cell_table)
    for r in rises:
        e, a, arms = _gains(labelled if r == rise else label(trials, r, tol, diverge), r,
                            n_boot, rng)
        edge_rows += e
        area_rows += a
        if r == rise and arms:
            arms = pd.DataFrame(arms)
            on = [c for c in arms.columns if c not in ("edge_lo", "edge_hi")]
            edges = edges.merge(arms, on=on, how="left")
    return {
        "rise": rise, "tol": tol, "rises": rises, "tols": tols, "trials": labelled,
        "cells": cell_table, "slices": slice_table(cell_table),
        "edges": edges,
        "restart_gain": _frame(edge_rows, _GAIN_COLS), "area_gain": _frame(area_rows, _AREA_COLS),
        "pairs": pairs, "paired": paired_effect(labelled, pairs),
        "spikes": spike_table(labelled),
        "near_optimal": near_optimal_table(trials, tols, rise, diverge),
    }
