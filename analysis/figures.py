"""Plotly figures of the report: the stability facets (rows H, columns R).

Colour everywhere is the final loss, mean over seeds, on one scale shared by every facet and
capped at the initial loss (a cell that did not improve is as bad as one that went up). Cells
whose seeds all diverged have no colour; marks: "×" diverged, "↑" blew up, "–" stalled (k/n
when only some seeds did), and on a stable cell "↕" spiked (a seed rose above the threshold on
the way and came back down: docs/design.md, "Stable"). The legend names each mark the figure
shows. The stable region (cells whose every seed is stable, spiked ones included) is outlined
in red; near-optimal cells, a separate question, in a dotted white line.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.subplots import make_subplots

from .stability import group_by, is_grid, pct as tol_text, slice_keys, varying

__all__ = ["facet_figures", "fmt", "slice_title", "axis_ticks", "Overlay", "OUTLINE", "NEAR",
           "MARKS", "MARK_WORDS", "FINE"]

OUTLINE = "#d62728"
NEAR = "#ffffff"
MARKS = {"n_diverged": "×", "n_blew_up": "↑", "n_stalled": "–", "n_spiked": "↕"}
MARK_WORDS = {"n_diverged": "diverged", "n_blew_up": "blew up (ended above its best)",
              "n_stalled": "stalled (ended above its start)",
              "n_spiked": "spiked (stable: rose on the way, came back down)"}
"""What each mark means, for the legend."""
Overlay = Callable[[dict, list, list], "Sequence[BaseTraceType] | None"]
"""Per facet: (slice settings, α values, β values) -> traces to draw over it (theory)."""
FACET_PX = 300  # height of one facet row
FINE, FINE_PX, TICKS = 48, 640, 11
"""Above FINE values of α or β a facet is a fine map: FINE_PX square, TICKS labels an axis,
no per-cell marks (blank still means every seed diverged)."""


def fmt(v: Any) -> str:
    """A short label for a number, a flag (yes / no) or a setting value."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def slice_title(keys: Iterable[str], values: Iterable[Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in zip(keys, values))


def _hover(row: pd.Series, keys: list[str]) -> str:
    """Every column of a cell, one per line (``keys``: the slice keys to name)."""
    ids = str(row["trial_ids"]).split(",")
    lines = [slice_title(keys, [row[k] for k in keys]),
             f"α={fmt(row['alpha'])}  β={fmt(row['beta'])}",
             f"n seeds={row['n']}  outcome={row['outcome']}",
             f"stable {row['n_stable']}/{row['n']} = {fmt(row['stable_frac'])} "
             f"[{fmt(row['stable_lo'])}, {fmt(row['stable_hi'])}]",
             f"final loss {fmt(row['final_mean'])} ± {fmt(row['final_std'])}"
             f"  near-optimal {row['n_near']}/{row['n']}",
             f"blew up {row['n_blew_up']}  diverged {row['n_diverged']}  "
             f"stalled {row['n_stalled']}  failed {row['n_failed']}  spiked {row['n_spiked']}",
             f"initial {fmt(row['initial_loss'])}  best {fmt(row['best_loss'])}  "
             f"peak {fmt(row['peak_loss'])}",
             f"rise on the way {fmt(row['rise_max'])}  end rise {fmt(row['end_rise_max'])}",
             "trials " + ", ".join(ids[:4]) + (" …" if len(ids) > 4 else "")]
    return "<br>".join(lines)


def _mark_of(row: pd.Series) -> str | None:
    """Which of MARKS a cell gets: the worst thing a seed did, spiked last (only a stable cell
    can be spiked, so it never hides a worse mark); None for a clean cell."""
    return next((count for count in MARKS if row[count] > 0), None)


def _mark(row: pd.Series) -> str:
    """The mark of ``_mark_of``; k/n when not all seeds did it."""
    count = _mark_of(row)
    if count is None:
        return ""
    sign = MARKS[count]
    return sign if row[count] == row["n"] else f"{sign}{row[count]}/{row['n']}"


