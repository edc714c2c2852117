"""kind: python, a user's own model and data (docs/user-kind.md), on the example project
examples/tinyfit: the spec refuses what cannot run (key and line), a bad return fails clearly,
params land as typed columns, and the example's sweep runs end to end (report, show, a rerun
of 0 trials, a warning when the code changed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sweeps.spec.parse import SpecError, load_spec
from trainer.user_entry import code_hash

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tinyfit"
HEAD = """\
name: user
trial:
  kind: python
  entry: "{entry}"
  params: {params}
  outer_steps: 2
space:
  alpha: [0.5]
{space}"""


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A copy of the example project as the working directory (where a user runs from)."""
    dest = tmp_path / "proj"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("results", "__pycache__"))
    monkeypatch.chdir(dest)
    monkeypatch.syspath_prepend(str(dest))
    yield dest
    code_hash.cache_clear()


def _spec(project: Path, entry: str = "tinyfit.problem:make", params: str = "{width: 4}",
          space: str = "") -> Path:
    p = project / "spec.yaml"
    p.write_text(HEAD.format(entry=entry, params=params, space=space))
    return p


def _entry(project: Path, name: str, text: str) -> None:
    (project / f"{name}.py").write_text(textwrap.dedent(text))


@pytest.mark.parametrize("entry, params, space, error", [
    ("nosuch_pkg.problem:make", "{width: 4}", "",
     r"^trial\.entry: no module named 'nosuch_pkg' .*\(line 4\)"),
    ("tinyfit.problem:nope", "{width: 4}", "",
     r"^trial\.entry: module 'tinyfit\.problem' has no function 'nope'; it has make \(line 4\)"),
    ("tinyfit/problem", "{width: 4}", "", r"^trial\.entry: expected 'module\.path:function'"),
    ("tinyfit.problem:make", "{wdth: 4}", "",
     r"^trial\.params\.wdth: tinyfit\.problem:make takes no parameter 'wdth' \(line 5\); "
     r"it takes width, depth, activation, batch"),
    ("tinyfit.problem:make", "{width: 4}", "  params:\n    dept: [1, 2]\n",
     r"^space\.params\.dept: tinyfit\.problem:make takes no parameter 'dept' \(line 10\)"),
    ("tinyfit.problem:make", "{}", "  params.width: [4, 8.5]\n",
     r"^space\.params\.width: expected int \(the entry's annotation\), got 8\.5"),
    ("tinyfit.problem:make", "{width: 4}", "  params.width: [4, 8]\n",
     r"^space\.params\.width: also set under trial\.params \(line 5\)"),
    ("tinyfit.problem:make", "{activation: [tanh]}", "",
     r"^trial\.params\.activation: expected an int, float, str or bool .*\(line 5\)"),
    ("tinyfit.problem:make", "{}", "  params.width: {low: 4, high: 16}\n",
     r"^space\.params\.width: a range \{low, high\} needs a sampler .* \(line 9\)"),
    ("tinyfit.problem:make", "{}", "  params.width: {low: 4.5, high: 16, num: 3}\n",
     r"^space\.params\.width: expected int \(the entry's annotation\), got 4\.5"),
    ("tinyfit.problem:make", "{}", "  params.width: {low: 4, high: 5, num: 3}\n",
     r"^space\.params\.width\.num: 3 values from 4 to 5 repeat some .*give at most 2"),
    ("tinyfit.problem:make", "{}", "  params.width: {low: 4, hgh: 16, num: 3}\n",
     r"^space\.params\.width\.hgh"),
    ("tinyfit.problem:make", "{}", "  params.activation: {low: 1, high: 2, num: 2}\n",
     r"^space\.params\.activation: expected str \(the entry's annotation\), got 1"),
])
def test_the_spec_refuses_what_cannot_run_naming_key_and_line(project, entry, params, space,
                                                              error):
    with pytest.raises(SpecError, match=error):
        load_spec(_spec(project, entry, params, space))


def test_a_required_parameter_nobody_sets_and_params_of_another_kind(project):
    _entry(project, "needs_width", """
        def make(trial, width: int, noise: float = 0.0):
            raise AssertionError("not called by the spec check")
        """)
    with pytest.raises(SpecError, match=r"^trial\.params\.width: missing; needs_width:make "
                                        r"takes it with no default"):
        load_spec(_spec(project, "needs_width:make", "{noise: 0.5}"))
    # an int written for a float parameter is a float: 1 and 1.0 are one trial
    spec = load_spec(_spec(project, "needs_width:make", "{width: 3}",
                           "  params.noise: [0, 1]\n"))
    assert spec.trial["params"] == {"width": 3}
    assert spec.space["params.noise"].values == (0.0, 1.0)
    p = project / "pack.yaml"
    p.write_text(_spec(project).read_text() + "resources: {pack: 4}\n")
    with pytest.raises(SpecError, match=r"^resources\.pack: trials of kind python do not pack"):
        load_spec(p)
    p = project / "lm.yaml"
    p.write_text("name: x\ntrial:\n  kind: lm\n  params: {width: 4}\n")
    with pytest.raises(SpecError, match=r"^trial\.params: only for a trial kind that runs a "
                                        r"user's entry \(kind: python\); .* lm \(line 4\)"):
        load_spec(p)


