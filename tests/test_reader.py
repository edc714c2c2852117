"""records.reader, the one reader of a store: files that vanish under it, names that lead
nowhere, and a `status` that reads the store once (docs/reliability.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import analysis
from records import reader
from sweeps.cli import main
from sweeps.store.store import Store, curve_table
from test_store import _curve, _row
from trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _small(tmp_path: Path, n: int = 6) -> tuple[Store, Path]:
    store = Store(str(tmp_path / "out"), "small")
    for a in range(n):
        store.write_trial(_row(TrainConfig(alpha=0.5 + a / 10)), _curve())
    store.write_meta({"name": "small", "runs": []})
    return store, tmp_path / "out" / "small"


def test_a_file_that_vanishes_mid_read_is_read_from_what_replaced_it(tmp_path, monkeypatch):
    """`status` failed while `compact` ran ("cannot read .../trials/<id>.parquet"): compact
    deleted an own file between the reader's listing and its read. The reader lists again and
    finds the trial in the compacted file."""
    store, folder = _small(tmp_path)
    rows = store.read_trials().to_pylist()
    real = reader.read_parquet
    calls = {"n": 0}

    def compact_meanwhile(fs, path, columns=None):
        calls["n"] += 1
        if calls["n"] == 1:  # as compact does: merged file first, then the own files go
            ids = [r["trial_id"] for r in rows]
            store.write_pack(rows, curve_table(ids, [0] * 0, {}))
            for f in (folder / "trials").glob("*.parquet"):
                if not f.name.startswith("compacted-"):
                    f.unlink()
            raise FileNotFoundError(path)
        return real(fs, path, columns)

    monkeypatch.setattr(reader, "read_parquet", compact_meanwhile)
    fresh = Store.at(str(folder))
    got = fresh.read_trials()
    assert sorted(got["trial_id"].to_pylist()) == sorted(r["trial_id"] for r in rows)
    assert fresh.skipped == {}


def test_status_while_compact_deletes_counts_every_trial_once(tmp_path):
    """A real `compact`, held in its delete phase (DILOCO_FAULT_COMPACT_PAUSE): `status` beside
    it exits 0, counts 6 completed, and says the compaction is not finished."""
    _, folder = _small(tmp_path)
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "sweeps", "compact", str(folder)], cwd=ROOT,
                         env={**env, "DILOCO_FAULT_COMPACT_PAUSE": str(marker)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert p.poll() is None and time.time() < deadline, p.stdout.read()
            time.sleep(0.05)
        done = subprocess.run([sys.executable, "-m", "sweeps", "status", str(folder)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "completed        6" in done.stdout
    assert "an interrupted compaction is not finished" in done.stdout


def test_a_curve_file_that_cannot_be_read_is_named(tmp_path, capsys):
    """A symbolic-link loop in curves/ was dropped without a word: load_curves gave 5 of 6
    trials and `report` exited 0. It is now named by the reader, by load_curves' warning and
    on report's stderr (the report is still written: the rows are all there)."""
    _, folder = _small(tmp_path)
    loop = folder / "curves" / "0000000000000000.parquet"
    os.symlink(loop.name, loop)
    with pytest.warns(UserWarning, match="0000000000000000.parquet.*leads nowhere"):
        curves = analysis.load_curves(folder)
    assert curves["trial_id"].nunique() == 6
    assert main(["report", str(folder), "--out", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "0000000000000000.parquet" in err and "leads nowhere" in err


def test_status_reads_the_store_once(tmp_path, monkeypatch, capsys):
    """A 4,096-trial store of one file per trial took 72 s for `status`: it read every file
    twice. One read now (`python -m benchmarks scale` times it against pd.read_parquet)."""
    _, folder = _small(tmp_path)
    reads = []
    real = reader.read_part
    monkeypatch.setattr(reader, "read_part", lambda *a, **k: reads.append(a[2]) or real(*a, **k))
    import sweeps.store.store as store_module

    monkeypatch.setattr(store_module, "read_part", reader.read_part)
    assert main(["status", str(folder)]) == 0
    assert reads == ["trials"]
    assert "completed        6" in capsys.readouterr().out


def test_the_reader_and_pandas_agree_on_a_store(tmp_path):
    """What pd.read_parquet returns for a store of one file per trial, the reader returns."""
    _, folder = _small(tmp_path)
    raw = pd.read_parquet(folder / "trials").sort_values("trial_id").reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine = analysis.load_trials(folder).sort_values("trial_id").reset_index(drop=True)
    assert mine["trial_id"].tolist() == raw["trial_id"].tolist()
    assert mine["final_loss"].tolist() == raw["final_loss"].tolist()
    assert isinstance(Store.at(str(folder)).read_trials(), pa.Table)
