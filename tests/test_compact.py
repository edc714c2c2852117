"""`compact` merges a finished sweep's files without changing what any reader returns, and a
rerun after it runs nothing. On a copy of the shipped main-job results at H = 16 (84 real
trials, 47 of them diverged), with the main job's spec cut to that H."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import analysis
from sweeps.tune import runner
from sweeps.cli import main
from sweeps.store.compact import compact
from sweeps.tune.runner import run_sweep
from sweeps.spec.parse import parse_spec
from sweeps.store.store import Store, is_compacted, trial_id
from sweeps.spec.space import grid_points
from sweeps.tune.trainable import failed_row
from sweeps.tune.trial import trial_config
from test_store import _curve, _row, s3_endpoint  # noqa: F401 - the moto S3 fixture, once
from trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "results" / "restart-cpu"
SPEC = ROOT / "sweeps" / "specs" / "restart_cpu.yaml"


def load_h16():
    data = yaml.safe_load(SPEC.read_text())
    data["space"]["H"] = [16]
    return parse_spec(data)


@pytest.fixture()
def sweep(tmp_path) -> Path:
    folder = tmp_path / "restart-cpu"
    for part in ("trials", "curves"):
        (folder / part).mkdir(parents=True)
    for f in (SHIPPED / "trials").glob("*.parquet"):
        if pq.read_table(f, columns=["H"]).column("H")[0].as_py() == 16:
            for part in ("trials", "curves"):
                shutil.copy2(SHIPPED / part / f.name, folder / part / f.name)
    shutil.copy2(SHIPPED / "sweep.json", folder / "sweep.json")
    return folder


def _by_id(df: pd.DataFrame, keys=("trial_id",)) -> pd.DataFrame:
    return df.sort_values(list(keys)).reset_index(drop=True)


def _everything(folder: Path) -> dict[str, pd.DataFrame]:
    store = Store.at(str(folder))
    return {
        "store trials": _by_id(store.read_trials().to_pandas()),
        "store curves": _by_id(store.read_curves().to_pandas(), ("trial_id", "outer_step")),
        "load_trials": analysis.load_trials(folder),
        "load_curves": analysis.load_curves(folder),
        "pandas trials": _by_id(pd.read_parquet(folder / "trials")),
        "pandas curves": _by_id(pd.read_parquet(folder / "curves"), ("trial_id", "outer_step")),
    }


def _same(before: dict, after: dict) -> None:
    for name, df in before.items():
        pd.testing.assert_frame_equal(after[name], df, obj=name)


def _files(folder: Path, part: str) -> list[Path]:
    return sorted((folder / part).glob("*.parquet"))


def test_every_reader_returns_the_same_rows_after_compact(sweep):
    before = _everything(sweep)
    assert len(before["pandas trials"]) == 84 and len(_files(sweep, "trials")) == 84
    s = compact(Store.at(str(sweep)), max_trials=30)
    assert (s.trials, s.files_before, s.files_after) == (84, 168, 6)
    assert all(is_compacted(str(f)) for p in ("trials", "curves") for f in _files(sweep, p))
    _same(before, _everything(sweep))
    assert compact(Store.at(str(sweep))).trials == 0  # nothing left to merge


def test_roles_and_a_newer_column_survive(sweep):
    """Rows of an older version (the shipped rows with their roles and the flops column
    taken out) and one row of today's schema: the merged file has both, as the store and
    analysis read them before."""
    for f in _files(sweep, "trials"):
        old = pq.read_table(f).drop_columns(["flops"])
        pq.write_table(old.cast(pa.schema([pa.field(x.name, x.type) for x in old.schema])), f)
    spec = load_h16()
    store = Store.at(str(sweep))
    cfg = trial_config(spec, grid_points(spec.space)[0]).replace(outer_steps=13)
    row = {**failed_row(spec, cfg, ""), "status": "completed", "error": None, "flops": 1.5e9,
           "final_loss": 3.0, "initial_loss": 5.5}
    store.write_trial(row, [{"outer_step": 0, "tokens": 1, "eval_loss": 3.0}])
    before = _everything(sweep)
    compact(store)
    after = _everything(sweep)
    for name in ("store trials", "store curves", "load_trials", "load_curves"):
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)
    assert after["load_trials"].attrs["roles"] == before["load_trials"].attrs["roles"]
    assert after["load_trials"].flops.notna().sum() == 1


def test_the_merged_file_keeps_the_roles(tmp_path):
    spec = load_h16()
    store = Store(str(tmp_path), "fresh")
    for p in grid_points(spec.space)[:3]:
        cfg = trial_config(spec, p)
        store.write_trial({**failed_row(spec, cfg, ""), "status": "completed", "error": None},
                          [{"outer_step": 0, "tokens": 1, "eval_loss": 3.0}])
    before = analysis.load_trials(tmp_path / "fresh").attrs["roles"]
    compact(store)
    (merged,) = _files(tmp_path / "fresh", "trials")
    assert pq.read_schema(merged).field("alpha").metadata == {b"role": b"axis"}
    assert analysis.load_trials(tmp_path / "fresh").attrs["roles"] == before
    assert before["flops"] == "result" and before["H"] == "setting"


def test_a_rerun_after_compact_runs_nothing(sweep, capsys):
    assert main(["compact", str(sweep)]) == 0
    assert "84 trials compacted; 168 files → 2" in capsys.readouterr().out
    spec = load_h16()
    s = run_sweep(spec, output=str(sweep.parent), stream=open("/dev/null", "w"))
    assert (s.total, s.skipped, s.ran) == (84, 84, 0)
    assert s.counts == {"completed": 37, "diverged": 47, "failed": 0}
    # a sampler proposing a stored trial finds its row in the compacted file
    cfg = trial_config(spec, grid_points(spec.space)[5])
    store = Store.at(str(sweep))
    row = store.done_row(store.read_trials().column("trial_id")[0].as_py())
    assert row is not None and row["status"] in ("completed", "diverged")
    assert store.read_row(trial_id(cfg))["alpha"] == cfg.alpha


def test_failed_rows_keep_their_own_files_and_run_again(sweep):
    spec = load_h16()
    store = Store.at(str(sweep))
    cfg = trial_config(spec, grid_points(spec.space)[0])
    store.write_trial(failed_row(spec, cfg, "RuntimeError: boom"))  # replaces a done row
    compact(store)
    left = _files(sweep, "trials")
    assert [f.stem for f in left if not is_compacted(str(f))] == [trial_id(cfg)]
    p = spec.search_kind.plan(spec, store.read_trials().to_pylist(), False)
    assert p.to_sample == 1 and trial_config(spec, p.todo[0]) == cfg


def test_a_compaction_killed_halfway_leaves_no_duplicate(sweep, tmp_path):
    before = _everything(sweep)
    keep = tmp_path / "own"
    shutil.copytree(sweep / "trials", keep / "trials")
    shutil.copytree(sweep / "curves", keep / "curves")
    compact(Store.at(str(sweep)))
    for part in ("trials", "curves"):  # killed before its deletes: some own files still there
        for f in sorted((keep / part).glob("*.parquet"))[:20]:
            shutil.copy(f, sweep / part / f.name)
    mid = _everything(sweep)
    for name in ("store trials", "store curves", "load_trials", "load_curves"):
        pd.testing.assert_frame_equal(mid[name], before[name], obj=name)
    assert len(mid["pandas trials"]) == 104  # plain pandas sees the copies until compact again
    s = compact(Store.at(str(sweep)))
    assert (s.trials, s.copies_removed) == (0, 20)
    _same(before, _everything(sweep))


def test_force_expands_compacted_files_before_it_reruns(sweep, monkeypatch):
    before = _everything(sweep)
    compact(Store.at(str(sweep)), max_trials=25)  # four files to expand
    asked = []
    monkeypatch.setattr(runner, "run_trials", lambda spec, p, *a, **k: asked.append(p.to_sample) or [])
    run_sweep(load_h16(), output=str(sweep.parent), force=True,
              stream=open("/dev/null", "w"))
    assert asked == [84]
    assert not any(is_compacted(str(f)) for p in ("trials", "curves") for f in _files(sweep, p))
    assert len(_files(sweep, "trials")) == len(_files(sweep, "curves")) == 84
    _same(before, _everything(sweep))


def test_compact_wants_the_sweep_folder(sweep, capsys):
    assert main(["compact", str(sweep / "trials")]) == 2
    assert "the sweep's folder" in capsys.readouterr().err
    assert main(["compact", str(sweep.parent / "nope")]) == 2


def test_compact_on_s3(s3_endpoint):
    """The case compaction is for: an S3 sweep. Readers see the same rows through the URI, a
    stored trial is still found by its id, and only the merged objects are left."""
    import pyarrow.fs as pafs

    endpoint, fs = s3_endpoint
    fs.create_dir("compacting")  # its own bucket: moto's state outlives one server
    uri = f"s3://compacting/sweeps?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    store = Store(uri, "s3sweep")
    cfgs = [TrainConfig(seed=s, alpha=a) for s in (0, 1) for a in (0.5, 1.0)]
    for i, cfg in enumerate(cfgs):
        store.write_trial(_row(cfg, "diverged" if i == 3 else "completed", loss=3.0 + i),
                          _curve(2))
    store.write_meta({"name": "s3sweep"})
    folder = store.folder
    before = (_by_id(store.read_trials().to_pandas()), analysis.load_trials(folder),
              analysis.load_curves(folder))
    assert main(["compact", folder]) == 0
    keys = sorted(i.path.rsplit("/", 2)[-2] + "/" + i.base_name.split("-")[0]
                  for i in fs.get_file_info(pafs.FileSelector("compacting", recursive=True))
                  if i.type == pafs.FileType.File)
    assert keys == ["curves/compacted", "s3sweep/sweep.json", "trials/compacted"]
    after = (_by_id(Store(uri, "s3sweep").read_trials().to_pandas()),
             analysis.load_trials(folder), analysis.load_curves(folder))
    for a, b in zip(after, before):
        pd.testing.assert_frame_equal(a, b)
    assert Store(uri, "s3sweep").done_row(trial_id(cfgs[3]))["status"] == "diverged"


def _small(tmp_path: Path, n: int = 6) -> Path:
    store = Store(str(tmp_path / "out"), "small")
    for a in range(n):
        store.write_trial(_row(TrainConfig(alpha=0.5 + a / 10)), _curve())
    store.write_meta({"name": "small", "runs": []})
    return tmp_path / "out" / "small"


def _killed_mid_delete(folder: Path, tmp_path: Path) -> None:
    """A real `python -m sweeps compact` SIGKILLed after its first delete (faults.COMPACT_ENV)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "paused"
    p = subprocess.Popen([sys.executable, "-m", "sweeps", "compact", str(folder)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT),
                              "DILOCO_FAULT_COMPACT_PAUSE": str(marker)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert p.poll() is None and time.time() < deadline, p.stdout.read()
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)