def test_an_entry_that_raises_while_check_builds_it_is_refused_naming_its_params(project,
                                                                                 capsys):
    """`check` and `run` build the model once to count it; the user's own error there is bad
    input (exit 2) that names the entry and the params, and `run` writes nothing."""
    from sweeps.cli import main

    _entry(project, "odd_width", """
        def make(trial, width: int = 4):
            if width % 2:
                raise ValueError("width must be even")
        """)
    spec = _spec(project, "odd_width:make", "{}", "  params.width: [4, 3]\n")
    for cmd in ("check", "run"):
        assert main([cmd, str(spec)]) == 2
        err = capsys.readouterr().err
        assert ("trial: entry odd_width:make with params {'width': " in err
                and "raised ValueError: width must be even" in err), err
    assert not (project / "results").exists()


def test_a_param_axis_may_be_spaced_or_a_sampled_range_as_any_other_axis(project):
    spec = load_spec(_spec(project, params="{}", space="  params.width: {low: 4, high: 32, "
                                                          "num: 4, log: true}\n"))
    assert spec.space["params.width"].values == (4, 8, 16, 32)
    assert spec.n_trials == 4
    _entry(project, "noisy", """
        def make(trial, width: int = 4, noise: float = 0.0, act: str = "tanh"):
            raise AssertionError("not called by the spec check")
        """)
    p = project / "sampled.yaml"
    p.write_text(HEAD.format(entry="noisy:make", params="{}", space="")
                 + "  params: {width: {low: 4, high: 12}, noise: {low: 0, high: 1}}\n"
                 + "search: {kind: optuna, num_samples: 3}\n")
    spec = load_spec(p)
    width, noise = spec.space["params.width"], spec.space["params.noise"]
    assert (width.low, width.high, width.integer) == (4, 12, True)
    assert (noise.low, noise.high, noise.integer) == (0.0, 1.0, False)  # a float parameter
    p.write_text(p.read_text().replace("noise: {low: 0, high: 1}", "act: {low: 0, high: 1}"))
    with pytest.raises(SpecError, match=r"^space\.params\.act: a range needs a numeric "
                                        r"parameter; the entry annotates it str"):
        load_spec(p)


def test_a_wrong_return_fails_the_trial_with_a_clear_error(project):
    from trainer import TrainConfig, train
    from trainer.user_entry import EntryError

    _entry(project, "returns_dict", """
        def make(trial, width: int = 4):
            return {"model": width}
        """)
    cfg = TrainConfig(kind="python", entry="returns_dict:make", outer_steps=1)
    with pytest.raises(EntryError, match=r"^entry returns_dict:make returned a dict; it must "
                                         r"return trainer\.user\.UserProblem\(model=\.\.\."):
        train(cfg)


def test_params_are_typed_setting_columns_and_the_id_hashes_them(project, tmp_path):
    from records.identity import row_trial_id
    from sweeps.store.store import Store, trial_id
    from sweeps.tune.trial import trial_config
    from trainer import train

    spec = load_spec(_spec(project, params="{activation: relu, depth: 1}",
                           space="  params.width: [4, 8]\n"))
    store = Store(str(tmp_path / "out"), "user")
    ids = []
    for w in (4, 8):
        cfg = trial_config(spec, {"alpha": 0.5, "params.width": w})
        assert cfg.params == {"activation": "relu", "depth": 1, "width": w}
        r = train(cfg)
        assert r.status == "completed" and r.n_params == (4 * w + w) + (w + 1)
        ids.append(trial_id(cfg))
        store.write_trial({"sweep": "user", "trial_id": ids[-1], **cfg.flat(), **r.summary(),
                           "code_hash": cfg.trial_kind.code_version(cfg)}, r.curve)
    assert ids[0] != ids[1]
    schema = pq.read_schema(tmp_path / "out" / "user" / "trials" / f"{ids[0]}.parquet")
    types = {n: str(schema.field(n).type) for n in schema.names if n.startswith("params.")}
    assert types == {"params.activation": "string", "params.depth": "int64",
                     "params.width": "int64"}
    assert schema.field("params.width").metadata[b"role"] == b"setting"
    assert schema.field("params").metadata[b"role"] == b"bookkeeping"
    rows = store.read_trials().to_pylist()  # trusted: each row's settings hash to its id
    assert sorted(r["trial_id"] for r in rows) == sorted(ids) and not store.skipped
    assert {r["params.width"] for r in rows} == {4, 8}
    assert all(row_trial_id(r) == r["trial_id"] for r in rows)
    assert {r["code_hash"] for r in rows} == {code_hash("tinyfit.problem:make")}


