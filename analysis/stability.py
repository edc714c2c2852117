"""Stability labels per trial and per (slice, α, β) cell (docs/design.md, "Stable: the run
settles").

Stable is a property of the trial alone, judged by where the trial *ended*. Per trial,
:func:`label` sets exactly one ``outcome`` with ``trainer.result.outcome`` (the one rule, which
the boundary search uses too):

- ``failed``: the trial crashed (``status == "failed"``); it says nothing about stability and
  is left out of every count below;
- ``diverged``: ``status == "diverged"``, a non-finite final loss, or (with ``diverge=f``) a
  final or peak loss above ``f * initial_loss``: the trainer stopped it, or it ended off scale;
- ``blew_up``: not diverged, but ``end_rise`` (final / best - 1) above the threshold ``rise``:
  it did not come back down;
- ``stalled``: neither, but the final loss is not below the initial loss (it did not train);
- ``stable``: the rest. No other trial is consulted.

``spiked`` marks a stable trial whose ``rise`` (max_t L_t / min_{s<=t} L_s - 1, the largest
climb on the way) is above the same threshold: it spiked and recovered. A transient is allowed
by stable dynamics (the theory's rate below 1), so a spike is reported apart, not as
instability. :func:`spike_rounds` says when a spike came (from the curves), so the answer can
tell the early overshoot that both arms share (their first R rounds are identical) from the
rest.

Near-optimal is a separate question ("does it train as well as it can"): a stable trial whose
final loss is within ``tol`` of the best final loss of stable trials in its *group*, the slices
that differ only in R, so that every R is held to one bar.

A *slice* is the set of trials that share every setting except α, β and seed; :func:`slice_keys`
finds those settings among a frame's columns. A cell (:func:`cells`) pools a slice's seeds at
one (α, β): it is stable when every seed that ran is, spiked when it is stable and any seed
spiked, and its outcome is the worst of its seeds' (diverged, then blew_up, then stalled).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from trainer.config import KIND_READS
from trainer.result import OUTCOMES, RISE, first_spike_round, outcome, spiked

from .load import fill_end_rise

__all__ = ["slice_keys", "group_keys", "varying", "display_keys", "fixed_settings",
           "read_settings", "group_by",
           "key_dict", "is_grid", "restart_groups", "why_no_groups", "label", "spike_rounds",
           "cells", "cell_outcome", "wilson", "OUTCOMES", "RISE", "RISES", "TOLS", "Z95", "pct"]

RISES = (0.05, 0.10, 0.20, 0.50)
"""Thresholds at which the answer is always shown, so its sensitivity is on the page."""
TOLS = (0.02, 0.05, 0.10, 0.20)
"""Tolerances of near-optimal to the group's best final loss."""
Z95 = 1.959963984540054  # two-sided 95% normal quantile

# For columns without a stored role only (see slice_keys): what the store's roles would say.
_AXES = {"alpha", "beta", "seed"}
_RESULTS = {
    "sweep", "trial_id", "status", "initial_loss", "final_loss", "best_loss", "peak_loss",
    "rise", "end_rise", "outer_steps_done", "inner_steps_done", "tokens", "wall_s", "error",
    "n_params", "reason", "commit", "flops",
    # runtime settings that do not change what is trained
    "device", "threads",
    # columns added by this module
    "outcome", "stable", "stalled", "blew_up", "diverged", "failed", "spiked", "spike_round",
    "group_best", "gap", "near_optimal",
    # columns of a cell table (so slice_keys works on one as well)
    "n", "n_stable", "n_stalled", "n_blew_up", "n_diverged", "n_failed", "n_near", "n_spiked",
    "final_mean", "final_std", "rise_max", "end_rise_max", "stable_frac", "stable_lo",
    "stable_hi",
    "trial_ids", "spiked_id", "blew_up_id", "diverged_id",
}
_BOOKKEEPING_PREFIXES = ("version", "git", "host", "node", "started", "finished", "attempt", "_")


def pct(x: float) -> str:
    """'10%', '2.5%'."""
    return f"{x:.0%}" if round(x * 100) == x * 100 else f"{x:.1%}"


