"""The progress estimate: from measured trial times per slot, rough until enough have finished."""

import pytest

from sweeps.progress import Estimate


def _sweep(total: int, slots: int, trial_s: float, start_s: float, until: int) -> Estimate:
    """Run a steady sweep on paper: Ray takes start_s to start, then `slots` trials of trial_s
    at a time; stop after `until` trials have finished. Returns the estimate at that moment."""
    e, t, running, started, finished = Estimate(total), start_s, [], 0, 0
    while finished < until:
        while len(running) < slots and started < total:
            e.started(started, t)
            running.append((t + trial_s, started))
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
