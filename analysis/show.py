"""The terminal view of a sweep: the answer, the α edges, metrics tables, a map per slice.

Map symbols: ``#`` stable, ``~`` stable but spiked (a seed rose above the threshold on the way
and came back down), ``x`` diverged, ``^`` blew up (ended above the threshold over its best),
``-`` stalled (did not end below its initial loss), ``!`` only failed trials, blank: no trial
(a cell takes its worst seed's mark).
β grows upwards, α to the right, as in the report. Scattered (Optuna) slices are binned: α on
a log2 scale, β linearly, and the seeds of a bin pooled.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .answer import answer_sentence
from .boundary_report import (boundary_answer, boundary_summary, gain_table, is_line_search,
                              line_keys, store_rise)
from .effective import X_AXES, convention_note, effective_view
from .figures import fmt, slice_title
from .map_report import is_map_search, render_map
from .load import load_curves, load_sweep_meta, load_trials
from .metrics import summarize
from .stability import (RISE, RISES, TOLS, cell_outcome, display_keys, fixed_settings,
                        group_by, pct, read_settings, slice_keys)

__all__ = ["render_show", "render_summary", "render_lines", "text_map", "edge_text",
           "answer_tables", "partial_note", "SYMBOLS"]

SYMBOLS = {"stable": "#", "spiked": "~", "diverged": "x", "blew_up": "^", "stalled": "-",
           "failed": "!"}
MAX_AXIS = 14  # more distinct values than this on an axis: bin them
BINS = 8
_CORNER = "β\\α"


def _axis(values: pd.Series, log: bool) -> tuple[np.ndarray, list[str]]:
    """Per value, its column index; and the column labels."""
    uniq = np.sort(values.unique())
    if len(uniq) <= MAX_AXIS:
        return np.searchsorted(uniq, values.to_numpy()), [fmt(u) for u in uniq]
    v = np.log2(values.to_numpy(dtype=float)) if log else values.to_numpy(dtype=float)
    edges = np.linspace(v.min(), v.max(), BINS + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, BINS - 1)
    mids = (edges[:-1] + edges[1:]) / 2
    return idx, [fmt(2 ** m if log else m) for m in mids]


def text_map(slice_cells: pd.DataFrame, corner: str = _CORNER) -> str:
    """A compact text map of one slice's cells (see the module docstring); ``corner`` names
    the axes (β up, what the cells' ``alpha`` holds to the right)."""
    xi, xl = _axis(slice_cells["alpha"], log=True)
    yi, yl = _axis(slice_cells["beta"], log=False)
    counts = np.zeros((len(yl), len(xl), 5))  # n, n_stable, n_diverged, n_blew_up, n_spiked
    present = np.zeros((len(yl), len(xl)), dtype=bool)
    cols = ["n", "n_stable", "n_diverged", "n_blew_up", "n_spiked"]
    for (x, y), row in zip(zip(xi, yi), slice_cells[cols].to_numpy(dtype=float)):
        counts[y, x] += row
        present[y, x] = True
    outcome = cell_outcome(*(counts[..., i] for i in range(4)))
    outcome = np.where((outcome == "stable") & (counts[..., 4] > 0), "spiked", outcome)
    width = max(len(s) for s in xl) + 1
    ylw = max(max(len(s) for s in yl), len(corner))
    lines = [f"{corner:>{ylw}} " + "".join(f"{s:>{width}}" for s in xl)]
    for y in reversed(range(len(yl))):
        marks = "".join(f"{SYMBOLS[outcome[y, x]] if present[y, x] else ' ':>{width}}"
                        for x in range(len(xl)))
        lines.append(f"{yl[y]:>{ylw}} " + marks)
    return "\n".join(lines)


def _frame(df: pd.DataFrame) -> str:
    if df.empty:
        return "  (none)"
    text = df.to_string(index=False, na_rep="-",
                        formatters={c: fmt for c in df.columns})
    return "\n".join("  " + line for line in text.splitlines())


def edge_text(edge: float, kind: str) -> str:
    """'1.4', '≥2' (stable to the grid's end) or 'below' (not even the smallest α)."""
    if kind == "below_grid":
        return "below"
    return ("≥" if kind == "lower_bound" else "") + fmt(float(edge))


def _gain_text(g: pd.Series) -> str:
    if pd.isna(g["gain"]):
        return "– (nothing stable)"
    sign = {"at_least": "≥", "at_most": "≤", "unknown": "?"}.get(g["bound"], "")
    return f"{sign}{fmt(g['gain'])} [{fmt(g['gain_lo'])}, {fmt(g['gain_hi'])}]"


def answer_tables(s: dict[str, Any], hide: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """The answer's tables for a page or a terminal: ``edges`` (one row per (H, β) line and
    R>0: edge at R=0, at R, gain; at the threshold used), ``sensitivity`` (edge gain per
    threshold), ``area``, ``paired`` (pooled over β) and ``near`` (near-optimal cells)."""
    g, rise = s["restart_gain"], s["rise"]
    drop = [c for c in hide if c not in ("H", "R", "beta")]
    out: dict[str, pd.DataFrame] = {}
    if len(g):
        used = g[np.isclose(g["rise"], rise)].drop(columns=drop, errors="ignore")
        keys = [c for c in used.columns if c not in (
            "rise", "edge", "edge_kind", "edge_R0", "edge_kind_R0", "gain", "gain_lo",
            "gain_hi", "bound", "n_seeds")]
        out["edges"] = used[keys].assign(
            **{"edge at R=0": [edge_text(e, k) for e, k in zip(used["edge_R0"],
                                                                used["edge_kind_R0"])],
               "edge at R": [edge_text(e, k) for e, k in zip(used["edge"], used["edge_kind"])],
               "edge gain [95%]": used.apply(_gain_text, axis=1).to_numpy(),
               "seeds": used["n_seeds"].to_numpy()})
        wide = g.assign(text=g.apply(_gain_text, axis=1)).drop(columns=drop, errors="ignore")
        out["sensitivity"] = wide.pivot_table(index=keys, columns="rise", values="text",
                                              aggfunc="first").reset_index()
        out["sensitivity"].columns = [c if not isinstance(c, float) else f"at {pct(c)}"
                                      + (" (used)" if np.isclose(c, rise) else "")
                                      for c in out["sensitivity"].columns]
    a = s["area_gain"]
    if len(a):
        a = a[np.isclose(a["rise"], rise)].drop(columns=drop + ["rise"], errors="ignore")
        out["area"] = a.assign(**{"area gain [95%]": [
            f"{fmt(x)} [{fmt(lo)}, {fmt(hi)}]" for x, lo, hi in
            zip(a["gain"], a["gain_lo"], a["gain_hi"])]}).drop(
            columns=["gain", "gain_lo", "gain_hi"])
    p = s["paired"]
    if len(p):
        out["paired"] = p[p["beta"].isna()].drop(columns=drop + ["beta"], errors="ignore")
    n = s["near_optimal"]
    if len(n):
        n = n.drop(columns=drop, errors="ignore")
        nk = [c for c in n.columns if c not in ("tol", "near_cells", "cells", "group_best")]
        near = n.assign(text=[f"{a}/{b}" for a, b in zip(n["near_cells"], n["cells"])])
        near = near.pivot_table(index=nk, columns="tol", values="text",
                                aggfunc="first").reset_index()
        near.columns = [c if not isinstance(c, float) else f"within {pct(c)}"
                        for c in near.columns]
        out["near"] = near
    return out


def render_summary(s: dict[str, Any], name: str = "", x: str = "alpha") -> str:
    """The terminal text of a ``summarize`` result; ``x="effective"``: edges and maps against
    the effective outer LR (analysis.effective) instead of α."""
    if x not in X_AXES:
        raise ValueError(f"x: expected one of {', '.join(X_AXES)}, got {x!r}")
    if x == "effective":
        s = effective_view(s)
    trials = s["trials"]
    c = s["cells"]
    counts = {**trials["outcome"].value_counts(), "spiked": int(trials["spiked"].sum())}
    fixed = fixed_settings(c)
    hide = list(fixed)
    head = (f"sweep {name}: {len(trials)} trials · threshold {pct(s['rise'])} (end rise above: "
            f"blew up; rise on the way above: spiked) · "
            + ", ".join(f"{counts.get(o, 0)} {o.replace('_', ' ')}"
                        + (" (of the stable)" if o == "spiked" else "") for o in SYMBOLS))
    out = [head, "", answer_sentence(s)]
    if x == "effective":
        out.append(convention_note(trials) + (f" ({s['x_dropped']} cells of a rule without one "
                                               f"are not drawn)" if s["x_dropped"] else ""))
    same = {k: fixed[k] for k in read_settings(c, fixed)}
    if same:
        out.append("same in every slice: " + slice_title(same, same.values()))
    t = answer_tables(s, hide)
    what = "stable edge (effective outer LR)" if x == "effective" else "stable α edge"
    titles = {"edges": f"{what} per (H, β) line, R=0 against R (≥: stable to the grid's "
                       "end; below: not even the smallest α). gain [95% interval]: ≥ at least "
                       "(R stable to the grid's end), ≤ at most (R=0 is), ? neither arm "
                       "breaks on the grid (not measured), inf: nothing stable at R=0:",
              "sensitivity": "edge gain (edge at R / at R=0) at each threshold:",
              "area": "stable area in (log α, β), R against R=0:",
              "paired": "paired runs (same α, β, seed), R against R=0:",
              "near": "near-optimal cells (stable, within tol of the best of any R):"}
    for key, title in titles.items():
        if key in t:
            out += ["", title, _frame(t[key])]
    slices = s["slices"].drop(columns=hide + ["initial_loss", "n_failed", "grid"],
                              errors="ignore")
    out += ["", "slices:", _frame(slices), "",
            "maps: # stable  ~ stable, spiked on the way  x diverged  ^ blew up  - stalled  "
            "! failed"]
    keys = slice_keys(c)
    shown = display_keys(c)
    for key, sl in (group_by(c, keys) if keys else [((), c)]):
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        title = slice_title(shown, [values[k] for k in shown]) or "all trials"
        out += ["", f"{title}: stable {int(sl['stable'].sum())}/{len(sl)} cells",
                text_map(sl, "β\\eff" if x == "effective" else _CORNER)]
    return "\n".join(out)


def render_show(path: str | Path, rise: float | None = None, tol: float = 0.05, *,
                diverge: float | None = None, rises: Sequence[float] = RISES,
                tols: Sequence[float] = TOLS,
                skipped: Mapping[str, str] | None = None, x: str = "alpha") -> str:
    """The terminal view of the sweep at ``path``: the answer, its tables, a map per slice.
    ``skipped``: files to leave out, with why (named at the end). ``x``: ``alpha``, or
    ``effective`` for edges and maps against the effective outer LR (a grid's store)."""
    skipped = dict(skipped or {})
    trials = load_trials(path, exclude=skipped)
    notes = [f"left out (not a trustworthy trial row; its trial counts as missing): {f}: {why}"
             for f, why in skipped.items()]
    if trials.empty:
        return "\n".join([f"no trial results under {path}", *notes])
    meta = load_sweep_meta(path)
    name = (meta.get("spec") or {}).get("name") or Path(str(path).rstrip("/")).name
    if is_line_search(meta):
        if x != "alpha":
            raise ValueError("x: the effective outer LR view is for a grid's store; a "
                             "boundary search's edges are on its α axis")
        text = render_lines(boundary_summary(trials, store_rise(meta, rise)), name)
    elif is_map_search(meta):
        text = render_map(trials, meta, name)
    else:
        text = render_summary(summarize(trials, rise=RISE if rise is None else rise, tol=tol,
                                        rises=rises, tols=tols, diverge=diverge,
                                        curves=lambda ids: load_curves(path, trial_ids=ids)),
                              name, x)
    return "\n".join([partial_note(meta, len(trials)), text, *notes]).strip("\n")


def partial_note(meta: Mapping, n_trials: int) -> str:
    """One line when the results are partial (the last run was interrupted, or stopped with
    rows it could not store), else ''."""
    runs = meta.get("runs") or []
    last = runs[-1] if runs else {}
    if last.get("interrupted"):
        why = "its last run was interrupted"
    elif last.get("unwritten") or last.get("outcome") == "store failed":
        why = "its last run could not store every trial"
    else:
        return ""
    return (f"PARTIAL RESULTS: {why} ({n_trials} trials stored); run the same `diloco-sweep "
            f"run` again to finish it")


def render_lines(s: dict[str, Any], name: str = "") -> str:
    """The terminal view of a boundary store: the answer, the gains, the edges per line."""
    lines = s["lines"]
    out = [f"sweep {name}" if name else "", textwrap.fill(boundary_answer(s), 100), ""]
    if not s["gains"].empty:
        out += ["restart gain (ratio of α edges, geometric mean over lines):",
                _frame(gain_table(s["gains"], drop=("exact",))), ""]
    table = lines[line_keys(lines)].assign(edge=[edge_text(e, "below_grid" if k == "below_range" else k)
                                      for e, k in zip(lines["edge"], lines["edge_kind"])],
                                first_unstable=lines["first_unstable"],
                                ragged=lines["ragged"], probes=lines["n_probes"])
    out += ["α edge per line:", _frame(table)]
    return "\n".join(x for x in out if x is not None).lstrip("\n")
