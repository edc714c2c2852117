"""One driver per Optuna study (sweeps/search/study.py): shared studies raced and killed for real.

- Lock and lease in this process (no Ray): a second holder of a journal or SQLite study is
  refused naming the first; a lease on a database server (tried here on SQLite) likewise, and
  a stale lease is taken over; the trials left RUNNING are marked FAIL when a study is taken.
- Two ``python -m sweeps run`` drivers started at the same moment on one study (a journal, a
  fresh SQLite file: the schema race), each into its own output: one runs, the other is
  refused with exit 1 naming the first and writes nothing; no parameters are trained twice.
- A driver SIGKILLed while its study has a trial RUNNING; the same command again: the
  trial is marked FAIL, the sweep finishes, every trial_id once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import kill_group
from sweeps.store.errors import StudyBusyError
from sweeps.search.sampler import make_storage
from sweeps.search.study import LEASE_KEY, hold_study

ROOT = Path(__file__).resolve().parents[1]
TOY = {"kind": "toy", "toy_dim": 2000, "lr": 0.5, "H": 4, "workers": 4, "outer_steps": 400,
       "threads": 1}
"""About a second of compute: a trial is still running when the test looks."""


def _storage(kind: str, tmp: Path) -> str:
    return str(tmp / "study" / "journal.log") if kind == "journal" \
        else f"sqlite:///{tmp / 'study' / 'study.db'}"


def _study(uri: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=make_storage(uri))


def _running_trial(uri: str, name: str) -> None:
    """A study with one trial asked and never told: what a killed driver leaves."""
    import optuna

    study = optuna.create_study(storage=make_storage(uri), study_name=name,
                                load_if_exists=True)
    study.ask({"alpha": optuna.distributions.FloatDistribution(0.1, 1.0)})


# ------------------------------------------------------------------ in this process, no Ray
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_held_study_refuses_a_second_driver_and_fails_what_a_dead_one_left(tmp_path, kind):
    uri = _storage(kind, tmp_path)
    _running_trial(uri, "s")
    lines: list[str] = []
    with hold_study(uri, "s", "/out/a", lines.append, make_storage):
        assert any("1 trial(s) left RUNNING by a driver that died marked FAIL" in x
                   for x in lines), lines
        with pytest.raises(StudyBusyError, match=rf"study 's' in .* is already being driven by "
                                                 rf"pid {os.getpid()} .* for the sweep at "
                                                 rf"/out/a; .*Wait for it to finish"):
            with hold_study(uri, "s", "/out/b", lines.append, make_storage):
                pass
        with hold_study(uri, "other", "/out/c", lines.append, make_storage):
            pass  # another study in the same file is free
    with hold_study(uri, "s", "/out/b", lines.append, make_storage):
        pass  # released at the end
    from optuna.trial import TrialState

    assert [t.state for t in _study(uri, "s").trials] == [TrialState.FAIL]


def test_a_lease_on_a_database_refuses_a_second_driver_and_a_stale_one_is_taken_over(tmp_path):
    import optuna

    uri = _storage("sqlite", tmp_path)  # the lease, as on PostgreSQL or MySQL
    lines: list[str] = []
    with hold_study(uri, "s", "/out/a", lines.append, make_storage, lease=True):
        with pytest.raises(StudyBusyError, match=r"already being driven by pid .* for the "
                                                 r"sweep at /out/a.*this study is free"):
            with hold_study(uri, "s", "/out/b", lines.append, make_storage, lease=True):
                pass
    storage = make_storage(uri)
    sid = storage.get_study_id_from_name("s")
    assert storage.get_study_system_attrs(sid).get(LEASE_KEY) is None  # given back
    # a driver on another host that stopped beating 2 minutes ago, its trial still RUNNING
    storage.set_study_system_attr(sid, LEASE_KEY, {"pid": 1, "host": "elsewhere", "token": "x",
                                                   "beat": time.time() - 120})
    _running_trial(uri, "s")
    with hold_study(uri, "s", "/out/b", lines.append, make_storage, lease=True):
        pass
    assert any("taken over (pid 1 on host elsewhere" in x for x in lines), lines
    states = {t.state for t in optuna.load_study(study_name="s", storage=storage).trials}
    assert states == {optuna.trial.TrialState.FAIL}


# ------------------------------------------------------------------ real drivers
def _spec(tmp: Path, out: str, storage: str, n: int, file: str) -> Path:
    spec = {"name": "shared", "trial": TOY, "output": str(tmp / out),
            "space": {"alpha": {"low": 0.2, "high": 1.2}, "beta": [0.0, 0.5, 0.9]},
            "search": {"kind": "optuna", "sampler": "random", "seed": 0, "num_samples": n,
                       "storage": storage}}
    p = tmp / file
    p.write_text(json.dumps(spec))
    return p


def _start(spec: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report",
                             "--max-concurrent", "1"], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(p: subprocess.Popen) -> None:
    kill_group(p)
    p.wait(timeout=30)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_drivers_at_once_on_one_study_one_runs_the_other_is_refused(tmp_path, env, kind):
    uri = _storage(kind, tmp_path)
    specs = [_spec(tmp_path, f"out{i}", uri, 3, f"s{i}.yaml") for i in range(2)]
    procs = [_start(s, env, tmp_path / f"run{i}.log") for i, s in enumerate(specs)]
    try:
        rcs = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            _stop(p)
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert sorted(rcs) == [0, 1], (rcs, logs)  # never 2, "bad input", on the schema race
    ran, refused = (0, 1) if rcs[0] == 0 else (1, 0)
    assert f"the optuna study 'shared' in {uri} is already being driven by pid " \
           f"{procs[ran].pid}" in logs[refused], logs[refused]
    assert f"for the sweep at {tmp_path / f'out{ran}' / 'shared'}" in logs[refused]
    assert "Wait for it to finish, or give this run a study of its own" in logs[refused]
    assert not (tmp_path / f"out{refused}").exists()  # refused before writing anything
    rows = pd.read_parquet(tmp_path / f"out{ran}" / "shared" / "trials")
    assert len(rows) == 3 and rows.trial_id.is_unique
    from optuna.trial import TrialState

    trials = _study(uri, "shared").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    points = {(round(t.params["alpha"], 12), t.params["beta"]) for t in trials}
    assert len(points) == 3  # no parameters trained twice
    assert not list((tmp_path / "study").glob("*.driver-lock"))  # given back at the end


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_killed_drivers_running_trial_is_failed_by_the_next_driver(tmp_path, env, kind):
    from optuna.trial import TrialState

    uri = _storage(kind, tmp_path)
    spec = _spec(tmp_path, "out", uri, 4, "s.yaml")
    log = tmp_path / "run1.log"
    p = _start(spec, env, log)
    deadline = time.time() + 240
    try:
        while True:  # a trial asked of the study and not yet told
            assert p.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            try:
                if any(t.state == TrialState.RUNNING for t in _study(uri, "shared").trials):
                    break
            except Exception:  # noqa: BLE001 - the study is not there yet
                pass
            time.sleep(0.1)
    finally:
        _stop(p)  # SIGKILL: the driver and its Ray
    before = _study(uri, "shared").trials
    assert any(t.state == TrialState.RUNNING for t in before)
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report",
                        "--max-concurrent", "1"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "left RUNNING by a driver that died marked FAIL" in r.stderr, r.stderr[-3000:]
    after = _study(uri, "shared").trials
    assert not any(t.state == TrialState.RUNNING for t in after)
    for t in before:
        if t.state == TrialState.RUNNING:
            assert after[t.number].state == TrialState.FAIL
    rows = pd.read_parquet(tmp_path / "out" / "shared" / "trials")
    assert len(rows) == 4 and rows.trial_id.is_unique
    done = [t for t in after if t.state == TrialState.COMPLETE]
    assert len({(round(t.params["alpha"], 12), t.params["beta"]) for t in done}) == len(done)