def _outline(stable: np.ndarray) -> tuple[list, list]:
    """Line segments around the True cells of a (n_beta, n_alpha) grid, None-separated."""
    xs: list = []
    ys: list = []
    ny, nx = stable.shape
    for j in range(ny):
        for i in range(nx):
            if not stable[j, i]:
                continue
            for di, dj, seg in ((-1, 0, ((i - .5, j - .5), (i - .5, j + .5))),
                                (1, 0, ((i + .5, j - .5), (i + .5, j + .5))),
                                (0, -1, ((i - .5, j - .5), (i + .5, j - .5))),
                                (0, 1, ((i - .5, j + .5), (i + .5, j + .5)))):
                ii, jj = i + di, j + dj
                if 0 <= ii < nx and 0 <= jj < ny and stable[jj, ii]:
                    continue
                xs += [seg[0][0], seg[1][0], None]
                ys += [seg[0][1], seg[1][1], None]
    return xs, ys


def facet_figures(cell_table: pd.DataFrame, tol: float, grid: bool | None = None,
                  overlay: "Overlay | None" = None,
                  x_title: str = "α (outer LR)") -> list[tuple[str, go.Figure]]:
    """One facet figure (rows H, columns R) per combination of the other varying slice keys.

    ``grid`` forces heatmaps (True) or scatter plots (False); None decides per figure from the
    cells (see ``stability.is_grid``). ``overlay(settings, alphas, betas)`` is called per facet
    with that slice's settings (a dict with H, R, ...) and the facet's α and β values; the
    traces it returns are added to the facet. Heatmap facets draw α and β at index positions
    0..n-1, so an overlay maps its values onto those (e.g. with np.interp). ``x_title`` names
    what the cells' ``alpha`` holds (the effective outer LR in that view, analysis.effective).
    Returns (title, figure) pairs.
    """
    keys = slice_keys(cell_table)
    others = [k for k in varying(cell_table, keys) if k not in ("H", "R")]
    cap = float(np.nanmedian(cell_table["initial_loss"]))
    shown = cell_table.loc[cell_table["outcome"] != "diverged", "final_mean"].dropna()
    colour = _colour_axis(np.fmin(shown.to_numpy(dtype=float), cap), cap)
    out = []
    for key, part in (group_by(cell_table, others) if others else [((), cell_table)]):
        key = key if isinstance(key, tuple) else (key,)
        use_grid = is_grid(part) if grid is None else grid
        title = slice_title(others, key) if others else "all slices"
        out.append((title, _facet(part, keys, use_grid, colour, tol, overlay, x_title)))
    return out


def _colour_axis(values: np.ndarray, cap: float) -> dict[str, Any]:
    """A shared colour axis, linear in loss from the lowest shown loss to ``cap``.

    Equal steps of colour are equal steps of loss, so the colour bar reads like an axis; cells
    at the cap (no better than the initial loss) take its top colour, which the bar labels.
    """
    title = dict(text=f"final loss<br>(seed mean,<br>cap {fmt(cap)})")
    values = values[np.isfinite(values)]
    lo = float(values.min()) if len(values) else cap - 1.0
    hi = cap if np.isfinite(cap) and cap > lo else lo + 1e-9
    ticks = [float(t) for t in np.linspace(lo, hi, 6)]
    return dict(colorscale="Viridis", cmin=lo, cmax=hi,
                colorbar=dict(title=title, len=0.6, tickvals=ticks,
                              ticktext=[f"{t:.3g}" for t in ticks[:-1]] + [f"≥ {hi:.3g}"]))