@pytest.mark.ray
@pytest.mark.slow
def test_the_example_sweeps_end_to_end_then_reruns_nothing(project):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)

    def cli(*args: str, cwd: Path = project) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r

    r = cli("run", "spec.yaml")
    assert "16 trials, 0 already stored, 16 to run" in r.stderr
    folder = project / "results" / "tinyfit"
    import pandas as pd

    trials = pd.read_parquet(folder / "trials")
    assert len(trials) == 16 and set(trials.status) <= {"completed", "diverged"}
    assert str(trials["params.width"].dtype) == "int64"
    assert sorted(set(trials["params.width"])) == [8, 16]
    assert set(trials["params.activation"]) == {"tanh"} and set(trials["params.depth"]) == {2}
    now = code_hash("tinyfit.problem:make")
    assert set(trials.code_hash) == {now}
    meta = json.loads((folder / "sweep.json").read_text())
    assert meta["code"] == {"tinyfit.problem:make": now}
    assert meta["spec"]["space"]["params.width"] == [8, 16]
    assert (folder / "report.html").exists()

    # read where the user's code is not: show, report and status never import the entry
    elsewhere = project.parent
    status = cli("status", str(folder), cwd=elsewhere).stdout
    assert "missing          0" in status
    shown = cli("show", str(folder), cwd=elsewhere).stdout
    assert "params.width" in shown and "H=5, R=2, params.width=16" in shown
    cli("report", str(folder), "--out", str(project / "again.html"), cwd=elsewhere)
    assert (project / "again.html").stat().st_size > 10_000

    r = cli("run", "spec.yaml", "--no-report")
    assert "16 trials, 16 already stored, 0 to run" in r.stderr and "other code" not in r.stderr
    # the user edits their model: ids do not see it; run says so, and still runs nothing
    model = project / "tinyfit" / "model.py"
    model.write_text(model.read_text() + "\n# an edit\n")
    r = cli("run", "spec.yaml", "--no-report")
    assert "16 trials, 16 already stored, 0 to run" in r.stderr
    assert f"16 stored trial(s) of tinyfit.problem:make ran other code ({now} (16)" in r.stderr
    assert "--force reruns" in r.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_optuna_samples_a_users_int_and_float_ranges_into_typed_columns(project):
    """Ranges of the user's parameters reach Optuna as an int and a float distribution, and
    each trial's values land in their typed columns."""
    _entry(project, "noisy", """
        from tinyfit.problem import make as base

        def make(trial, width: int = 4, noise: float = 0.0):
            return base(trial, width=width, depth=1)
        """)
    p = project / "sampled.yaml"
    p.write_text(HEAD.format(entry="noisy:make", params="{}", space="")
                 + "  params: {width: {low: 4, high: 12}, noise: {low: 0, high: 1}}\n"
                 + "search: {kind: optuna, num_samples: 3, seed: 1}\n"
                 + "resources: {cpu: 1}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(p), "--no-report"],
                       cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import pandas as pd

    trials = pd.read_parquet(project / "results" / "user" / "trials")
    assert len(trials) == 3 and set(trials.status) <= {"completed", "diverged"}
    assert str(trials["params.width"].dtype) == "int64"
    assert str(trials["params.noise"].dtype) == "float64"
    assert trials["params.width"].between(4, 12).all()
    assert trials["params.noise"].between(0, 1).all() and trials["params.noise"].nunique() == 3


def test_check_counts_the_users_model_per_swept_param_for_cost_and_memory(project):
    from sweeps.estimate.cost import format_cost, sweep_cost
    from sweeps.estimate.preflight import largest_configs

    spec = load_spec(_spec(project, params="{depth: 1}", space="  params.width: [4, 8]\n"))
    groups = {d["params.width"]: (k, c.params) for d, k, c in sweep_cost(spec).groups}
    assert groups == {4: (1, 4 * 4 + 4 + 4 + 1), 8: (1, 4 * 8 + 8 + 8 + 1)}  # built, not trained
    assert [c.params["width"] for c in largest_configs(spec)] == [4, 8]  # memory: every width
    header = format_cost(sweep_cost(spec))
    assert "6·N per training sample" in header and "L·d·T" not in header  # its own model


def test_an_entry_may_return_a_lower_level_problem(project):
    """For full control (its own workers and inner step) an entry returns a trainer.loop
    Problem; the outer step, restarts and divergence stay the tool's."""
    from trainer import TrainConfig, train

    _entry(project, "own_problem", """
        from trainer.toy import ToyProblem

        def make(trial, dim: int = 8):
            return ToyProblem(trial.replace(kind="toy", toy_dim=dim))
        """)
    cfg = TrainConfig(kind="python", entry="own_problem:make", params={"dim": 8}, lr=0.5,
                      outer_steps=3, H=2, workers=2)
    r = train(cfg)
    alone = train(cfg.replace(kind="toy", toy_dim=8, entry="", params=None))
    assert r.status == "completed" and r.n_params == 8 and r.final_loss == alone.final_loss
    assert cfg.trial_kind.memory(cfg, "cpu").params == 8