def slice_keys(trials: pd.DataFrame) -> list[str]:
    """The columns that define a slice: the settings, not α, β, seed, results or bookkeeping.

    A frame read by ``load_trials`` knows each column's role from the store's Parquet metadata
    (``frame.attrs["roles"]``); a column with the role ``setting`` is a slice key. Columns with
    no role (files written before roles, frames built by hand) fall back to the names below.
    ``H`` and ``R`` come first when present (the report's facet rows and columns); columns that
    hold lists or mappings are left out (they cannot be grouped on).
    """
    roles = trials.attrs.get("roles") or {}
    keys = []
    for col in trials.columns:
        role = roles.get(col)
        if role is not None and role != "setting":
            continue
        if role is None and (col in _AXES or col in _RESULTS
                             or str(col).startswith(_BOOKKEEPING_PREFIXES)):
            continue
        sample = trials[col].dropna()
        if len(sample) and isinstance(sample.iloc[0], (list, dict, np.ndarray)):
            continue
        keys.append(col)
    head = [k for k in ("H", "R") if k in keys]
    return head + [k for k in keys if k not in head]


def group_keys(frame: pd.DataFrame) -> list[str]:
    """The slice keys other than R: a *group* is the slices that differ only in R."""
    return [k for k in slice_keys(frame) if k != "R"]


def key_dict(keys: list[str], key: Any) -> dict[str, Any]:
    """``key`` of a groupby over ``keys`` as a dict (a scalar key for one column)."""
    return dict(zip(keys, key if isinstance(key, tuple) else (key,))) if keys else {}


def is_grid(frame: pd.DataFrame) -> bool:
    """True when the (α, β) points of ``frame`` cover at least half of the product of its α
    and β values (a grid, not a sampler's scattered points)."""
    points = frame[["alpha", "beta"]].drop_duplicates()
    product = frame["alpha"].nunique() * frame["beta"].nunique()
    return product > 0 and len(points) * 2 >= product


def restart_groups(labelled: pd.DataFrame):
    """(group settings, trials of the group) for every group of slices differing only in R
    that has R=0, some R > 0, and lays its trials on an (α, β) grid in every slice. Without a
    seed column the trials count as one seed (0)."""
    if "R" not in labelled:
        return
    if "seed" not in labelled:
        labelled = labelled.assign(seed=0)
    keys = group_keys(labelled)
    for key, grp in group_by(labelled, keys):
        if not ((grp["R"] == 0).any() and (grp["R"] != 0).any()):
            continue
        if all(is_grid(sl) for _, sl in grp.groupby("R")):
            yield key_dict(keys, key), grp


def why_no_groups(labelled: pd.DataFrame) -> str:
    """Why ``restart_groups`` yields nothing for this frame, in words."""
    if "R" not in labelled or labelled["R"].nunique() < 2:
        return "the sweep has one value of R, so there is nothing to compare restarts against"
    if not (labelled["R"] == 0).any():
        return "the sweep has no R=0 slice to compare restarts against"
    return ("the trials do not lie on an (α, β) grid in each R (a sampler's scattered points "
            "have no α edge per β); run a grid to compare edges")


