"""Plotly figures of the mode-wise theory: the predicted boundary, and predicted vs measured rates.

Everything here is *predicted* unless its name says measured: the boundary comes from
`analysis.theory` for a spectrum, never from trials. The measured per-step contraction of a toy
trial comes from its curves' `mode_err` (the signed error of a few tracked modes, see
trainer/toy.py), and the prediction beside it from the trial's own H, α, β, R, outer and what
its kind's linear model (``TrialKind.linear_model``, trainer/kinds/) reads from its settings:
for the toy, η = lr and λ = (mode_idx + 1)^−toy_power.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from trainer.kinds import TRIAL_KINDS

from .theory import effective_mu, restart_rate

__all__ = ["boundary_traces", "theory_figure", "measured_rates", "contraction_figure",
           "contraction_trials", "linear_model", "theory_keys", "MAX_ROWS", "MAX_COLOURS"]


def linear_model(settings: Mapping[str, Any], modes: Any = None) -> tuple[np.ndarray, float] | None:
    """The linearized theory's (λ, η) for a trial of these settings (a row, with its ``kind``),
    as its kind gives them (at the 0-based ``modes``, or all); None for a kind without a
    known spectrum (the LM) or one this version does not know."""
    kind = TRIAL_KINDS.get(str(settings.get("kind")))
    return None if kind is None else kind.linear_model(settings, modes)


def theory_keys(trials: pd.DataFrame) -> list[str]:
    """The settings the linear models of the frame's kinds read (for the toy: lr, toy_dim,
    toy_power)."""
    kinds = trials["kind"].dropna().unique() if "kind" in trials else []
    return list(dict.fromkeys(k for name in kinds if name in TRIAL_KINDS
                              for k in TRIAL_KINDS[name].theory_keys))

RATE_CAP = 2.0  # rates above this are drawn at the cap: "unstable" is all that matters there


def boundary_traces(alphas: Any, betas: Any, stable_grid: Any, *, name: str = "predicted boundary",
                    color: str = "black", dash: str = "dash", showlegend: bool = True,
                    axis_alphas: Any = None, axis_betas: Any = None) -> list[go.Contour]:
    """The edge of a predicted-stable (β, α) grid as one contour line (no fill), for overlaying.

    With `axis_alphas`/`axis_betas` (the values of a heatmap drawn on index positions 0..n−1),
    the theory grid is mapped onto those fractional positions, so a fine theory grid can be
    drawn over a coarse measured heatmap.
    """
    x, y = np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float)
    if axis_alphas is not None:
        ax = np.asarray(axis_alphas, dtype=float)
        x = np.interp(x, ax, np.arange(ax.size), left=-0.5, right=ax.size - 0.5)
    if axis_betas is not None:
        ay = np.asarray(axis_betas, dtype=float)
        y = np.interp(y, ay, np.arange(ay.size), left=-0.5, right=ay.size - 0.5)
    z = np.asarray(stable_grid, dtype=float)                     # (n_beta, n_alpha), 1 = stable
    return [go.Contour(x=x, y=y, z=z, contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                       line=dict(color=color, width=2, dash=dash), showscale=False,
                       hoverinfo="skip", name=name, showlegend=showlegend, legendgroup=name)]


def theory_figure(alphas: Any, betas: Any, rates: Mapping[tuple[int, int], np.ndarray],
                  title: str = "predicted worst-mode rate") -> go.Figure:
    """Heatmaps (rows H, columns R) of a (β, α) worst-mode rate grid, with the rate-1 boundary."""
    Hs = sorted({h for h, _ in rates})
    Rs = sorted({r for _, r in rates})
    fig = make_subplots(rows=len(Hs), cols=len(Rs), shared_xaxes=True, shared_yaxes=True,
                        column_titles=[f"R={r}" + (" (never)" if r == 0 else "") for r in Rs],
                        row_titles=[f"H={h}" for h in Hs], x_title="α (outer LR)",
                        y_title="β (outer momentum)")
    first = True
    for (h, r), grid in sorted(rates.items()):
        row, col = Hs.index(h) + 1, Rs.index(r) + 1
        fig.add_trace(go.Heatmap(x=alphas, y=betas, z=np.minimum(grid, RATE_CAP), zmin=0,
                                 zmax=RATE_CAP, coloraxis="coloraxis", name=f"H={h} R={r}",
                                 hovertemplate="α=%{x:.3g} β=%{y:.3g} rate=%{z:.4f}"
                                 "<extra></extra>"),
                      row=row, col=col)
        for tr in boundary_traces(alphas, betas, grid < 1, name="rate = 1 (predicted)",
                                  color="white", showlegend=first):
            fig.add_trace(tr, row=row, col=col)
        first = False
    fig.update_layout(title=title, height=260 * len(Hs) + 120,
                      legend=dict(orientation="h", y=-0.08),
                      coloraxis=dict(colorscale="RdBu_r", cmin=0, cmax=RATE_CAP,  # white at 1
                                     colorbar=dict(title="rate")))
    return fig


def _measured_rate(err: np.ndarray, R: int) -> float:
    """Per-step contraction of one mode from its errors after outer steps 0..n−1 (model-free).

    R ≥ 1: the ratio between block ends (after steps R−1, 2R−1, …), which is exactly c_R per block
    for a deterministic run. R = 0 (or too few blocks): between the largest |e| of the middle and
    of the last third of the run, an envelope that rides over the oscillation of complex modes;
    with two steps only (an early divergence), their ratio.
    """
    a = np.abs(np.asarray(err, dtype=float))
    n = a.size
    ends = np.arange(R - 1, n, R) if R > 0 else np.array([], dtype=int)
    if ends.size >= 2:
        t1, t2 = int(ends[0]), int(ends[-1])
    elif n >= 3:
        k = n // 3
        t1 = k + int(np.argmax(a[k:2 * k]))
        t2 = 2 * k + int(np.argmax(a[2 * k:]))
    elif n == 2:                                   # a trial that diverged at once
        t1, t2 = 0, 1
    else:
        return float("nan")
    if not (a[t1] > 0 and np.isfinite(a[t1]) and np.isfinite(a[t2])):
        return float("nan")
    with np.errstate(divide="ignore", over="ignore"):
        return float((a[t2] / a[t1]) ** (1.0 / (t2 - t1)))


def measured_rates(trials_df: pd.DataFrame, curves_df: pd.DataFrame) -> pd.DataFrame:
    """One row per (toy trial, tracked mode): mode_idx, lam, mu, predicted, measured.

    Needs the trial columns kind, alpha, beta, H, R, outer and what the kind's linear model
    reads (``theory_keys``: the toy's lr, toy_dim, toy_power), and the curve columns trial_id,
    outer_step, mode_idx, mode_err; trials without mode_err, or of a kind without a linear
    model (the LM: no modes to compare), are skipped.
    """
    cols = ["trial_id", "kind", "alpha", "beta", "H", "R", "outer", *theory_keys(trials_df)]
    rows: list[dict[str, Any]] = []
    if "mode_err" not in curves_df or curves_df.empty or not set(cols) <= set(trials_df):
        return pd.DataFrame(columns=cols + ["mode", "mode_idx", "lam", "mu", "predicted",
                                            "measured"])
    by_trial = {tid: c.sort_values("outer_step") for tid, c in curves_df.groupby("trial_id")}
    for t in trials_df[cols].itertuples(index=False):
        c = by_trial.get(t.trial_id)
        if c is None or c["mode_err"].isna().all():
            continue
        c = c[c["mode_err"].notna()]
        idx = np.asarray(c["mode_idx"].iloc[0], dtype=int)
        model = linear_model(t._asdict(), idx)
        if model is None:
            continue
        lam, eta = model
        err = np.stack([np.asarray(v, dtype=float) for v in c["mode_err"]])   # (steps, modes)
        mu = effective_mu(lam, eta, int(t.H))
        pred = restart_rate(mu, t.alpha, t.beta, int(t.R), t.outer)
        for k in range(idx.size):
            rows.append({**t._asdict(), "mode": k, "mode_idx": int(idx[k]), "lam": lam[k],
                         "mu": mu[k], "predicted": float(pred[k]),
                         "measured": _measured_rate(err[:, k], int(t.R))})
    return pd.DataFrame(rows)


def contraction_trials(trials_df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The trials ``contraction_figure`` draws, and a note on what was left out: all of them,
    or on a fine (α, β) map (hundreds of each) an even subset of MAX_ROWS β and MAX_COLOURS α.
    A caller can load only these trials' curves."""
    if not {"alpha", "beta"} <= set(trials_df) or trials_df.empty:
        return trials_df, ""
    all_b, all_a = sorted(trials_df["beta"].unique()), sorted(trials_df["alpha"].unique())
    Bs, As = _spread(all_b, MAX_ROWS), _spread(all_a, MAX_COLOURS)
    if len(Bs) == len(all_b) and len(As) == len(all_a):
        return trials_df, ""
    return (trials_df[trials_df["beta"].isin(Bs) & trials_df["alpha"].isin(As)],
            f" ({len(Bs)} of {len(all_b)} β, {len(As)} of {len(all_a)} α)")


def contraction_figure(trials_df: pd.DataFrame, curves_df: pd.DataFrame, mode: int = 0,
                       betas: Any = None) -> go.Figure:
    """Predicted (lines) vs measured (markers) per-step contraction of one tracked mode, R on x.

    Columns H, rows β (all, or `betas`), colour α; seeds share a line and add markers. `mode`
    is a position in the tracked list: 0 is λ = 1, the stiffest mode, the one that decides
    stability. Rates are capped at 2. Pass one toy setting at a time (filter outer, toy_dim, …
    first when they vary), as the facets are keyed by H, β and α only.
    """
    if betas is not None:
        trials_df = trials_df[trials_df["beta"].isin(list(betas))]
    trials_df, shown = contraction_trials(trials_df)
    curves_df = curves_df[curves_df["trial_id"].isin(trials_df["trial_id"])] \
        if "trial_id" in trials_df and "trial_id" in curves_df else curves_df
    rates = measured_rates(trials_df, curves_df)
    rates = rates[rates["mode"] == mode] if not rates.empty else rates
    if rates.empty:
        return go.Figure().update_layout(title="no toy trials with mode_err to compare")
    Bs = sorted(rates["beta"].unique(), reverse=True)
    As = sorted(rates["alpha"].unique())
    Hs, Rs = sorted(rates["H"].unique()), sorted(rates["R"].unique())
    xlab = {r: f"{r}" + (" (never)" if r == 0 else "") for r in Rs}
    colours = _alpha_colours(As)
    fig = make_subplots(rows=len(Bs), cols=len(Hs), shared_xaxes=True, shared_yaxes=True,
                        column_titles=[f"H={h}" for h in Hs], row_titles=[f"β={b:g}" for b in Bs],
                        x_title="R (restart period; 0 = never)", y_title="per-step contraction",
                        vertical_spacing=0.02)
    traces, rows, cols = [], [], []
    for (h, b, a), g in rates.groupby(["H", "beta", "alpha"]):
        g = g.sort_values("R")
        row, col, first = Bs.index(b) + 1, Hs.index(h) + 1, (h, b) == (Hs[0], Bs[0])
        x = [xlab[r] for r in g["R"]]
        line = g.groupby("R")["predicted"].first()            # one value per R, whatever the seeds
        group, colour = f"alpha={a:g}", colours[a]
        traces.append(go.Scatter(x=[xlab[r] for r in line.index],
                                 y=np.minimum(line.to_numpy(), RATE_CAP), mode="lines",
                                 name=f"α={a:g}", legendgroup=group, showlegend=first,
                                 line=dict(color=colour, dash="dot"), hoverinfo="skip"))
        traces.append(go.Scatter(x=x, y=np.minimum(g["measured"], RATE_CAP), mode="markers",
                                 name=f"α={a:g} measured", legendgroup=group, showlegend=False,
                                 marker=dict(color=colour, size=8),
                                 customdata=np.c_[g["predicted"], g["measured"]],
                                 hovertemplate=f"α={a:g} β={b:g} H={h} R=%{{x}}<br>predicted "
                                 "%{customdata[0]:.6f}<br>measured %{customdata[1]:.6f}"
                                 "<extra></extra>"))
        rows += [row, row]
        cols += [col, col]
    fig.add_traces(traces, rows=rows, cols=cols)  # one call: per-trace add_trace is slow
    fig.add_hline(y=1.0, line=dict(color="red", width=1), row="all", col="all")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[xlab[r] for r in Rs])
    lam = rates["lam"].iloc[0]
    fig.update_layout(title=f"toy: per-step contraction of tracked mode {mode} (λ={lam:.3g}), "
                      "predicted (dotted) vs measured (markers); above 1 is unstable" + shown,
                      height=170 * len(Bs) + 160)
    return fig


MAX_ROWS, MAX_COLOURS = 7, 12
"""The most β rows and α colours the contraction figure draws (an even subset beyond)."""


def _spread(values: list, n: int) -> list:
    """At most n of ``values``, evenly spaced through them, both ends kept."""
    if len(values) <= n:
        return list(values)
    return [values[int(round(i))] for i in np.linspace(0, len(values) - 1, n)]


def _alpha_colours(alphas: list) -> dict[Any, str]:
    pos = np.linspace(0, 1, len(alphas)) if len(alphas) > 1 else [0.5]
    return dict(zip(alphas, sample_colorscale("Plasma", list(pos))))
