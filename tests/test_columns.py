"""Each trial column is declared once, with its role, and every reader takes the role from the file."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq

import analysis
from records.columns import AXES, RUNTIME_FIELDS, TRIAL_SCHEMA, trial_roles
from records.identity import row_trial_id
from sweeps.store.store import Store, trial_id
from trainer import TrainConfig, TrainResult


def test_roles_come_from_the_config_and_the_result() -> None:
    roles = trial_roles()
    results = [f.name for f in dataclasses.fields(TrainResult) if f.name != "curve"]
    assert results and all(roles[n] == "result" for n in results)      # rise among them
    assert roles["rise"] == "result" and roles["error"] == "result"
    for name in TrainConfig.field_names():
        want = "axis" if name in AXES else "runtime" if name in RUNTIME_FIELDS else \
            "bookkeeping" if name == "params" else "setting"  # a user's: params.<name> columns
        assert roles[name] == want, name
    assert roles["trial_id"] == roles["sweep"] == roles["node_id"] == "bookkeeping"
    assert set(roles) == set(TRIAL_SCHEMA.names)


def _write(store: Store, cfg: TrainConfig) -> None:
    store.write_trial({"sweep": "s", "trial_id": trial_id(cfg), **cfg.flat(),
                       "status": "completed", "initial_loss": 5.0, "final_loss": 3.0,
                       "best_loss": 3.0, "peak_loss": 3.2, "rise": 0.0, "outer_steps_done": 2,
                       "tokens": 10, "wall_s": 1.0, "n_params": 10, "reason": None,
                       "error": None},
                      [{"outer_step": 0, "tokens": 5, "eval_loss": 3.2, "train_loss": 3.3,
                        "pseudo_grad_norm": 1.0, "momentum_norm": 1.0,
                        "momentum_cos": float("nan"), "wall_s": 0.1}])


def test_the_file_carries_the_roles_and_analysis_reads_them(tmp_path) -> None:
    store = Store(str(tmp_path), "s")
    for seed in (0, 1):
        _write(store, TrainConfig(seed=seed, threads=1 + seed))
    path = next((tmp_path / "s" / "trials").glob("*.parquet"))
    schema = pq.read_schema(path)
    assert schema.field("rise").metadata == {b"role": b"result"}
    assert schema.field("threads").metadata == {b"role": b"runtime"}
    trials = analysis.load_trials(tmp_path / "s")
    assert trials.attrs["roles"] == trial_roles()
    keys = analysis.slice_keys(trials)
    # runtime settings differ between the two trials, yet both are one slice
    assert "threads" not in keys and "batched" not in keys and "H" in keys
    assert analysis.cells(trials)["n"].tolist() == [2]


def test_a_column_the_names_do_not_know_is_judged_by_its_role(tmp_path) -> None:
    """A result column analysis has never heard of: its role keeps it out of the slice keys;
    the same column without a role (a file from before roles) is taken for a setting."""
    rows = [dict(alpha=1.0, beta=0.9, seed=s, H=4, R=0, status="completed",
                 initial_loss=5.0, final_loss=3.0 + s, grad_noise=0.1 * s) for s in (0, 1)]
    rows = [{"trial_id": row_trial_id(r), **r} for r in rows]
    table = pa.Table.from_pylist(rows)
    marked = table.schema.set(table.schema.get_field_index("grad_noise"),
                              table.schema.field("grad_noise").with_metadata({b"role": b"result"}))
    (tmp_path / "new" / "trials").mkdir(parents=True)
    pq.write_table(table.cast(marked), tmp_path / "new" / "trials" / "a.parquet")
    (tmp_path / "old" / "trials").mkdir(parents=True)
    pq.write_table(table, tmp_path / "old" / "trials" / "a.parquet")
    assert "grad_noise" not in analysis.slice_keys(analysis.load_trials(tmp_path / "new"))
    assert "grad_noise" in analysis.slice_keys(analysis.load_trials(tmp_path / "old"))
