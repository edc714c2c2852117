"""The command line wiring: status, show, report, train and theory through `diloco-sweep`."""

from __future__ import annotations

import json

import pytest

from sweeps.spec.space import grid_points
from sweeps.cli import main
from sweeps.spec.parse import parse_spec
from sweeps.store.store import Store, trial_id
from sweeps.tune.trainable import failed_row
from sweeps.tune.trial import trial_config

SPEC = {"name": "fake", "trial": {"workers": 2, "outer_steps": 3},
        "space": {"alpha": [0.5, 1.0, 2.0], "beta": [0.0, 0.9], "R": [0, 3]},
        "output": "unused"}


@pytest.fixture()
def results(tmp_path):
    """A store filled by hand (no Ray, no training): one row per grid point but one."""
    spec = parse_spec(SPEC)
    store = Store(str(tmp_path), "fake")
    store.write_meta({"name": "fake", "spec": spec.to_dict()})
    points = grid_points(spec.space)
    for i, p in enumerate(points[:-1]):
        cfg = trial_config(spec, p)
        if i == 0:
            store.write_trial(failed_row(spec, cfg, "RuntimeError: boom"))
            continue
        diverged = p["alpha"] == 2.0 and p["beta"] == 0.9 and p["R"] == 0
        final = 9.0 if diverged else 3.0 + 0.1 * p["alpha"] - 0.2 * (p["R"] > 0)
        store.write_trial(
            {"sweep": "fake", "trial_id": trial_id(cfg), **cfg.flat(),
             "status": "diverged" if diverged else "completed", "initial_loss": 5.5,
             "final_loss": final, "best_loss": min(final, 5.0), "peak_loss": max(final, 4.0),
             "outer_steps_done": 2 if diverged else 3, "tokens": 3000, "wall_s": 1.0},
            [{"outer_step": t, "tokens": 1000 * (t + 1), "eval_loss": final + 1 - t / 2,
              "train_loss": final, "pseudo_grad_norm": 1.0, "momentum_norm": 1.0,
              "momentum_cos": 0.5, "wall_s": t} for t in range(3)])
    return tmp_path / "fake"


def test_status_counts_against_the_spec(results, capsys):
    assert main(["status", str(results)]) == 0
    out = capsys.readouterr().out
    counts = dict(line.split() for line in out.splitlines()[2:6])
    assert counts == {"completed": "9", "diverged": "1", "failed": "1", "missing": "2"}


def test_status_of_nothing_is_a_user_error(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "no sweep here" in capsys.readouterr().err


def test_show_and_report_call_the_analysis(results, tmp_path, capsys):
    assert main(["show", str(results), "--tol", "0.05"]) == 0
    assert capsys.readouterr().out.strip()
    html = tmp_path / "r.html"
    assert main(["report", str(results), "-o", str(html)]) == 0
    assert html.stat().st_size > 1000
    assert main(["show", str(results), "--tol", "-1"]) == 2
    assert main(["show", str(results), "--rise", "0"]) == 2
    assert "--rise: expected a relative rise above 0" in capsys.readouterr().err
    # the threshold reaches the labels: at rise > 10 nothing blows up, at 0.1 it may
    assert main(["show", str(results), "--rise", "10"]) == 0
    assert "threshold 1000% (end rise above: blew up" in capsys.readouterr().out


def test_train_and_theory_subcommands(capsys):
    assert main(["train", "--H", "2", "--workers", "2", "--outer-steps", "1", "--set",
                 "batch_size=4", "--set", "seq_len=32", "--set", "eval_batches=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1])["summary"]
    assert main(["theory", "--summary", "--H", "2", "--R", "0", "3"]) == 0
    assert "stable fraction" in capsys.readouterr().out


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "check", "status", "report", "show", "train", "theory"):
        assert cmd in out
    with pytest.raises(SystemExit) as e:
        main(["run", "x.yaml", "--max-concurrent", "0"])
    assert e.value.code == 2


def test_report_draws_an_assumed_spectrum_only_when_asked(results, tmp_path, capsys):
    plain, theory = tmp_path / "plain.html", tmp_path / "theory.html"
    assert main(["report", str(results), "-o", str(plain)]) == 0
    assert main(["report", str(results), "-o", str(theory), "--theory-spectrum",
                 "powerlaw:200:1.0", "--theory-eta", "0.3"]) == 0
    # plotly writes trace names as JSON, non-ASCII escaped (η as \u03b7)
    label = json.dumps("predicted for assumed spectrum powerlaw:200:1.0, η=0.3 (not measured)")[1:-1]
    assert label not in plain.read_text() and label in theory.read_text()
    # η defaults to the sweep's own lr (0.003) when every trial shares one; with λ up to 300
    # the stiffest mode's μ = 1 − (1 − 0.9)^10 ≈ 1 puts the boundary inside the grid
    lams = tmp_path / "lams.txt"
    lams.write_text("300\n30\n1\n")
    assert main(["report", str(results), "-o", str(theory), "--theory-spectrum", str(lams)]) == 0
    assert json.dumps("η=0.003")[1:-1] in theory.read_text()


def test_status_last_run_is_the_one_that_ran_trials(results, capsys):
    meta = json.loads((results / "sweep.json").read_text())
    meta["runs"] = [
        {"started_at": "2026-12-01T10:00:00", "ended_at": "2026-12-01T10:09:24", "planned": 12,
         "skipped": 0},
        {"started_at": "2026-12-01T11:00:00", "ended_at": "2026-12-01T11:00:00.013",
         "planned": 0, "skipped": 12}]
    (results / "sweep.json").write_text(json.dumps(meta))
    assert main(["status", str(results)]) == 0
    out = capsys.readouterr().out
    assert "last run with trials: 12 planned, started 2026-12-01T10:00:00, ended " \
           "2026-12-01T10:09:24" in out
    assert "since then: 1 with nothing to run, the last started 2026-12-01T11:00:00" in out


def test_report_on_an_output_root_names_the_sweeps_inside(results, capsys):
    (results.parent / "notes").mkdir()  # a folder that is no sweep is not suggested
    assert main(["report", str(results.parent)]) == 2
    err = capsys.readouterr().err
    assert "no sweep here" in err and f"the sweeps in it: {results}" in err
    assert "notes" not in err


def test_report_without_o_writes_into_the_sweeps_folder(results, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["report", str(results)]) == 0
    assert capsys.readouterr().out.strip() == str(results / "report.html")
    assert (results / "report.html").stat().st_size > 1000
    assert not list(elsewhere.iterdir())  # nothing in the working directory
    from sweeps.cli_report import report_path

    assert report_path("s3://bucket/pre/fake?endpoint_override=h:9&scheme=http") \
        .as_posix() == "fake-report.html"
