"""The results store: columns, atomic files, stable trial ids, local and S3 (moto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import local_s3
from trainer import CURVE_COLUMNS, TrainConfig
from sweeps.spec.parse import parse_spec
from sweeps.store.store import CURVE_SCHEMA, DONE_STATUSES, TRIAL_SCHEMA, Store, trial_id
from sweeps.tune.trainable import failed_row
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]

DESIGN_TRIAL_COLUMNS = ["sweep", "trial_id", "alpha", "beta", "H", "R", "workers", "seed",
                        "status", "initial_loss", "final_loss", "best_loss", "peak_loss",
                        "outer_steps_done", "tokens", "wall_s", "error"]
DESIGN_CURVE_COLUMNS = ["trial_id", "outer_step", "tokens", "eval_loss", "train_loss",
                        "pseudo_grad_norm", "momentum_norm", "momentum_cos", "wall_s"]


def _done(store: Store) -> set[str]:
    """Trials with a completed or diverged row: what a rerun skips."""
    return {k for k, v in store.statuses().items() if v in DONE_STATUSES}


def _row(cfg: TrainConfig, status: str = "completed", loss: float = 3.0) -> dict:
    return {"sweep": "s", "trial_id": trial_id(cfg), **cfg.flat(), "status": status,
            "initial_loss": 5.5, "final_loss": loss, "best_loss": loss, "peak_loss": 5.0,
            "outer_steps_done": 2, "tokens": 1024, "wall_s": 1.5, "n_params": 10,
            "reason": None, "error": None}


def _curve(n: int = 2) -> list[dict]:
    return [{"outer_step": t, "tokens": 512 * (t + 1), "eval_loss": 4.0 - t, "train_loss": 4.1,
             "pseudo_grad_norm": 0.5, "momentum_norm": 0.4,
             "momentum_cos": float("nan") if t == 0 else 0.9, "wall_s": 0.1 * t}
            for t in range(n)]


def test_schemas_carry_the_design_columns():
    assert set(DESIGN_TRIAL_COLUMNS) <= set(TRIAL_SCHEMA.names)
    assert set(TrainConfig.field_names()) <= set(TRIAL_SCHEMA.names)
    assert CURVE_SCHEMA.names == DESIGN_CURVE_COLUMNS
    assert list(CURVE_COLUMNS) == DESIGN_CURVE_COLUMNS[1:]


def test_write_and_read_back_with_pandas(tmp_path):
    store = Store(str(tmp_path), "s")
    a, b = TrainConfig(seed=0), TrainConfig(seed=1, model={"n_layer": 1, "d_model": 32})
    store.write_trial(_row(a), _curve(3))
    store.write_trial(_row(b, "diverged", float("inf")), _curve(1))
    cfg_c = TrainConfig(seed=2)
    store.write_trial(failed_row(parse_spec({"name": "s"}), cfg_c, "RuntimeError: boom"))
    trials = pd.read_parquet(tmp_path / "s" / "trials")
    curves = pd.read_parquet(tmp_path / "s" / "curves")
    assert len(trials) == 3 and set(DESIGN_TRIAL_COLUMNS) <= set(trials.columns)
    assert list(curves.columns) == DESIGN_CURVE_COLUMNS and len(curves) == 4
    by = trials.set_index("trial_id")
    assert by.loc[trial_id(b), "status"] == "diverged"
    assert json.loads(by.loc[trial_id(b), "model"]) == {"d_model": 32, "n_layer": 1}
    assert by.loc[trial_id(cfg_c), "error"] == "RuntimeError: boom"
    assert pd.isna(by.loc[trial_id(a), "error"])
    assert _done(store) == {trial_id(a), trial_id(b)}
    # a rerun of the failed trial replaces its row: still one row per trial_id
    store.write_trial(_row(cfg_c), _curve(2))
    assert _done(store) == {trial_id(a), trial_id(b), trial_id(cfg_c)}
    assert len(pd.read_parquet(tmp_path / "s" / "trials")) == 3
    assert not [p for p in (tmp_path / "s").rglob(".*")]  # no temporaries left behind


def test_empty_store_reads_empty(tmp_path):
    store = Store(str(tmp_path), "nothing")
    assert _done(store) == set() and store.read_trials().num_rows == 0
    assert store.read_meta() is None


def test_failed_write_leaves_nothing_visible(tmp_path, monkeypatch):
    store = Store(str(tmp_path), "s")
    cfg = TrainConfig()

    class BrokenRename:  # the filesystem fails between writing the temporary and the rename
        def __init__(self, fs):
            self._fs = fs

        def __getattr__(self, name):
            return getattr(self._fs, name)

        def move(self, src, dst):
            raise OSError("disk went away")

    store.fs = BrokenRename(store.fs)
    with pytest.raises(OSError):
        store.write_trial(_row(cfg), _curve())
    assert list((tmp_path / "s").rglob("*.parquet")) == []
    assert list((tmp_path / "s").rglob(".*")) == []  # the temporary was removed too


def test_leftover_temporary_is_invisible(tmp_path):
    """A writer killed mid-file leaves `.<id>.tmp-*`; readers skip it."""
    store = Store(str(tmp_path), "s")
    store.write_trial(_row(TrainConfig()), _curve())
    trials = tmp_path / "s" / "trials"
    (trials / ".deadbeef.parquet.tmp-123").write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(trials)) == 1
    assert _done(store) == {trial_id(TrainConfig())}


_WRITER = """
import sys, time
from trainer import TrainConfig
from sweeps.store.store import Store, trial_id

