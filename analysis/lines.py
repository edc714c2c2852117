"""The α edge of every line, from the probes alone (docs/design.md, "The boundary search").

A *line* is the trials that share every setting but α: one slice, one β, one seed. Its edge is
the largest stable α below the smallest α that is not stable (failed trials say nothing and
are left out). This is the rule the boundary search bisects with, so the edge it converged to
is recomputed here from the stored rows and nothing from the search's own state is trusted;
it holds for a grid's rows too (then per seed, where ``metrics.alpha_edges`` pools seeds).

``ragged``: some α above the first unstable one is stable again, so "the edge" is not one
number; such a line is reported with its probes, not smoothed over.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stability import RISE, group_by, key_dict, label, slice_keys

__all__ = ["line_edges", "edge_ratios", "ratio_summary", "LINE_COLUMNS", "RATIO_COLUMNS"]

LINE_COLUMNS = ["edge", "first_unstable", "edge_kind", "ragged", "n_probes", "n_failed",
                "probes"]
RATIO_COLUMNS = ["edge", "edge_kind", "edge_R0", "edge_kind_R0", "ratio", "bound", "ragged"]


def line_edges(trials: pd.DataFrame, rise: float = RISE) -> pd.DataFrame:
    """One row per line: its keys (slice settings, β, seed) and LINE_COLUMNS.

    ``edge_kind``: ``exact`` (an unstable α above the edge was probed), ``lower_bound`` (no α
    probed was unstable: the edge is at least ``edge``), ``below_range`` (the smallest α probed
    was not stable), ``no_data`` (every probe failed). ``probes`` is "α:outcome" in α order.
    """
    df = label(trials, rise=rise)
    if "seed" not in df:
        df = df.assign(seed=0)
    keys = slice_keys(df) + ["beta", "seed"]
    rows = []
    for key, grp in group_by(df, keys):
        grp = grp.sort_values("alpha")
        ran = grp[~grp["failed"]]
        alphas = ran["alpha"].to_numpy(dtype=float)
        stable = ran["stable"].to_numpy(dtype=bool)
        row = key_dict(keys, key)
        unstable = alphas[~stable]
        first = float(unstable.min()) if len(unstable) else math.nan
        below = alphas[stable & (alphas < first)] if len(unstable) else alphas[stable]
        edge = float(below.max()) if len(below) else math.nan
        kind = ("no_data" if not len(alphas) else "below_range" if not len(below) else
                "lower_bound" if not len(unstable) else "exact")
        row.update(edge=edge, first_unstable=first, edge_kind=kind,
                   ragged=bool(len(unstable) and (stable & (alphas > first)).any()),
                   n_probes=len(grp), n_failed=int(grp["failed"].sum()),
                   probes=" ".join(f"{a:g}:{o}" for a, o in zip(grp["alpha"], grp["outcome"])))
        rows.append(row)
    return pd.DataFrame(rows)


def edge_ratios(lines: pd.DataFrame) -> pd.DataFrame:
    """Per line with R > 0: its edge over the edge of the same line at R = 0 (same other
    settings, β and seed). ``bound`` says how far the ratio is known: ``exact`` when both edges
    are, ``at_least`` / ``at_most`` when one is a lower bound, ``unknown`` otherwise."""
    if "R" not in lines or not (lines["R"] == 0).any():
        return pd.DataFrame()
    keys = [k for k in lines.columns if k not in LINE_COLUMNS and k != "R"]
    base = lines[lines["R"] == 0].set_index(keys)
    rows = []
    for _, line in lines[lines["R"] != 0].iterrows():
        k = tuple(line[c] for c in keys)
        if k not in base.index:
            continue
        b = base.loc[k]
        if isinstance(b, pd.DataFrame):
            b = b.iloc[0]
        usable = {"exact", "lower_bound"}
        ok = line["edge_kind"] in usable and b["edge_kind"] in usable
        ratio = line["edge"] / b["edge"] if ok else math.nan
        lb, lb0 = line["edge_kind"] == "lower_bound", b["edge_kind"] == "lower_bound"
        bound = ("unknown" if not ok or (lb and lb0) else "at_least" if lb else
                 "at_most" if lb0 else "exact")
        rows.append({**{c: line[c] for c in keys}, "R": line["R"], "edge": line["edge"],
                     "edge_kind": line["edge_kind"], "edge_R0": b["edge"],
                     "edge_kind_R0": b["edge_kind"], "ratio": ratio, "bound": bound,
                     "ragged": bool(line["ragged"] or b["ragged"])})
    return pd.DataFrame(rows)


def ratio_summary(ratios: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (slice, R): the geometric mean of the edge ratios over β and seeds, with a 95%
    bootstrap interval over lines, and how many lines raised, kept or lowered the edge.
    Only ratios of two known edges enter the mean; bounds are counted beside it."""
    if ratios.empty:
        return pd.DataFrame()
    keys = [k for k in ratios.columns if k not in RATIO_COLUMNS and k not in ("beta", "seed")]
    rng = np.random.default_rng(seed)
    rows = []
    for key, grp in group_by(ratios, keys):
        known = grp[grp["bound"] == "exact"]["ratio"].to_numpy(dtype=float)
        logs = np.log(known[np.isfinite(known) & (known > 0)])
        row = key_dict(keys, key)
        if len(logs):
            boot = rng.choice(logs, size=(n_boot, len(logs))).mean(axis=1)
            row.update(gain=float(np.exp(logs.mean())),
                       gain_lo=float(np.exp(np.quantile(boot, 0.025))),
                       gain_hi=float(np.exp(np.quantile(boot, 0.975))))
        else:
            row.update(gain=math.nan, gain_lo=math.nan, gain_hi=math.nan)
        r, bound = grp["ratio"].to_numpy(dtype=float), grp["bound"].to_numpy()
        with np.errstate(invalid="ignore"):  # a bound decides only on its own side of 1
            up = ((bound == "exact") | (bound == "at_least")) & (r > 1)
            down = ((bound == "exact") | (bound == "at_most")) & (r < 1)
        row.update(lines=len(grp), exact=len(logs), raised=int(up.sum()),
                   same=int(((bound == "exact") & (r == 1)).sum()), lowered=int(down.sum()),
                   unknown=int((grp["bound"] == "unknown").sum()), ragged=int(grp["ragged"].sum()))
        rows.append(row)
    return pd.DataFrame(rows)
