"""analysis.load: files of different versions, damaged files, temporaries, paths, filters, S3."""

from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import load_curves, load_sweep_meta, load_trials


def _trial(tid: str, **extra) -> dict:
    row = dict(sweep="s", trial_id=tid, alpha=1.0, beta=0.9, H=10, R=0, workers=4, seed=0,
               status="completed", initial_loss=5.5, final_loss=2.0, best_loss=2.0,
               peak_loss=4.0, outer_steps_done=10, tokens=1000, wall_s=1.0, error=None)
    row.update(extra)
    return row


def _write(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _curve(tid: str, steps: int = 3) -> pa.Table:
    return pa.table(dict(trial_id=[tid] * steps, outer_step=list(range(steps)),
                         tokens=[100 * (t + 1) for t in range(steps)],
                         eval_loss=[3.0 - t * 0.1 for t in range(steps)],
                         train_loss=[3.0] * steps, pseudo_grad_norm=[1.0] * steps,
                         momentum_norm=[1.0] * steps,
                         momentum_cos=[float("nan")] + [0.5] * (steps - 1),
                         wall_s=[0.1] * steps))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two trial files of different versions: the newer adds n_params and types `error`."""
    root = tmp_path / "results" / "s"
    # the older file is written first and has no n_params; its error column is all-null
    _write(root / "trials" / "a.parquet", [_trial("a", alpha=1)])
    _write(root / "trials" / "b.parquet",
           [_trial("b", alpha=2.0, n_params=1234, error=None, reason="fine")])
    for tid in ("a", "b"):
        (root / "curves").mkdir(exist_ok=True)
        pq.write_table(_curve(tid), root / "curves" / f"{tid}.parquet")
    (root / "sweep.json").write_text(json.dumps({"spec": {"name": "s"}, "versions": {},
                                                "commit": None, "started": "x",
                                                "finished": "y"}))
    return root


def test_old_and_new_files_read_together(sweep: Path) -> None:
    df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ["a", "b"]
    by = df.set_index("trial_id")
    # the column only the newer file has is kept, null for the older row
    assert "n_params" in df.columns and "reason" in df.columns
    assert pd.isna(by.loc["a", "n_params"]) and by.loc["b", "n_params"] == 1234
    assert pd.isna(by.loc["a", "reason"]) and by.loc["b", "reason"] == "fine"
    # int64 alpha in the old file and double in the new one promote to one float column
    assert df["alpha"].dtype.kind == "f" and set(df["alpha"]) == {1.0, 2.0}


def test_truncated_file_is_skipped_with_a_warning_naming_it(sweep: Path) -> None:
    good = (sweep / "trials" / "b.parquet").read_bytes()
    bad = sweep / "trials" / "c-half.parquet"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="c-half.parquet"):
        df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ["a", "b"]


def test_temporaries_are_ignored(sweep: Path) -> None:
    _write(sweep / "trials" / ".tmp-x.parquet", [_trial("x")])
    _write(sweep / "trials" / "_y.parquet", [_trial("y")])
    _write(sweep / "trials" / "_tmp" / "z.parquet", [_trial("z")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about either
        df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ["a", "b"]


def test_rerun_of_a_failed_trial_keeps_the_result(sweep: Path) -> None:
    _write(sweep / "trials" / "d1.parquet", [_trial("d", status="failed", error="boom")])
    _write(sweep / "trials" / "d2.parquet", [_trial("d", final_loss=1.5)])
    df = load_trials(sweep).set_index("trial_id")
    assert df.loc["d", "status"] == "completed" and df.loc["d", "final_loss"] == 1.5


def test_paths_and_filters(sweep: Path) -> None:
    assert len(load_trials(sweep / "trials")) == 2
    assert load_trials(str(sweep)).equals(load_trials(sweep))
    assert list(load_trials(sweep, filters={"alpha": 2.0})["trial_id"]) == ["b"]
    assert list(load_trials(sweep, filters={"alpha": [1.0, 3.0]})["trial_id"]) == ["a"]
    assert list(load_trials(sweep, filters=[("alpha", ">", 1.5)])["trial_id"]) == ["b"]
    # a filter on the newer column: the old row is null there and does not match
    assert list(load_trials(sweep, filters=[("n_params", "==", 1234)])["trial_id"]) == ["b"]
    assert load_trials(sweep.parent / "missing").empty


def test_curves(sweep: Path) -> None:
    cv = load_curves(sweep)
    assert len(cv) == 6 and list(cv.columns[:2]) == ["trial_id", "outer_step"]
    assert list(cv["outer_step"][:3]) == [0, 1, 2]
    one = load_curves(sweep / "trials", trial_ids=["b"])  # the sibling curves/ folder
    assert set(one["trial_id"]) == {"b"} and len(one) == 3
    assert pd.isna(one["momentum_cos"].iloc[0])
    # a sweep without curves/ gives no curves, never its trial files read as curves
    (sweep / "curves" / "a.parquet").unlink()
    (sweep / "curves" / "b.parquet").unlink()
    (sweep / "curves").rmdir()
    assert load_curves(sweep).empty


def test_sweep_meta(sweep: Path, tmp_path: Path) -> None:
    assert load_sweep_meta(sweep)["spec"] == {"name": "s"}
    assert load_sweep_meta(sweep / "trials")["started"] == "x"
    assert load_sweep_meta(tmp_path / "nowhere") == {}


def test_s3_uri(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sweep read from s3:// through a local moto server."""
    import boto3  # test extras ([test] in pyproject): a missing one fails, never skips
    from moto import server as moto_server

    for k, v in dict(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                     AWS_DEFAULT_REGION="us-east-1").items():
        monkeypatch.setenv(k, v)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket="sweeps")
        for f in sweep.rglob("*"):
            if f.is_file():
                client.upload_file(str(f), "sweeps", f"res/s/{f.relative_to(sweep).as_posix()}")
        client.put_object(Bucket="sweeps", Key="res/s/trials/.tmp.parquet", Body=b"junk")
        uri = f"s3://sweeps/res/s?endpoint_override=127.0.0.1:{port}&scheme=http"
        df = load_trials(uri)
        assert sorted(df["trial_id"]) == ["a", "b"] and "n_params" in df.columns
        assert len(load_curves(uri, trial_ids=["a"])) == 3
        assert load_sweep_meta(uri)["spec"] == {"name": "s"}
    finally:
        server.stop()
