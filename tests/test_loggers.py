"""`loggers: [tensorboard, mlflow, wandb]` turns on Ray Tune's own logger callbacks; each tool's
output is read back with that tool's own reader, offline."""

from __future__ import annotations

import glob
import importlib.util
import io

import pytest

from sweeps.cli import main
from sweeps.tune.loggers import logger_callbacks
from sweeps.tune.runner import run_sweep
from sweeps.spec.parse import SpecError, parse_spec

TRIAL = {"workers": 2, "outer_steps": 3, "H": 2, "threads": 1, "batch_size": 2, "seq_len": 16,
         "eval_batches": 1}


def _spec(loggers) -> dict:
    return {"name": "logged", "trial": TRIAL, "space": {"alpha": [0.5, 1.0]}, "loggers": loggers}


def _check(tmp_path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code = main(["check", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("text,needle", [
    ("name: s\nloggers: [tensorbaord]\n",
     "loggers[0]: 'tensorbaord' is not a logger; use any of tensorboard, mlflow, wandb (line 2)"),
    ("name: s\nloggers: [mlflow, mlflow]\n", "loggers[1]: 'mlflow' appears twice"),
    ("name: s\nloggers: mlflow\n", "loggers: expected a list of logger names"),
    ("name: s\nlogers: [mlflow]\n", "logers: unknown key (line 2); did you mean 'loggers'?"),
])
def test_a_wrong_loggers_entry_is_refused_by_check(tmp_path, capsys, text, needle):
    code, err = _check(tmp_path, text, capsys)
    assert code == 2 and needle in err, err


def test_a_logger_whose_package_is_missing_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SpecError, match=r"wandb needs the wandb package.*diloco-sweep\[wandb\]"):
        parse_spec(_spec(["wandb"]))


def test_the_spec_keeps_its_loggers_and_check_prints_them(tmp_path, capsys):
    spec = parse_spec(_spec(["tensorboard", "mlflow"]))
    assert spec.loggers == ("tensorboard", "mlflow")
    assert parse_spec(spec.to_dict()).loggers == spec.loggers
    assert "loggers" not in parse_spec({"name": "s"}).to_dict()  # older specs unchanged
    (tmp_path / "s.yaml").write_text("name: s\nloggers: [tensorboard]\n")
    assert main(["check", str(tmp_path / "s.yaml")]) == 0
    assert "loggers:\n- tensorboard" in capsys.readouterr().out


def test_the_callbacks_are_rays_own():
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.tune.logger import TBXLoggerCallback

    cbs = logger_callbacks(parse_spec(_spec(["tensorboard", "mlflow", "wandb"])), "/r")
    assert [type(c).__mro__[1] if i == 0 else type(c) for i, c in enumerate(cbs)] == \
        [TBXLoggerCallback, MLflowLoggerCallback, WandbLoggerCallback]
    assert cbs[1].tracking_uri == "sqlite:////r/logged/mlflow.db"
    assert cbs[1].experiment_name == cbs[2].project == "logged"
    assert logger_callbacks(parse_spec({"name": "s"}), "/r") == []


def test_mlflow_beside_an_s3_output_needs_a_tracking_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = parse_spec(_spec(["mlflow"]))
    with pytest.raises(SpecError, match="set MLFLOW_TRACKING_URI"):
        run_sweep(spec, output="s3://bucket/prefix?endpoint_override=127.0.0.1:1&scheme=http",
                  stream=io.StringIO())


@pytest.mark.ray
@pytest.mark.slow
def test_every_logger_writes_what_its_own_reader_reads_back(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import analysis

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # W&B offline: the logging actors inherit these from the embedded Ray this run starts
    wandb_env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    for k, v in wandb_env.items():
        monkeypatch.setenv(k, v)
    spec = parse_spec(_spec(["tensorboard", "mlflow", "wandb"]))
    s = run_sweep(spec, output=str(tmp_path), stream=io.StringIO())
    assert s.counts["completed"] == 2
    curves = analysis.load_curves(tmp_path / "logged")
    trials = analysis.load_trials(tmp_path / "logged")

    # TensorBoard: one run per trial, named by the store's trial_id, every outer step's loss
    for tid in trials.trial_id:
        ea = EventAccumulator(str(tmp_path / "logged" / "tensorboard" / tid))
        ea.Reload()
        want = curves[curves.trial_id == tid].eval_loss.tolist()
        got = ea.Scalars("ray/tune/eval_loss")
        assert [e.step for e in got] == [1, 2, 3]
        assert [e.value for e in got] == pytest.approx(want, rel=1e-6)
        assert "ray/tune/momentum_cos" in ea.Tags()["scalars"]

    # MLflow: the experiment is the sweep, a run per trial with its config and curve
    client = MlflowClient(f"sqlite:///{tmp_path}/logged/mlflow.db")
    exp = client.get_experiment_by_name("logged")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["params/alpha"] for r in runs) == ["0.5", "1.0"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["sweep"] == "logged"
        alpha = float(r.data.params["params/alpha"])
        tid = trials[trials.alpha == alpha].trial_id.item()
        history = client.get_metric_history(r.info.run_id, "eval_loss")
        assert [m.value for m in history] == pytest.approx(
            curves[curves.trial_id == tid].eval_loss.tolist(), rel=1e-6)

    # W&B offline: a run folder per trial, its records on disk (no reader ships with wandb)
    folders = sorted(glob.glob(f"{tmp_path}/wandb/offline-run-*"))
    assert len(folders) == 2
    for f in folders:
        (log,) = glob.glob(f"{f}/run-*.wandb")
        data = open(log, "rb").read()
        assert data[:4] == b":W&B" and b"eval_loss" in data and b"momentum_cos" in data