def varying(frame: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` that take more than one value in ``frame``."""
    return [k for k in keys if frame[k].nunique(dropna=False) > 1]


def display_keys(frame: pd.DataFrame) -> list[str]:
    """Slice keys worth a column in a table: H and R when present, and any other that varies."""
    keys = slice_keys(frame)
    return [k for k in keys if k in ("H", "R") or frame[k].nunique(dropna=False) > 1]


def fixed_settings(frame: pd.DataFrame) -> dict[str, Any]:
    """The slice keys that take one value in ``frame``, with that value (H and R left out)."""
    shown = set(display_keys(frame))
    return {k: frame[k].iloc[0] for k in slice_keys(frame) if k not in shown and len(frame)}


def read_settings(frame: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """``keys`` less the kind sections' settings that no trial kind of ``frame`` reads
    (``KIND_READS``): an LM sweep's header lists no toy_dim, a toy sweep's no weight_decay."""
    kinds = set(frame["kind"].dropna().unique()) if "kind" in frame else set()
    if not kinds <= KIND_READS.keys() or not kinds:
        return list(keys)  # a kind this code does not know: hide nothing
    read = {f for kind in kinds for f in KIND_READS[kind]}
    unread = {f for fields in KIND_READS.values() for f in fields} - read
    return [k for k in keys if k not in unread]


def group_by(frame: pd.DataFrame, keys: list[str]):
    """groupby over ``keys`` that keeps null keys and works with no keys at all."""
    if not keys:
        return frame.groupby(np.zeros(len(frame), dtype=int), sort=False)
    return frame.groupby(keys, dropna=False, sort=True, observed=True)


def _numbers(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def label(trials: pd.DataFrame, rise: float = RISE, tol: float = 0.05,
          diverge: float | None = None) -> pd.DataFrame:
    """A copy of ``trials`` with the labels of the module docstring.

    Adds ``outcome`` (one of OUTCOMES), bool ``stable``, ``stalled``, ``blew_up``,
    ``diverged``, ``failed``, ``spiked`` and ``near_optimal`` (at ``tol``), ``group_best``
    (lowest final loss of a stable trial in the group of slices differing only in R) and ``gap``
    (``final_loss / group_best - 1``). ``rise`` is the threshold: blew up when ``end_rise`` is
    above it, spiked when ``rise`` is; a row without ``end_rise`` gets it from its own final
    and best loss, and a trial whose rise is unknown is never called spiked. ``diverge``
    re-labels trials whose final or peak loss exceeds ``diverge × initial_loss``.
    """
    if not rise >= 0:
        raise ValueError(f"rise: expected a relative rise >= 0 such as 0.1, got {rise!r}")
    if not tol >= 0:
        raise ValueError(f"tol: expected a relative tolerance >= 0 such as 0.05, got {tol!r}")
    df = fill_end_rise(trials.copy())  # final / best - 1 where a row lacks it
    status = (df["status"].astype("string").fillna("completed") if "status" in df else
              pd.Series("completed", index=df.index, dtype="string"))
    final, initial = _numbers(df, "final_loss"), _numbers(df, "initial_loss")
    peak, rises = _numbers(df, "peak_loss"), _numbers(df, "rise")
    ends = _numbers(df, "end_rise")
    if "rise" not in df:
        df["rise"] = rises

    # the trainer's own rule, trial by trial, so a search deciding as it goes agrees with this
    words = np.array([outcome(s, f, i, e, rise, p, diverge) for s, f, i, e, p in
                      zip(status.tolist(), final, initial, ends, peak)], dtype=object)
    failed, diverged = words == "failed", words == "diverged"
    blew_up, stalled, stable = words == "blew_up", words == "stalled", words == "stable"

    group = group_keys(df)
    best = pd.Series(np.where(stable, final, np.nan), index=df.index)
    if group:
        best = best.groupby([df[k] for k in group], dropna=False, observed=True).transform("min")
    else:
        best = pd.Series(best.min(), index=df.index)
    best = best.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = final / best - 1.0
    df["outcome"] = words.astype(str)
    df["stable"], df["stalled"], df["blew_up"] = stable, stalled, blew_up
    df["diverged"], df["failed"] = diverged, failed
    df["spiked"] = np.array([spiked(w, r, rise) for w, r in zip(words, rises)], dtype=bool)
    df["group_best"], df["gap"] = best, gap
    df["near_optimal"] = stable & (gap <= tol)
    return df


def spike_rounds(labelled: pd.DataFrame, curves: pd.DataFrame, rise: float) -> pd.Series:
    """Per row of ``labelled``: the round at which a spiked trial's running rise first passed
    ``rise`` (``trainer.result.first_spike_round``), NaN for a trial that did not spike or whose
    curve ``curves`` lacks. Only the spiked trials' curves are needed."""
    out = pd.Series(np.nan, index=labelled.index, dtype=float)
    if curves is None or curves.empty or "spiked" not in labelled:
        return out
    by = {tid: c.sort_values("outer_step") for tid, c in curves.groupby("trial_id", sort=False)}
    for i, tid in labelled.loc[labelled["spiked"], "trial_id"].astype(str).items():
        c = by.get(tid)
        t = None if c is None else first_spike_round(c["eval_loss"].astype(float).tolist(), rise)
        out[i] = np.nan if t is None else c["outer_step"].iloc[t]  # the round, not the row
    return out


def wilson(k: int | np.ndarray, n: int | np.ndarray,
           z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials; (nan, nan) where n == 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


_COUNTS = ("stable", "stalled", "blew_up", "diverged", "failed", "spiked")
_EXAMPLES = ("spiked", "blew_up", "diverged")
"""Marks a cell names one seed of (``<mark>_id``): the trial a curve of that mark draws."""


def cells(trials: pd.DataFrame, rise: float = RISE, tol: float = 0.05,
          diverge: float | None = None) -> pd.DataFrame:
    """One row per (slice, α, β) cell, seeds pooled.

    ``trials`` is labelled first unless it already has an ``outcome`` column. Columns: the slice
    keys, ``alpha``, ``beta``, ``n`` (seeds that did not fail), ``n_stable``, ``n_stalled``,
    ``n_blew_up``, ``n_diverged``, ``n_failed``, ``n_spiked``, ``n_near`` (near-optimal seeds),
    ``stable_frac`` with its Wilson 95% interval ``stable_lo``/``stable_hi``,
    ``final_mean``/``final_std`` (over seeds that did not diverge; std needs two),
    ``initial_loss`` (mean), ``best_loss`` (mean), ``peak_loss``, ``rise_max`` and
    ``end_rise_max`` (max), ``stable`` (every seed that ran is stable), ``spiked`` (stable, and
    some seed spiked), ``spiked_id``, ``blew_up_id`` and ``diverged_id`` (a seed that did so;
    "" when none), ``near_optimal`` (every seed is),
    ``outcome`` (see :func:`cell_outcome`) and ``trial_ids`` (comma-separated).
    """
    df = trials if "outcome" in trials.columns else label(trials, rise, tol, diverge)
    keys = slice_keys(df) + ["alpha", "beta"]
    ids = df["trial_id"].astype(str) if "trial_id" in df else pd.Series("", index=df.index)
    trained = ~df["diverged"] & ~df["failed"]
    work = df.assign(
        _ok=~df["failed"], _near=df["near_optimal"],
        _id=df["trial_id"] if "trial_id" in df else pd.Series("", index=df.index),
        _final=pd.to_numeric(df["final_loss"], errors="coerce").where(trained),
        _initial=_numbers(df, "initial_loss"), _best=_numbers(df, "best_loss"),
        _peak=_numbers(df, "peak_loss"), _rise=_numbers(df, "rise"),
        **{f"_{o}": df["outcome"].eq(o) for o in _COUNTS if o != "spiked"},
        _spiked=df["spiked"], _end=_numbers(df, "end_rise"),
        **{f"_{o}_id": ids.where(df[o], "") for o in _EXAMPLES},
    )
    work.attrs = {}  # pandas deep-copies attrs into every group's frame: 262k copies on a fine map
    groups = group_by(work, keys)
    out = groups.agg(
        n=("_ok", "sum"), **{f"n_{o}": (f"_{o}", "sum") for o in _COUNTS},
        n_near=("_near", "sum"), final_mean=("_final", "mean"), final_std=("_final", "std"),
        initial_loss=("_initial", "mean"), best_loss=("_best", "mean"),
        peak_loss=("_peak", "max"), rise_max=("_rise", "max"), end_rise_max=("_end", "max"),
        **{f"{o}_id": (f"_{o}_id", "max") for o in _EXAMPLES},
    ).reset_index()
    out["trial_ids"] = _joined(groups.ngroup().to_numpy(), work["_id"].astype(str).to_numpy(),
                               len(out))
    for col in ["n", "n_near"] + [f"n_{o}" for o in _COUNTS]:
        out[col] = out[col].astype(int)
    out["stable_frac"] = out["n_stable"] / out["n"].where(out["n"] > 0)
    out["stable_lo"], out["stable_hi"] = wilson(out["n_stable"], out["n"])
    out["stable"] = (out["n"] > 0) & (out["n_stable"] == out["n"])
    out["near_optimal"] = (out["n"] > 0) & (out["n_near"] == out["n"])
    out["spiked"] = out["stable"] & (out["n_spiked"] > 0)
    out["outcome"] = cell_outcome(out["n"], out["n_stable"], out["n_diverged"],
                                  out["n_blew_up"])
    out.attrs = dict(df.attrs)  # the roles, so slice_keys works on a cell table too
    return out


def _joined(group: np.ndarray, ids: np.ndarray, n: int) -> list[str]:
    """Comma-joined ids of each of n groups (group[i] is row i's), in row order within one."""
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n + 1))
    ids = ids[order]
    return [",".join(ids[bounds[g]:bounds[g + 1]]) for g in range(n)]


def cell_outcome(n: Any, n_stable: Any, n_diverged: Any, n_blew_up: Any) -> np.ndarray:
    """The outcome of a cell (or of pooled cells) from its seed counts, elementwise.

    failed when no seed ran; stable when every seed is; else the worst any seed did: diverged,
    then blew_up, then stalled.
    """
    n, k, d, b = (np.asarray(x, dtype=float) for x in (n, n_stable, n_diverged, n_blew_up))
    return np.select([n == 0, k == n, d > 0, b > 0],
                     ["failed", "stable", "diverged", "blew_up"], default="stalled")
