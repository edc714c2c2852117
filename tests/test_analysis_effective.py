"""The effective outer LR view (analysis/effective.py): edges and maps shown against each rule's
effective_lr, measured on α as always; `show` and `report` take --x effective."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.effective import effective_alpha, effective_view
from analysis.show import render_summary
from sweeps.cli import main

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "docs" / "results" / "restart-cpu"


@pytest.fixture(scope="module")
def summary():
    return analysis.summarize(analysis.load_trials(STORE))


def test_edges_move_by_the_rules_factor_and_gains_do_not(summary):
    e = effective_view(summary)
    beta = summary["edges"]["beta"].to_numpy()
    np.testing.assert_allclose(e["edges"]["edge"], summary["edges"]["edge"] / (1 - beta))
    g, g0 = e["restart_gain"], summary["restart_gain"]
    np.testing.assert_allclose(g["edge"], g0["edge"] / (1 - g0["beta"]))
    np.testing.assert_allclose(g["edge_R0"], g0["edge_R0"] / (1 - g0["beta"]))
    assert g["gain"].equals(g0["gain"]) and g["edge_kind"].equals(g0["edge_kind"])
    c, c0 = e["cells"], summary["cells"]
    np.testing.assert_allclose(c["alpha"], c0["alpha"] / (1 - c0["beta"]))
    assert e["x_dropped"] == 0 and summary["cells"] is not c            # a copy


def test_each_rule_gives_its_own_equivalent_and_adam_none():
    frame = pd.DataFrame({"outer": ["nesterov", "nesterov_normalized", "heavy_ball", "adam"],
                          "alpha": [0.2, 2.0, 0.5, 1.0], "beta": [0.9, 0.9, 0.5, 0.9]})
    got = effective_alpha(frame)
    np.testing.assert_allclose(got[:3], [2.0, 2.0, 1.0])
    assert np.isnan(got[3])
    # a frame without the column ran the default rule
    np.testing.assert_allclose(effective_alpha(frame.drop(columns="outer").iloc[:1]), [2.0])


def test_show_prints_the_effective_view_and_refuses_an_unknown_axis(summary, capsys):
    text = render_summary(summary, "s", x="effective")
    assert "x: effective outer LR" in text and "nesterov: α/(1 − β)" in text
    assert "stable edge (effective outer LR) per (H, β)" in text and "β\\eff" in text
    assert "x: effective" not in render_summary(summary, "s")
    with pytest.raises(ValueError, match="x: expected one of alpha, effective"):
        render_summary(summary, "s", x="eff")
    assert main(["show", str(STORE), "--x", "effective"]) == 0
    assert "x: effective outer LR" in capsys.readouterr().out


def test_the_report_draws_maps_and_edges_on_the_effective_axis(tmp_path):
    out = analysis.write_report(STORE, tmp_path / "r.html", x="effective")
    page = Path(out).read_text(encoding="utf-8")
    assert "x: effective outer LR" in page
    assert "stable edge, effective outer LR" in page and "effective outer LR" in page
