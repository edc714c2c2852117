"""The progress estimate: from measured trial times per slot, rough until enough have finished."""

import io
from typing import Callable

import pytest

from sweeps.tune.progress import Estimate, format_line, hms, make_progress


def _sweep(total: int, slots: int, trial_s: float | Callable[[int], float], start_s: float,
           until: int) -> Estimate:
    """Run a sweep on paper: Ray takes start_s to start, then `slots` trials at a time, each of
    trial_s seconds (or trial_s(i) for the i-th trial started: a machine whose load changes);
    stop after `until` trials have finished. Returns the estimate at that moment."""
    e, t, running, started, finished = Estimate(total), start_s, [], 0, 0
    while finished < until:
        while len(running) < slots and started < total:
            e.started(started, t)
            running.append((t + (trial_s(started) if callable(trial_s) else trial_s), started))
            started += 1
        end, key = min(running)
        running.remove((end, key))
        t = end
        e.finished(key, t)
        finished += 1
    e.now = t
    return e


def test_first_trial_does_not_count_rays_start_up_as_trial_time():
    # the case: 144 trials, 2 at a time, ~10 s each, 40 s before the first one starts;
    # elapsed/finished said 2 hours after the first trial, the truth is 143 × 10 / 2 ≈ 12 min
    e = _sweep(total=144, slots=2, trial_s=10.0, start_s=40.0, until=1)
    truth = 143 * 10.0 / 2
    assert e.left(e.now) == pytest.approx(truth, rel=0.02)
    assert e.rough


def test_estimate_holds_through_the_sweep_and_ends_at_zero():
    for done in (10, 72, 143):
        e = _sweep(total=144, slots=2, trial_s=10.0, start_s=40.0, until=done)
        assert e.left(e.now) == pytest.approx((144 - done) * 10.0 / 2, abs=10.0)
        assert not e.rough
    assert _sweep(144, 2, 10.0, 40.0, until=144).left(0.0) == 0.0


def test_rough_until_two_trials_per_slot_have_finished():
    assert _sweep(total=100, slots=4, trial_s=5.0, start_s=0.0, until=7).rough
    assert not _sweep(total=100, slots=4, trial_s=5.0, start_s=0.0, until=8).rough
    assert _sweep(total=100, slots=1, trial_s=5.0, start_s=0.0, until=2).rough  # at least 3
    assert not _sweep(total=100, slots=1, trial_s=5.0, start_s=0.0, until=3).rough


def test_nothing_timed_yet_is_no_estimate_and_stored_rows_are_not_durations():
    e = Estimate(4)
    assert e.left(5.0) is None
    e.started("a", 0.0)
    e.finished("a", 0.01, timed=False)  # a row stored before: no work, no duration
    assert e.left(1.0) is None and e.done == 1


def _truth(total: int, slots: int, trial_s: Callable[[int], float], done: int) -> float:
    """Seconds the paper sweep above still runs after its `done`-th trial finished."""
    end = _sweep(total, slots, trial_s, 0.0, total).now
    return end - _sweep(total, slots, trial_s, 0.0, done).now


def test_the_estimate_follows_a_machine_that_gets_busier():
    # 216 trials, 2 at a time: 4 s each, then from trial 100 on the load doubles them (8 s);
    # 30 trials later the whole-sweep mean says ~5 s a trial, the machine now does 8
    def slow_down(i: int) -> float:
        return 4.0 if i < 100 else 8.0
    e = _sweep(total=216, slots=2, trial_s=slow_down, start_s=0.0, until=130)
    truth = _truth(216, 2, slow_down, 130)
    plain = sum(e.durations) / len(e.durations) * (216 - 130) / 2
    assert e.left(e.now) == pytest.approx(truth, rel=0.1)
    assert abs(plain - truth) / truth > 0.25  # what the plain mean said: the test can fail


def test_the_estimate_tracks_a_slowly_growing_load():
    # the 19-minute creep: every trial a little slower than the one before (3 s to 13 s)
    def creep(i: int) -> float:
        return 3.0 + 10.0 * i / 216
    for done in (60, 120, 180):
        e = _sweep(total=216, slots=2, trial_s=creep, start_s=0.0, until=done)
        now_rate = creep(done) * (216 - done) / 2     # the load now, held for the rest
        plain = sum(e.durations) / len(e.durations) * (216 - done) / 2
        assert abs(e.left(e.now) - now_rate) < 0.5 * abs(plain - now_rate), done


def test_format_line_says_rough_and_the_command_elapsed_time():
    line = format_line(10, {"completed": 1}, 1, elapsed=73.0, last="completed x", left=30.0,
                       rough=True)
    assert "elapsed 1:13" in line and "ETA ~0:30 (rough" in line
    assert "ETA 0:30 ·" in format_line(10, {"completed": 9}, 1, 73.0, "x", 30.0, rough=False)
    assert hms(3725) == "1:02:05"


def test_an_adaptive_search_counts_against_its_most_and_says_so():
    """A boundary or map search may stop well before its most trials: the line bounds the
    count and the estimate, it does not forecast them."""
    line = format_line(280, {"completed": 5}, 2, 60.0, "x", left=300.0, at_most=True)
    assert "5/≤280 trials" in line and "ETA ≤5:00 (an adaptive search: it may stop sooner)" in line
    rough = format_line(280, {"completed": 1}, 2, 9.0, "x", left=60.0, rough=True, at_most=True)
    assert "ETA ≤1:00 (rough" in rough
    done = format_line(3, {"completed": 3}, 0, 9.0, "x", left=0.0, at_most=True)
    assert "3/≤3 trials" in done and "stop sooner" not in done


def test_elapsed_counts_from_the_command_start_not_from_the_callback():
    pytest.importorskip("ray.tune")
    cb = make_progress(4, io.StringIO(), t0=1000.0)
    assert cb.t0 == 1000.0
    assert make_progress(4, io.StringIO()).t0 > 1000.0  # default: now

