"""Planning a run without Ray: grid filtering, --force, Optuna warm start, the sampler's metric."""

from __future__ import annotations

import math

import pytest

from sweeps.tune.progress import format_line
from sweeps.search.sampler import SAMPLERS, make_sampler, optuna_searcher
from sweeps.spec.space import grid_points
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import trial_id
from sweeps.tune.trial import OBJECTIVE, objective, trial_config

GRID = {"name": "g", "trial": {"workers": 2}, "space": {"alpha": [0.5, 1.0], "seed": [0, 1]}}
OPT = {"name": "o", "trial": {"workers": 2},
       "space": {"alpha": {"low": 0.1, "high": 2.0, "log": True}, "R": [0, 3]},
       "search": {"kind": "optuna", "sampler": "tpe", "num_samples": 5, "seed": 1,
                  "points_to_evaluate": [{"alpha": 0.5, "R": 0}, {"alpha": 1.0, "R": 3}]}}


def _row(spec, params, status="completed", loss=3.0):
    cfg = trial_config(spec, params)
    return {"trial_id": trial_id(cfg), **cfg.flat(), "status": status, "final_loss": loss,
            "best_loss": loss, "peak_loss": loss, "initial_loss": 5.0}


def test_grid_plan_drops_done_points_and_force_keeps_all():
    spec = parse_spec(GRID)
    rows = [_row(spec, {"alpha": 0.5, "seed": 0}),
            _row(spec, {"alpha": 1.0, "seed": 1}, "diverged"),
            _row(spec, {"alpha": 0.5, "seed": 1}, "failed")]
    p = spec.search_kind.plan(spec, rows, False)
    assert p.total == 4 and p.done == 2 and p.to_sample == 2
    assert p.todo == [{"alpha": 0.5, "seed": 1}, {"alpha": 1.0, "seed": 0}]  # failed is rerun
    assert spec.search_kind.plan(spec, rows, True).to_sample == 4
    assert spec.search_kind.plan(spec, [], False).todo == grid_points(spec.space)


def test_grid_plan_ignores_rows_of_other_settings():
    spec = parse_spec(GRID)
    other = parse_spec({**GRID, "trial": {"workers": 3}})
    rows = [_row(other, p) for p in grid_points(other.space)]
    assert spec.search_kind.plan(spec, rows, False).to_sample == 4  # same alpha and seed, different trial: not done


def test_optuna_plan_warm_starts_from_stored_trials():
    spec = parse_spec(OPT)
    rows = [_row(spec, {"alpha": 0.5, "R": 0}, loss=2.5),
            _row(spec, {"alpha": 1.7, "R": 3}, "diverged", loss=math.inf),
            _row(spec, {"alpha": 9.0, "R": 0})]  # outside the range now: not history
    p = spec.search_kind.plan(spec, rows, False)
    assert p.done == 2 and p.to_sample == 3
    assert p.todo == [{"alpha": 1.0, "R": 3}]  # the starting point already run is dropped
    assert sorted(v for _, v in p.history) == [2.5, 10.0]  # diverged: 5.0 * diverge_factor 2
    searcher = optuna_searcher(spec, p)
    trials = searcher._ot_study.get_trials()
    assert len(trials) == 3  # two stored results + one enqueued starting point
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    cfg = searcher.suggest("t1")
    assert cfg == {"alpha": 1.0, "R": 3}  # the enqueued point comes first
    assert OBJECTIVE == searcher.metric


def test_objective_is_always_finite():
    assert objective("completed", 3.0, 5.0, 2.0) == 3.0
    assert objective("diverged", 3.0, 5.0, 2.0) == 10.0
    assert objective("completed", math.nan, 5.0, 2.0) == 10.0
    assert objective("diverged", math.inf, math.nan, 2.0) == 1e6
    assert objective("completed", 50.0, 5.0, 2.0) == 10.0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_is_built_or_refused_clearly(sampler):
    try:
        s = make_sampler(sampler, 0)
    except SpecError as e:
        assert "search.sampler" in str(e) and "pip install" in str(e)
        return
    assert s is not None


def test_sampler_choice_of_model_mappings_is_refused():
    spec = parse_spec({"name": "m", "space": {"model": [{"n_layer": 1}, "tiny"]},
                       "search": {"kind": "optuna", "sampler": "random"}})
    with pytest.raises(SpecError, match="space.model"):
        spec.search_kind.check(spec)


