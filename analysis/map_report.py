"""The report of a map search: the map at full lattice resolution, what was measured, filled
and audited, and the α edge per β derived from it.

The store holds probes, not a grid. The map is rebuilt here from the rows alone by the rule the
search planned with (``records.lattice_map``, docs/design.md "The map search"): each map (one
slice, one seed) replays its stored probes, and every lattice point is then *measured* (its
trial ran), *filled* (inside a leaf whose measured points agree) or an *audit* (a filled point
measured afterwards to check the fill). A cell is stable when every seed is. The α edge per β
comes from the filled map through ``lines.line_edges``, so the edge, gain and answer of a
boundary search (``boundary_report``) read a map unchanged.
"""

from __future__ import annotations

import html
import json
from typing import Any, Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from records.lattice_map import AUDIT, FILLED, MEASURED, LatticeMap, replay

from .boundary_report import boundary_answer, boundary_summary, gain_table
from .edge_figure import edge_figure
from .figures import axis_ticks, fmt, slice_title
from .stability import RISE, RISES, group_by, key_dict, label, pct

__all__ = ["is_map_search", "rebuild_maps", "map_cells", "filled_trials", "map_summary",
           "render_map", "map_parts"]

_KIND = {MEASURED: "measured", FILLED: "filled", AUDIT: "audit"}


def is_map_search(meta: dict) -> bool:
    """Did a map search write this store (sweep.json ``search.map``)?"""
    return bool((meta.get("search") or {}).get("map"))


