"""The α-edge figure: per (H) facet, the stable α edge against β, one line per R.

An edge is the largest α such that it and every smaller α of the grid are stable
(docs/design.md). Markers say what the number is: ● exact (the next α is not stable), ▲ a lower
bound (stable up to the grid's largest α), ▼ below the grid (not even its smallest α is
stable; drawn under the axis' first tick). Error bars: 95% bootstrap over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import FINE, axis_ticks, fmt, slice_title
from .stability import varying

__all__ = ["edge_figure", "R_COLOURS"]

R_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_SYMBOL = {"exact": "circle", "lower_bound": "triangle-up", "below_grid": "triangle-down"}
_WORDS = {"exact": "edge", "lower_bound": "edge ≥ (stable to the grid's end)",
          "below_grid": "below the grid (smallest α not stable)"}


_TITLE = ("Stable α edge per β: ● edge, ▲ at least (stable to the grid's end), ▼ below the "
          "grid; bars: 95% over seeds")


def edge_figure(edges: pd.DataFrame, alphas: list[float], title: str = _TITLE,
                spread: str = "95% over seeds", y_title: str = "stable α edge") -> go.Figure | None:
    """The figure, or None when the edges have no β to plot against. ``alphas``: the α ticks
    (the grid's values, or the effective outer LRs of the maps' cells: analysis.effective);
    ``spread`` names what the bars edge_lo..edge_hi are; ``y_title`` what the edges are."""
    if edges.empty or "beta" not in edges:
        return None
    keys = [k for k in edges.columns if k not in (
        "beta", "edge", "edge_kind", "first_unstable", "n_alpha", "n_stable", "edge_lo",
        "edge_hi", "R", "H")]
    others = varying(edges, keys)
    hs = sorted(edges["H"].dropna().unique()) if "H" in edges else [None]
    # a setting that follows H (outer_steps = ⌊budget / H⌋) takes one value per facet: it goes
    # in the facet's title, not in a legend shared by every facet
    per_h = [k for k in others if hs != [None] and (edges.groupby("H")[k].nunique(
        dropna=False) <= 1).all()]
    others = [k for k in others if k not in per_h]
    n_other = len(edges.groupby(others, dropna=False)) if others else 1
    rs = sorted(edges["R"].dropna().unique()) if "R" in edges else [None]
    floor = min(alphas) / 1.35

    def facet(h) -> str:
        if h is None:
            return ""
        first = edges[edges["H"] == h].iloc[0]
        return " · ".join([f"H={fmt(h)}", *(f"{k}={fmt(first[k])}" for k in per_h)])

    fig = make_subplots(rows=1, cols=len(hs), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[facet(h) for h in hs])
    betas = sorted(edges["beta"].unique())
    width = 0.12 if len(rs) > 1 else 0.0
    for ci, h in enumerate(hs, start=1):
        part = edges if h is None else edges[edges["H"] == h]
        for ri, r in enumerate(rs):
            sub = part if r is None else part[part["R"] == r]
            for oi, (okey, line) in enumerate(sub.groupby(others, dropna=False) if others
                                               else [((), sub)]):
                line = line.sort_values("beta")
                x = np.searchsorted(betas, line["beta"]) + (ri - (len(rs) - 1) / 2) * width
                kind = line["edge_kind"].to_numpy()
                y = np.where(kind == "below_grid", floor, line["edge"].to_numpy(dtype=float))
                err = {}
                if "edge_lo" in line:
                    lo = np.where(line["edge_lo"] > 0, line["edge_lo"], floor)
                    hi = np.where(line["edge_hi"] > 0, line["edge_hi"], floor)
                    err = dict(error_y=dict(type="data", symmetric=False,
                                            array=np.clip(hi - y, 0, None),
                                            arrayminus=np.clip(y - lo, 0, None), width=4))
                name = (f"R={fmt(r)}" if r is not None else "edge") + (
                    " · " + slice_title(others, okey if isinstance(okey, tuple) else (okey,))
                    if others else "")
                colour = R_COLOURS[(ri * n_other + oi) % len(R_COLOURS)]  # one per (R, other)
                hover = [f"{name}, H={fmt(h)}, β={fmt(b)}<br>{_WORDS[k]}"
                         + (f" {fmt(e)}" if k != "below_grid" else "")
                         + (f"<br>{spread} [{fmt(l_)}, {fmt(h_)}]" if err else "")
                         for b, k, e, l_, h_ in zip(line["beta"], kind, line["edge"],
                                                    line.get("edge_lo", line["edge"]),
                                                    line.get("edge_hi", line["edge"]))]
                fig.add_trace(go.Scatter(
                    x=x, y=y, mode="lines+markers", name=name, legendgroup=name,
                    showlegend=ci == 1, line=dict(color=colour, width=2),
                    marker=dict(size=11, color=colour, symbol=[_SYMBOL[k] for k in kind]),
                    hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", **err),
                    row=1, col=ci)
    ticks = sorted(alphas)
    ticks = [ticks[i] for i in axis_ticks(ticks)[0]]           # a fine map: about 11 labels
    fig.update_yaxes(type="log", tickvals=[floor] + ticks,
                     ticktext=["below"] + [fmt(a) for a in ticks],
                     range=[np.log10(floor / 1.15), np.log10(max(ticks) * 1.25)])
    fig.update_yaxes(title_text=y_title, col=1)
    xv, xt = axis_ticks(betas)
    fig.update_xaxes(tickvals=xv, ticktext=xt,
                     range=[-0.5, len(betas) - 0.5], title_text="β (outer momentum)")
    if len(betas) > FINE:
        fig.update_traces(marker_size=4, error_y_width=0)
    fig.update_layout(height=420, margin=dict(l=70, r=40, t=90, b=60),
                      title=dict(text=title, x=0.01))
    return fig
