"""Stability labels per trial and per (slice, α, β) cell.

Words follow DESIGN.md. A *slice* is the set of trials that share every setting except α, β and
seed; :func:`slice_keys` finds those settings among a trial frame's columns.

Per trial, :func:`label` sets exactly one ``outcome``:

- ``failed``: the trial crashed (``status == "failed"``); it says nothing about stability and
  is left out of every count below;
- ``diverged``: ``status == "diverged"``, a non-finite final loss, or (with ``diverge=f``) a
  final or peak loss above ``f * initial_loss``;
- ``spiked``: not diverged, but ``peak_loss > spike * initial_loss``: the loss blew up and then
  recovered. Such a trial is never ``stable``, whatever its final loss;
- ``stable``: none of the above and ``final_loss <= (1 + tol) * best``, where ``best`` is the
  lowest final loss of a not-diverged, not-failed trial of the same slice;
- ``unstable``: the rest (trained, but too far from the slice's best).

Per cell (:func:`cells`) the seeds are pooled: stable fraction with a Wilson 95% interval, and a
cell counts as stable when a strict majority of its seeds is (one seed: that seed).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

__all__ = ["tol_text", "slice_keys", "varying", "display_keys", "fixed_settings", "group_by", "label", "cells", "cell_outcome", "wilson", "OUTCOMES", "SPIKE", "Z95"]

OUTCOMES = ("stable", "unstable", "spiked", "diverged", "failed")
SPIKE = 1.1
"""Default spike threshold: peak loss above 1.1 × the initial loss counts as a spike."""
Z95 = 1.959963984540054  # two-sided 95% normal quantile

_AXES = {"alpha", "beta", "seed"}
_RESULTS = {
    "sweep", "trial_id", "status", "initial_loss", "final_loss", "best_loss", "peak_loss",
    "outer_steps_done", "tokens", "wall_s", "error", "n_params", "reason", "commit",
    # runtime settings that do not change what is trained
    "device", "threads",
    # columns added by this module
    "outcome", "stable", "spiked", "diverged", "failed", "slice_best", "gap",
    # columns of a cell table (so slice_keys works on one as well)
    "n", "n_stable", "n_unstable", "n_spiked", "n_diverged", "n_failed", "final_mean",
    "final_std", "stable_frac", "stable_lo", "stable_hi", "trial_ids",
}
_BOOKKEEPING_PREFIXES = ("version", "git", "host", "node", "started", "finished", "attempt", "_")


def slice_keys(trials: pd.DataFrame) -> list[str]:
    """The columns that define a slice: settings other than α, β, seed, results, bookkeeping.

    ``H`` and ``R`` come first when present (the report's facet rows and columns); columns that
    hold lists or mappings are left out (they cannot be grouped on).
    """
    keys = []
    for col in trials.columns:
        if col in _AXES or col in _RESULTS or str(col).startswith(_BOOKKEEPING_PREFIXES):
            continue
        sample = trials[col].dropna()
        if len(sample) and isinstance(sample.iloc[0], (list, dict, np.ndarray)):
            continue
        keys.append(col)
    head = [k for k in ("H", "R") if k in keys]
    return head + [k for k in keys if k not in head]


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


def group_by(frame: pd.DataFrame, keys: list[str]):
    """groupby over ``keys`` that keeps null keys and works with no keys at all."""
    if not keys:
        return frame.groupby(np.zeros(len(frame), dtype=int), sort=False)
    return frame.groupby(keys, dropna=False, sort=True, observed=True)


def label(trials: pd.DataFrame, tol: float = 0.05, diverge: float | None = None,
          spike: float | None = SPIKE) -> pd.DataFrame:
    """A copy of ``trials`` with stability columns added (see the module docstring).

    Adds ``outcome`` (one of OUTCOMES), bool ``stable``, ``spiked``, ``diverged``, ``failed``,
    ``slice_best`` (lowest final loss of a trained trial in the slice) and ``gap``
    (``final_loss / slice_best - 1``). ``tol`` is the relative tolerance to the slice's best;
    ``diverge`` re-labels trials whose final or peak loss exceeds ``diverge × initial_loss``;
    ``spike=None`` turns spike detection off.
    """
    if tol < 0:
        raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
    df = trials.copy()
    status = df["status"].astype("string").fillna("completed") if "status" in df else \
        pd.Series("completed", index=df.index, dtype="string")
    final = pd.to_numeric(df["final_loss"], errors="coerce").astype(float)
    initial = pd.to_numeric(df.get("initial_loss", np.nan), errors="coerce")
    initial = pd.Series(initial, index=df.index, dtype=float)
    peak = pd.Series(pd.to_numeric(df.get("peak_loss", np.nan), errors="coerce"),
                     index=df.index, dtype=float)

    failed = status.eq("failed").to_numpy(dtype=bool)
    diverged = (status.eq("diverged").to_numpy(dtype=bool) | ~np.isfinite(final.to_numpy()))
    if diverge is not None:
        limit = (diverge * initial).to_numpy()
        diverged |= (final.to_numpy() > limit) | (peak.to_numpy() > limit)
    diverged &= ~failed
    spiked = np.zeros(len(df), dtype=bool)
    if spike is not None:
        spiked = (peak.to_numpy() > spike * initial.to_numpy()) & ~diverged & ~failed

    trained = ~diverged & ~failed
    keys = slice_keys(df)
    best = final.where(trained)
    if keys:
        best = best.groupby([df[k] for k in keys], dropna=False, observed=True).transform("min")
    else:
        best = pd.Series(best.min(), index=df.index)
    # a trial that ended above its initial loss is never stable; tol=inf keeps only that test
    ended_lower = final.to_numpy() < initial.to_numpy()
    ended_lower |= ~np.isfinite(initial.to_numpy())  # no initial loss recorded: no such test
    stable = trained & ~spiked & ended_lower & (final.to_numpy() <= (1.0 + tol) * best.to_numpy())

    outcome = np.select([failed, diverged, spiked, stable],
                        ["failed", "diverged", "spiked", "stable"], default="unstable")
    df["outcome"] = outcome
    df["stable"] = stable
    df["spiked"] = spiked
    df["diverged"] = diverged
    df["failed"] = failed
    df["slice_best"] = best.to_numpy()
    df["gap"] = final.to_numpy() / best.to_numpy() - 1.0
    return df


def tol_text(tol: float) -> str:
    """'5%', or 'none' for tol=inf (stable = trained, not spiked, ended below its start)."""
    return "none" if np.isinf(tol) else f"{tol:.0%}"


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


def cells(trials: pd.DataFrame, tol: float = 0.05, diverge: float | None = None,
          spike: float | None = SPIKE) -> pd.DataFrame:
    """One row per (slice, α, β) cell, seeds pooled.

    ``trials`` is labelled first unless it already has an ``outcome`` column. Columns: the slice
    keys, ``alpha``, ``beta``, ``n`` (seeds that did not fail), ``n_stable``, ``n_unstable``,
    ``n_spiked``, ``n_diverged``, ``n_failed``, ``stable_frac`` with its Wilson 95% interval
    ``stable_lo``/``stable_hi``, ``final_mean``/``final_std`` (over seeds that did not diverge;
    std needs two), ``initial_loss`` (mean), ``best_loss`` (mean), ``peak_loss`` (max),
    ``stable`` (a strict majority of seeds stable), ``outcome`` (see ``cell_outcome``) and
    ``trial_ids`` (comma-separated).
    """
    df = trials if "outcome" in trials.columns else label(trials, tol, diverge, spike)
    keys = slice_keys(df) + ["alpha", "beta"]
    trained = df["outcome"].isin(["stable", "unstable", "spiked"])
    work = df.assign(
        _ok=~df["failed"],
        _final=pd.to_numeric(df["final_loss"], errors="coerce").where(trained),
        **{f"_{o}": df["outcome"].eq(o) for o in OUTCOMES},
    )
    g = group_by(work, keys)
    out = g.agg(
        n=("_ok", "sum"), n_stable=("_stable", "sum"), n_unstable=("_unstable", "sum"),
        n_spiked=("_spiked", "sum"), n_diverged=("_diverged", "sum"),
        n_failed=("_failed", "sum"), final_mean=("_final", "mean"),
        final_std=("_final", "std"), initial_loss=("initial_loss", "mean"),
        best_loss=("best_loss", "mean"), peak_loss=("peak_loss", "max"),
        trial_ids=("trial_id", lambda s: ",".join(map(str, s))),
    ).reset_index()
    for col in ("n", "n_stable", "n_unstable", "n_spiked", "n_diverged", "n_failed"):
        out[col] = out[col].astype(int)
    out["stable_frac"] = out["n_stable"] / out["n"].where(out["n"] > 0)
    out["stable_lo"], out["stable_hi"] = wilson(out["n_stable"], out["n"])
    out["stable"] = out["n_stable"] * 2 > out["n"]
    out["outcome"] = cell_outcome(out["n"], out["n_stable"], out["n_diverged"], out["n_spiked"])
    return out


def cell_outcome(n: Any, n_stable: Any, n_diverged: Any, n_spiked: Any) -> np.ndarray:
    """The outcome of a cell (or of pooled cells) from its seed counts, elementwise.

    stable when a strict majority of seeds is; else diverged when at least half diverged; else
    spiked when at least half spiked; else unstable; failed when no seed ran (n == 0).
    """
    n, k, d, sp = (np.asarray(x, dtype=float) for x in (n, n_stable, n_diverged, n_spiked))
    return np.select([n == 0, 2 * k > n, 2 * d >= n, 2 * sp >= n],
                     ["failed", "stable", "diverged", "spiked"], default="unstable")