class SlowStream:  # a slow disk: the file is written in small pieces over about a second
    def __init__(self, f):
        self.f = f
    def write(self, data):
        for i in range(0, len(data), 4096):
            self.f.write(data[i:i + 4096])
            time.sleep(0.01)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()

class SlowFS:
    def __init__(self, fs):
        self._fs = fs
    def __getattr__(self, name):
        return getattr(self._fs, name)
    def open_output_stream(self, path):
        return SlowStream(self._fs.open_output_stream(path))

store = Store(sys.argv[1], "s")
store.fs = SlowFS(store.fs)
curve = [{"outer_step": t, "tokens": t, "eval_loss": t * 1.5, "train_loss": t * 0.5,
          "pseudo_grad_norm": 1.0, "momentum_norm": 1.0, "momentum_cos": 1.0, "wall_s": 1.0}
         for t in range(20_000)]
print("ready", flush=True)
i = 0
while True:
    cfg = TrainConfig(seed=i % 3)
    row = {"sweep": "s", "trial_id": trial_id(cfg), **cfg.flat(), "status": "completed"}
    store.write_trial(row, curve)
    i += 1
"""


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    """SIGKILL while a file is half written (its temporary is on disk; fixed delays once missed
    every write on a loaded machine): first in the first trial's curve, then once a row is
    stored, in a later write."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    torn = 0

    def temporaries() -> int:
        return len(list((tmp_path / "s").rglob(".*.tmp-*")))

    for rows_first in (0, 1):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        before, deadline = temporaries(), time.time() + 120
        trials = tmp_path / "s" / "trials"
        while (temporaries() <= before
               or len(list(trials.glob("*.parquet")) if trials.exists() else []) < rows_first):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        torn += temporaries() - before
        for sub in ("trials", "curves"):
            d = tmp_path / "s" / sub
            for f in d.glob("*.parquet") if d.exists() else []:
                pq.read_table(f)  # every visible file is whole
        if (tmp_path / "s" / "trials").exists():
            assert len(pd.read_parquet(tmp_path / "s" / "trials")) <= 3
            for f in (tmp_path / "s" / "trials").glob("*.parquet"):  # a row means a whole curve
                assert pq.read_metadata(tmp_path / "s" / "curves" / f.name).num_rows == 20_000
    assert torn > 0  # a kill landed mid-write, so the checks above meant something


