"""End to end through a real Ray: one simulated cluster for the whole module.

``ray.cluster_utils.Cluster`` on loopback: a head with no CPUs (no trials there) and two worker
nodes that declare 2 CPUs and 1 GPU each (the trainer still runs on CPU). Grid, rerun, Optuna,
divergence, a crashing trial and fractional-GPU packing all run on it, through the CLI's
``main()`` in this process, which finds Ray initialized and uses it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from conftest import loopback_cluster
from sweeps.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a simulated cluster: ~2 min on 2 cores

TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 2, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}
TRIAL_COLUMNS = ["sweep", "trial_id", "alpha", "beta", "H", "R", "workers", "seed", "status",
                 "initial_loss", "final_loss", "best_loss", "peak_loss", "outer_steps_done",
                 "tokens", "wall_s", "error"]
CURVE_COLUMNS = ["trial_id", "outer_step", "tokens", "eval_loss", "train_loss",
                 "pseudo_grad_norm", "momentum_norm", "momentum_cos", "wall_s"]


@pytest.fixture(scope="module")
def cluster():
    """Two nodes with 2 CPUs and 1 GPU each (the trainer still runs on CPU)."""
    with loopback_cluster(nodes=2, num_cpus=2, num_gpus=1) as c:
        yield c


def _spec(tmp_path: Path, name: str, space: dict, search: dict | None = None,
          trial: dict | None = None, resources: dict | None = None) -> Path:
    spec = {"name": name, "trial": {**TINY, **(trial or {})}, "space": space,
            "search": search or {"kind": "grid"},
            "resources": resources or {"cpu": 1, "gpu": 0}, "output": str(tmp_path / "out")}
    p = tmp_path / f"{name}.yaml"
    p.write_text(json.dumps(spec))  # JSON is YAML
    return p


def _trials(tmp_path: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "out" / name / "trials")


def test_grid_rows_curves_then_rerun_runs_nothing(cluster, tmp_path, capsys, monkeypatch):
    spec = _spec(tmp_path, "grid", {"alpha": [0.5, 1.0], "seed": [0, 1]})
    assert main(["run", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "4/4 trials" in err and "ETA" in err  # a progress line per finished trial

    trials = _trials(tmp_path, "grid")
    curves = pd.read_parquet(tmp_path / "out" / "grid" / "curves")
    assert len(trials) == 4 and set(TRIAL_COLUMNS) <= set(trials.columns)
    assert list(curves.columns) == CURVE_COLUMNS
    assert (trials.status == "completed").all() and trials.error.isna().all()
    assert sorted(zip(trials.alpha, trials.seed)) == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]
    assert trials.trial_id.is_unique and (trials.sweep == "grid").all()
    assert len(curves) == 4 * TINY["outer_steps"]
    assert set(curves.trial_id) == set(trials.trial_id)
    meta = json.loads((tmp_path / "out" / "grid" / "sweep.json").read_text())
    assert meta["spec"]["space"]["alpha"] == [0.5, 1.0]
    assert meta["versions"]["ray"] == "2.60.0" and meta["versions"]["python"]
    assert meta["runs"][-1]["ended_at"] and meta["runs"][-1]["counts"]["completed"] == 4

    # the same spec again: every trial_id is stored, so Tune is not even started
    import sweeps.tune.runner

    def no_tune(*a, **k):
        raise AssertionError("a rerun of a finished sweep started Ray Tune")

    monkeypatch.setattr(sweeps.tune.runner, "run_trials", no_tune)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "grid").rglob("*.parquet")}
    assert main(["run", str(spec)]) == 0
    assert "4 already stored, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    assert main(["status", str(tmp_path / "out" / "grid")]) == 0
    out = capsys.readouterr().out
    assert "completed        4" in out and "missing          0" in out


def test_optuna_four_samples_with_a_diverging_start_point(cluster, tmp_path):
    spec = _spec(tmp_path, "opt", {"alpha": {"low": 0.3, "high": 3.0, "log": True},
                                   "R": [0, 2]},
                 search={"kind": "optuna", "sampler": "tpe", "num_samples": 4, "seed": 0,
                         "points_to_evaluate": [{"alpha": 3.0, "R": 0}]},
                 trial={"outer_steps": 3, "diverge_factor": 1.01})
    assert main(["run", str(spec)]) == 0
    trials = _trials(tmp_path, "opt")
    assert len(trials) == 4 and trials.trial_id.is_unique
    assert ((trials.alpha >= 0.3) & (trials.alpha <= 3.0)).all()
    assert set(trials.status) <= {"completed", "diverged"}
    assert 3.0 in set(trials.alpha)  # the starting point ran


def test_optuna_study_in_a_journal_survives_the_driver_and_resumes(cluster, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "study" / "journal.log"
    search = {"kind": "optuna", "sampler": "random", "num_samples": 3, "seed": 0,
              "storage": str(journal)}
    space = {"alpha": {"low": 0.3, "high": 1.5, "log": True}}
    assert main(["run", str(_spec(tmp_path, "stud", space, search=search))]) == 0
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="stud", storage=storage)  # what optuna-dashboard opens
    assert len([t for t in study.trials if t.state.is_finished()]) == 3
    # a second driver: two more samples; the study is resumed, not told its trials again
    assert main(["run", str(_spec(tmp_path, "stud", space,
                                  search={**search, "num_samples": 5}))]) == 0
    trials = _trials(tmp_path, "stud")
    assert len(trials) == 5 and trials.trial_id.is_unique
    study = optuna.load_study(study_name="stud", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 5
    assert sorted(round(t.params["alpha"], 12) for t in finished) == \
        sorted(round(a, 12) for a in trials["alpha"])


def test_diverging_trial_is_a_row_and_the_sweep_finishes(cluster, tmp_path):
    spec = _spec(tmp_path, "div", {"alpha": [1.0, 50.0]}, trial={"outer_steps": 3})
    assert main(["run", str(spec)]) == 0
    t = _trials(tmp_path, "div").set_index("alpha")
    assert t.loc[50.0, "status"] == "diverged" and t.loc[1.0, "status"] == "completed"
    assert t.loc[50.0, "outer_steps_done"] <= 3 and pd.isna(t.loc[50.0, "error"])
    assert t.loc[50.0, "reason"]


def test_crashing_trial_is_retried_then_a_failed_row(cluster, tmp_path, capsys):
    # a corpus that passes the spec check but is missing where the trial runs: a crash
    spec = _spec(tmp_path, "crash", {"corpus": ["stdlib", str(tmp_path / "missing.txt")]},
                 search={"kind": "grid", "max_failures": 1})
    assert main(["run", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "retrying" in err
    t = _trials(tmp_path, "crash").set_index("corpus")
    bad = t.loc[str(tmp_path / "missing.txt")]
    assert bad.status == "failed" and "does not exist" in bad.error
    assert t.loc["stdlib", "status"] == "completed"
    # a rerun retries only the failed trial (and it fails again): still one row per trial
    assert main(["run", str(spec)]) == 0
    assert "1 already stored, 1 to run" in capsys.readouterr().err
    assert len(_trials(tmp_path, "crash")) == 2


def test_half_gpu_trials_run_four_at_once_on_two_nodes(cluster, tmp_path):
    # trials of a few seconds: at 6 rounds (about 1 s) a loaded machine started the fourth
    # after the first had ended, and the overlap asserted below was a matter of luck
    spec = _spec(tmp_path, "gpu", {"seed": [0, 1, 2, 3]}, trial={"outer_steps": 30},
                 resources={"cpu": 1, "gpu": 0.5})
    assert main(["run", str(spec)]) == 0
    t = _trials(tmp_path, "gpu")
    assert len(t) == 4 and (t.status == "completed").all()
    worker_nodes = {n.node_id for n in cluster.worker_nodes}
    assert set(t.node_id) == worker_nodes  # both GPU nodes, never the head
    assert sorted(t.node_id.value_counts()) == [2, 2]
    start = t.started_at.map(datetime.fromisoformat)
    end = t.finished_at.map(datetime.fromisoformat)
    assert start.max() < end.min()  # all four were running at one moment


def test_packed_trials_each_write_their_row_and_match_unpacked(cluster, tmp_path, capsys):
    trial = {"outer_steps": 3}  # toy packs through Ray: tests/test_faults_driver.py
    space = {"alpha": [0.7, 1.0, 50.0], "R": [0, 2]}
    packed = _spec(tmp_path, "packed", space, trial=trial,
                   resources={"cpu": 1, "gpu": 0, "pack": 4})
    assert main(["run", str(packed)]) == 0
    assert "2/2 trials" in capsys.readouterr().err  # 6 trials in 2 Tune trials: packs of 4 and 2
    # a pack writes its rows as one file, and its curves as one, each whole or not at all
    for part in ("trials", "curves"):
        files = sorted(f.name for f in (tmp_path / "out" / "packed" / part).iterdir())
        assert len(files) == 2 and all(f.startswith("compacted-pack-") for f in files), files
    p = _trials(tmp_path, "packed")
    assert len(p) == 6 and p.trial_id.is_unique
    assert set(p[p.alpha == 50.0].status) == {"diverged"}
    assert set(p[p.alpha != 50.0].status) == {"completed"}
    curves = pd.read_parquet(tmp_path / "out" / "packed" / "curves")
    assert set(curves.trial_id) == set(p.trial_id)

    plain = _spec(tmp_path, "plain", space, trial=trial)
    assert main(["run", str(plain)]) == 0
    u = _trials(tmp_path, "plain")
    # same configs, same trial_id, same losses as the trials run one per Ray trial
    merged = p.merge(u, on="trial_id", suffixes=("_p", "_u"))
    assert len(merged) == 6
    ok = merged[merged.status_p == "completed"]
    assert ((ok.final_loss_p - ok.final_loss_u).abs() / ok.final_loss_u).max() < 1e-4
    assert (merged.status_p == merged.status_u).all()

    # a rerun of the packed spec runs nothing
    assert main(["run", str(packed)]) == 0
    assert "6 already stored, 0 to run" in capsys.readouterr().err