def _native(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def rebuild_maps(trials: pd.DataFrame, search: dict) -> list[tuple[dict, LatticeMap]]:
    """Every map the store holds probes of: (its other axes' values, the replayed map)."""
    a, b = search["axes"]
    va, vb = search["lattice"][a], search["lattice"][b]
    ia, ib = {float(v): i for i, v in enumerate(va)}, {float(v): j for j, v in enumerate(vb)}
    rise = float(search.get("rise") or RISE)
    df = label(trials, rise=rise)
    df = df[df[a].astype(float).isin(ia) & df[b].astype(float).isin(ib) & ~df["failed"]]
    others = [k for k in search.get("others", []) if k in df]
    out = []
    for key, grp in group_by(df, others) if others else [((), df)]:
        point = {k: _native(v) for k, v in key_dict(others, key).items()}
        words = {(ia[float(x)], ib[float(y)]): w for x, y, w in
                 zip(grp[a], grp[b], grp["outcome"])}
        m = LatticeMap((len(va), len(vb)), int(search["coarse"]), int(search["audits"]),
                       key=f"{search.get('seed', 0)}:{json.dumps(point, sort_keys=True)}")
        out.append((point, replay(m, words.get)))
    return out


def map_cells(maps: list[tuple[dict, LatticeMap]], search: dict) -> pd.DataFrame:
    """One row per (map, lattice point): its other axes, the two axes' values, ``stable`` (1,
    0, NaN where unknown) and ``cell`` (measured, filled, audit, unknown)."""
    a, b = search["axes"]
    va, vb = np.asarray(search["lattice"][a]), np.asarray(search["lattice"][b])
    ga, gb = np.meshgrid(va, vb, indexing="ij")
    parts = []
    for point, m in maps:
        f, k = m.fill().astype(float), m.kinds()
        f[f < 0] = np.nan
        part = pd.DataFrame({a: ga.ravel(), b: gb.ravel(), "stable": f.ravel(),
                             "cell": [_KIND.get(int(x), "unknown") for x in k.ravel()]})
        parts.append(part.assign(**point))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def filled_trials(cells: pd.DataFrame) -> pd.DataFrame:
    """The filled map as rows ``lines.line_edges`` reads: a stable point completed (ended at
    its best, below its start), any other diverged. Points still unknown are left out."""
    known = cells[cells["stable"].notna()]
    ok = known["stable"].to_numpy() == 1
    return known.drop(columns=["stable", "cell"]).assign(
        status=np.where(ok, "completed", "diverged"), initial_loss=1.0,
        final_loss=np.where(ok, 0.5, np.inf), best_loss=0.5, end_rise=0.0)


_per_map_cols = ("measured", "filled", "audits", "audits_agreed", "unknown", "rounds",
                 "finished")


def _per_map(maps: list[tuple[dict, LatticeMap]]) -> pd.DataFrame:
    rows = []
    for point, m in maps:
        k = m.kinds()
        audited, agreed = m.audit_agreed()
        rows.append({**point, "measured": int((k == MEASURED).sum() + (k == AUDIT).sum()),
                     "filled": int((k == FILLED).sum()), "audits": audited,
                     "audits_agreed": agreed, "unknown": int((k < 0).sum()),
                     "rounds": m.rounds, "finished": not m.wanted()})
    return pd.DataFrame(rows)


def _slice_table(per_map: pd.DataFrame, slices: list[str]) -> pd.DataFrame:
    cols = ["measured", "filled", "audits", "audits_agreed", "unknown"]
    if not slices:
        return per_map[cols + ["finished"]].sum().to_frame().T.assign(
            maps=len(per_map), finished=bool(per_map["finished"].all()))
    t = per_map.groupby(slices, as_index=False).agg(
        maps=("measured", "size"), **{c: (c, "sum") for c in cols}, finished=("finished", "all"))
    return t


def _map_figure(cells: pd.DataFrame, a: str, b: str, title: str) -> go.Figure:
    """One slice, seeds pooled: colour by stable and measured/filled, audits as markers."""
    va, vb = sorted(cells[a].unique()), sorted(cells[b].unique())
    g = cells.groupby([a, b], sort=True)
    stable = g["stable"].agg(lambda s: np.nan if s.isna().any() else float(s.min()))
    measured = g["cell"].agg(lambda s: bool(s.isin(["measured", "audit"]).all()))
    z = (stable * 2 + measured.astype(float)).to_numpy().reshape(len(va), len(vb)).T
    scale = [[0, "#f4b6b6"], [0.25, "#f4b6b6"], [0.25, "#c0392b"], [0.5, "#c0392b"],
             [0.5, "#b7e4c0"], [0.75, "#b7e4c0"], [0.75, "#1e8449"], [1, "#1e8449"]]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(va))), y=list(range(len(vb))), zmin=-0.5, zmax=3.5,
        colorscale=scale, showscale=False,
        hovertemplate="%{x}, %{y}: %{z}<extra>0 filled not stable, 1 measured not stable, "
                      "2 filled stable, 3 measured stable</extra>"))
    au = cells[cells["cell"] == "audit"]
    if len(au):
        x = np.searchsorted(va, au[a]).astype(float)
        y = np.searchsorted(vb, au[b]).astype(float)
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name="audit",
                                 marker=dict(symbol="diamond-open", size=9, color="black",
                                             line=dict(width=2)),
                                 hovertext=[f"audit α={fmt(p)} β={fmt(q)}" for p, q in
                                            zip(au[a], au[b])],
                                 hovertemplate="%{hovertext}<extra></extra>"))
    # the key in the figure, so that its PNG read alone says what the colours are
    for colour, words in (("#1e8449", "measured stable"), ("#b7e4c0", "filled stable"),
                          ("#c0392b", "measured not stable"), ("#f4b6b6", "filled not stable")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=words,
                                 marker=dict(symbol="square", size=12, color=colour)))
    for t in fig.data:
        if t.type == "scatter" and t.name == "audit":
            t.name = "audit (a filled point measured)"
    xt, xl = axis_ticks(va)
    yt, yl = axis_ticks(vb)
    fig.update_layout(title=dict(text=title, x=0.01), height=560, showlegend=True,
                      legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0,
                                  yanchor="top"),
                      xaxis=dict(title=a, tickvals=xt, ticktext=xl,
                                 range=[-0.5, len(va) - 0.5]),
                      yaxis=dict(title=b, tickvals=yt, ticktext=yl,
                                 range=[-0.5, len(vb) - 0.5]))
    return fig


