"""The boundary search: bisection per line, replay from the store, ragged lines, the toy edge.

Unit tests drive ``Line`` with an oracle (stable below α*); the Ray tests run real toy trials
through ``diloco-sweep run`` and compare every line's edge with the linearized theory's
(analysis.theory), then kill a run and check that the rerun ends with the same edges and
trains no probe twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load_trials
from conftest import kill_once_stored, ray_env, start_run
from analysis.lines import edge_ratios, line_edges, ratio_summary
from analysis.theory import max_rate, power_law_spectrum
from sweeps.search.boundary import BoundarySettings, Line
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import trial_id
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 200, "toy_power": 1.0, "toy_noise": 0.0, "toy_batch": 0,
       "lr": 0.5, "outer": "nesterov", "workers": 1, "outer_steps": 100,
       "diverge_factor": 10.0, "threads": 1}
# rise 5: a probe is unstable when it diverges or climbs 6x over its running minimum, the
# theory's notion (a rate above 1); the 10% default also counts the transient growth of a
# non-normal outer step, which the rate does not predict (docs/results/toy.md)
SEARCH = {"kind": "boundary", "axis": "alpha", "low": 0.25, "high": 4.0, "resolution": 0.05,
          "rise": 5.0}
SPACE = {"beta": [0.0, 0.8], "H": [4], "R": [0, 3], "seed": [0]}


def _walk(s: BoundarySettings, stable) -> Line:
    line = Line({})
    while wanted := line.wanted(s):
        for a in wanted:
            line.seen[a] = "stable" if stable(a) else "diverged"
    return line


@pytest.mark.parametrize("edge", [0.3, 0.77, 1.0, 2.5, 3.99])
def test_bisection_brackets_the_edge_to_the_resolution(edge):
    s = BoundarySettings(low=0.25, high=4.0, resolution=0.05)
    line = _walk(s, lambda a: a < edge)
    lo, hi = line.bracket()
    assert lo < edge <= hi and hi / lo - 1 <= 0.05
    assert len(line.seen) <= s.max_probes()
    assert s.narrow(hi, s.high) or sum(a > hi for a in line.seen) >= 1  # looked above it


def test_ends_decide_lines_outside_the_range():
    s = BoundarySettings(low=0.25, high=4.0, resolution=0.05)
    assert sorted(_walk(s, lambda a: True).seen) == [0.25, 4.0]        # edge ≥ high
    below = _walk(s, lambda a: False)
    assert min(below.seen) == 0.25 and below.bracket() == (None, 0.25)


def test_a_failed_probe_ends_the_line_until_a_rerun():
    s = BoundarySettings(low=0.25, high=4.0)
    line = Line({}, {0.25: "stable", 4.0: "failed"})
    assert line.wanted(s) == []


def test_linear_axis_bisects_by_halves():
    s = BoundarySettings(axis="beta", low=0.0, high=0.99, log=False, resolution=0.02)
    line = _walk(s, lambda b: b < 0.9)
    lo, hi = line.bracket()
    assert lo < 0.9 <= hi and (hi - lo) / 0.99 <= 0.02


def test_ragged_line_is_reported_not_smoothed():
    # stable below 1, unstable in [1, 2), stable again in [2, 3): the check above finds it
    s = BoundarySettings(low=0.25, high=4.0, resolution=0.05, check_above=3)
    line = _walk(s, lambda a: a < 1.0 or 2.0 <= a < 3.0)
    rows = pd.DataFrame([{"alpha": a, "beta": 0.9, "seed": 0, "R": 0, "status": "completed",
                          "initial_loss": 1.0, "final_loss": 0.5 if w == "stable" else 2.0,
                          "rise": 0.0 if w == "stable" else 1.0} for a, w in line.seen.items()])
    lines = line_edges(rows)
    assert len(lines) == 1
    assert bool(lines["ragged"].iloc[0]) and lines["edge_kind"].iloc[0] == "exact"
    assert lines["edge"].iloc[0] < 1.0 <= lines["first_unstable"].iloc[0]


def test_replay_from_stored_rows_asks_for_the_same_next_probe():
    spec = parse_spec({"name": "b", "trial": TOY, "space": {"beta": [0.5]}, "search": SEARCH})
    kind, s = spec.search_kind, spec.search.settings
    oracle = lambda a: a < 1.3  # noqa: E731
    rows, line = [], Line({"beta": 0.5})
    for _ in range(4):  # four rounds of probes, stored as rows
        for a in line.wanted(s):
            line.seen[a] = "stable" if oracle(a) else "diverged"
            cfg = trial_config(spec, {"beta": 0.5, "alpha": a})
            rows.append({"trial_id": trial_id(cfg), **cfg.flat(), "initial_loss": 1.0,
                         "status": "completed" if oracle(a) else "diverged",
                         "final_loss": 0.5 if oracle(a) else math.inf, "rise": 0.0})
    p = kind.plan(spec, rows, False)
    assert p.done == len(rows)
    assert [q["alpha"] for q in p.todo] == line.wanted(s)
    assert p.state[0].seen == line.seen


@pytest.mark.parametrize("search, match", [
    ({"low": 2.0, "high": 1.0}, "low < high"),
    ({"low": -1.0, "high": 1.0}, "search.low: expected a finite number > 0"),
    ({"axis": "beta", "low": 0.0, "high": 0.9}, "0 < low < high"),
    ({"low": 0.1, "high": 1.0, "axis": "H"}, "search.axis: 'H' is not a float"),
    ({"low": 0.1, "high": 1.0, "resolution": 0}, "search.resolution: expected a number in"),
    ({"low": 0.1, "high": 1.0, "check_above": 99}, "search.check_above: at most 16"),
    ({"low": 0.1}, "search.high: expected a number"),
])
def test_bad_boundary_sections_are_refused(search, match):
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "b", "search": {"kind": "boundary", **search}})


def test_the_axis_cannot_also_be_swept():
    with pytest.raises(SpecError, match="space.alpha: the boundary search varies alpha itself"):
        parse_spec({"name": "b", "space": {"alpha": [1.0]},
                    "search": {"kind": "boundary", "low": 0.1, "high": 1.0}})


def test_check_names_the_probe_budget_beside_a_grid():
    spec = parse_spec({"name": "b", "trial": TOY, "space": SPACE, "search": SEARCH})
    text = spec.describe()
    assert "4 lines × at most 10 probes" in text and "a grid as fine has 232 trials" in text


# ---------------------------------------------------------------------------- real Ray
def _predicted_edge(beta: float, H: int, R: int) -> float:
    lams = power_law_spectrum(TOY["toy_dim"], TOY["toy_power"])
    lo, hi = 1e-3, 50.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if max_rate([mid], [beta], lams, TOY["lr"], H, R)[0][0] < 1:
            lo = mid
        else:
            hi = mid
    return lo


@pytest.fixture(scope="module")
def env():
    with ray_env() as e:
        yield e


def _write(tmp: Path, out: Path) -> Path:
    p = tmp / "toy-boundary.yaml"
    p.write_text(json.dumps({"name": "toy-boundary", "trial": TOY, "space": SPACE,
                             "search": SEARCH, "output": str(out)}))
    return p


@pytest.fixture(scope="module")
def whole(tmp_path_factory, env):
    tmp = tmp_path_factory.mktemp("boundary")
    p = start_run(_write(tmp, tmp / "out"), env, tmp / "run.log")
    assert p.wait(timeout=400) == 0, (tmp / "run.log").read_text()[-3000:]
    return tmp / "out" / "toy-boundary"


@pytest.mark.ray
def test_toy_edges_agree_with_the_theory_on_every_line(whole):
    trials = load_trials(whole)
    lines = line_edges(trials, rise=SEARCH["rise"])
    assert len(lines) == 4 and (lines["edge_kind"] == "exact").all()
    assert not lines["ragged"].any()
    for _, line in lines.iterrows():
        want = _predicted_edge(line["beta"], int(line["H"]), int(line["R"]))
        assert line["edge"] <= want <= line["first_unstable"], (line.to_dict(), want)
        assert line["first_unstable"] / line["edge"] - 1 <= SEARCH["resolution"] + 1e-9
    assert len(trials) <= 4 * 10 and trials["trial_id"].is_unique
    gains = ratio_summary(edge_ratios(lines))
    assert len(gains) == 1 and gains["lines"].iloc[0] == 2


@pytest.mark.ray
@pytest.mark.slow
def test_killed_then_rerun_ends_with_the_same_edges_and_no_probe_twice(tmp_path, env, whole):
    out = tmp_path / "out"
    folder = out / "toy-boundary"
    spec = _write(tmp_path, out)
    kill_once_stored(start_run(spec, env, tmp_path / "run1.log"), folder / "trials", 12,
                     tmp_path / "run1.log")
    before = {f.name: f.stat().st_mtime_ns for f in (folder / "trials").glob("*.parquet")}
    assert 12 <= len(before) < len(list((whole / "trials").glob("*.parquet")))
    p = start_run(spec, env, tmp_path / "run2.log")
    assert p.wait(timeout=400) == 0, (tmp_path / "run2.log").read_text()[-3000:]
    after = {f.name: f.stat().st_mtime_ns for f in (folder / "trials").glob("*.parquet")}
    assert all(after[k] == v for k, v in before.items())  # nothing stored was trained again
    resumed, once = load_trials(folder), load_trials(whole)
    assert resumed["trial_id"].is_unique and set(resumed["trial_id"]) == set(once["trial_id"])
    cols = ["beta", "H", "R", "seed", "edge", "first_unstable", "ragged"]
    a = line_edges(resumed, rise=SEARCH["rise"])[cols].sort_values(cols[:4]).reset_index(drop=True)
    b = line_edges(once, rise=SEARCH["rise"])[cols].sort_values(cols[:4]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("intervals, lead", [
    ([(1.1, 1.3)], "Yes: restarts raise"),
    ([(0.8, 0.9)], "No, the opposite"),
    ([(0.9, 1.1)], "No measurable effect"),
    ([(0.8, 0.95), (0.97, 1.05)], "No: restarts lower the stable α edge in some settings"),
    ([(1.1, 1.2), (0.97, 1.05)], "In part: restarts raise"),
    ([(1.1, 1.2), (0.8, 0.9)], "Mixed"),
])
def test_the_answer_says_what_the_intervals_say(intervals, lead):
    from analysis.boundary_report import boundary_answer

    gains = pd.DataFrame([{"H": 4 * (i + 1), "R": 3, "gain": (lo * hi) ** 0.5, "gain_lo": lo,
                           "gain_hi": hi, "lines": 6, "exact": 6, "raised": 3, "same": 0,
                           "lowered": 3, "unknown": 0, "ragged": 0}
                          for i, (lo, hi) in enumerate(intervals)])
    lines = pd.DataFrame({"R": [0, 3], "ragged": [False, False]})
    text = boundary_answer({"gains": gains, "lines": lines, "rise": 0.1})
    assert text.startswith(lead), text


def _combined(tmp_path: Path, with_grid_run: bool) -> Path:
    """The committed boundary probes and the main job's grid rows in one store."""
    import shutil

    from sweeps.spec.parse import load_spec

    folder = tmp_path / "restart-boundary"
    for src in ("restart-boundary", "restart-cpu"):
        for sub in ("trials", "curves"):
            dst = folder / sub
            dst.mkdir(parents=True, exist_ok=True)
            for f in (ROOT / "docs/results" / src / sub).glob("*.parquet"):
                if not (dst / f.name).exists():
                    shutil.copyfile(f, dst / f.name)
    meta = json.loads((ROOT / "docs/results/restart-boundary/sweep.json").read_text())
    if with_grid_run:
        grid = load_spec(ROOT / "sweeps/specs/restart_cpu.yaml")
        meta["runs"] = [{"search": grid.search_kind.about(grid)}] + meta["runs"]
    (folder / "sweep.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("with_grid_run", [True, False])
def test_probes_are_drawn_over_the_grid_the_store_also_holds(tmp_path, with_grid_run):
    from analysis import write_report

    page = write_report(_combined(tmp_path, with_grid_run), tmp_path / "r.html").read_text()
    assert ("The probes over the grid" in page) == with_grid_run
    assert ("probe: not stable" in page) == with_grid_run
    assert "Restart gain: ratio of α edges" in page


def test_a_probe_is_judged_by_where_it_ended():
    """The search decides with trainer.result.outcome, as the analysis labels: a probe that
    spiked and came back down is stable, one that stayed up blew up; a row written before the
    end_rise column gets it from its own final and best loss."""
    from sweeps.search.boundary import word_of_row

    back = dict(status="completed", initial_loss=5.5, final_loss=3.36, best_loss=3.36,
                rise=0.43, end_rise=0.0)
    up = dict(back, final_loss=4.20, best_loss=3.47, end_rise=4.20 / 3.47 - 1)
    assert word_of_row(back, 0.1) == "stable" and word_of_row(up, 0.1) == "blew_up"
    old = {k: v for k, v in up.items() if k != "end_rise"}
    assert word_of_row(old, 0.1) == "blew_up" and word_of_row(old, 0.25) == "stable"
    assert word_of_row(None, 0.1) == "failed"
