"""analysis.load: files of different versions, damaged files, temporaries, paths, filters, S3."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import load_curves, load_sweep_meta, load_trials
from conftest import local_s3
from records.identity import row_trial_id

TAGS = "abcdxyz"
ID = {}
"""tag -> trial_id: each tag is a seed, so its row is a trial of its own with an honest id."""


def _trial(tag: str, **extra) -> dict:
    row = dict(sweep="s", alpha=1.0, beta=0.9, H=10, R=0, workers=4, seed=TAGS.index(tag),
               status="completed", initial_loss=5.5, final_loss=2.0, best_loss=2.0,
               peak_loss=4.0, outer_steps_done=10, tokens=1000, wall_s=1.0, error=None)
    row.update(extra)
    row["trial_id"] = row_trial_id(row)
    ID[tag] = row["trial_id"]  # the settings but α are each tag's own: its id is stable
    return row


def ids(*tags: str) -> list[str]:
    return sorted(ID[t] for t in tags)


def _own(root: Path, row: dict) -> Path:
    """trials/<trial_id>.parquet, as the store names a trial's own file."""
    return _write(root / "trials" / f"{row['trial_id']}.parquet", [row])


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
    _own(root, _trial("a", alpha=1))
    _own(root, _trial("b", alpha=2.0, n_params=1234, error=None, reason="fine"))
    for tag in ("a", "b"):
        (root / "curves").mkdir(exist_ok=True)
        pq.write_table(_curve(ID[tag]), root / "curves" / f"{ID[tag]}.parquet")
    (root / "sweep.json").write_text(json.dumps({"spec": {"name": "s"}, "versions": {},
                                                "commit": None, "started": "x",
                                                "finished": "y"}))
    return root


def test_old_and_new_files_read_together(sweep: Path) -> None:
    df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ids("a", "b")
    by = df.set_index("trial_id").rename(index={v: k for k, v in ID.items()})
    # the column only the newer file has is kept, null for the older row
    assert "n_params" in df.columns and "reason" in df.columns
    assert pd.isna(by.loc["a", "n_params"]) and by.loc["b", "n_params"] == 1234
    assert pd.isna(by.loc["a", "reason"]) and by.loc["b", "reason"] == "fine"
    # int64 alpha in the old file and double in the new one promote to one float column
    assert df["alpha"].dtype.kind == "f" and set(df["alpha"]) == {1.0, 2.0}


def test_truncated_file_is_skipped_with_a_warning_naming_it(sweep: Path) -> None:
    good = (sweep / "trials" / f"{ID['b']}.parquet").read_bytes()
    bad = sweep / "trials" / "c-half.parquet"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="c-half.parquet"):
        df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ids("a", "b")


def test_temporaries_are_ignored(sweep: Path) -> None:
    _write(sweep / "trials" / f".{_trial('x')['trial_id']}.parquet.tmp-x", [_trial("x")])
    _write(sweep / "trials" / f"_{_trial('y')['trial_id']}.parquet", [_trial("y")])
    _write(sweep / "trials" / "_tmp" / f"{_trial('z')['trial_id']}.parquet", [_trial("z")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about either
        df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ids("a", "b")


@pytest.mark.parametrize("failed_first", [True, False])
def test_rerun_of_a_failed_trial_keeps_the_result(sweep: Path, failed_first: bool) -> None:
    """A trial in two files (its own and a pack's): the row that did not fail is kept, whichever
    was written last."""
    failed, done = _trial("d", status="failed", error="boom"), _trial("d", final_loss=1.5)
    first, second = (failed, done) if failed_first else (done, failed)
    _own(sweep, first)
    _write(sweep / "trials" / "compacted-pack-0123456789abcdef.parquet", [second, _trial("x")])
    df = load_trials(sweep).set_index("trial_id")
    assert df.loc[ID["d"], "status"] == "completed" and df.loc[ID["d"], "final_loss"] == 1.5
    assert ID["x"] in df.index


def test_a_row_the_cli_refuses_is_refused_here_too(sweep: Path) -> None:
    """One trust rule (records.trust.row_problem): a hand-edited row (α changed, id kept) is
    left out with a warning, as every diloco-sweep command leaves it out."""
    edited = _trial("c")
    _own(sweep, {**edited, "alpha": 9.0})
    with pytest.warns(UserWarning, match="edited or belongs to another configuration"):
        df = load_trials(sweep)
    assert sorted(df["trial_id"]) == ids("a", "b")
    assert list(df.attrs["skipped"]) == [str(sweep / "trials" / f"{ID['c']}.parquet")]


def test_paths_and_filters(sweep: Path) -> None:
    assert len(load_trials(sweep / "trials")) == 2
    assert load_trials(str(sweep)).equals(load_trials(sweep))
    assert list(load_trials(sweep, filters={"alpha": 2.0})["trial_id"]) == ids("b")
    assert list(load_trials(sweep, filters={"alpha": [1.0, 3.0]})["trial_id"]) == ids("a")
    assert list(load_trials(sweep, filters=[("alpha", ">", 1.5)])["trial_id"]) == ids("b")
    # a filter on the newer column: the old row is null there and does not match
    assert list(load_trials(sweep, filters=[("n_params", "==", 1234)])["trial_id"]) == ids("b")
    assert load_trials(sweep.parent / "missing").empty


def test_curves(sweep: Path) -> None:
    cv = load_curves(sweep)
    assert len(cv) == 6 and list(cv.columns[:2]) == ["trial_id", "outer_step"]
    assert list(cv["outer_step"][:3]) == [0, 1, 2]
    one = load_curves(sweep / "trials", trial_ids=[ID["b"]])  # the sibling curves/ folder
    assert set(one["trial_id"]) == {ID["b"]} and len(one) == 3
    assert pd.isna(one["momentum_cos"].iloc[0])
    # a sweep without curves/ gives no curves, never its trial files read as curves
    (sweep / "curves" / f"{ID['a']}.parquet").unlink()
    (sweep / "curves" / f"{ID['b']}.parquet").unlink()
    (sweep / "curves").rmdir()
    assert load_curves(sweep).empty


def test_sweep_meta(sweep: Path, tmp_path: Path) -> None:
    assert load_sweep_meta(sweep)["spec"] == {"name": "s"}
    assert load_sweep_meta(sweep / "trials")["started"] == "x"
    assert load_sweep_meta(tmp_path / "nowhere") == {}


def test_s3_uri(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sweep read from s3:// through a local moto server."""
    import boto3  # test extras ([test] in pyproject): a missing one fails, never skips

    for k, v in dict(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                     AWS_DEFAULT_REGION="us-east-1").items():
        monkeypatch.setenv(k, v)
    with local_s3() as port:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket="sweeps")
        for f in sweep.rglob("*"):
            if f.is_file():
                client.upload_file(str(f), "sweeps", f"res/s/{f.relative_to(sweep).as_posix()}")
        client.put_object(Bucket="sweeps", Key="res/s/trials/.tmp.parquet", Body=b"junk")
        uri = f"s3://sweeps/res/s?endpoint_override=127.0.0.1:{port}&scheme=http"
        df = load_trials(uri)
        assert sorted(df["trial_id"]) == ids("a", "b") and "n_params" in df.columns
        assert len(load_curves(uri, trial_ids=[ID["a"]])) == 3
        assert load_sweep_meta(uri)["spec"] == {"name": "s"}