def test_trial_id_is_stable_and_keyed_on_the_whole_config():
    a = TrainConfig(alpha=0.5, seed=1)
    assert trial_id(a) == trial_id(TrainConfig(seed=1, alpha=0.5))
    assert len(trial_id(a)) == 16 and int(trial_id(a), 16) >= 0
    assert trial_id(a) != trial_id(a.replace(seed=2))
    assert trial_id(a) != trial_id(a.replace(lr=1e-3))
    assert trial_id(a) != trial_id(a.replace(model={"n_layer": 1}))
    # the same id in a fresh interpreter (no hash randomization, no dict-order effects)
    code = ("from trainer import TrainConfig; from sweeps.store.store import trial_id; "
            "print(trial_id(TrainConfig(seed=1, alpha=0.5)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "7"},
                         check=True, timeout=120).stdout.strip()
    assert out == trial_id(a)


def test_trial_config_normalizes_sampler_values():
    import numpy as np

    spec = parse_spec({"name": "s", "trial": {"workers": 2},
                       "space": {"alpha": {"low": 0.1, "high": 2}, "H": {"low": 1, "high": 8}},
                       "search": {"kind": "optuna"}})
    c1 = trial_config(spec, {"alpha": np.float64(1.0), "H": np.int64(4)})
    c2 = trial_config(spec, {"alpha": 1, "H": 4.0})
    assert c1 == c2 and isinstance(c1.alpha, float) and isinstance(c1.H, int)
    assert trial_id(c1) == trial_id(c2)
    with pytest.raises(KeyError):
        trial_config(spec, {"alpha": 1.0, "H": 4, "lr": 0.1})


def test_store_at_splits_folder(tmp_path):
    s = Store.at(str(tmp_path / "out" / "name"))
    assert s.name == "name" and s.root == str(tmp_path / "out" / "name")
    s3 = Store.at("s3://bucket/prefix/name?endpoint_override=127.0.0.1:1&scheme=http")
    assert s3.name == "name" and s3.root == "bucket/prefix/name"


# --------------------------------------------------------------------------- S3 through moto
@pytest.fixture()
def s3_endpoint(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with local_s3() as port:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                               allow_bucket_creation=True, region="us-east-1")
        fs.create_dir("results")
        yield f"127.0.0.1:{port}", fs


def test_s3_store_roundtrip(s3_endpoint):
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    endpoint, fs = s3_endpoint
    uri = f"s3://results/sweeps?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    store = Store(uri, "s3sweep")
    assert store.is_s3
    a, b = TrainConfig(seed=0), TrainConfig(seed=1)
    store.write_trial(_row(a), _curve(2))
    store.write_trial(_row(b, "diverged"), _curve(1))
    store.write_meta({"name": "s3sweep"})
    assert _done(store) == {trial_id(a), trial_id(b)}
    assert Store.at(uri.replace("sweeps?", "sweeps/s3sweep?")).read_meta() == {"name": "s3sweep"}
    t = ds.dataset("results/sweeps/s3sweep/trials", filesystem=fs, format="parquet").to_table()
    assert t.num_rows == 2 and set(DESIGN_TRIAL_COLUMNS) <= set(t.column_names)
    keys = sorted(i.path for i in fs.get_file_info(pafs.FileSelector("results", recursive=True))
                  if i.type == pafs.FileType.File)
    assert keys == sorted([f"results/sweeps/s3sweep/{d}/{trial_id(c)}.parquet"
                           for d in ("trials", "curves") for c in (a, b)]
                          + ["results/sweeps/s3sweep/sweep.json"])  # no temporaries on S3


def test_s3_endpoint_from_environment(s3_endpoint, monkeypatch):
    from sweeps.tune.runner import resolve_output

    endpoint, _ = s3_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{endpoint}")
    out = resolve_output("s3://results/env")
    assert f"endpoint_override={endpoint}" in out and "scheme=http" in out
    store = Store(out, "e")
    store.write_trial(_row(TrainConfig()), _curve())
    assert _done(store) == {trial_id(TrainConfig())}


def test_trial_id_ignores_how_a_trial_runs_but_not_what_it_computes():
    from sweeps.store.store import trial_id
    from trainer import TrainConfig

    base = TrainConfig(alpha=0.7, seed=1)
    assert trial_id(base) == trial_id(base.replace(batched="off", threads=2, device="cpu"))
    assert trial_id(base) != trial_id(base.replace(seed=2))
    assert trial_id(base) != trial_id(base.replace(diverge_check_every=5))


