"""The report of a toy sweep draws the predicted boundary and the contraction figure."""

import itertools
import re

import pandas as pd
import pytest

from analysis import write_report
from analysis.theory import power_law_spectrum, predicted_stable
from records.identity import trial_id
from trainer import TrainConfig, train

ALPHAS, BETAS = [0.5, 1.0, 1.5, 2.0, 3.0], [0.0, 0.5, 0.9]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toy-mini"
    (root / "trials").mkdir(parents=True)
    (root / "curves").mkdir()
    trials, curves = [], []
    for H, R, a, b in itertools.product([1, 4], [0, 3], ALPHAS, BETAS):
        cfg = TrainConfig(kind="toy", toy_dim=300, lr=0.5, H=H, R=R, alpha=a, beta=b,
                          workers=1, outer_steps=20, diverge_factor=1e6)
        r = train(cfg)
        tid = trial_id(cfg)
        trials.append({"sweep": "toy-mini", "trial_id": tid, **cfg.flat(), **r.summary(), "error": None})
        curves += [{"trial_id": tid, **row} for row in r.curve]
    pd.DataFrame(trials).to_parquet(root / "trials" / "all.parquet")
    pd.DataFrame(curves).to_parquet(root / "curves" / "all.parquet")
    return root


def test_toy_report_draws_prediction_per_facet_and_contraction(toy_sweep, tmp_path):
    out = write_report(toy_sweep, tmp_path / "r.html")
    page = out.read_text()
    assert "<h2>Theory</h2>" in page and "Per-step contraction of the stiffest mode" in page
    # one contour per facet whose predicted boundary falls inside the measured range
    lams = power_law_spectrum(300, 1.0)
    expected = sum(1 for H, R in itertools.product([1, 4], [0, 3])
                   if (g := predicted_stable(ALPHAS, BETAS, lams, 0.5, H, R)).any() and not g.all())
    assert expected >= 2
    assert len(re.findall(r'"name":"predicted boundary \(linearized theory\)"', page)) == expected


def test_lm_report_has_no_theory_unless_asked(tmp_path):
    from analysis.theory_report import is_toy

    assert not is_toy(pd.DataFrame({"kind": ["lm", "lm"]}))
    assert is_toy(pd.DataFrame({"kind": ["toy"]}))


def test_labels_agree_with_the_theory_on_the_committed_toy_store():
    """Judged by where a run ends, the trial-alone labels of the shipped toy sweep agree with
    the linearized theory's call on at least 1007 of its 1008 cells, and docs/results/toy.md
    states the number this computes."""
    from pathlib import Path

    from analysis import cells, load_trials
    from analysis.theory_report import toy_agreement

    root = Path(__file__).resolve().parents[1]
    trials = load_trials(root / "docs" / "results" / "restart-toy")
    ag = toy_agreement(cells(trials), trials)
    n, agree = len(ag), int(ag["agrees"].sum())
    assert n == 1008 and agree >= 1007
    assert f"agree on {agree} of {n} cells" in (root / "docs/results/toy.md").read_text()


def test_agreement_is_against_the_cells_own_prediction(toy_sweep):
    """A cell whose label is flipped by hand no longer agrees; the rest still do."""
    from analysis import cells, load_trials
    from analysis.theory_report import toy_agreement

    trials = load_trials(toy_sweep)
    c = cells(trials)
    ag = toy_agreement(c, trials)
    assert len(ag) == len(c) and ag["predicted"].any() and not ag["predicted"].all()
    flipped = c.copy()
    flipped.loc[flipped.index[0], "stable"] = not flipped.loc[flipped.index[0], "stable"]
    assert toy_agreement(flipped, trials)["agrees"].sum() == ag["agrees"].sum() - (
        1 if ag["agrees"].iloc[0] else -1)
