"""The report of a boundary search: every line's α edge, against β, and the restart gain.

A boundary store holds probes, not a grid: each line (slice, β, seed) has its own α values, so
cells and heatmaps would compare unlike things. This page is built from the lines instead
(``lines.py``): the edge per line, the edge against β per (H, R) with the spread over seeds,
and the restart gain as the ratio of edges on the same line (β, seed) with and without
restarts, as a geometric mean with a 95% bootstrap interval over lines. Ragged lines (stable
again above an unstable α) are counted and listed with their probes.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .edge_figure import edge_figure
from .figures import facet_figures, fmt
from .lines import LINE_COLUMNS, edge_ratios, line_edges, ratio_summary
from .metrics import summarize
from .stability import RISE, group_by, key_dict, label, pct, varying

__all__ = ["is_line_search", "store_rise", "grid_rows", "probe_overlay", "line_keys",
           "gain_table", "boundary_summary", "beta_edges", "boundary_answer",
           "boundary_parts"]


def is_line_search(meta: dict) -> bool:
    """Did the search that wrote this store probe lines (sweep.json ``search.lines``)?"""
    return bool((meta.get("search") or {}).get("lines"))


def store_rise(meta: dict, rise: float | None) -> float:
    """The blow-up threshold to label with: the one given, else the one the search decided
    with (a boundary search chose its probes by it), else the default."""
    if rise is not None:
        return rise
    return float((meta.get("search") or {}).get("rise") or RISE)


def boundary_summary(trials: pd.DataFrame, rise: float = RISE) -> dict[str, Any]:
    lines = line_edges(trials, rise=rise)
    ratios = edge_ratios(lines)
    return {"rise": rise, "lines": lines, "ratios": ratios, "gains": ratio_summary(ratios),
            "edges": beta_edges(lines)}


def beta_edges(lines: pd.DataFrame) -> pd.DataFrame:
    """Per (slice, β): the median edge over seeds, its range (edge_lo, edge_hi) and a kind in
    ``edge_figure``'s words: below_grid when no seed had a stable α, lower_bound when some
    seed was stable at every α probed, else exact."""
    keys = [k for k in lines.columns if k not in LINE_COLUMNS and k != "seed"]
    rows = []
    for key, grp in group_by(lines, keys):
        e = grp["edge"].to_numpy(dtype=float)
        known = e[np.isfinite(e)]
        kinds = set(grp["edge_kind"])
        kind = ("below_grid" if not len(known) else
                "lower_bound" if "lower_bound" in kinds else "exact")
        rows.append({**key_dict(keys, key), "edge": float(np.median(known)) if len(known)
                     else np.nan, "edge_kind": kind,
                     "edge_lo": float(known.min()) if len(known) else np.nan,
                     "edge_hi": float(known.max()) if len(known) else np.nan,
                     "seeds": len(grp), "ragged": int(grp["ragged"].sum())})
    return pd.DataFrame(rows)


def _verdict(row: pd.Series) -> str:
    if not np.isfinite(row["gain"]):
        return "not measured"
    if row["gain_lo"] > 1:
        return "raised"
    if row["gain_hi"] < 1:
        return "lowered"
    return "no clear change"


_LEADS = {
    frozenset(): "Not measured: no pair of lines has two known edges.",
    frozenset({"raised"}): "Yes: restarts raise the stable α edge.",
    frozenset({"lowered"}): "No, the opposite: restarts lower the stable α edge.",
    frozenset({"no clear change"}): "No measurable effect of restarts on the stable α edge.",
    frozenset({"raised", "no clear change"}): "In part: restarts raise the stable α edge in "
                                              "some settings and make no clear change in others.",
    frozenset({"lowered", "no clear change"}): "No: restarts lower the stable α edge in some "
                                               "settings and make no clear change in others.",
}
"""The lead by the set of verdicts of the (slice, R) rows: raised / lowered when the 95%
interval of the edge ratio lies above / below 1, no clear change when it holds 1."""


def boundary_answer(s: dict[str, Any]) -> str:
    """One paragraph from the numbers: does restarting raise the stable α edge?"""
    gains = s["gains"]
    lines = s["lines"]
    if gains.empty:
        return ("No answer: the sweep has no lines at R = 0 to compare restarts against"
                if "R" in lines else "No answer: the sweep does not vary R.")
    verdicts = [_verdict(r) for _, r in gains.iterrows()]
    found = set(verdicts) - {"not measured"}
    lead = _LEADS.get(frozenset(found), "Mixed: restarts raise the stable α edge in some "
                                        "settings and lower it in others.")
    shown = varying(gains, [k for k in gains.columns if k in ("H", "R") or k not in _GAIN_COLS])
    parts = []
    for (_, r), v in zip(gains.iterrows(), verdicts):
        where = ", ".join(f"{k}={fmt(r[k])}" for k in shown) or f"R={fmt(r['R'])}"
        if v == "not measured":
            parts.append(f"{where}: not measured ({int(r['unknown'])} of {int(r['lines'])} lines "
                         f"without two known edges)")
            continue
        n = int(r["exact"])
        parts.append(f"{where}: edge ×{r['gain']:.2f} [{r['gain_lo']:.2f}, {r['gain_hi']:.2f}] "
                     f"over {n} line{'' if n == 1 else 's'} (raised on {int(r['raised'])}, same "
                     f"on {int(r['same'])}, lowered on {int(r['lowered'])})")
    ragged = int(lines["ragged"].sum())
    tail = (f" {ragged} of {len(lines)} lines {'is' if ragged == 1 else 'are'} ragged (stable "
            f"again above an unstable α); {'its' if ragged == 1 else 'their'} edge is the one "
            f"below the first unstable α." if ragged else f" No line of {len(lines)} is ragged.")
    return (f"{lead} " + "; ".join(parts) + f". Stable: not diverged, ended within "
            f"{pct(s['rise'])} of its best eval loss and below its initial loss (a spike that "
            f"came back down is stable)." + tail)


_GAIN_ORDER = ["gain", "gain_lo", "gain_hi", "lines", "exact", "raised", "same", "lowered",
               "unknown", "ragged"]
_GAIN_COLS = set(_GAIN_ORDER)


def line_keys(lines: pd.DataFrame) -> list[str]:
    """The key columns of a line table worth showing: H, R, β, seed, and any other that varies."""
    keys = [k for k in lines.columns if k not in LINE_COLUMNS]
    return [k for k in keys if k in ("H", "R", "beta", "seed") or lines[k].nunique() > 1]


def gain_table(gains: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """The gain table to show: H, R and any varying setting, then the gain columns in order."""
    keys = [k for k in gains.columns if k in ("H", "R") or
            (k not in _GAIN_COLS and gains[k].nunique() > 1)]
    return gains[keys + [c for c in _GAIN_ORDER if c in gains and c not in drop]]


def boundary_parts(trials: pd.DataFrame, rise: float, table: Callable[[pd.DataFrame], str],
                   meta: dict | None = None) -> tuple[list[str], list[tuple[str, go.Figure]]]:
    """The page's sections (HTML) and figures for a boundary store."""
    meta = meta or {}
    s = boundary_summary(trials, rise)
    lines, gains = s["lines"], s["gains"]
    fig = edge_figure(s["edges"].drop(columns=["seeds", "ragged"]), _ticks(trials["alpha"]),
                      title="Stable α edge per β: ● edge, ▲ at least (stable at every α probed), "
                            "▼ below the smallest α probed; bars: smallest to largest seed",
                      spread="seeds from") if len(s["edges"]) else None
    figures = [("edges", fig)] if fig is not None else []
    parts = [f"<p class='answer'>{html.escape(boundary_answer(s))}</p>",
             f"<p class='lead'>{len(trials)} probes on {len(lines)} lines "
             f"(boundary search: each line brackets then bisects α).</p>"]
    if not gains.empty:
        parts += ["<h2>Restart gain: ratio of α edges</h2><p class='note'>Per line (β, seed) "
                  "with R > 0: its edge over the edge of the same line at R = 0; gain: "
                  "geometric mean over lines where both edges are known [95% bootstrap over "
                  "lines]. raised / lowered count bounds only on their own side of 1.</p>",
                  table(gain_table(gains))]
    parts.append("<h2>α edge against β</h2><p class='note'>Marker: median edge over seeds; bars: "
                 "the smallest and largest seed's edge. ● exact, ▲ stable at every α probed "
                 "(a lower bound), ▼ not even the smallest α probed was stable.</p>")
    if fig is not None:
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False,
                                 config={"responsive": True}))
    parts += ["<h2>Lines</h2><p class='note'>Every line with its probes (α:outcome, in α "
              "order). first_unstable: the smallest α probed that was not stable; ragged: a "
              "larger α was stable again.</p>", table(lines[line_keys(lines) + LINE_COLUMNS])]
    grid = grid_rows(trials, meta)
    if grid is not None:
        cells = summarize(grid, rise=rise)["cells"]
        off_grid = trials.drop(index=grid.index)  # a probe on a grid point is that cell
        facets = facet_figures(cells, 0.05, grid=True, overlay=probe_overlay(off_grid, rise))
        parts.append("<h2>The probes over the grid</h2><p class='note'>The same store also "
                     "holds a grid: its final loss and stable region (red outline) per (H, R), "
                     "and over it every probe of the boundary search off the grid's points (○ "
                     "stable, × not; seeds side by side) inside the grid's α range.</p>")
        for i, (title, fig) in enumerate(facets):
            fig.update_layout(title=dict(text=f"Grid and probes — {title}", x=0.01))
            figures.append((f"probes_{i}", fig))
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False,
                                     config={"responsive": True}))
    return parts, figures


