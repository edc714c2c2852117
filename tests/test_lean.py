"""The driver drops a completed trial's metric windows (sweeps/tune/lean.py); an errored one keeps
them, for Tune's retry (docs/performance.md, "Driver memory")."""

from __future__ import annotations

from types import SimpleNamespace

from sweeps.tune.lean import KEEP_WINDOWS_ENV, lean_trials


def _trial():
    meta = SimpleNamespace(metric_n_steps={"loss": {"5": [1.0], "10": [1.0]}},
                           metric_analysis={"loss": {"max": 1.0}})
    return SimpleNamespace(run_metadata=meta)


def test_a_completed_trial_loses_its_windows_an_errored_one_keeps_them(monkeypatch) -> None:
    monkeypatch.delenv(KEEP_WINDOWS_ENV, raising=False)
    cb, done, erred = lean_trials(), _trial(), _trial()
    cb.on_trial_complete(iteration=1, trials=[done, erred], trial=done)
    cb.on_trial_error(iteration=1, trials=[done, erred], trial=erred)
    assert done.run_metadata.metric_n_steps == {} and done.run_metadata.metric_analysis == {}
    assert erred.run_metadata.metric_n_steps["loss"]["5"] == [1.0]
    cb.on_trial_complete(iteration=1, trials=[], trial=SimpleNamespace())  # no metadata: fine
    monkeypatch.setenv(KEEP_WINDOWS_ENV, "1")  # the benchmark's baseline
    kept = _trial()
    lean_trials().on_trial_complete(iteration=1, trials=[kept], trial=kept)
    assert kept.run_metadata.metric_n_steps["loss"]["10"] == [1.0]
