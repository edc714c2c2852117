"""Effects of restarts beyond the edge: the paired runs and near-optimal cells (docs/design.md).

- paired effect, per (group, R > 0) and per β: pairs of trials equal in everything but R;
  ``lowered`` the count whose final loss is lower at R (a diverged trial counts as +inf),
  ``median_diff`` of final loss at R minus at R=0, ``p`` the two-sided sign test (ties out).
- near-optimal, per (slice, tol): cells whose every seed is stable and within tol of the best
  final loss of the group (one bar for every R).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .stability import RISE, TOLS, cells, group_by, key_dict, label, restart_groups, slice_keys

__all__ = ["sign_test", "paired_effect", "near_optimal_table"]


def sign_test(k: int, n: int) -> float:
    """Two-sided exact sign test: P(at least as far from n/2 as k) under Binomial(n, 1/2)."""
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


def paired_effect(labelled: pd.DataFrame) -> pd.DataFrame:
    """Per (group, R > 0) with ``beta`` = NaN for all β pooled, and per (group, β, R > 0):
    ``pairs``, ``lowered`` (count), ``raised``, ``frac_lowered``, ``median_diff``, ``p``."""
    rows = []
    for settings, grp in restart_groups(labelled):
        ok = grp[~grp["failed"]].assign(
            _f=lambda d: pd.to_numeric(d["final_loss"], errors="coerce").where(~d["diverged"],
                                                                              np.inf))
        ok["_f"] = ok["_f"].fillna(np.inf)
        wide = ok.pivot_table(index=["beta", "alpha", "seed"], columns="R", values="_f",
                              aggfunc="first")
        for r in [c for c in wide.columns if c != 0]:
            both = wide[[0, r]].dropna()
            for beta, part in [(np.nan, both)] + list(both.groupby(level="beta")):
                a, b = part[r].to_numpy(), part[0].to_numpy()
                with np.errstate(invalid="ignore"):
                    d = a - b
                low, high = int((a < b).sum()), int((a > b).sum())
                fin = d[np.isfinite(d)]
                rows.append({**settings, "beta": beta, "R": r, "pairs": len(part),
                             "lowered": low, "raised": high,
                             "frac_lowered": low / len(part) if len(part) else np.nan,
                             "median_diff": float(np.median(fin)) if len(fin) else np.nan,
                             "p": sign_test(low, low + high)})
    return pd.DataFrame(rows, columns=None if rows else
                        ["beta", "R", "pairs", "lowered", "raised", "frac_lowered",
                         "median_diff", "p"])


def near_optimal_table(trials: pd.DataFrame, tols: Sequence[float] = TOLS,
                       rise: float = RISE, diverge: float | None = None) -> pd.DataFrame:
    """Per (slice, tol): near-optimal cells of the slice, of its cells, and the group's best."""
    rows = []
    for tol in tols:
        c = cells(label(trials, rise, tol, diverge))
        lab = label(trials, rise, tol, diverge)
        keys = slice_keys(c)
        for key, sl in group_by(c, keys):
            settings = key_dict(keys, key)
            mask = np.ones(len(lab), dtype=bool)
            for k, v in settings.items():
                mask &= (lab[k] == v).to_numpy() | (pd.isna(v) & lab[k].isna().to_numpy())
            best = lab.loc[mask, "group_best"]
            rows.append({**settings, "tol": tol, "near_cells": int(sl["near_optimal"].sum()),
                         "cells": len(sl),
                         "group_best": float(best.iloc[0]) if len(best) else np.nan})
    return pd.DataFrame(rows)