def grid_rows(trials: pd.DataFrame, meta: dict) -> pd.DataFrame | None:
    """The rows of a grid run recorded in sweep.json (its α and β values), when the store holds
    one beside the probes; else None."""
    for run in reversed(meta.get("runs") or []):
        axes = (run.get("search") or {}).get("axes") if (run.get("search") or {}).get("grid") \
            else None
        if axes and {"alpha", "beta"} <= set(axes):
            rows = trials[trials["alpha"].isin(axes["alpha"]) & trials["beta"].isin(axes["beta"])]
            return rows if len(rows) else None
    return None


def probe_overlay(trials: pd.DataFrame, rise: float):
    """Traces of the probes of one facet over a heatmap drawn at index positions."""
    labelled = label(trials, rise=rise)
    seeds = sorted(labelled["seed"].unique()) if "seed" in labelled else [0]

    def overlay(settings: dict, alphas, betas) -> list[go.Scatter]:
        part = labelled
        for k, v in settings.items():
            if k in part:
                part = part[part[k] == v]
        a, b = np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float)
        part = part[(part["alpha"] >= a.min()) & (part["alpha"] <= a.max())
                    & part["beta"].isin(b)]
        if part.empty:
            return []
        x = np.interp(np.log(part["alpha"].to_numpy(dtype=float)), np.log(a), np.arange(len(a)))
        shift = (np.searchsorted(seeds, part["seed"]) - (len(seeds) - 1) / 2) * 0.18 \
            if "seed" in part else 0.0
        y = np.searchsorted(b, part["beta"].to_numpy(dtype=float)) + shift
        ok = part["stable"].to_numpy(dtype=bool)
        text = [f"probe α={fmt(al)}, β={fmt(be)}, seed {sd}: {o}" for al, be, sd, o in
                zip(part["alpha"], part["beta"], part.get("seed", [0] * len(part)),
                    part["outcome"])]
        return [go.Scatter(x=x[m], y=y[m], mode="markers", name=name, showlegend=False,
                           marker=dict(symbol=sym, size=8, color=col, line=dict(width=1.5,
                                                                              color=col)),
                           hovertext=[t for t, k in zip(text, m) if k],
                           hovertemplate="%{hovertext}<extra></extra>")
                for m, name, sym, col in ((ok, "probe: stable", "circle-open", "white"),
                                          (~ok, "probe: not stable", "x-thin-open", "#ff4d4d"))
                if m.any()]

    return overlay


def _ticks(alphas: pd.Series) -> list[float]:
    """A few round α ticks (powers of 2) spanning the probes, with the range's ends."""
    lo, hi = float(alphas.min()), float(alphas.max())
    powers = [2.0 ** k for k in range(int(np.floor(np.log2(lo))), int(np.ceil(np.log2(hi))) + 1)]
    return sorted({lo, hi, *[p for p in powers if lo * 1.2 < p < hi / 1.2]})
