"""The theory in the report: a predicted boundary over each (H, R) facet, never passed off as measured.

A toy sweep carries everything the prediction needs in its own rows (H, R, outer, and what its
kind's linear model reads: η = lr and the power-law spectrum of toy_dim and toy_power; see
``TrialKind.linear_model``), so its report gets the boundary and the predicted-against-measured
contraction figure by itself. An LM sweep has no known spectrum:
it gets a boundary only when the user gives one (`--theory-spectrum`, `--theory-eta`), and the
legend says whose assumption it is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from trainer.kinds import TRIAL_KINDS

from .figures import Overlay
from .theory import has_theory, parse_spectrum, predicted_stable
from .theory_plots import (boundary_traces, contraction_figure, contraction_trials, linear_model,
                           theory_keys)

__all__ = ["is_toy", "toy_overlay", "spectrum_overlay", "toy_theory_figure", "toy_agreement",
           "FINE", "FINE_MAX"]

FINE = 60          # theory grid points per axis between the measured grid's ends
FINE_MAX = 256     # ... or as many as the measured axis has, up to this
MAX_MODES = 256    # modes kept of a long spectrum: log-spaced, first and last included


def is_toy(trials: pd.DataFrame) -> bool:
    """Whether every trial's kind gives the linear theory's inputs from its own settings (the
    toy's does; the LM's spectrum is unknown): the report then draws the prediction itself."""
    if "kind" not in trials or not len(trials) or trials["kind"].isna().any():
        return False
    return all(name in TRIAL_KINDS and TRIAL_KINDS[name].theory_keys
               for name in trials["kind"].unique())


def _thin(lams: np.ndarray) -> np.ndarray:
    # the worst rate moves continuously with μ, so a log-spaced subset of modes finds it
    lams = np.sort(np.asarray(lams, dtype=float))[::-1]
    if lams.size <= MAX_MODES:
        return lams
    idx = np.unique(np.geomspace(1, lams.size, MAX_MODES).astype(int) - 1)
    return lams[idx]


def _geometric(values: list) -> bool:
    """Whether sorted values are evenly spaced in log (a {low, high, num, log: true} axis)."""
    v = np.log(np.sort(np.asarray(values, dtype=float)))
    steps = np.diff(v)
    return len(steps) > 1 and bool(np.allclose(steps, steps[0], rtol=1e-6))


def _overlay(spectrum_of: Callable[[dict], tuple[np.ndarray, float]], name: str) -> Overlay:
    shown = {"legend": False}

    def draw(settings: dict, alphas: list, betas: list):
        if not has_theory(str(settings.get("outer", "nesterov"))):
            return []  # a rule with no linear model: nothing to predict, nothing drawn
        lams, eta = spectrum_of(settings)
        # at least as fine as the measured map (up to FINE_MAX), so a fine map's edge is not
        # compared against a coarser staircase
        na, nb = (min(max(FINE, len(v)), FINE_MAX) for v in (alphas, betas))
        a = np.geomspace(min(alphas), max(alphas), na) if min(alphas) > 0 and (
            na == FINE or _geometric(alphas)) else np.linspace(min(alphas), max(alphas), na)
        b = np.linspace(min(betas), max(betas), nb)
        grid = predicted_stable(a, b, _thin(lams), eta, int(settings.get("H", 1)),
                                int(settings.get("R", 0)), str(settings.get("outer", "nesterov")))
        if grid.all() or not grid.any():
            return []  # no boundary inside the measured range
        traces = boundary_traces(a, b, grid, name=name, axis_alphas=alphas, axis_betas=betas,
                                 showlegend=not shown["legend"])
        shown["legend"] = True
        return traces

    return draw


def toy_overlay(trials: pd.DataFrame) -> Overlay:
    """Predicted boundary for each toy facet, from that facet's own settings."""
    fixed = {k: trials[k].iloc[0] for k in ("kind", *theory_keys(trials), "outer", "H", "R")
             if k in trials}

    def spectrum_of(settings: dict) -> tuple[np.ndarray, float]:
        return linear_model({**fixed, **settings})

    return _overlay(spectrum_of, "predicted boundary (linearized theory)")


def toy_agreement(cell_table: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The cells of a toy sweep with ``predicted`` (the linearized theory calls the cell stable:
    every mode's per-step rate below 1, at the cell's own α and β) and ``agrees`` (the measured
    label, stable or not, is the predicted one). Cells of an outer rule without a linear model
    are left out. The full spectrum is used up to 10,000 cells, a log-spaced subset of its
    modes above (the worst rate moves continuously with μ)."""
    fixed = {k: trials[k].iloc[0] for k in ("kind", *theory_keys(trials), "outer", "H", "R")
             if k in trials}
    keys = [k for k in ("H", "R", "outer", *theory_keys(trials), "kind") if k in cell_table]
    parts = []
    groups = cell_table.groupby(keys, dropna=False, sort=True) if keys else [((), cell_table)]
    for key, sl in groups:
        s = {**fixed, **dict(zip(keys, key if isinstance(key, tuple) else (key,)))}
        outer = str(s.get("outer", "nesterov"))
        model = linear_model(s)
        if not has_theory(outer) or model is None:
            continue
        lams, eta = model
        if len(cell_table) > 10_000:
            lams = _thin(lams)
        a, b = np.sort(sl["alpha"].unique()), np.sort(sl["beta"].unique())
        grid = predicted_stable(a, b, lams, eta, int(s.get("H", 1)),
                                int(s.get("R", 0)), outer)
        pred = grid[np.searchsorted(b, sl["beta"].to_numpy()),
                    np.searchsorted(a, sl["alpha"].to_numpy())]
        parts.append(sl.assign(predicted=pred, agrees=pred == sl["stable"].to_numpy(dtype=bool)))
    return pd.concat(parts) if parts else cell_table.iloc[:0].assign(predicted=[], agrees=[])


def spectrum_overlay(spectrum: str, eta: float) -> Overlay:
    """Predicted boundary for an LM sweep under a spectrum the user assumes (not measured)."""
    lams = parse_spectrum(spectrum)
    return _overlay(lambda settings: (lams, eta),
                    f"predicted for assumed spectrum {spectrum}, η={eta:g} (not measured)")


def toy_theory_figure(trials: pd.DataFrame,
                      curves: pd.DataFrame | Callable[[list[str]], pd.DataFrame]
                      ) -> go.Figure | None:
    """Predicted against measured per-step contraction, R on x, for the stiffest tracked mode.

    ``curves`` is the curve table, or a loader given the trial ids the figure draws (a fine
    map draws a subset: ``contraction_trials``), so only those curves are read."""
    outer = trials["outer"].mode().iloc[0] if "outer" in trials else None
    if outer is not None and not has_theory(str(outer)):
        return None
    part = trials[trials["outer"] == outer] if outer is not None else trials
    drawn = contraction_trials(part)[0]
    if callable(curves):
        curves = curves(drawn["trial_id"].astype(str).tolist())
    if curves.empty or "mode_err" not in curves:
        return None
    fig = contraction_figure(part, curves[curves["trial_id"].isin(drawn["trial_id"])])
    fig.update_layout(title=dict(text=f"Per-step contraction of the stiffest mode (λ=1): predicted "
                                      f"(lines) vs measured (markers), outer={outer}", x=0.01))
    return fig
