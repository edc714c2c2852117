"""A budget of inner steps (``inner_steps_budget``): T = ⌊budget / H⌋ for every H, so a sweep
over H compares equal compute (docs/design.md, "One trial"); rows record what ran; the spec,
the command line and `check` follow."""

from __future__ import annotations

import pytest

import analysis
from records.identity import row_trial_id, trial_id
from sweeps.estimate.cost import sweep_cost, trial_cost
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import Store
from sweeps.tune.trainable import result_row
from sweeps.tune.trial import trial_config
from trainer import TrainConfig, train
from trainer.checks import ConfigError
from trainer.loop import inner_lr

BUDGET = 50


@pytest.mark.parametrize("H", [1, 3, 7, 16, 49, 50])
def test_the_budget_sets_t_from_h_to_within_one_round(H):
    cfg = TrainConfig(inner_steps_budget=BUDGET, H=H)
    assert cfg.outer_steps == BUDGET // H >= 1
    assert 0 <= BUDGET - cfg.outer_steps * H < H
    # the inner LR's warmup+cosine spans the T·H steps that run: the floor at the last one
    last = inner_lr(cfg, cfg.outer_steps * H - 1)
    assert last == pytest.approx(cfg.lr * cfg.min_lr_ratio)


def test_a_copy_derives_t_again_and_off_is_outer_steps():
    cfg = TrainConfig(inner_steps_budget=BUDGET, H=7)
    assert (cfg.replace(H=10).outer_steps, cfg.replace(inner_steps_budget=100).outer_steps) == (5, 14)
    assert TrainConfig(outer_steps=9).outer_steps == 9                     # 0: off
    assert TrainConfig(inner_steps_budget=BUDGET, H=7, outer_steps=7).outer_steps == 7


def test_bad_budgets_are_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"^inner_steps_budget: 5 is below H = 7"):
        TrainConfig(inner_steps_budget=5, H=7)
    with pytest.raises(ConfigError, match=r"^inner_steps_budget: expected an integer >= 0"):
        TrainConfig(inner_steps_budget=-1)
    with pytest.raises(ConfigError, match=r"^outer_steps: 3 set beside inner_steps_budget 50"):
        TrainConfig(inner_steps_budget=BUDGET, H=7, outer_steps=3)
    with pytest.raises(ConfigError, match=r"^outer_steps: not with inner_steps_budget"):
        TrainConfig.from_dict({"inner_steps_budget": BUDGET, "outer_steps": 7, "H": 7})
    assert TrainConfig.from_dict({"inner_steps_budget": 0, "outer_steps": 7}).outer_steps == 7


@pytest.mark.parametrize("trial,space,key", [
    ({"inner_steps_budget": 100, "outer_steps": 10}, {}, "trial.outer_steps"),
    ({"inner_steps_budget": 100}, {"outer_steps": [5, 10]}, "space.outer_steps"),
    ({"outer_steps": 10}, {"inner_steps_budget": [100]}, "space.inner_steps_budget"),
    ({}, {"inner_steps_budget": [100], "outer_steps": [5]}, "space.outer_steps"),
    ({"inner_steps_budget": 100}, {"H": [10, 200]}, "space.H"),
])
def test_a_spec_setting_both_or_a_budget_below_h_is_refused(trial, space, key):
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "s", "trial": trial, "space": space})
    assert str(e.value).startswith(f"{key}: "), str(e.value)
    assert "inner_steps_budget" in str(e.value)


def test_ids_without_a_budget_are_unchanged_and_a_budget_trial_is_a_new_one():
    cfg = TrainConfig(H=10, outer_steps=5)
    assert trial_id(cfg) == trial_id(cfg.replace(inner_steps_budget=0))
    budget = TrainConfig(H=10, inner_steps_budget=50)                     # T = 5 as well
    assert budget.outer_steps == 5 and trial_id(budget) != trial_id(cfg)
    assert row_trial_id(budget.flat()) == trial_id(budget)


def test_a_budget_sweep_over_h_gives_each_h_the_budget_and_records_what_ran(tmp_path):
    """The grid over H, planned, trained and stored as a run does, read back by the analysis:
    each H ran ⌊budget / H⌋ rounds, |inner steps − budget| < H, and the rows say so."""
    Hs = [1, 4, 7, 16, 50]
    spec = parse_spec({"name": "budget", "trial": {
        "kind": "toy", "toy_dim": 30, "lr": 0.5, "workers": 2, "toy_batch": 8,
        "inner_steps_budget": BUDGET, "alpha": 0.5, "beta": 0.5, "threads": 1},
        "space": {"H": Hs}})
    plan = spec.search_kind.plan(spec, [], False)
    store = Store(str(tmp_path), "budget")
    for point, tid in zip(plan.todo, plan.ids):
        cfg = trial_config(spec, point)
        result = train(cfg)
        store.write_trial(result_row(spec, cfg, tid, result.summary(), "node", "now"),
                          result.curve)
    rows = analysis.load_trials(tmp_path / "budget").set_index("H").sort_index()
    assert list(rows.index) == Hs and (rows["status"] == "completed").all()
    for H, row in rows.iterrows():
        T = BUDGET // H
        assert row["outer_steps"] == row["outer_steps_done"] == T
        assert row["inner_steps_budget"] == BUDGET
        assert row["inner_steps_done"] == T * H and abs(row["inner_steps_done"] - BUDGET) < H
        assert row["tokens"] == row["inner_steps_done"] * 2 * 8            # M · batch per step
    curves = analysis.load_curves(tmp_path / "budget")
    assert curves.groupby("trial_id").size().sort_index().tolist() == \
        rows.set_index("trial_id")["outer_steps"].sort_index().tolist()


def test_an_lm_trial_spends_its_budget_and_check_prices_it():
    cfg = TrainConfig(workers=2, H=3, inner_steps_budget=8, batch_size=2, seq_len=16,
                      eval_batches=1, threads=1)
    result = train(cfg)
    assert (result.outer_steps_done, result.inner_steps_done) == (2, 6)
    assert result.tokens == 6 * 2 * 2 * 16 == trial_cost(cfg).tokens
    spec = parse_spec({"name": "s", "trial": {"inner_steps_budget": 1000, "batch_size": 2,
                                              "seq_len": 16},
                       "space": {"H": [10, 300], "alpha": [0.5, 1.0]}})
    groups = {d["H"]: (k, c) for d, k, c in sweep_cost(spec).groups}
    assert groups[10][0] == groups[300][0] == 2
    assert groups[10][1].tokens == 100 * 10 * 4 * 2 * 16                   # T = 100
    assert groups[300][1].tokens == 3 * 300 * 4 * 2 * 16                   # T = 3: 900 steps
    assert groups[300][1].evals == 4