def test_a_problems_own_curve_columns_are_kept(tmp_path):
    import pandas as pd

    from sweeps.store.store import Store

    store = Store(str(tmp_path), "toy")
    curve = [{"outer_step": t, "tokens": t, "eval_loss": 1.0 / (t + 1), "train_loss": 1.0,
              "pseudo_grad_norm": 1.0, "momentum_norm": 1.0, "momentum_cos": 0.5, "wall_s": 0.1,
              "mode_idx": [0, 9], "mode_err": [0.5 ** t, 0.9 ** t]} for t in range(3)]
    store.write_trial({"sweep": "toy", "trial_id": "abc", "status": "completed"}, curve)
    back = pd.read_parquet(tmp_path / "toy" / "curves")
    assert list(back.columns[:9]) == ["trial_id", "outer_step", "tokens", "eval_loss", "train_loss",
                                      "pseudo_grad_norm", "momentum_norm", "momentum_cos", "wall_s"]
    assert [list(v) for v in back.sort_values("outer_step").mode_err] == [[1.0, 1.0], [0.5, 0.9], [0.25, 0.81]]
    assert list(back.mode_idx.iloc[0]) == [0, 9]


def _pack(store: Store, cfgs: list[TrainConfig]) -> str:
    import numpy as np

    from sweeps.store.store import curve_table

    ids = [trial_id(c) for c in cfgs]
    trial = np.repeat(np.arange(len(cfgs)), 2)
    cols = {"outer_step": np.tile([0, 1], len(cfgs)), "eval_loss": np.linspace(4, 3, 2 * len(cfgs)),
            "mode_err": np.ones((2 * len(cfgs), 3))}
    return store.write_pack([_row(c) for c in cfgs], curve_table(ids, trial, cols))


def test_a_pack_file_reads_as_one_file_per_trial_would(tmp_path):
    store = Store(str(tmp_path), "s")
    cfgs = [TrainConfig(alpha=a) for a in (0.5, 0.6, 0.7)]
    _pack(store, cfgs)
    ids = {trial_id(c) for c in cfgs}
    assert _done(store) == ids == store.done_among(ids | {"0" * 16})
    assert len(pd.read_parquet(tmp_path / "s" / "trials")) == 3    # pandas sees the same rows
    curves = pd.read_parquet(tmp_path / "s" / "curves")          # a problem's own columns too
    assert len(curves) == 6 and list(curves.mode_err.iloc[0]) == [1.0, 1.0, 1.0]
    # a second pack file holding one of the trials again (a pack rerun after a lost report):
    # every reader still sees each trial once
    _pack(store, cfgs[:1] + [TrainConfig(alpha=0.8)])
    t = store.read_trials().to_pandas()
    assert len(t) == 4 and t.trial_id.is_unique
    assert store.read_curves().to_pandas().groupby("trial_id").size().max() == 2


def test_a_pack_file_with_an_edited_row_is_skipped_whole(tmp_path):
    store = Store(str(tmp_path), "s")
    cfgs = [TrainConfig(alpha=a) for a in (0.5, 0.6)]
    name = _pack(store, cfgs)
    path = tmp_path / "s" / "trials" / name
    t = pq.read_table(path).to_pandas()
    t.loc[1, "final_loss"] = 0.01                       # a better loss, the id kept
    t.loc[1, "alpha"] = 0.9
    pq.write_table(__import__("pyarrow").Table.from_pandas(t, preserve_index=False), path)
    assert store.done_among({trial_id(c) for c in cfgs}) == set()
    assert name in next(iter(store.skipped))


def test_curves_of_a_pack_whose_rows_never_landed_are_removed_at_the_next_run(tmp_path):
    store = Store(str(tmp_path), "s")
    name = _pack(store, [TrainConfig(alpha=0.5)])
    (tmp_path / "s" / "trials" / name).unlink()     # killed between the curves and the rows
    kept = _pack(store, [TrainConfig(alpha=0.6)])
    gone = store.remove_temporaries()
    assert [g.rsplit("/", 1)[-1] for g in gone] == [name]
    assert sorted(p.name for p in (tmp_path / "s" / "curves").iterdir()) == [kept]