def _facet(part: pd.DataFrame, keys: list[str], use_grid: bool, colour: dict[str, Any],
           tol: float, overlay: "Overlay | None" = None,
           x_title: str = "α (outer LR)") -> go.Figure:
    hs = sorted(part["H"].dropna().unique()) if "H" in part else [None]
    rs = sorted(part["R"].dropna().unique()) if "R" in part else [None]
    alphas = sorted(part["alpha"].unique())
    betas = sorted(part["beta"].unique())
    titles = []
    for h in hs:
        for r in rs:
            sl = _pick(part, h, r)
            label = ", ".join(p for p in (f"H={fmt(h)}" if h is not None else "",
                                          f"R={fmt(r)}" if r is not None else "") if p)
            titles.append(f"{label}: stable {int(sl['stable'].sum())}/{len(sl)}")
    fig = make_subplots(rows=len(hs), cols=len(rs), subplot_titles=titles,
                        shared_xaxes=True, shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.22 / max(len(hs), 1))
    shown: set[str] = set()  # legend groups drawn so far: each gets one entry, where it first shows
    cap = colour["cmax"] if colour["cmax"] is not None else np.inf
    for ri, h in enumerate(hs, start=1):
        for ci, r in enumerate(rs, start=1):
            sl = _pick(part, h, r)
            if use_grid:
                shown |= _add_heatmap(fig, sl, keys, alphas, betas, cap, ri, ci, shown, tol)
            else:
                shown |= _add_scatter(fig, sl, keys, cap, ri, ci, shown, tol)
            if overlay is not None and len(sl):
                settings = {k: sl[k].iloc[0] for k in keys}
                for trace in overlay(settings, alphas, betas) or ():
                    fig.add_trace(trace, row=ri, col=ci)
    fig.update_layout(
        coloraxis=colour, height=FACET_PX * len(hs) + 160, margin=dict(l=70, r=40, t=100, b=60),
        plot_bgcolor="#e5e5e5",
        legend=dict(yanchor="top", y=0.15, xanchor="left", x=1.01, bgcolor="#9a9a9a"),
    )
    if use_grid:
        (xv, xt), (yv, yt) = axis_ticks(alphas), axis_ticks(betas)
        fig.update_xaxes(tickvals=xv, ticktext=xt, range=[-0.54, len(alphas) - 0.46],
                         showgrid=False, zeroline=False)
        fig.update_yaxes(tickvals=yv, ticktext=yt, range=[-0.54, len(betas) - 0.46],
                         showgrid=False, zeroline=False)
        if _fine(alphas, betas):  # a fine map: square cells, tall enough to see the boundary
            fig.update_layout(height=FINE_PX * len(hs) + 160,
                              width=FINE_PX * len(rs) + 320)
    else:
        fig.update_xaxes(type="log")
    fig.update_xaxes(title_text=x_title, row=len(hs))
    fig.update_yaxes(title_text="β (outer momentum)", col=1)
    return fig


def _pick(part: pd.DataFrame, h: Any, r: Any) -> pd.DataFrame:
    """The cells of facet (H=h, R=r); None means the frame has no such column."""
    mask = np.ones(len(part), dtype=bool)
    if h is not None:
        mask &= (part["H"] == h).to_numpy()
    if r is not None:
        mask &= (part["R"] == r).to_numpy()
    return part[mask]


def _fine(alphas: list, betas: list) -> bool:
    return max(len(alphas), len(betas)) > FINE


def axis_ticks(values: list) -> tuple[list[int], list[str]]:
    """Index positions and labels of an axis: every value, or on a fine map about TICKS."""
    pos = list(range(len(values))) if len(values) <= FINE else \
        sorted({int(round(i)) for i in np.linspace(0, len(values) - 1, TICKS)})
    return pos, [fmt(values[i]) for i in pos]


def _cell_grid(sl: pd.DataFrame, alphas: list, betas: list, cap: float):
    """A facet's cells on its (β, α) grid, column-wise: each cell's (j, i), the colour z
    (final loss capped at ``cap``; NaN where every seed diverged or no trial), and the
    stable and near-optimal masks."""
    i = np.searchsorted(np.asarray(alphas, dtype=float), sl["alpha"].to_numpy(dtype=float))
    j = np.searchsorted(np.asarray(betas, dtype=float), sl["beta"].to_numpy(dtype=float))
    z = np.full((len(betas), len(alphas)), np.nan)
    final = sl["final_mean"].to_numpy(dtype=float)
    keep = (sl["outcome"] != "diverged").to_numpy() & ~np.isnan(final)
    z[j[keep], i[keep]] = np.minimum(final[keep], cap)
    stable, near = np.zeros(z.shape, dtype=bool), np.zeros(z.shape, dtype=bool)
    stable[j, i] = sl["stable"].to_numpy(dtype=bool)
    near[j, i] = sl["near_optimal"].to_numpy(dtype=bool)
    return j, i, z, stable, near


def _add_fine_heatmap(fig: go.Figure, sl: pd.DataFrame, alphas: list, betas: list, cap: float,
                      row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
    """A fine map's heatmap (hundreds of thousands of cells): no marks, a short hover (α, β,
    outcome, final loss). Returns its stable and near-optimal masks."""
    j, i, z, stable, near = _cell_grid(sl, alphas, betas, cap)
    outcome = np.full(z.shape, "no trial", dtype=object)
    outcome[j, i] = sl["outcome"].astype(str).to_numpy()
    a, b = np.meshgrid(np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float))
    fig.add_trace(go.Heatmap(
        z=z, x=list(range(len(alphas))), y=list(range(len(betas))), coloraxis="coloraxis",
        customdata=np.dstack([a, b, outcome]),
        hovertemplate="α=%{customdata[0]:.4g}  β=%{customdata[1]:.4g}<br>%{customdata[2]}"
                      "<br>final loss %{z:.4g}<extra></extra>", name="final loss"),
        row=row, col=col)
    return stable, near


