"""Effects of restarts beyond the edge: the paired runs and near-optimal cells (docs/design.md).

- paired effect, per (group, R > 0) and per β: pairs of trials equal in everything but R;
  ``lowered`` the count whose final loss is lower at R (a diverged trial counts as +inf),
  ``median_diff`` of final loss at R minus at R=0, ``p`` the two-sided sign test (ties out).
- near-optimal, per (slice, tol): cells whose every seed is stable and within tol of the best
  final loss of the group (one bar for every R).
- spikes, per arm: stable trials that rose above the threshold on the way and came back down,
  and how many of those spikes came within the first R rounds, which both arms share.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .stability import (RISE, TOLS, cells, group_by, group_keys, key_dict, label, restart_groups,
                        slice_keys)

__all__ = ["sign_test", "paired_diffs", "pair_summary", "paired_effect", "near_optimal_table",
           "spike_table"]


def sign_test(k: int, n: int) -> float:
    """Two-sided exact sign test: P(at least as far from n/2 as k) under Binomial(n, 1/2)."""
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


def paired_diffs(labelled: pd.DataFrame) -> pd.DataFrame:
    """One row per pair (group settings, β, α, seed, R > 0): ``final`` at R, ``final_R0``, and
    ``diff`` = final − final_R0; a diverged trial's final loss counts as +inf."""
    out = []
    for settings, grp in restart_groups(labelled):  # seed=0 added there when absent
        ok = grp[~grp["failed"]]
        f = pd.to_numeric(ok["final_loss"], errors="coerce").where(~ok["diverged"], np.inf)
        wide = ok.assign(_f=f.fillna(np.inf)).pivot_table(
            index=["beta", "alpha", "seed"], columns="R", values="_f", aggfunc="first")
        if 0 not in wide.columns:   # every R=0 trial of the group failed: nothing to pair
            continue
        for r in [c for c in wide.columns if c != 0]:
            both = wide[[0, r]].dropna().reset_index()
            with np.errstate(invalid="ignore"):
                diff = both[r] - both[0]
            out.append(pd.DataFrame({**settings, "beta": both["beta"], "alpha": both["alpha"],
                                     "seed": both["seed"], "R": r, "final": both[r],
                                     "final_R0": both[0], "diff": diff}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=["beta", "alpha", "seed", "R", "final", "final_R0", "diff"])


def pair_summary(pairs: pd.DataFrame) -> dict:
    """pairs, lowered, raised, both_diverged (tied at +inf), frac_lowered, median_diff (finite
    differences), sign-test p."""
    a, b = pairs["final"].to_numpy(dtype=float), pairs["final_R0"].to_numpy(dtype=float)
    low, high = int((a < b).sum()), int((a > b).sum())
    both = int((np.isposinf(a) & np.isposinf(b)).sum())
    d = pairs["diff"].to_numpy(dtype=float)
    fin = d[np.isfinite(d)]
    return {"pairs": len(pairs), "lowered": low, "raised": high, "both_diverged": both,
            "frac_lowered": low / len(pairs) if len(pairs) else np.nan,
            "median_diff": float(np.median(fin)) if len(fin) else np.nan,
            "p": sign_test(low, low + high)}


def paired_effect(labelled: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (group, R > 0) with ``beta`` = NaN for all β pooled, and per (group, β, R > 0):
    the columns of :func:`pair_summary`."""
    pairs = paired_diffs(labelled) if pairs is None else pairs
    cols = ["beta", "R", "pairs", "lowered", "raised", "both_diverged", "frac_lowered",
            "median_diff", "p"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    keys = [c for c in pairs.columns if c not in ("beta", "alpha", "seed", "R", "final",
                                                  "final_R0", "diff")]
    rows = []
    for key, part in group_by(pairs, keys + ["R"]):
        settings = key_dict(keys + ["R"], key)
        rows.append({**settings, "beta": np.nan, **pair_summary(part)})
        for beta, sub in part.groupby("beta"):
            rows.append({**settings, "beta": beta, **pair_summary(sub)})
    return pd.DataFrame(rows)


def spike_table(labelled: pd.DataFrame) -> pd.DataFrame:
    """Spikes that recovered, per arm, pooled over the restart groups that ran R, one row per
    (R > 0, arm): ``R`` the restart period compared, ``arm`` (0 or R), ``trials`` (that did not
    fail), ``spiked``, ``early``: spikes that first passed the threshold before round R, where
    both arms are the same run (their first R rounds are identical), and ``timed``: spikes whose
    round is known (``spike_round``, from the curves; NaN without them). On the restarted arm's
    row, ``twin_stable``, ``twin_blew_up``, ``twin_diverged``: what the unrestarted twins (same
    α, β, seed) of its early spikes did, the same overshoot without the restarts after it."""
    cols = ["R", "arm", "trials", "spiked", "early", "timed", "twin_stable", "twin_blew_up",
            "twin_diverged"]
    groups = [grp[~grp["failed"]] for _, grp in restart_groups(labelled)]
    rows = []
    for r in sorted({v for grp in groups for v in grp["R"].unique() if v != 0}):
        every = pd.concat([grp for grp in groups if (grp["R"] == r).any()])
        when = (every["spike_round"] if "spike_round" in every
                else pd.Series(np.nan, index=every.index)).to_numpy(dtype=float)
        spk = every["spiked"].to_numpy(dtype=bool)
        for arm in (0, r):
            mine = (every["R"] == arm).to_numpy()
            early = mine & spk & (when < r)
            row = {"R": r, "arm": arm, "trials": int(mine.sum()), "spiked": int((mine & spk).sum()),
                   "early": int(early.sum()), "timed": int((mine & spk & ~np.isnan(when)).sum())}
            if arm:
                twins = _twins(every, every[early], r)
                row.update({f"twin_{o}": int((twins == o).sum())
                            for o in ("stable", "blew_up", "diverged")})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def _twins(every: pd.DataFrame, picked: pd.DataFrame, r: Any) -> pd.Series:
    """The outcomes of the R=0 twins (same settings but R, same α, β, seed) of ``picked``."""
    keys = [k for k in group_keys(every) if k in every] + ["alpha", "beta", "seed"]
    base = every[every["R"] == 0].drop_duplicates(keys).set_index(keys)["outcome"]
    at = pd.MultiIndex.from_frame(picked[keys]) if len(keys) > 1 else picked[keys[0]]
    return base.reindex(at).dropna()


def near_optimal_table(trials: pd.DataFrame, tols: Sequence[float] = TOLS,
                       rise: float = RISE, diverge: float | None = None) -> pd.DataFrame:
    """Per (slice, tol): near-optimal cells of the slice, of its cells, and the group's best."""
    rows = []
    for tol in tols:
        lab = label(trials, rise, tol, diverge)
        c = cells(lab)
        keys = slice_keys(c)
        best = group_by(lab, keys)["group_best"].first()  # one value per group, so per slice
        for (key, sl), g in zip(group_by(c, keys), best.to_numpy(dtype=float), strict=True):
            rows.append({**key_dict(keys, key), "tol": tol,
                         "near_cells": int(sl["near_optimal"].sum()), "cells": len(sl),
                         "group_best": g})
    return pd.DataFrame(rows)
