"""analysis.stability, analysis.metrics and analysis.answer on hand-built stores with known answers.

Every store is a grid α × β × R ∈ {0, 3} × 2 seeds at H=10 with initial loss 5; a function
of (R, α, β, seed) gives each trial's final loss, end rise (how far above its best it ended:
a lasting blow-up above the threshold) and status, so the expected labels, edges, gains and
sentence follow from the function alone. A trial's rise on the way is its end rise unless a
test gives a larger one (a spike that recovered).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from analysis import (answer_sentence, cells, label, load_trials, render_show, restart_gain,
                      sign_test, slice_keys, summarize)
from analysis.load import curve_stats
from analysis.stability import wilson
from records.identity import row_trial_id
from trainer.result import curve_rise

ALPHAS = [0.5, 1.0, 2.0, 4.0]
BETAS = [0.9, 0.95]
INIT = 5.0
Trial = Callable[[int, float, float, int], tuple]  # -> (final, end rise[, status])


def _row(R: int, alpha: float, beta: float, seed: int, final: float, end: float | None,
         status: str = "completed", rise: float | None = None, **extra) -> dict:
    """One trial row; ``end`` sets best_loss (final / (1 + end)), as a stored row written
    before the end_rise column has it; ``rise`` defaults to ``end``."""
    rise = end if rise is None else rise
    best = final / (1 + end) if end is not None else final
    row = dict(sweep="hand", trial_id=f"R{R}-a{alpha}-b{beta}-s{seed}", alpha=alpha, beta=beta,
               H=10, R=R, workers=2, seed=seed, outer="nesterov", kind="lm", lr=0.003,
               status=status, initial_loss=INIT, final_loss=final, best_loss=best,
               peak_loss=final * (1 + (rise or 0)), rise=rise, outer_steps_done=5, tokens=100,
               wall_s=0.1, error=None, node_id="n", started_at="2026-01-01T00:00:00",
               finished_at="2026-01-01T00:09:00")
    row.update(extra)
    return row


def _rows(f: Trial, alphas=ALPHAS, betas=BETAS, seeds=(0, 1)) -> list[dict]:
    return [_row(R, a, b, s, *f(R, a, b, s)) for R in (0, 3) for a in alphas for b in betas
            for s in seeds]


def _store(tmp_path: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "hand" / "trials"
    folder.mkdir(parents=True)
    for row in rows:
        # stored under an honest id (a stored row must hash to it: records.trust), which the
        # caller's row then carries too
        row["trial_id"] = row_trial_id(row)
        r = {k: v for k, v in row.items() if k not in drop}
        pq.write_table(pa.Table.from_pylist([r]), folder / f"{r['trial_id']}.parquet")
    return tmp_path / "hand"


def slower(R, a, b, s):
    """Healthy everywhere: larger α trains more slowly, never rises."""
    return 3.0 + 0.1 * a + 0.01 * s, 0.01


def restarts_2pct_better(R, a, b, s):
    final, rise = slower(R, a, b, s)
    return (final * 0.98 if R else final), rise


def r0_blows_up(R, a, b, s):
    """R=0 climbs back up (rise 0.3) at the two largest α at β=0.95; restarts never do."""
    final, _ = slower(R, a, b, s)
    if R == 0 and b == 0.95 and a >= 2.0:
        return final + 1.0, 0.3
    return (final - 0.05 if R else final), 0.01


def restarts_blow_up(R, a, b, s):
    """The opposite: with restarts, α ≥ 2 blows up at every β; without, nothing does."""
    final, _ = slower(R, a, b, s)
    return final, (0.4 if R and a >= 2.0 else 0.02)


def test_labels_are_a_property_of_the_trial_alone() -> None:
    rows = [_row(0, 1.0, 0.9, 0, 3.0, 0.01), _row(0, 2.0, 0.9, 0, 4.5, 0.3),
            _row(0, 4.0, 0.9, 0, 9.0, 0.5, status="diverged"),
            _row(0, 0.5, 0.9, 0, 5.2, 0.0), _row(0, 0.5, 0.9, 1, math.nan, None,
                                                   status="failed", error="OOM"),
            _row(0, 1.0, 0.9, 1, 2.0, None)]  # rises unknown: not called blown up
    t = label(pd.DataFrame(rows)).set_index("trial_id")
    assert list(t["outcome"]) == ["stable", "blew_up", "diverged", "stalled", "failed",
                                  "stable"]
    assert list(t["stable"]) == [True, False, False, False, False, True]
    # one other trial, far better, changes nothing about the first one's label
    alone = label(pd.DataFrame(rows[:1]))
    assert bool(alone["stable"].iloc[0])
    # the threshold is a setting: at 50% the rise of 0.3 is no blow-up
    assert label(pd.DataFrame(rows), rise=0.5).set_index("trial_id").loc[
        "R0-a2.0-b0.9-s0", "outcome"] == "stable"
    # diverge=1.5: final 9 and peak above 7.5 -> diverged (already); the blown-up 4.5*1.3 too
    assert label(pd.DataFrame(rows), diverge=1.1).set_index("trial_id").loc[
        "R0-a2.0-b0.9-s0", "outcome"] == "diverged"
    with pytest.raises(ValueError, match="rise"):
        label(pd.DataFrame(rows), rise=-1)


def test_slice_keys_leave_out_axes_results_and_bookkeeping(tmp_path: Path) -> None:
    keys = slice_keys(load_trials(_store(tmp_path, _rows(slower))))
    assert keys[:2] == ["H", "R"]
    assert set(keys) == {"H", "R", "workers", "outer", "kind", "lr"}


def test_a_uniformly_better_restart_arm_gains_no_stability(tmp_path: Path) -> None:
    """(a) restarts 2% better everywhere, no blow-ups: stability gain 1, near-optimal never
    favours R=0, and the sentence claims no widening."""
    s = summarize(load_trials(_store(tmp_path, _rows(restarts_2pct_better))))
    g = s["restart_gain"]
    assert len(g) and (g["gain"] == 1.0).all()
    assert (g["bound"] == "unknown").all()          # both stable to the grid's end
    assert (s["area_gain"]["gain"] == 1.0).all()
    near = s["near_optimal"].pivot_table(index="tol", columns="R", values="near_cells")
    assert (near[3] >= near[0]).all() and (near[3] > near[0]).any()
    p = s["paired"]
    pooled = p[p["beta"].isna()].iloc[0]
    assert (pooled["lowered"], pooled["pairs"]) == (16, 16)
    text = answer_sentence(s)
    assert text.startswith("Not measured") and "widen" not in text.split(".")[0]
    assert "lowered the final loss: lower in 16 and higher in 0 of 16" in text


def test_b_restarts_remove_blow_ups_and_widen_the_edge(tmp_path: Path) -> None:
    """(b) R=0 blows up at the two largest α at β=0.95; R=3 does not: edge and area gain > 1."""
    s = summarize(load_trials(_store(tmp_path, _rows(r0_blows_up))))
    g = s["restart_gain"]
    used = g[np.isclose(g["rise"], 0.1)].set_index("beta")
    assert used.loc[0.95, "edge_R0"] == 1.0 and used.loc[0.95, "edge_kind_R0"] == "exact"
    assert used.loc[0.95, "edge"] == 4.0 and used.loc[0.95, "edge_kind"] == "lower_bound"
    assert used.loc[0.95, "gain"] == 4.0 and used.loc[0.95, "bound"] == "at_least"
    assert used.loc[0.9, "gain"] == 1.0
    a = s["area_gain"]
    assert (a.loc[np.isclose(a["rise"], 0.1), "gain"] > 1).all()
    # at a threshold above the rise, nothing blew up: no gain there, and the page says so
    assert (g.loc[np.isclose(g["rise"], 0.5), "gain"] == 1.0).all()
    text = answer_sentence(s)
    assert text.startswith("Yes: restarts every R=3 outer steps widen the stable region.")
    assert "higher on 1, lower on 0" in text and "50%: not measured" in text
    # the restarted edge is the grid's end: a bound, said as one
    assert ("on 1 of the 1 higher the restarted arm is stable up to the grid's largest α, so "
            "the gain is at least the one shown") in text
    # the verdicts at other thresholds use the answer's own words, not internal names
    assert not any(f": {w}" in text for w in ("none", "undetermined", "no_data", "opposite"))
    stable = s["cells"].set_index(["R", "beta", "alpha"])["stable"]
    assert not stable[(0, 0.95, 2.0)] and stable[(3, 0.95, 2.0)]


def test_c_slow_is_not_unstable(tmp_path: Path) -> None:
    """(c) larger α monotonically slower and never rising: every cell is stable."""
    s = summarize(load_trials(_store(tmp_path, _rows(slower))))
    assert s["cells"]["stable"].all() and s["trials"]["stable"].all()
    assert (s["edges"]["edge_kind"] == "lower_bound").all()
    assert (s["edges"]["edge"] == 4.0).all()


def test_the_opposite_effect_is_said_plainly(tmp_path: Path) -> None:
    s = summarize(load_trials(_store(tmp_path, _rows(restarts_blow_up))))
    g = s["restart_gain"]
    used = g[np.isclose(g["rise"], 0.1)]
    assert (used["gain"] == 0.25).all() and (used["bound"] == "at_most").all()  # 1 / ≥4
    text = answer_sentence(s)
    assert text.startswith("No, the opposite: restarts every R=3 outer steps narrow")
    assert ("on 2 of the 2 lower the unrestarted arm is stable up to the grid's largest α, so "
            "the ratio is at most the one shown") in text


def test_no_effect_where_restarts_change_nothing(tmp_path: Path) -> None:
    """Identical arms with an edge inside the grid: 'No', gain exactly 1, no paired effect."""
    def same(R, a, b, s):
        return 3.0 + 0.1 * a, (0.3 if a >= 2.0 else 0.01)
    s = summarize(load_trials(_store(tmp_path, _rows(same))))
    assert (s["restart_gain"]["gain"] == 1.0).all()
    text = answer_sentence(s)
    assert text.startswith("No: restarts every R=3 outer steps leave the stable region")
    assert "did not change the final loss consistently" in text


def test_bootstrap_over_seeds_is_paired_and_has_width(tmp_path: Path) -> None:
    """Seed 1 of R=0 blows up at α=2, β=0.95; seed 0 does not: the interval spans 1."""
    def f(R, a, b, s):
        if R == 0 and b == 0.95 and a >= 2.0 and (s == 1 or a == 4.0):
            return 4.0, 0.3
        return 3.0, 0.01
    s = summarize(load_trials(_store(tmp_path, _rows(f))), n_boot=2000)
    row = s["restart_gain"].query("beta == 0.95 and rise == 0.1").iloc[0]
    assert row["gain"] == 4.0                      # all seeds: R=0 edge 1, R=3 edge ≥ 4
    assert row["gain_lo"] == 2.0 and row["gain_hi"] == 4.0   # seed 0 alone: R=0 edge 2
    e = s["edges"].query("R == 0 and beta == 0.95").iloc[0]
    assert (e["edge"], e["edge_lo"], e["edge_hi"]) == (1.0, 1.0, 2.0)


def test_edges_below_the_grid_and_a_nothing_stable_arm(tmp_path: Path) -> None:
    def f(R, a, b, s):
        return 3.0, (0.3 if R == 0 or a > 1.0 else 0.01)
    s = summarize(load_trials(_store(tmp_path, _rows(f))))
    e = s["edges"].set_index(["R", "beta"])
    assert e.loc[(0, 0.9), "edge_kind"] == "below_grid" and np.isnan(e.loc[(0, 0.9), "edge"])
    assert e.loc[(3, 0.9), "edge"] == 1.0
    g = s["restart_gain"].query("rise == 0.1")
    assert np.isinf(g["gain"]).all()
    assert "∞" in answer_sentence(s)


def test_sign_test_exact_values() -> None:
    assert sign_test(28, 30) == pytest.approx(2 * (1 + 30 + 435) / 2 ** 30)
    assert sign_test(5, 10) == 1.0
    assert sign_test(0, 3) == pytest.approx(0.25)
    assert math.isnan(sign_test(0, 0))


def test_wilson_hand_values() -> None:
    lo, hi = wilson(2, 3)
    assert (float(lo), float(hi)) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    lo, hi = wilson(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_cells_pool_seeds_and_take_the_worst_mark() -> None:
    rows = [_row(0, 1.0, 0.9, 0, 3.0, 0.01), _row(0, 1.0, 0.9, 1, 3.2, 0.3),
            _row(0, 2.0, 0.9, 0, 9.0, 1.0, status="diverged"), _row(0, 2.0, 0.9, 1, 3.1, 0.3)]
    c = cells(pd.DataFrame(rows)).set_index("alpha")
    assert (c.loc[1.0, "n"], c.loc[1.0, "n_stable"], c.loc[1.0, "stable"]) == (2, 1, False)
    assert c.loc[1.0, "outcome"] == "blew_up" and c.loc[2.0, "outcome"] == "diverged"
    assert c.loc[1.0, "final_mean"] == pytest.approx(3.1)
    assert c.loc[1.0, "rise_max"] == pytest.approx(0.3)


def test_rise_from_curves_matches_the_trainer(tmp_path: Path) -> None:
    """(d) an older store without peak_loss and rise: both come back from the curves, exactly
    as the trainer computes them; without curves they are null, and show/report still work."""
    rng = np.random.default_rng(0)
    rows = _rows(r0_blows_up)
    curves = []
    for r in rows:
        ev = list(3 + rng.random(8))
        r["trial_id"] = row_trial_id(r)  # the id it is stored under, which the curves carry
        r["rise"], r["peak_loss"] = curve_rise(ev), max(ev[1:])
        curves += [{"trial_id": r["trial_id"], "outer_step": t, "eval_loss": v}
                   for t, v in enumerate(ev)]
    store = _store(tmp_path, rows, drop=("rise", "peak_loss"))
    (store / "curves").mkdir()
    pq.write_table(pa.Table.from_pylist(curves), store / "curves" / "all.parquet")
    t = load_trials(store).set_index("trial_id")
    want = pd.DataFrame(rows).set_index("trial_id")
    np.testing.assert_allclose(t["rise"], want.loc[t.index, "rise"], rtol=1e-12)
    np.testing.assert_allclose(t["peak_loss"], want.loc[t.index, "peak_loss"], rtol=1e-12)
    assert curve_stats(pd.DataFrame(curves))["rise"].min() >= 0

    bare = _store(tmp_path / "bare", rows, drop=("rise", "peak_loss"))
    t = load_trials(bare)
    assert t["rise"].isna().all() and t["peak_loss"].isna().all()
    assert "sweep hand" in render_show(bare)
    out = analysis.write_report(bare, tmp_path / "bare.html")
    assert "no recorded rise" in out.read_text(encoding="utf-8")


def test_terminal_view_leads_with_the_answer(tmp_path: Path) -> None:
    text = render_show(_store(tmp_path, _rows(r0_blows_up)))
    lines = text.splitlines()
    assert lines[2].startswith("Yes: restarts every R=3")
    assert text.index("stable α edge per (H, β)") < text.index("slices:") < text.index(
        "H=10, R=0: stable")
    maps = text.split("H=10, R=0: stable 6/8 cells\n")[1].splitlines()
    assert maps[0].split() == ["β\\α", "0.5", "1", "2", "4"]
    assert maps[1].split() == ["0.95", "#", "#", "^", "^"]
    assert maps[2].split() == ["0.9", "#", "#", "#", "#"]
    edges = text.split("stable α edge per (H, β) line")[1].split("\n\n")[0]
    assert "≥4" in edges and "≥4 [" in edges


def test_public_names() -> None:
    for name in ("load_trials", "load_curves", "load_sweep_meta", "label", "cells", "summarize",
                 "write_report", "render_show", "answer_sentence", "restart_gain", "area_gain",
                 "paired_effect"):
        assert name in analysis.__all__ and callable(getattr(analysis, name))
    assert restart_gain is analysis.restart_gain


def test_missing_or_failed_trials_are_no_evidence(tmp_path: Path) -> None:
    """A cell with no trial (or only failed ones) neither ends an edge nor makes a gain."""
    same = lambda R, a, b, s: (3.0, 0.01)  # noqa: E731 - identical arms, stable everywhere
    rows = [r for r in _rows(same) if not (r["R"] == 0 and r["alpha"] == 1.0 and r["beta"] == 0.9)]
    s = summarize(pd.DataFrame(rows), n_boot=50)
    g = s["restart_gain"].query("rise == 0.1").set_index("beta")
    assert g.loc[0.9, "edge_R0"] == 4.0 and g.loc[0.9, "bound"] == "unknown"
    assert (s["area_gain"]["gain"] == 1.0).all()
    # a whole line failed at R=0: that line is not counted, the answer claims nothing from it
    rows = [dict(r, status="failed") if r["R"] == 0 and r["beta"] == 0.95 else r
            for r in _rows(same)]
    s = summarize(pd.DataFrame(rows), n_boot=50)
    g = s["restart_gain"].query("rise == 0.1").set_index("beta")
    assert g.loc[0.95, "bound"] == "no_data"
    text = answer_sentence(s)
    assert text.startswith("Not measured") and "1 more have no trials in one arm" not in text
    # every R=0 trial failed: no pairs, no crash, no claim
    rows = [dict(r, status="failed") if r["R"] == 0 else r for r in _rows(r0_blows_up)]
    s = summarize(pd.DataFrame(rows), n_boot=50)
    assert s["paired"].empty and answer_sentence(s).startswith("No answer for R=3")


def test_scattered_points_get_no_edge_answer_and_say_why() -> None:
    rng = np.random.default_rng(0)
    rows = [_row(R, float(2 ** rng.uniform(-1, 2)), float(rng.uniform(0.8, 0.99)), 0, 3.0,
                 float(rng.uniform(0, 0.3))) for R in (0, 3) for _ in range(20)]
    s = summarize(pd.DataFrame(rows), n_boot=50)
    assert s["restart_gain"].empty
    assert "do not lie on an (α, β) grid" in answer_sentence(s)


def test_no_seed_column_is_one_seed_and_the_median_pools_every_pair() -> None:
    rows = _rows(r0_blows_up, seeds=(0,))
    for r in rows:
        del r["seed"]
    s = summarize(pd.DataFrame(rows), n_boot=50)
    assert s["restart_gain"].query("rise == 0.1 and beta == 0.95")["gain"].iloc[0] == 4.0
    # 32 pairs lowered by 0.05 at H=10, 8 raised by 0.01 at each of H=20 and H=30
    rows = []
    for H, n, d in ((10, 32, -0.05), (20, 8, 0.01), (30, 8, 0.01)):
        for k in range(n):
            a, b = ALPHAS[k % 4], BETAS[(k // 4) % 2]
            rows += [_row(0, a, b, k, 3.0, 0.0, H=H, trial_id=f"{H}-{k}-0"),
                     _row(3, a, b, k, 3.0 + d, 0.0, H=H, trial_id=f"{H}-{k}-3")]
    s = summarize(pd.DataFrame(rows), n_boot=20)
    assert "median change -0.05" in answer_sentence(s)


def test_rise_from_curves_ignores_a_minimum_at_zero_as_the_trainer_does() -> None:
    ev = [1.0, 0.0, 0.5]
    c = pd.DataFrame({"trial_id": "t", "outer_step": range(3), "eval_loss": ev})
    assert curve_stats(c).loc["t", "rise"] == curve_rise(ev) == 0.0


def test_cells_without_trial_ids() -> None:
    rows = [_row(0, 1.0, 0.9, s, 3.0, 0.01) for s in (0, 1)]
    for r in rows:
        del r["trial_id"]
    assert cells(pd.DataFrame(rows))["n_stable"].tolist() == [2]


# The main job's H=8, β=0.95, α=2, seed 0 (docs/design.md, "Stable"): both arms overshoot in
# the rounds they share; the restarted run comes back down, the unrestarted one stays up.
SPIKE_BACK = [3.47, 4.78, 4.98, 4.24, 4.37, 3.94, 3.56, 3.67, 3.79, 3.53, 3.39, 3.36]
STAYS_UP = [3.47, 4.78, 4.98, 4.73, 4.09, 4.41, 4.33, 4.48, 4.59, 4.50, 4.39, 4.20]
SMOOTH = [3.47, 3.30, 3.20, 3.12, 3.05, 3.00, 2.96, 2.93, 2.90, 2.88, 2.86, 2.85]
LATE_SPIKE = [3.47, 3.30, 3.20, 3.12, 3.70, 3.00, 2.96, 2.93, 2.90, 2.88, 2.86, 2.85]


def _curve_trials(curves: dict[tuple[int, float], list[float]]) -> tuple[pd.DataFrame,
                                                                          pd.DataFrame]:
    """Rows whose loss columns are what the trainer's TrainResult makes of each curve, and the
    curves table; keys (R, α), β = 0.95, seed 0."""
    from trainer.result import TrainResult

    rows, table = [], []
    for (R, alpha), ev in curves.items():
        res = TrainResult(status="completed", initial_loss=5.5, final_loss=ev[-1],
                          best_loss=min(ev), peak_loss=max(ev[1:]), outer_steps_done=len(ev),
                          tokens=100, wall_s=0.1, curve=[{"eval_loss": v} for v in ev])
        s = res.summary()
        row = _row(R, alpha, 0.95, 0, ev[-1], None)
        row.update({k: s[k] for k in ("initial_loss", "best_loss", "peak_loss", "rise",
                                      "end_rise")})
        rows.append(row)
        table += [{"trial_id": row["trial_id"], "outer_step": t, "eval_loss": v}
                  for t, v in enumerate(ev)]
    return pd.DataFrame(rows), pd.DataFrame(table)


def test_a_spike_that_recovers_is_stable_and_one_that_stays_up_blew_up() -> None:
    from trainer.result import first_spike_round

    rows, curves = _curve_trials({(0, 1.0): SMOOTH, (3, 1.0): SMOOTH,
                                  (0, 2.0): STAYS_UP, (3, 2.0): SPIKE_BACK})
    t = label(rows).set_index(["R", "alpha"])
    assert t.loc[(3, 2.0), "end_rise"] == 0.0 and t.loc[(3, 2.0), "rise"] > 0.4
    assert (t.loc[(3, 2.0), "outcome"], bool(t.loc[(3, 2.0), "spiked"])) == ("stable", True)
    assert t.loc[(0, 2.0), "end_rise"] == pytest.approx(4.20 / 3.47 - 1)
    assert (t.loc[(0, 2.0), "outcome"], bool(t.loc[(0, 2.0), "spiked"])) == ("blew_up", False)
    assert not t.loc[(0, 1.0), "spiked"] and t.loc[(0, 1.0), "outcome"] == "stable"
    assert first_spike_round(SPIKE_BACK, 0.1) == 1 and first_spike_round(SMOOTH, 0.1) is None
    assert first_spike_round(LATE_SPIKE, 0.1) == 4
    # a cell is spiked when it is stable and a seed spiked; the edge counts it as stable
    c = cells(label(rows)).set_index(["R", "alpha"])
    assert bool(c.loc[(3, 2.0), "spiked"]) and bool(c.loc[(3, 2.0), "stable"])
    assert c.loc[(3, 2.0), "spiked_id"] == "R3-a2.0-b0.95-s0" and c.loc[(3, 1.0), "spiked_id"] == ""

    s = summarize(rows, n_boot=20, curves=curves)
    sp = s["spikes"].set_index("arm")
    assert (sp.loc[0, "spiked"], sp.loc[3, "spiked"], sp.loc[3, "early"]) == (0, 1, 1)
    text = answer_sentence(s)
    assert text.startswith("Yes: restarts every R=3 outer steps widen the stable region.")
    assert ("Spikes that recovered: 0 of 2 trials without restarts and 1 of 2 with restarts "
            "every R=3; of those, 0 and 1 came within the first 3 rounds, which both arms share; "
            "their unrestarted twins (the same overshoot, no restart after it): 1 blew up.") in text
    assert "Restarts lowered the final loss" in text or "Restarts did not change" in text
    # the same from a reader of the spiked trials' curves; without curves, said unknown
    asked = []
    s = summarize(rows, n_boot=20, curves=lambda ids: asked.append(ids) or curves)
    assert asked == [["R3-a2.0-b0.95-s0"]] and "of those, 0 and 1 came" in answer_sentence(s)
    assert "when they came is not known" in answer_sentence(summarize(rows, n_boot=20))

    # a late spike in the restarted arm is not one the arms share
    rows, curves = _curve_trials({(0, 1.0): SMOOTH, (3, 1.0): LATE_SPIKE,
                                  (0, 2.0): STAYS_UP, (3, 2.0): SPIKE_BACK})
    text = answer_sentence(summarize(rows, n_boot=20, curves=curves))
    assert "and 2 of 2 with restarts every R=3; of those, 0 and 1 came within the first 3" in text
    assert "twins (the same overshoot, no restart after it): 1 blew up." in text


def test_stored_rows_without_end_rise_get_it_from_their_own_columns(tmp_path: Path) -> None:
    """A row written before the end_rise column: final / best - 1, no curves read."""
    rows = _rows(r0_blows_up)
    t = load_trials(_store(tmp_path, rows)).set_index("trial_id")
    want = pd.DataFrame(rows).set_index("trial_id")
    np.testing.assert_allclose(t["end_rise"], want.loc[t.index, "final_loss"]
                               / want.loc[t.index, "best_loss"] - 1, rtol=1e-12)
    assert (t.loc[t["alpha"] >= 2.0].query("R == 0 and beta == 0.95")["end_rise"] > 0.29).all()


def test_restarts_that_change_nothing_say_no_on_trained_toy_trials() -> None:
    """β = 0: a restart zeroes a momentum that is never used, so both arms train the same
    curves. On an α axis that reaches where both break, the answer is 'No', no line wider or
    narrower."""
    from trainer import TrainConfig, train

    rows = []
    for R in (0, 3):
        for alpha in (1.0, 2.0, 3.0, 4.5, 6.0):
            cfg = TrainConfig(kind="toy", toy_dim=200, lr=0.5, H=1, R=R, alpha=alpha, beta=0.0,
                              workers=2, outer_steps=20, diverge_factor=10.0, threads=1)
            res = train(cfg)
            rows.append({**cfg.flat(), **res.summary(), "sweep": "beta0",
                         "trial_id": f"R{R}-a{alpha}", "error": None})
    t = label(pd.DataFrame(rows))
    arms = {R: t[t["R"] == R].sort_values("alpha") for R in (0, 3)}
    assert arms[0]["final_loss"].tolist() == arms[3]["final_loss"].tolist()  # bit for bit
    assert arms[0]["stable"].any() and not arms[0]["stable"].all()           # it breaks
    s = summarize(pd.DataFrame(rows), n_boot=20)
    g = s["restart_gain"].query("rise == 0.1")
    assert (g["bound"] == "exact").all() and (g["gain"] == 1.0).all()
    text = answer_sentence(s)
    assert text.startswith("No: restarts every R=3 outer steps leave the stable region where "
                           "it is. The stable α edge is higher on 0, lower on 0 and the same on "
                           "1 of 1")


def test_a_curve_of_a_mark_draws_a_seed_that_did_it() -> None:
    """A cell where one seed of two diverged (or blew up, or spiked) is drawn by that seed, not
    by the first of its trial ids, which may have trained normally."""
    from analysis.curves import curve_trial_ids

    rows = [_row(0, 1.0, 0.9, 0, 3.0, 0.01), _row(0, 1.0, 0.9, 1, 3.0, 0.01),
            _row(0, 2.0, 0.9, 0, 3.1, 0.3), _row(0, 2.0, 0.9, 1, 3.0, 0.01),
            _row(0, 4.0, 0.9, 0, 3.5, 0.05), _row(0, 4.0, 0.9, 1, 9.0, 1.0, status="diverged"),
            _row(0, 0.5, 0.9, 0, 2.9, 0.0, rise=0.3), _row(0, 0.5, 0.9, 1, 2.9, 0.0)]
    c = cells(pd.DataFrame(rows))
    drawn = curve_trial_ids(c)
    assert {"R0-a2.0-b0.9-s0", "R0-a4.0-b0.9-s1", "R0-a0.5-b0.9-s0"} <= set(drawn)
    assert "R0-a4.0-b0.9-s0" not in drawn and "R0-a2.0-b0.9-s1" not in drawn


@pytest.mark.parametrize("gains, word", [
    ([1.4] + [1.0] * 9, "in_part"),           # one line in ten a grid step wider: not a yes
    ([1.4] * 5 + [1.0] * 5, "yes"),
    ([1.4] * 9, "yes"),
    ([0.7] + [1.0] * 4, "in_part_opposite"),
    ([0.7] * 3 + [1.0] * 2, "opposite"),
    ([1.4, 0.7, 1.0], "mixed"),
    ([1.0] * 4, "none"),
])
def test_the_verdict_says_yes_only_when_most_measured_lines_widen(gains, word) -> None:
    from analysis.answer import _LEAD, VERDICT_WORDS, verdict

    g = pd.DataFrame({"gain": gains, "bound": ["exact"] * len(gains)})
    assert verdict(g) == word
    assert word in VERDICT_WORDS and word in _LEAD