def _ticks(alphas: list[float], n: int = 7) -> list[float]:
    """About ``n`` lattice values evenly spread on a log scale (the edge figure's α ticks)."""
    a = np.asarray(alphas, dtype=float)
    if len(a) <= n or a.min() <= 0:
        return list(a)
    return sorted({float(a[np.abs(np.log(a) - np.log(t)).argmin()])
                   for t in np.geomspace(a.min(), a.max(), n)})


def _thresholds(trials: pd.DataFrame, rise: float) -> pd.DataFrame:
    """Measured probes only: how many change outcome at each other threshold."""
    at = label(trials, rise=rise)["stable"].to_numpy()
    rows = []
    for r in sorted(set(RISES) - {rise}):
        other = label(trials, rise=r)["stable"].to_numpy()
        rows.append({"rise": pct(r), "probes": len(trials), "stable": int(other.sum()),
                     "changed": int((other != at).sum())})
    return pd.DataFrame(rows)


def map_summary(trials: pd.DataFrame, search: dict) -> dict[str, Any]:
    """The maps, their cells, the counts per map and per slice, and (for α × β maps) the edge
    summary of the filled map (``boundary_report.boundary_summary``)."""
    a, b = search["axes"]
    maps = rebuild_maps(trials, search)
    cells = map_cells(maps, search)
    per_map = _per_map(maps)
    slices = [k for k in search.get("others", []) if k != "seed" and k in per_map]
    rise = float(search.get("rise") or RISE)
    edges = boundary_summary(filled_trials(cells), rise) if {a, b} == {"alpha", "beta"} else None
    return {"maps": maps, "cells": cells, "per_map": per_map, "slices": slices, "rise": rise,
            "counts": _slice_table(per_map, slices), "edges": edges}


def _unfinished(m: dict[str, Any], n_trials: int, cap: int | None) -> str:
    """A sentence naming the maps left unfinished and why, or ''."""
    per_map = m["per_map"]
    unfinished = per_map[~per_map["finished"]]
    if not len(unfinished):
        return ""
    shown = [c for c in unfinished.columns if c not in _per_map_cols]
    where = "; ".join(f"{slice_title(shown, r[shown].values)} at round {int(r['rounds'])}"
                      for _, r in unfinished.iterrows())
    why = (f"the max_trials cap ({cap}) was reached" if cap is not None and n_trials >= cap
           else "the run stopped (or a probe failed)")
    return (f"{len(unfinished)} of {len(per_map)} maps are unfinished: {why}; {where}. Their "
            f"unknown cells are blank.")


def render_map(trials: pd.DataFrame, meta: dict, name: str = "") -> str:
    """The terminal view of a map store: the answer, the counts, a text map per slice (#
    stable, x not, + a bin holding both, blank unknown; β up, α right, binned to 64 × 24)."""
    search = meta["search"]
    a, b = search["axes"]
    m = map_summary(trials, search)
    out = [f"sweep {name}: {len(trials)} probes · map search over {a} × {b} at threshold "
           f"{pct(m['rise'])}"]
    note = _unfinished(m, len(trials), search.get("max_trials"))
    out += [note] if note else []
    if m["edges"] is not None:
        out.append(boundary_answer(m["edges"]))
    out += ["", "measured, filled, audited (per slice, over its seeds):",
            m["counts"].to_string(index=False)]
    for key, part in group_by(m["cells"], m["slices"]):
        title = slice_title(m["slices"], key if isinstance(key, tuple) else (key,)) or "map"
        st = part.groupby([a, b])["stable"].agg(
            lambda v: np.nan if v.isna().any() else float(v.min()))
        grid = st.to_numpy().reshape(part[a].nunique(), part[b].nunique())
        out += ["", f"{title}:", _text(grid)]
    return "\n".join(out)


