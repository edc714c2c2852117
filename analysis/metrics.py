"""Per-slice metrics of the stable region (issue 4, point 3) and the restart gain.

Definitions, exactly (a *cell* is one (slice, α, β) point, seeds pooled; see stability.py):

- stable fraction of the grid: stable cells / cells of the slice.
- α range per β: lowest and highest α of a stable cell at that β, ``width_log2 =
  log2(alpha_max / alpha_min)`` (0 when one or no α is stable), and ``holes``: unstable α
  strictly between the two, so a range that is not contiguous shows.
- LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
  training instabilities", eq. for LR sensitivity, with α in place of the learning rate): per
  trial ``v = min(final_loss, initial_loss)``, and ``v = initial_loss`` when it diverged; per
  cell the mean of ``v`` over seeds; per β ``mean_α(v) - min_α(v)`` over the α of that β; the
  slice's value is the mean of that over β. 0 means every α does as well as the best one.
- best configuration: the cell with the lowest mean final loss among cells where no seed
  diverged or spiked (any cell if there is none such).
- restart gain, per group of slices that differ only in R: (stable fraction of the grid at R)
  / (stable fraction at R=0), for every R > 0. On a common (α, β) grid this is the ratio of
  the stable areas. Its 95% interval is a percentile bootstrap over seeds: each cell's seeds
  are resampled with replacement (for a stable/not-stable label that is a Binomial(n, k/n)
  draw), cells re-labelled by majority, the ratio recomputed. With one seed per cell the
  interval collapses onto the point: seeds are the only noise it measures. The gain is
  reported for every tolerance in ``tols`` because the answer depends on it (DESIGN.md).

α-range, sensitivity and area metrics assume a grid; for scattered (Optuna) slices the stable
fraction is that of the sampled points and ``grid`` is False.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .stability import SPIKE, cells, group_by, label, slice_keys, tol_text

__all__ = ["summarize", "restart_gain", "alpha_ranges", "slice_table", "is_grid", "gain_table", "TOLS"]

TOLS = (0.02, 0.05, 0.10, 0.20)
"""Tolerances at which the restart gain is always reported."""


def is_grid(slice_cells: pd.DataFrame) -> bool:
    """True when a slice's cells cover at least half of the product of its α and β values."""
    product = slice_cells["alpha"].nunique() * slice_cells["beta"].nunique()
    return product > 0 and len(slice_cells) * 2 >= product


def _capped(trials: pd.DataFrame) -> pd.Series:
    """Per trial min(final, initial); the initial loss for a diverged trial (Wortsman et al.)."""
    final = pd.to_numeric(trials["final_loss"], errors="coerce")
    initial = pd.to_numeric(trials["initial_loss"], errors="coerce")
    v = np.fmin(final, initial)
    return v.where(~trials["diverged"], initial)


def alpha_ranges(trials: pd.DataFrame, cell_table: pd.DataFrame) -> pd.DataFrame:
    """One row per (slice, β): n_alpha, n_stable, alpha_min, alpha_max, width_log2, holes,
    lr_sensitivity. ``trials`` must be labelled (for the sensitivity's per-trial values)."""
    keys = slice_keys(cell_table)
    ok = trials[~trials["failed"]]
    v = ok.assign(_v=_capped(ok)).groupby(keys + ["alpha", "beta"], dropna=False,
                                          observed=True)["_v"].mean().rename("_v")
    c = cell_table.merge(v.reset_index(), on=keys + ["alpha", "beta"], how="left")
    rows = []
    for key, grp in group_by(c, keys + ["beta"]):
        grp = grp.sort_values("alpha")
        stable_a = grp.loc[grp["stable"], "alpha"].to_numpy(dtype=float)
        lo, hi = (stable_a.min(), stable_a.max()) if len(stable_a) else (np.nan, np.nan)
        inside = grp[(grp["alpha"] > lo) & (grp["alpha"] < hi)]
        vals = grp["_v"].to_numpy(dtype=float)
        sens = float(np.nanmean(vals) - np.nanmin(vals)) if np.isfinite(vals).any() else np.nan
        row = dict(zip(keys + ["beta"], key if isinstance(key, tuple) else (key,)))
        row.update(n_alpha=len(grp), n_stable=len(stable_a), alpha_min=lo, alpha_max=hi,
                   width_log2=float(np.log2(hi / lo)) if len(stable_a) else 0.0,
                   holes=int((~inside["stable"]).sum()), lr_sensitivity=sens)
        rows.append(row)
    return pd.DataFrame(rows)