@pytest.mark.parametrize("finisher", ["status", "run", "compact"])
def test_a_compact_killed_mid_delete_is_finished_by_the_next_command(tmp_path, capsys,
                                                                     monkeypatch, finisher):
    """SIGKILL in compact's delete phase left both the compacted file and the trials' own
    files: `pd.read_parquet` of trials/ returned duplicates until someone ran compact again.
    Its journal now lets the next `status`, `run` or `compact` finish the deletes."""
    folder = _small(tmp_path)
    want = _by_id(pd.read_parquet(folder / "trials"))
    _killed_mid_delete(folder, tmp_path)
    assert (folder / ".compact-journal.json").exists()
    raw = pd.read_parquet(folder / "trials")
    assert len(raw) > len(want) == 6  # the fault is real: a raw reader sees copies
    assert Store.at(str(folder)).read_trials().num_rows == 6  # the store's reader does not
    if finisher == "status":
        assert main(["status", str(folder)]) == 0
        assert "finished an interrupted compaction: the own files of 6 trial(s) removed" \
            in capsys.readouterr().out
    elif finisher == "run":
        monkeypatch.setattr(runner, "run_trials", lambda *a, **k: pytest.fail("nothing to run"))
        spec = parse_spec({"name": "small", "trial": {}, "space": {
            "alpha": [0.5 + a / 10 for a in range(6)]}})
        log = tmp_path / "log"
        with open(log, "w") as stream:
            run_sweep(spec, output=str(folder.parent), stream=stream)
        assert "finished a compaction that was interrupted" in log.read_text()
    else:
        assert main(["compact", str(folder)]) == 0, capsys.readouterr().err
    assert not (folder / ".compact-journal.json").exists()
    pd.testing.assert_frame_equal(_by_id(pd.read_parquet(folder / "trials")), want)
    assert len(pd.read_parquet(folder / "curves")) == 12
    assert all(is_compacted(str(f)) for p in ("trials", "curves") for f in _files(folder, p))


def test_a_journal_whose_compacted_file_is_gone_rolls_back(tmp_path, capsys):
    """The compacted rows lost after the kill (deleted by hand): the journal names trials no
    compacted file holds, so their own files are kept and nothing is lost."""
    folder = _small(tmp_path)
    want = _by_id(pd.read_parquet(folder / "trials"))
    _killed_mid_delete(folder, tmp_path)
    for f in _files(folder, "trials") + _files(folder, "curves"):
        if is_compacted(str(f)):
            f.unlink()
    assert main(["status", str(folder)]) == 0
    assert "the own files of 0 trial(s) removed" in capsys.readouterr().out
    assert not (folder / ".compact-journal.json").exists()
    left = _by_id(pd.read_parquet(folder / "trials"))
    assert len(left) == 5 and set(left.trial_id) < set(want.trial_id)  # the one deleted before
    (folder / ".compact-journal.json").write_text('{"trials": ["../../etc", 7, null]}')
    assert main(["status", str(folder)]) == 0  # a journal the store did not write: no deletes
    assert "the own files of 0 trial(s) removed" in capsys.readouterr().out
    assert len(pd.read_parquet(folder / "trials")) == 5
