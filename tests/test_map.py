"""The map search: lattice refinement, audits, replay from the store, the toy map against its grid.

Unit tests drive ``records.lattice_map.LatticeMap`` with an oracle on uneven lattices; the Ray
tests run real toy trials through the sweep service, the map and the full grid of the same
lattice, compare them cell by cell and edge by edge, then kill a map run and check that the
rerun ends with the same map and trains no probe twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load_trials
from analysis.lines import line_edges
from analysis.map_report import filled_trials, map_cells, rebuild_maps
from conftest import kill_once_stored, ray_env, start_run
from records.lattice_map import LatticeMap, estimate, replay
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import trial_id
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 200, "toy_power": 1.0, "toy_noise": 0.0, "toy_batch": 0,
       "lr": 0.5, "outer": "nesterov", "workers": 1, "H": 4, "outer_steps": 30,
       "diverge_factor": 10.0, "threads": 1}
SPACE = {"alpha": {"low": 0.05, "high": 3.0, "num": 33},
         "beta": {"low": 0.0, "high": 0.99, "num": 17}, "R": [0, 3], "seed": [0]}
# coarse 3: 9 × 9 points first. At coarse 2 (5 × 5) this toy's top β row, blown up at α
# indices 2 to 6 between stable ones, falls between two coarse points and is filled stable
# (99.55% of cells still agree, but that line's edge is 13 steps off): a feature finer than
# the coarse lattice is found only by an audit that lands on it (docs/design.md)
SEARCH = {"kind": "map", "coarse": 3, "audits": 4}
SPACE_VALUES = [list(parse_spec({"name": "v", "trial": TOY, "space": SPACE}).space[k].values)
                for k in ("alpha", "beta")]


def _truth(shape, stable) -> np.ndarray:
    return np.array([[stable(i, j) for j in range(shape[1])] for i in range(shape[0])],
                     dtype=np.int8)


def _walk(shape, stable, coarse=2, audits=4, key="k") -> LatticeMap:
    asked: list = []

    def look(p):
        asked.append(p)
        return "stable" if stable(*p) else "diverged"
    m = replay(LatticeMap(shape, coarse, audits, key=key), look)
    assert len(asked) == len(set(asked)) == len(m.seen)  # no point asked twice
    return m


SHAPES = [((7, 5), lambda i, j: i < 4 - j // 2),
          ((33, 17), lambda i, j: i < 20 * (1 - (j / 16) ** 2)),
          ((100, 37), lambda i, j: (i - 40) ** 2 + (j - 18) ** 2 < 30 ** 2),
          ((129, 65), lambda i, j: i < 60 + 30 * math.sin(j / 9))]


@pytest.mark.parametrize("shape, stable", SHAPES)
def test_a_smooth_region_is_mapped_exactly_on_uneven_lattices(shape, stable):
    m = _walk(shape, stable)
    assert (m.fill() == _truth(shape, stable)).all()
    assert all(0 <= i < shape[0] and 0 <= j < shape[1] for i, j in m.seen)
    audited, agreed = m.audit_agreed()
    assert audited == 4 and agreed == 4 and not m.wanted()
    if shape[0] * shape[1] > 2000:
        assert len(m.seen) < 0.35 * shape[0] * shape[1]


def test_an_audit_that_disagrees_is_refined_around():
    # an unstable island smaller than a coarse leaf, inside the stable region: the corners
    # miss it; with every filled point audited, the audits find it and the map refines it
    shape = (33, 33)
    stable = lambda i, j: i < 28 and not (10 <= i <= 12 and 10 <= j <= 11)  # noqa: E731
    blind = _walk(shape, stable, audits=0)
    assert (blind.fill() != _truth(shape, stable)).sum() == 6  # missed: nothing looked there
    seen = _walk(shape, stable, audits=10_000)
    assert (seen.fill() == _truth(shape, stable)).all()
    audited, agreed = seen.audit_agreed()
    assert 0 < audited - agreed <= 6


def test_the_audit_draw_is_seeded_by_the_key():
    shape, stable = SHAPES[1]
    a, b, c = (_walk(shape, stable, key=k) for k in ("x", "x", "y"))
    assert a.audit_fill == b.audit_fill != c.audit_fill
    assert sorted(a.seen) == sorted(b.seen)


def test_replay_of_a_part_asks_for_the_rest_of_the_same_batch():
    shape, stable = SHAPES[1]
    whole = _walk(shape, stable)
    part = dict(list(whole.seen.items())[: len(whole.seen) // 2])
    m = replay(LatticeMap(shape, 2, 4, key="k"), lambda p: part.get(p))
    rest = m.wanted()
    assert rest and not set(rest) & set(m.seen) and set(rest) <= set(whole.seen)
    replay(m, lambda p: "stable" if stable(*p) else "diverged")
    assert m.seen == whole.seen and m.rounds == whole.rounds


def test_a_failed_probe_stops_the_map_until_a_rerun():
    m = LatticeMap((9, 9), 1, 0)
    for p in m.wanted():
        m.record(p, "failed" if p == (0, 0) else "stable")
    assert m.wanted() == []


def test_the_estimate_is_a_few_percent_of_a_fine_lattice():
    assert estimate((512, 512), 4, 8) < 0.02 * 512 * 512
    assert estimate((9, 5), 1, 2) <= 45


# ---------------------------------------------------------------------------- the kind
def _spec(**search):
    return parse_spec({"name": "m", "trial": TOY, "space": SPACE, "search": {**SEARCH, **search}})


def test_check_names_the_estimate_beside_the_grid():
    text = _spec().describe()
    assert "2 maps of 33 alpha × 17 beta" in text and "stands for has 1122 trials" in text
    assert "at most 1122" in text
    assert "at most 100" in _spec(max_trials=100).describe()


def test_plan_replays_the_store_and_asks_for_the_same_next_batch():
    spec = _spec()
    kind = spec.search_kind
    oracle = lambda c: c.alpha < 1.5 - c.beta  # noqa: E731
    rows = []
    for _ in range(3):  # three rounds, stored as rows
        p = kind.plan(spec, rows, False)
        for q in p.todo:
            cfg = trial_config(spec, q)
            ok = oracle(cfg)
            rows.append({"trial_id": trial_id(cfg), **cfg.flat(), "initial_loss": 1.0,
                         "status": "completed" if ok else "diverged",
                         "final_loss": 0.5 if ok else math.inf, "best_loss": 0.5,
                         "end_rise": 0.0})
    p = kind.plan(spec, rows, False)
    assert p.done == len(rows) and p.todo
    ids = {r["trial_id"] for r in rows}
    assert not any(trial_id(trial_config(spec, q)) in ids for q in p.todo)
    assert kind.plan(spec, rows[: len(rows) - 3], False).to_sample > p.to_sample
    capped = _spec(max_trials=len(rows))
    assert capped.search_kind.plan(capped, rows, False).to_sample == 0


def _drive(spec, slots: int, rows=(), asked=None) -> tuple[int, int, list]:
    """Run the kind's searcher against an oracle, ``slots`` Tune trials at a time, over the
    stored ``rows``; (Tune trials, probes, the maps). ``asked`` collects the trial_ids run."""
    from sweeps.tune.trial import pack_configs

    kind = spec.search_kind
    plan = kind.plan(spec, list(rows), False)
    searcher = kind.tune(spec, plan, out="/nonexistent").searcher
    searcher.set_search_properties("objective", "min", {})
    running, n_tune, probes, k = {}, 0, 0, 0
    while True:
        while len(running) < slots:
            config = searcher.suggest(f"t{k}")
            if not isinstance(config, dict):
                break
            running[f"t{k}"], k = config, k + 1
        if not running:
            assert config == "FINISHED"
            return n_tune, probes, plan.state
        tid, config = running.popitem()
        rows = []
        for cfg in pack_configs(spec, config):
            if asked is not None:
                asked.append(trial_id(cfg))
            ok = cfg.alpha < 1.5 - cfg.beta
            rows.append([trial_id(cfg), "completed" if ok else "diverged",
                         0.5 if ok else math.inf, 0.5, 1.0, 0.0])
        result = ({"status": "completed", "members": json.dumps(rows)} if "pack" in config else
                  dict(zip(("trial_id", "status", "final_loss", "best_loss", "initial_loss",
                            "end_rise"), rows[0])))
        searcher.on_trial_complete(tid, result)
        n_tune, probes = n_tune + 1, probes + len(rows)


@pytest.mark.parametrize("pack", [1, 64, 4096])
def test_the_searcher_sends_rounds_as_batches_and_ends_with_the_replayed_map(pack):
    spec = parse_spec({"name": "m", "trial": TOY, "space": SPACE, "search": SEARCH,
                       "resources": {"cpu": 1, "gpu": 0, "pack": pack}})
    n_tune, probes, maps = _drive(spec, slots=2)
    oracle = lambda i, j: SPACE_VALUES[0][i] < 1.5 - SPACE_VALUES[1][j]  # noqa: E731
    for m in maps:
        assert not m.lattice.wanted()
        again = _walk((33, 17), oracle, SEARCH["coarse"], SEARCH["audits"], m.lattice.key)
        assert m.lattice.seen.keys() == again.seen.keys()
    assert probes == sum(len(m.lattice.seen) for m in maps)
    if pack == 4096:  # one pack a round, both maps (R = 0, 3) in it
        assert n_tune == max(m.lattice.rounds for m in maps)


def _oracle_row(spec, point) -> dict:
    cfg = trial_config(spec, point)
    ok = cfg.alpha < 1.5 - cfg.beta
    return {"trial_id": trial_id(cfg), **cfg.flat(), "initial_loss": 1.0, "best_loss": 0.5,
            "status": "completed" if ok else "diverged", "final_loss": 0.5 if ok else math.inf,
            "end_rise": 0.0}


def test_points_a_grid_already_stored_are_read_not_run():
    # the rows of a grid on every other α of the lattice (a coarser grid of the same space)
    spec = _spec()
    a, b = SPACE_VALUES
    rows = [_oracle_row(spec, {"alpha": x, "beta": y, "R": r, "seed": 0})
            for x in a[::2] for y in b for r in (0, 3)]
    asked: list = []
    _, probes, maps = _drive(spec, 2, rows, asked)
    stored = {r["trial_id"] for r in rows}
    assert asked and not set(asked) & stored and len(asked) == len(set(asked))
    fresh = [m for m in _drive(spec, 2)[2]]
    assert [m.lattice.seen for m in maps] == [m.lattice.seen for m in fresh]


@pytest.mark.parametrize("search, space, match", [
    ({"axes": ["alpha"]}, {}, r"search.axes: expected two different space axes"),
    ({"axes": ["alpha", "H"]}, {}, r"search.axes: 'H' must be an axis of space"),
    ({}, {"alpha": [2.0, 1.0, 3.0]}, r"space.alpha: a map's axis needs increasing numbers"),
    ({"coarse": 30}, {}, r"search.coarse: at most 20"),
    ({"audits": -1}, {}, r"search.audits: expected an integer >= 0"),
    ({"max_trials": 0}, {}, r"search.max_trials: expected an integer >= 1"),
    ({"resolution": 0.1}, {}, r"search.resolution: only for search kind boundary"),
])
def test_bad_map_sections_are_refused(search, space, match):
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "m", "trial": TOY, "space": {**SPACE, **space},
                    "search": {"kind": "map", **search}})


# ---------------------------------------------------------------------------- real Ray
@pytest.fixture(scope="module")
def env():
    with ray_env() as e:
        yield e


def _write(tmp: Path, out: Path, name: str, search: dict, pack: int = 1) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(json.dumps({"name": name, "trial": TOY, "space": SPACE, "search": search,
                             "resources": {"cpu": 1, "gpu": 0, "pack": pack},
                             "output": str(out)}))
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    tmp = tmp_path_factory.mktemp("map")
    procs = [start_run(_write(tmp, tmp / "out", "toy-grid", {"kind": "grid"}, pack=561), env,
                  tmp / "grid.log")]
    assert procs[0].wait(timeout=600) == 0, (tmp / "grid.log").read_text()[-3000:]
    p = start_run(_write(tmp, tmp / "out", "toy-map", SEARCH), env, tmp / "map.log")
    assert p.wait(timeout=900) == 0, (tmp / "map.log").read_text()[-3000:]
    return tmp / "out" / "toy-grid", tmp / "out" / "toy-map"


def _map_of(folder: Path) -> pd.DataFrame:
    meta = json.loads((folder / "sweep.json").read_text())
    cells = map_cells(rebuild_maps(load_trials(folder), meta["search"]), meta["search"])
    return cells.sort_values(["R", "seed", "alpha", "beta"]).reset_index(drop=True)


@pytest.mark.ray
def test_the_toy_map_agrees_with_its_grid(runs):
    grid_dir, map_dir = runs
    grid = load_trials(grid_dir).sort_values(["R", "seed", "alpha", "beta"])
    probes = load_trials(map_dir)
    cells = _map_of(map_dir)
    assert len(grid) == len(cells) == 1122 and probes["trial_id"].is_unique
    assert set(probes["trial_id"]) <= set(grid["trial_id"])  # every probe is a grid point
    from analysis.stability import label
    truth = label(grid)["stable"].to_numpy()
    assert (cells["stable"].to_numpy() == truth).mean() >= 0.995
    assert len(probes) <= 0.35 * len(grid)
    keys = ["R", "seed", "beta"]
    eg = line_edges(grid).set_index(keys).sort_index()
    em = line_edges(filled_trials(cells)).set_index(keys).sort_index()
    alphas = np.sort(grid["alpha"].unique())
    step = np.abs(np.searchsorted(alphas, em["edge"].fillna(0)) -
                  np.searchsorted(alphas, eg["edge"].fillna(0)))
    assert step.max() <= 1, pd.concat([eg["edge"], em["edge"]], axis=1)
    # the picture carries its own key (its PNG is read alone) and spans the lattice exactly
    from analysis.map_report import _map_figure

    fig = _map_figure(cells[(cells["R"] == 0) & (cells["seed"] == 0)], "alpha", "beta", "m")
    assert {t.name for t in fig.data if t.showlegend is not False} >= {
        "measured stable", "filled stable", "measured not stable", "filled not stable"}
    assert fig.layout.xaxis.range == (-0.5, 32.5) and fig.layout.yaxis.range == (-0.5, 16.5)


@pytest.mark.ray
@pytest.mark.slow
def test_killed_then_rerun_ends_with_the_same_map_and_no_probe_twice(tmp_path, env, runs):
    out = tmp_path / "out"
    folder = out / "toy-map"
    spec = _write(tmp_path, out, "toy-map", SEARCH)
    kill_once_stored(start_run(spec, env, tmp_path / "run1.log"), folder / "trials", 60,
                     tmp_path / "run1.log")
    before = {f.name: f.stat().st_mtime_ns for f in (folder / "trials").glob("*.parquet")}
    assert 60 <= len(before) < len(list((runs[1] / "trials").glob("*.parquet")))
    p = start_run(spec, env, tmp_path / "run2.log")
    assert p.wait(timeout=900) == 0, (tmp_path / "run2.log").read_text()[-3000:]
    after = {f.name: f.stat().st_mtime_ns for f in (folder / "trials").glob("*.parquet")}
    assert all(after[k] == v for k, v in before.items())  # nothing stored was trained again
    resumed, once = load_trials(folder), load_trials(runs[1])
    assert resumed["trial_id"].is_unique and set(resumed["trial_id"]) == set(once["trial_id"])
    pd.testing.assert_frame_equal(_map_of(folder), _map_of(runs[1]))


def test_a_capped_map_says_where_it_stopped_and_shows_what_it_has():
    from analysis.map_report import render_map

    spec = _spec(max_trials=120)
    kind = spec.search_kind
    rows: list = []
    while (p := kind.plan(spec, rows, False)).to_sample:  # rounds until the cap
        for q in p.todo[: p.to_sample]:
            cfg = trial_config(spec, q)
            ok = cfg.alpha < 1.5 - cfg.beta
            rows.append({"trial_id": trial_id(cfg), **cfg.flat(), "initial_loss": 1.0,
                         "status": "completed" if ok else "diverged",
                         "final_loss": 0.5 if ok else math.inf, "best_loss": 0.5,
                         "end_rise": 0.0})
    assert len(rows) == 120
    text = render_map(pd.DataFrame(rows), {"search": kind.about(spec)}, "m")
    assert "2 of 2 maps are unfinished: the max_trials cap (120) was reached" in text
    assert "R=0, seed=0 at round" in text and "measured, filled, audited" in text