def slice_table(trials: pd.DataFrame, cell_table: pd.DataFrame,
                ranges: pd.DataFrame) -> pd.DataFrame:
    """One row per slice: counts, stable fraction, best configuration, LR sensitivity."""
    keys = slice_keys(cell_table)
    rows = []
    for key, grp in group_by(cell_table, keys):
        key = key if isinstance(key, tuple) else (key,)
        clean = grp[(grp["n_diverged"] == 0) & (grp["n_spiked"] == 0) & grp["final_mean"].notna()]
        pool = clean if len(clean) else grp[grp["final_mean"].notna()]
        best = pool.loc[pool["final_mean"].idxmin()] if len(pool) else None
        row: dict[str, Any] = dict(zip(keys, key)) if keys else {}
        row.update(
            n_trials=int(grp["n"].sum() + grp["n_failed"].sum()),
            n_cells=len(grp), n_stable_cells=int(grp["stable"].sum()),
            stable_frac=float(grp["stable"].mean()),
            n_seeds=int(grp["n"].max()), n_diverged=int(grp["n_diverged"].sum()),
            n_spiked=int(grp["n_spiked"].sum()), n_failed=int(grp["n_failed"].sum()),
            best_alpha=np.nan if best is None else float(best["alpha"]),
            best_beta=np.nan if best is None else float(best["beta"]),
            best_loss=np.nan if best is None else float(best["final_mean"]),
            best_loss_std=np.nan if best is None else float(best["final_std"]),
            initial_loss=float(grp["initial_loss"].mean()),
            grid=is_grid(grp),
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    if not keys:
        return out.assign(lr_sensitivity=float(ranges["lr_sensitivity"].mean()))
    # merge (not a dict lookup) so that null slice keys, e.g. of older files, still match
    sens = group_by(ranges, keys)["lr_sensitivity"].mean().reset_index()
    return out.merge(sens, on=keys, how="left")


def _boot_frac(n: np.ndarray, k: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) stable fractions of a slice with per-cell seed counts n and stable counts k."""
    p = np.divide(k, n, out=np.zeros(len(n)), where=n > 0)
    draws = rng.binomial(n[None, :], p[None, :], size=(n_boot, len(n)))
    return (2 * draws > n[None, :]).mean(axis=1)


def restart_gain(trials: pd.DataFrame, tols: Sequence[float] = TOLS,
                 diverge: float | None = None, spike: float | None = SPIKE,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Restart gain per group of slices differing only in R, per R > 0 and per tolerance.

    Columns: the slice keys other than R, ``R``, ``tol``, ``stable_cells`` and ``cells`` at R,
    ``stable_cells_R0`` and ``cells_R0``, ``gain`` (inf when nothing is stable at R=0 but some
    is at R, nan when nothing is stable at either), ``gain_lo``/``gain_hi`` (bootstrap 95%),
    ``n_seeds`` (fewest seeds in a cell). Empty when there is no R column or no R=0 slice.
    """
    cols = ["R", "tol", "gain", "gain_lo", "gain_hi", "stable_cells", "cells",
            "stable_cells_R0", "cells_R0", "n_seeds"]
    if "R" not in trials.columns:
        return pd.DataFrame(columns=cols)
    rng = np.random.default_rng(seed)
    rows = []
    for tol in tols:
        c = cells(label(trials, tol, diverge, spike))
        group = [k for k in slice_keys(c) if k != "R"]
        for key, grp in group_by(c, group):
            base = grp[grp["R"] == 0]
            if base.empty:
                continue
            n0, k0 = base["n"].to_numpy(), base["n_stable"].to_numpy()
            f0, b0 = base["stable"].mean(), _boot_frac(n0, k0, n_boot, rng)
            for r, sl in grp[grp["R"] != 0].groupby("R", sort=True):
                f, b = sl["stable"].mean(), _boot_frac(sl["n"].to_numpy(),
                                                       sl["n_stable"].to_numpy(), n_boot, rng)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratios = b / b0
                    gain = f / f0 if f0 > 0 else (np.inf if f > 0 else np.nan)
                ratios = ratios[~np.isnan(ratios)]
                lo, hi = (np.quantile(ratios, [0.025, 0.975], method="inverted_cdf")
                          if len(ratios) else (np.nan, np.nan))
                row = dict(zip(group, key if isinstance(key, tuple) else (key,))) if group else {}
                row.update(R=r, tol=tol, gain=float(gain), gain_lo=float(lo), gain_hi=float(hi),
                           stable_cells=int(sl["stable"].sum()), cells=len(sl),
                           stable_cells_R0=int(base["stable"].sum()), cells_R0=len(base),
                           n_seeds=int(min(sl["n"].min(), base["n"].min())))
                rows.append(row)
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    return out[[c for c in out.columns if c not in cols] + cols]


def summarize(trials: pd.DataFrame, tol: float = 0.05, tols: Sequence[float] = TOLS,
              diverge: float | None = None, spike: float | None = SPIKE,
              n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every metric of the module docstring for a trial frame (as from ``load_trials``).

    Returns a dict: ``tol`` (the tolerance used), ``tols``, ``trials`` (labelled at ``tol``),
    ``cells`` (see ``stability.cells``), ``slices`` (one row per slice), ``alpha_range`` (one
    row per slice and β) and ``restart_gain`` (per R > 0 and per tolerance in ``tols``, with
    ``tol`` itself always included).
    """
    tols = tuple(sorted({float(t) for t in tols} | {float(tol)}))
    labelled = label(trials, tol, diverge, spike)
    cell_table = cells(labelled)
    ranges = alpha_ranges(labelled, cell_table)
    return {
        "tol": tol, "tols": tols, "trials": labelled, "cells": cell_table,
        "slices": slice_table(labelled, cell_table, ranges), "alpha_range": ranges,
        "restart_gain": restart_gain(trials, tols, diverge, spike, n_boot, seed),
    }


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def _gain_text(g: pd.Series) -> str:
    if pd.isna(g["gain"]):
        return "– (nothing stable)"
    text = f"{_fmt(g['gain'])} [{_fmt(g['gain_lo'])}, {_fmt(g['gain_hi'])}]"
    counts = [int(g[c]) for c in ("stable_cells", "cells", "stable_cells_R0", "cells_R0")]
    return f"{text} ({counts[0]}/{counts[1]} vs {counts[2]}/{counts[3]})"


def gain_table(gains: pd.DataFrame, tol: float) -> pd.DataFrame:
    """Restart gain pivoted: one row per (group, R), one column per tolerance."""
    if gains.empty:
        return pd.DataFrame()
    keys = [c for c in gains.columns if c not in (
        "tol", "gain", "gain_lo", "gain_hi", "stable_cells", "cells", "stable_cells_R0",
        "cells_R0", "n_seeds")]
    g = gains.assign(text=gains.apply(_gain_text, axis=1))
    wide = g.pivot_table(index=keys, columns="tol", values="text", aggfunc="first",
                         dropna=False).reset_index()
    wide.columns = [c if not isinstance(c, float) else
                    f"tol {tol_text(c)}" + (" (used)" if np.isclose(c, tol) else "")
                    for c in wide.columns]
    seeds = g.groupby(keys, dropna=False)["n_seeds"].min().reset_index()
    return wide.merge(seeds, on=keys, how="left")
