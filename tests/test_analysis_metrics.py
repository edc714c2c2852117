"""analysis.stability and analysis.metrics on a hand-built sweep whose metrics are known.

The fixture, initial loss 10 everywhere, one seed per cell (D: diverged, S: spiked, peak 12):

    R=0          α=0.5   1      2      4          R=2          α=0.5   1      2      4
    β=0.9        2.09    S 2.01 D      D          β=0.9        2.03    2.5    2.09   D
    β=0.8        3.0     2.0    2.08   D          β=0.8        3.0     2.05   2.0    2.06

Both slices have best 2.0. At tol 5% (threshold 2.1) the stable cells are R=0: (0.8, 1),
(0.8, 2), (0.9, 0.5) -> 3/8; R=2: (0.8, 1), (0.8, 2), (0.8, 4), (0.9, 0.5), (0.9, 2) -> 5/8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from analysis import cells, label, load_trials, render_show, restart_gain, slice_keys, summarize
from analysis.stability import wilson

D, S = "D", "S"
GRID = {
    0: {0.9: [2.09, (S, 2.01), D, D], 0.8: [3.0, 2.0, 2.08, D]},
    2: {0.9: [2.03, 2.5, 2.09, D], 0.8: [3.0, 2.05, 2.0, 2.06]},
}
ALPHAS = [0.5, 1.0, 2.0, 4.0]


def _row(R: int, alpha: float, beta: float, seed: int, value, **extra) -> dict:
    status, final, peak = "completed", value, 8.0
    if value == D:
        status, final, peak = "diverged", 25.0, 25.0
    elif isinstance(value, tuple):
        final, peak = value[1], 12.0
    row = dict(sweep="hand", trial_id=f"R{R}-a{alpha}-b{beta}-s{seed}", alpha=alpha, beta=beta,
               H=10, R=R, workers=2, seed=seed, outer="nesterov", kind="toy", lr=0.01,
               status=status, initial_loss=10.0, final_loss=final, best_loss=final,
               peak_loss=peak, outer_steps_done=5, tokens=100, wall_s=0.1, error=None,
               commit="abc", versions_torch="2.13.0", node_id=f"node-{alpha}",
               started_at=f"2026-01-01T00:0{seed}:00", finished_at="2026-01-01T00:09:00")
    row.update(extra)
    return row


@pytest.fixture
def hand(tmp_path: Path) -> Path:
    """The sweep of the module docstring, one Parquet file per trial, plus a failed rerun."""
    rows = [_row(R, a, b, 0, v) for R, g in GRID.items() for b, vals in g.items()
            for a, v in zip(ALPHAS, vals)]
    rows.append(_row(0, 1.0, 0.8, 1, 2.0, status="failed", final_loss=None, error="OOM"))
    folder = tmp_path / "hand" / "trials"
    folder.mkdir(parents=True)
    for r in rows:
        pq.write_table(pa.Table.from_pylist([r]), folder / f"{r['trial_id']}.parquet")
    return tmp_path / "hand"


def _cell(c: pd.DataFrame, R: int, alpha: float, beta: float) -> pd.Series:
    hit = c[(c["R"] == R) & (c["alpha"] == alpha) & (c["beta"] == beta)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_slice_keys_leave_out_axes_results_and_bookkeeping(hand: Path) -> None:
    keys = slice_keys(load_trials(hand))
    assert keys[:2] == ["H", "R"]
    assert set(keys) == {"H", "R", "workers", "outer", "kind", "lr"}


def test_labels(hand: Path) -> None:
    t = label(load_trials(hand), tol=0.05).set_index("trial_id")
    assert t.loc["R0-a1.0-b0.8-s0", "outcome"] == "stable"
    assert t.loc["R0-a2.0-b0.8-s0", "stable"]                 # 2.08 <= 1.05 * 2.0
    assert t.loc["R0-a0.5-b0.8-s0", "outcome"] == "unstable"  # 3.0
    # the spike: final 2.01 is within 5% of the best, but the trial is not called stable
    assert t.loc["R0-a1.0-b0.9-s0", "outcome"] == "spiked"
    assert not t.loc["R0-a1.0-b0.9-s0", "stable"]
    assert t.loc["R0-a4.0-b0.8-s0", "outcome"] == "diverged"
    assert t.loc["R0-a1.0-b0.8-s1", "outcome"] == "failed"
    assert (t["slice_best"].dropna() == 2.0).all()
    # diverge=1.15: the spike (peak 12 > 11.5) is now a divergence; spike=None: it is stable
    assert label(load_trials(hand), diverge=1.15).set_index("trial_id").loc[
        "R0-a1.0-b0.9-s0", "outcome"] == "diverged"
    assert label(load_trials(hand), spike=None).set_index("trial_id").loc[
        "R0-a1.0-b0.9-s0", "outcome"] == "stable"


def test_stable_fraction_alpha_range_and_best(hand: Path) -> None:
    s = summarize(load_trials(hand), tol=0.05)
    sl = s["slices"].set_index("R")
    assert sl.loc[0, "n_stable_cells"] == 3 and sl.loc[0, "stable_frac"] == pytest.approx(3 / 8)
    assert sl.loc[2, "n_stable_cells"] == 5 and sl.loc[2, "stable_frac"] == pytest.approx(5 / 8)
    assert (sl.loc[0, "best_alpha"], sl.loc[0, "best_beta"], sl.loc[0, "best_loss"]) == (
        1.0, 0.8, 2.0)
    assert (sl.loc[2, "best_alpha"], sl.loc[2, "best_beta"]) == (2.0, 0.8)
    assert sl.loc[0, "n_failed"] == 1 and sl.loc[0, "n_diverged"] == 3
    assert sl.loc[0, "n_spiked"] == 1
    r = s["alpha_range"].set_index(["R", "beta"])
    assert tuple(r.loc[(0, 0.8), ["alpha_min", "alpha_max", "width_log2"]]) == (1.0, 2.0, 1.0)
    assert tuple(r.loc[(0, 0.9), ["alpha_min", "alpha_max", "width_log2"]]) == (0.5, 0.5, 0.0)
    assert tuple(r.loc[(2, 0.8), ["alpha_min", "alpha_max", "width_log2"]]) == (1.0, 4.0, 2.0)
    assert tuple(r.loc[(2, 0.9), ["alpha_min", "alpha_max", "width_log2"]]) == (0.5, 2.0, 2.0)
    assert r.loc[(2, 0.9), "holes"] == 1 and r.loc[(2, 0.8), "holes"] == 0


def test_lr_sensitivity(hand: Path) -> None:
    """mean_α min(final, initial) − min_α, diverged counted as the initial loss 10."""
    s = summarize(load_trials(hand), tol=0.05)
    r = s["alpha_range"].set_index(["R", "beta"])
    # R=0, β=0.8: mean(3.0, 2.0, 2.08, 10) − 2.0 = 2.27; β=0.9: mean(2.09, 2.01, 10, 10) − 2.01
    assert r.loc[(0, 0.8), "lr_sensitivity"] == pytest.approx(2.27)
    assert r.loc[(0, 0.9), "lr_sensitivity"] == pytest.approx(4.015)
    sl = s["slices"].set_index("R")
    assert sl.loc[0, "lr_sensitivity"] == pytest.approx((2.27 + 4.015) / 2)
    # R=2: β=0.8: mean(3.0, 2.05, 2.0, 2.06) − 2.0; β=0.9: mean(2.03, 2.5, 2.09, 10) − 2.03
    assert sl.loc[2, "lr_sensitivity"] == pytest.approx((0.2775 + 2.125) / 2)


def test_restart_gain_across_tolerances(hand: Path) -> None:
    g = restart_gain(load_trials(hand), tols=(0.02, 0.05, 0.20, 0.60))
    assert list(g["R"].unique()) == [2] and (g["H"] == 10).all()
    by = g.set_index("tol")
    # threshold 2.04: 1 vs 2 stable; 2.1 and 2.4: 3 vs 5; 3.2: 4 vs 7
    assert by.loc[0.02, "gain"] == pytest.approx(2.0)
    assert (by.loc[0.02, "stable_cells_R0"], by.loc[0.02, "stable_cells"]) == (1, 2)
    assert by.loc[0.05, "gain"] == pytest.approx(5 / 3)
    assert by.loc[0.20, "gain"] == pytest.approx(5 / 3)
    assert by.loc[0.60, "gain"] == pytest.approx(7 / 4)
    # one seed per cell: the bootstrap over seeds has nothing to resample
    assert (g["gain_lo"] == g["gain"]).all() and (g["gain_hi"] == g["gain"]).all()
    assert (g["n_seeds"] == 1).all()
    # summarize always includes its own tolerance among the reported ones
    s = summarize(load_trials(hand), tol=0.07, tols=(0.02,))
    assert sorted(s["restart_gain"]["tol"]) == [0.02, 0.07]


def test_wilson_hand_values() -> None:
    lo, hi = wilson(2, 3)
    assert (float(lo), float(hi)) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    lo, hi = wilson(1, 2)
    assert (float(lo), float(hi)) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    lo, hi = wilson(0, 3)
    assert (float(lo), float(hi)) == pytest.approx((0.0, 0.5615), abs=1e-4)
    lo, hi = wilson(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_cells_pool_seeds(tmp_path: Path) -> None:
    """Three seeds per cell: stable fraction, Wilson interval, mean ± std, majority label."""
    rows = [_row(0, 1.0, 0.9, s, v) for s, v in enumerate([2.0, 2.09, 2.6])]  # best 2.0: 2 of 3
    rows += [_row(0, 2.0, 0.9, s, v) for s, v in enumerate([D, D, 2.05])]
    rows += [_row(2, 1.0, 0.9, s, v) for s, v in enumerate([2.0, 2.02, 2.04])]
    rows += [_row(2, 2.0, 0.9, s, v) for s, v in enumerate([2.0, 2.7, D])]
    c = cells(pd.DataFrame(rows), tol=0.05)
    a = _cell(c, 0, 1.0, 0.9)
    assert (a["n"], a["n_stable"], a["stable"]) == (3, 2, True)
    assert a["stable_frac"] == pytest.approx(2 / 3)
    assert (a["stable_lo"], a["stable_hi"]) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert a["final_mean"] == pytest.approx(2.23)
    assert a["final_std"] == pytest.approx(0.32357, abs=1e-4)
    b = _cell(c, 0, 2.0, 0.9)
    assert (b["n_diverged"], b["outcome"], b["stable"]) == (2, "diverged", False)
    assert b["final_mean"] == pytest.approx(2.05) and np.isnan(b["final_std"])
    # with seeds that disagree, the bootstrap interval has width and holds the point
    g = restart_gain(pd.DataFrame(rows), tols=(0.05,), n_boot=2000)
    row = g.iloc[0]
    assert row["gain"] == pytest.approx(1.0)  # 1 of 2 cells stable at R=0 and at R=2
    assert row["gain_lo"] <= row["gain"] <= row["gain_hi"] and row["gain_lo"] < row["gain_hi"]


def test_terminal_view(hand: Path) -> None:
    text = render_show(hand, tol=0.05)
    assert "tolerance 5%" in text
    # the restart gain table comes before the per-slice table and the maps
    assert text.index("restart gain") < text.index("slices (tol 5%)") < text.index("H=10, R=0")
    assert "1.67" in text  # the gain 5/3 at 5%
    maps = text.split("H=10, R=0: stable 3/8 cells\n")[1].splitlines()
    assert maps[0].split() == ["β\\α", "0.5", "1", "2", "4"]
    assert maps[1].split() == ["0.9", "#", "~", "x", "x"]
    assert maps[2].split() == ["0.8", ".", "#", "#", "x"]
    maps = text.split("H=10, R=2: stable 5/8 cells\n")[1].splitlines()
    assert maps[1].split() == ["0.9", "#", ".", "#", "x"]
    assert maps[2].split() == ["0.8", ".", "#", "#", "#"]


def test_public_names() -> None:
    for name in ("load_trials", "load_curves", "load_sweep_meta", "label", "cells", "summarize",
                 "write_report", "render_show"):
        assert name in analysis.__all__ and callable(getattr(analysis, name))