def _text(grid: np.ndarray, cols: int = 64, rows: int = 24) -> str:
    ia = np.array_split(np.arange(grid.shape[0]), min(cols, grid.shape[0]))
    jb = np.array_split(np.arange(grid.shape[1]), min(rows, grid.shape[1]))
    lines = []
    for j in reversed(jb):
        line = ""
        for i in ia:
            v = grid[np.ix_(i, j)]
            line += (" " if np.isnan(v).all() else "#" if np.nanmin(v) == 1 else
                     "x" if np.nanmax(v) == 0 else "+")
        lines.append(line)
    return "\n".join(lines)


def map_parts(trials: pd.DataFrame, meta: dict, table: Callable[[pd.DataFrame], str]
              ) -> tuple[list[str], list[tuple[str, go.Figure]]]:
    """The page's sections (HTML) and figures for a map store."""
    search = meta["search"]
    a, b = search["axes"]
    m = map_summary(trials, search)
    rise, cells, per_map, slices, counts = (m["rise"], m["cells"], m["per_map"], m["slices"],
                                            m["counts"])
    s = m["edges"]
    na, nb = len(search["lattice"][a]), len(search["lattice"][b])
    parts, figures = [], []
    note = _unfinished(m, len(trials), search.get("max_trials"))
    if note:
        parts.append(f"<p class='answer'><b>{html.escape(note)}</b></p>")
    if s is not None:
        parts.append(f"<p class='answer'>{html.escape(boundary_answer(s))}</p>")
    total = int(counts["measured"].sum())
    n_maps = f"{len(per_map)} map{'' if len(per_map) == 1 else 's'}"
    parts.append(f"<p class='lead'>{len(trials)} probes on {n_maps} of {na} {a} × "
                 f"{nb} {b} (map search at blow-up threshold {pct(rise)}): {total} lattice "
                 f"points measured of the {len(per_map) * na * nb} the grid it stands for "
                 f"would run ({total / max(len(per_map) * na * nb, 1):.1%}).</p>")
    parts += ["<h2>Measured, filled, audited</h2><p class='note'>Per slice, over its maps "
              "(one per seed): measured: lattice points whose trial ran (audits included); "
              "filled: points inside a region whose measured points all agree, given their "
              "outcome; audits: filled points measured afterwards at random (a fixed seed), "
              "and how many found the outcome the fill had given them (one that did not was "
              "refined around).</p>", table(counts)]
    if s is not None and not s["gains"].empty:
        parts += ["<h2>Restart gain: ratio of α edges</h2><p class='note'>Edges from the "
                  "filled map, per line (β, seed), as for a boundary search.</p>",
                  table(gain_table(s["gains"]))]
    if s is not None and len(s["edges"]):
        alphas = sorted(search["lattice"]["alpha"])
        efig = edge_figure(s["edges"].drop(columns=["seeds", "ragged"]),
                           _ticks(alphas),
                           title="Stable α edge per β from the map: ● edge, ▲ stable to the "
                                 "lattice's end, ▼ below it; bars: smallest to largest seed",
                           spread="seeds from")
        if efig is not None:
            figures.append(("edges", efig))
            parts += ["<h2>α edge against β</h2>",
                      efig.to_html(full_html=False, include_plotlyjs=False,
                                   config={"responsive": True})]
    parts += [f"<h2>Maps</h2><p class='note'>Full lattice, seeds pooled (stable when every "
              f"seed is). Dark green / dark red: measured stable / not stable; light: filled "
              f"from agreeing neighbours; ◇ audits. Threshold {pct(rise)}.</p>"]
    for i, (key, part) in enumerate(group_by(cells, slices) if slices else [((), cells)]):
        title = slice_title(slices, key if isinstance(key, tuple) else (key,)) or "the one slice"
        fig = _map_figure(part, a, b, f"Map — {title}")
        figures.append((f"map_{i}", fig))
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False,
                                 config={"responsive": True}))
    parts += [f"<h2>Other thresholds, measured points only</h2><p class='note'>The map was "
              f"searched at {pct(rise)}: filled cells are known at that threshold only. Of "
              f"the probes measured, how many are stable, and how many change outcome, at "
              f"other thresholds.</p>", table(_thresholds(trials, rise))]
    return parts, figures
