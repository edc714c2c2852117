"""The loss-curve figure of the report: chosen cells of each slice, with momentum_cos beside.

Per slice the chosen cells are the best one (lowest mean final loss among stable cells that did
not spike, when there are such), the
edge of the stable region (the cell at the stable α edge of the best cell's β line, else the
largest edge of any line),
and, where present, a spiked cell (stable, a seed rose on the way and came back down), a
blown-up one (it stayed up) and a diverged one: the smallest such α, at the best β if any, so a
spike that recovers and a lasting blow-up are drawn side by side. One trial per cell is drawn:
a seed that did what the role names (spiked, blew up, diverged), else the first trial id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import fmt, slice_title
from .metrics import alpha_edges
from .stability import display_keys, group_by, slice_keys

__all__ = ["curve_figure", "curve_trial_ids", "ROLE_COLOURS"]

ROLE_COLOURS = {"best": "#2ca02c", "edge": "#ff7f0e", "spiked": "#17becf", "blew_up": "#9467bd",
                "diverged": "#d62728"}


def _chosen(sl: pd.DataFrame) -> dict[str, pd.Series]:
    """Cells worth a curve in one slice: best, edge of the stable region, blown up, diverged."""
    out: dict[str, pd.Series] = {}
    clean = sl[(sl["outcome"] == "stable") & ~sl["spiked"] & sl["final_mean"].notna()]
    if clean.empty:
        clean = sl[(sl["outcome"] == "stable") & sl["final_mean"].notna()]
    if clean.empty:
        clean = sl[sl["final_mean"].notna()]
    if clean.empty:
        best = None
    else:
        best = clean.loc[clean["final_mean"].idxmin()]
        out["best"] = best
    if best is not None:
        # the stable α edge of each β line (on a ragged line not a stable cell above a break)
        edges = alpha_edges(sl).dropna(subset=["edge"])
        same_beta = edges[(edges["beta"] == best["beta"]) & (edges["edge"] > best["alpha"])]
        pool = same_beta if len(same_beta) else edges
        if len(pool):
            at = pool.loc[pool["edge"].idxmax()]
            edge = sl[(sl["beta"] == at["beta"]) & (sl["alpha"] == at["edge"])].iloc[0]
            if edge["alpha"] != best["alpha"] or edge["beta"] != best["beta"]:
                out["edge"] = edge
    for role in ("spiked", "blew_up", "diverged"):
        hits = sl[sl["spiked"]] if role == "spiked" else sl[sl["outcome"] == role]
        if len(hits):
            near = hits["beta"] == best["beta"] if best is not None else hits["beta"].notna()
            pool = hits[near] if near.any() else hits
            out[role] = pool.loc[pool["alpha"].idxmin()]
    return out


def _curve_groups(cell_table: pd.DataFrame, max_slices: int) -> tuple[list[str], list]:
    keys = slice_keys(cell_table)
    groups = list(group_by(cell_table, keys))[:max_slices] if keys else [((), cell_table)]
    return keys, groups


def curve_trial_ids(cell_table: pd.DataFrame, max_slices: int = 8) -> list[str]:
    """The trial ids whose curves ``curve_figure`` draws (first trial of each chosen cell)."""
    _, groups = _curve_groups(cell_table, max_slices)
    return [_drawn(role, cell) for _, sl in groups for role, cell in _chosen(sl).items()]


def _drawn(role: str, cell: pd.Series) -> str:
    """The trial drawn for a chosen cell: for a spiked, blown-up or diverged cell a seed that
    did so (a cell with one diverged seed of two must not draw the other), else the first."""
    example = cell.get(f"{role}_id")
    return str(example) if example else str(cell["trial_ids"]).split(",")[0]


def curve_figure(cell_table: pd.DataFrame, curves: pd.DataFrame,
                 max_slices: int = 8) -> go.Figure | None:
    """Eval loss (left) and momentum_cos (right) of chosen cells, one row per slice.

    One trial per chosen cell (a seed that did what its role names). Dotted verticals mark the
    restarts (t % R == 0) where momentum_cos is undefined. None when there are no curves.
    """
    if curves.empty:
        return None
    keys, groups = _curve_groups(cell_table, max_slices)
    titles = []
    shown = display_keys(cell_table)
    for key, sl in groups:
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        name = slice_title(shown, [values[k] for k in shown]) or "all trials"
        # each role in its line's colour: every row carries its own key, however tall the figure
        picked = " · ".join(f"<span style='color:{ROLE_COLOURS[role]}'><b>{role}</b></span> "
                            f"α={fmt(c['alpha'])} β={fmt(c['beta'])}"
                            for role, c in _chosen(sl).items())
        titles += [f"<b>{name}</b>: eval loss<br>{picked}", f"<b>{name}</b>: momentum cos(m, Δ)"]
    fig = make_subplots(rows=len(groups), cols=2, subplot_titles=titles,
                        horizontal_spacing=0.08, vertical_spacing=0.3 / max(len(groups), 1))
    fig.update_annotations(font_size=13)
    seen: set[str] = set()
    by_trial = dict(tuple(curves.groupby("trial_id", sort=False)))
    for row, (key, sl) in enumerate(groups, start=1):
        kept: list[float] = []  # eval losses of the curves that did not diverge
        for role, cell in _chosen(sl).items():
            tid = _drawn(role, cell)
            cv = by_trial.get(tid)
            if cv is None:
                continue
            if role != "diverged":
                ev = pd.to_numeric(cv["eval_loss"], errors="coerce").astype(float)
                kept += ev[np.isfinite(ev)].tolist()
            name = f"{role}: α={fmt(cell['alpha'])} β={fmt(cell['beta'])}"
            style = dict(color=ROLE_COLOURS[role], width=2)
            for col, y in ((1, "eval_loss"), (2, "momentum_cos")):
                vals = pd.to_numeric(cv[y], errors="coerce").astype(float)
                vals = vals.where(np.isfinite(vals))
                fig.add_trace(go.Scatter(
                    x=cv["outer_step"], y=[None if pd.isna(v) else v for v in vals],
                    mode="lines+markers", marker=dict(size=4), line=style, name=role,
                    legendgroup=role, showlegend=role not in seen and col == 1,
                    hovertemplate=f"{name}<br>trial {tid}<br>t=%{{x}}<br>{y}=%{{y:.4g}}"
                                  "<extra></extra>"), row=row, col=col)
            seen.add(role)
        if kept:  # the axis holds the others' curves; a diverged run leaves it at the top
            lo, hi = min(kept), max(kept)
            pad = 0.05 * (hi - lo or 1.0)
            fig.update_yaxes(range=[lo - pad, hi + 3 * pad], row=row, col=1)
        r = dict(zip(keys, key if isinstance(key, tuple) else (key,))).get("R")
        drawn = [by_trial[t]["outer_step"].max() for t in (_drawn(role, c) for role, c
                                                             in _chosen(sl).items())
                 if t in by_trial]
        steps = max(drawn, default=0)  # this slice's rounds: H = 32 runs 12 where H = 8 runs 48
        if r and r > 0 and steps / r <= 50:
            for t in range(0, int(steps) + 1, int(r)):
                fig.add_vline(x=t, line=dict(color="#999", width=1, dash="dot"),
                              row=row, col=2)
    fig.update_xaxes(title_text="outer step", row=len(groups))
    fig.update_yaxes(range=[-1.05, 1.05], title_text="cos(m, Δ)", col=2)
    fig.update_yaxes(title_text="eval loss", col=1)
    # the legend beside the first row, where a reader starts; the titles repeat it per row
    fig.update_layout(height=280 * len(groups) + 120, margin=dict(l=60, r=110, t=100, b=50),
                      legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0,
                                  yanchor="top", title_text="cell"))
    return fig