def test_progress_line():
    line = format_line(10, {"completed": 3, "diverged": 1, "failed": 0}, 2, 40.0, "completed x",
                       left=60.0)
    assert "4/10 trials" in line and "3 done, 1 diverged, 0 failed, 2 running" in line
    assert "elapsed 0:40" in line and "ETA 1:00 ·" in line
    assert "ETA ~1:00 (rough" in format_line(10, {"completed": 1}, 2, 9.0, "x", 60.0, rough=True)
    assert "ETA ? ·" in format_line(10, {}, 2, 9.0, "x")


def test_optuna_concurrency_follows_the_cluster():
    from sweeps.tune.tuner import _slots

    spec = parse_spec({**OPT, "resources": {"cpu": 1, "gpu": 0.5}})
    assert _slots(spec, {"CPU": 4.0, "GPU": 2.0}) == 4
    assert _slots(spec, {"CPU": 2.0, "GPU": 2.0}) == 2
    assert _slots(spec, {"CPU": 8.0}) == 1  # no GPU yet (an autoscaling cluster): one at a time
    assert _slots(parse_spec(OPT), {"CPU": 3.0}) == 3


def _big_grid(betas: int):
    return parse_spec({"name": "big", "trial": {"kind": "toy", "toy_dim": 16, "threads": 1},
                       "space": {"alpha": [round(0.05 + 0.01 * i, 4) for i in range(100)],
                                 "beta": [round(0.001 * i, 4) for i in range(betas)],
                                 "R": list(range(10))}})


def test_a_100k_grid_plans_every_point_and_hands_tune_one_point_at_a_time(tmp_path):
    """What reaches Tune does not grow with the points: the trainable Tune pickles to every
    worker is the same size for 1,000 and 100,000 points, and the searcher gives out one point
    per trial (never the list, as tune.grid_search would). How fast planning is (linear: 31 µs
    a point at 1,000 and at 100,000) is `python -m benchmarks scale`'s to say, not a timed
    test's (12 s here beside another test run, 3 s quiet)."""
    import ray.cloudpickle as cloudpickle

    from sweeps.tune.trainable import make_trainable

    small, big = _big_grid(1), _big_grid(100)
    plan = big.search_kind.plan(big, [], False)
    assert plan.total == len(plan.todo) == 100_000
    setup = big.search_kind.tune(big, plan, str(tmp_path))
    assert setup.num_samples == 100_000
    sizes = [len(cloudpickle.dumps(make_trainable(s, str(tmp_path)))) for s in (small, big)]
    assert sizes[1] - sizes[0] < 4096, sizes     # the spec's axes, not its points
    first = setup.searcher.suggest("t0")
    assert first == {"params": plan.todo[0], "trial_id": plan.ids[0]} and len(repr(first)) < 200
    assert setup.searcher.save(str(tmp_path / "ckpt")) is None   # no copy of the list on disk
    assert not (tmp_path / "ckpt").exists()


def test_a_grid_trial_is_built_and_hashed_once_and_its_id_travels_to_tune(monkeypatch):
    """Planning builds each point's TrainConfig and hashes it once; the id goes to Tune in the
    trial's config (the trainable, the progress line and the run's list of planned ids take it
    from there instead of building and hashing the trial again)."""
    import sweeps.search.grid as grid
    from sweeps.tune.trial import display_id

    spec = parse_spec(GRID)
    hashes, builds = [], []
    real_id, real_cfg = grid.trial_id, grid.trial_config
    monkeypatch.setattr(grid, "trial_id", lambda c: hashes.append(1) or real_id(c))
    monkeypatch.setattr(grid, "trial_config", lambda s, p: builds.append(1) or real_cfg(s, p))
    p = spec.search_kind.plan(spec, [], False)
    assert len(hashes) == len(builds) == p.total == 4
    assert p.ids == [trial_id(trial_config(spec, pt)) for pt in p.todo]
    setup = spec.search_kind.tune(spec, p, "/tmp/unused")
    units = [setup.searcher.suggest(str(i)) for i in range(p.to_sample)]
    assert [u["trial_id"] for u in units] == p.ids
    assert [display_id(spec, u) for u in units] == p.ids