def _add_heatmap(fig: go.Figure, sl: pd.DataFrame, keys: list[str], alphas: list, betas: list,
                 cap: float, row: int, col: int, shown: set[str], tol: float) -> set[str]:
    """Add one facet's heatmap, marks and outlines; returns the legend groups it gave entries."""
    if _fine(alphas, betas):
        stable, near = _add_fine_heatmap(fig, sl, alphas, betas, cap, row, col)
        return _add_outlines(fig, stable, near, row, col, shown, tol)
    js, is_, z, stable, near = _cell_grid(sl, alphas, betas, cap)
    text = np.full(z.shape, "", dtype=object)
    hover = np.full(z.shape, "no trial", dtype=object)
    marks: set[str] = set()
    for j, i, (_, c) in zip(js, is_, sl.iterrows()):
        text[j, i] = _mark(c)
        hover[j, i] = _hover(c, keys)
        marks.add(_mark_of(c) or "")
    fig.add_trace(go.Heatmap(
        z=z, x=list(range(len(alphas))), y=list(range(len(betas))), coloraxis="coloraxis",
        text=text, texttemplate="%{text}", textfont=dict(size=18),
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", xgap=1, ygap=1,
        name="final loss"), row=row, col=col)
    added = _add_outlines(fig, stable, near, row, col, shown, tol)
    for count in MARKS:  # a legend entry per mark shown: the mark itself, then its meaning
        if count in marks and count not in shown | added:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers",
                                     marker=dict(size=1, color="rgba(0,0,0,0)"),
                                     name=f"{MARKS[count]}  {MARK_WORDS[count]}",
                                     legendgroup=count, showlegend=True), row=row, col=col)
            added.add(count)
    return added


def _add_outlines(fig: go.Figure, stable: np.ndarray, near: np.ndarray, row: int, col: int,
                  shown: set[str], tol: float) -> set[str]:
    """The stable and near-optimal outlines of one facet; each gets its legend entry in the
    first facet where it has a line. Returns the groups given an entry here."""
    added = set()
    for group, cells_, style, name in (
            ("stable", stable, dict(color=OUTLINE, width=3), "stable region"),
            ("near", near, dict(color=NEAR, width=2, dash="dot"),
             f"near-optimal (within {tol_text(tol)} of the best of any R)")):
        xs, ys = _outline(cells_)
        entry = bool(xs) and group not in shown
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=style, hoverinfo="skip",
                                 name=name, legendgroup=group, showlegend=entry),
                      row=row, col=col)
        if entry:
            added.add(group)
    return added


def _add_scatter(fig: go.Figure, sl: pd.DataFrame, keys: list[str], cap: float, row: int,
                 col: int, shown: set[str], tol: float) -> set[str]:
    """Add one facet's scattered points (Optuna); diverged points grey crosses."""
    div = sl["outcome"].eq("diverged")
    ok = sl[~div]
    fig.add_trace(go.Scatter(
        x=ok["alpha"], y=ok["beta"], mode="markers", name="trial",
        marker=dict(size=11, color=np.fmin(ok["final_mean"], cap), coloraxis="coloraxis",
                    line=dict(color=np.where(ok["stable"], OUTLINE, "white"),
                              width=np.where(ok["stable"], 3, 1))),
        hovertext=[_hover(c, keys) for _, c in ok.iterrows()],
        hovertemplate="%{hovertext}<extra></extra>", showlegend=False), row=row, col=col)
    fig.add_trace(go.Scatter(
        x=sl.loc[div, "alpha"], y=sl.loc[div, "beta"], mode="markers", name="diverged",
        marker=dict(symbol="x", size=10, color="#555"), legendgroup="diverged",
        hovertext=[_hover(c, keys) for _, c in sl[div].iterrows()],
        hovertemplate="%{hovertext}<extra></extra>",
        showlegend="diverged" not in shown and bool(div.any())), row=row, col=col)
    return {"diverged"} if bool(div.any()) else set()
