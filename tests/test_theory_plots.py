"""analysis.theory_plots: the predicted boundary overlay and predicted vs measured contraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.theory import max_rate, power_law_spectrum, restart_rate
from analysis.theory_plots import (RATE_CAP, boundary_traces, contraction_figure, measured_rates,
                                   theory_figure)
from trainer import TrainConfig, train


def test_boundary_traces_is_one_unfilled_contour_at_one_half():
    alphas, betas = np.array([0.5, 1.0, 2.0]), np.array([0.0, 0.9])
    grid = np.array([[True, True, False], [True, False, False]])
    (c,) = boundary_traces(alphas, betas, grid, name="theory")
    assert isinstance(c, go.Contour) and c.name == "theory"
    assert c.contours.start == c.contours.end == 0.5 and c.contours.coloring == "none"
    assert np.array_equal(np.asarray(c.z), grid.astype(float)) and not c.showscale
    # over a heatmap drawn on index positions: a fine grid lands between the cells
    fine = np.array([0.5, 0.75, 1.0, 1.5, 2.0])
    (m,) = boundary_traces(fine, betas, np.ones((2, 5)), axis_alphas=alphas, axis_betas=betas)
    assert np.allclose(m.x, [0, 0.5, 1, 1.5, 2]) and np.allclose(m.y, [0, 1])


def test_theory_figure_has_a_facet_and_a_boundary_per_h_and_r():
    alphas, betas = np.linspace(0.2, 3, 8), np.array([0.0, 0.5, 0.9])
    lams = power_law_spectrum(50, 1.0)
    rates = {(h, r): max_rate(alphas, betas, lams, 0.5, h, r) for h in (1, 4) for r in (0, 3)}
    fig = theory_figure(alphas, betas, rates)
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds.count("Heatmap") == 4 and kinds.count("Contour") == 4
    assert max(np.max(t.z) for t in fig.data if isinstance(t, go.Heatmap)) <= RATE_CAP


@pytest.fixture(scope="module")
def toy_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A tiny deterministic toy sweep, as the store would hold it (trials flat, curves by step)."""
    trials, curves = [], []
    cases = [(1.0, 0.0, 0), (1.0, 0.9, 0), (1.2, 0.8, 1), (1.0, 0.9, 3), (1.5, 0.7, 8),
             (3.0, 0.95, 3)]
    for i, (alpha, beta, R) in enumerate(cases):
        cfg = TrainConfig(kind="toy", toy_dim=300, lr=0.5, H=4, R=R, alpha=alpha, beta=beta,
                          workers=1, outer_steps=30, diverge_factor=10.0, threads=1)
        r = train(cfg)
        trials.append({"trial_id": f"t{i}", **cfg.flat(), "status": r.status})
        curves += [{"trial_id": f"t{i}", **row} for row in r.curve]
    return pd.DataFrame(trials), pd.DataFrame(curves)


def test_measured_rates_match_theory_on_deterministic_toy_runs(toy_sweep):
    trials, curves = toy_sweep
    m = measured_rates(trials, curves)
    assert len(m) == len(trials) * curves["mode_idx"].iloc[0].__len__()
    done = m[m["trial_id"].isin(trials.loc[trials["status"] == "completed", "trial_id"])]
    exact = done[done["R"] > 0]                  # block-end ratios are c_R itself
    np.testing.assert_allclose(exact["measured"], exact["predicted"], rtol=1e-9)
    no_momentum = done[(done["R"] == 0) & (done["beta"] == 0)]
    np.testing.assert_allclose(no_momentum["measured"], no_momentum["predicted"], rtol=1e-9)
    envelope = done[(done["R"] == 0) & (done["beta"] > 0) & (done["mode"] == 0)]
    np.testing.assert_allclose(envelope["measured"], envelope["predicted"], rtol=0.05)
    want = restart_rate(exact["mu"].to_numpy(), exact["alpha"].to_numpy(),
                        exact["beta"].to_numpy(), 8, "nesterov")
    r8 = (exact["R"] == 8).to_numpy()
    np.testing.assert_allclose(exact["predicted"].to_numpy()[r8], want[r8], rtol=1e-12)
    diverged = m[m["trial_id"] == "t5"]          # α=3, β=0.95: the stiff mode blows up
    assert trials.set_index("trial_id").loc["t5", "status"] == "diverged"
    assert diverged["predicted"].iloc[0] > 1 and diverged["measured"].iloc[0] > 1


def test_contraction_figure_puts_r_on_x_and_caps_rates(toy_sweep):
    trials, curves = toy_sweep
    fig = contraction_figure(trials, curves)
    groups = trials.groupby(["H", "beta", "alpha"]).ngroups
    assert len(fig.data) == 2 * groups
    xs = {x for t in fig.data for x in t.x}
    assert xs == {"0 (never)", "1", "3", "8"}
    assert all(np.nanmax(np.asarray(t.y, dtype=float)) <= RATE_CAP for t in fig.data)
    assert any(s.y0 == 1.0 for s in fig.layout.shapes)           # the rate-1 line
    empty = contraction_figure(trials, curves.drop(columns=["mode_err"]))
    assert len(empty.data) == 0 and "no toy trials" in empty.layout.title.text
