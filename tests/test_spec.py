"""Spec loading and validation: every refused spec exits non-zero, names the key, writes nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.spec.space import grid_points
from sweeps.cli import main
from sweeps.spec.parse import SpecError, load_spec, parse_spec
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "sweeps" / "specs"

GOOD = """\
name: ok-sweep
trial:
  model: tiny
  workers: 2
  outer_steps: 2
space:
  alpha: [0.5, 1.0]
  seed: [0, 1]
search:
  kind: grid
"""

OPTUNA = """\
name: ok-optuna
trial:
  model: tiny
space:
  alpha: {low: 0.1, high: 2.0, log: true}
  R: [0, 3]
search:
  kind: optuna
  sampler: random
  num_samples: 5
"""

# (case id, spec text, text the error must contain, line it must name or None)
REFUSED = [
    ("unknown-top-key", GOOD.replace("search:", "serach:"), "serach", 9),
    ("unknown-top-key-suggests", GOOD.replace("search:", "serach:"), "did you mean 'search'", 9),
    ("unknown-trial-key", GOOD.replace("workers: 2", "wokers: 2"), "trial.wokers", 4),
    ("unknown-trial-key-suggests", GOOD.replace("workers: 2", "wokers: 2"), "'workers'", 4),
    ("unknown-space-key", GOOD.replace("alpha: [", "alpah: ["), "space.alpah", 7),
    ("case-only-suggests-that-key", GOOD.replace("seed: [0, 1]", "r: [0, 3]"),
     "space.r: unknown key (line 8); did you mean 'R'?", 8),  # not 'lr', closer by letters
    ("wrong-type-trial", GOOD.replace("workers: 2", "workers: two"), "trial.workers", 4),
    ("wrong-type-axis-value", GOOD.replace("seed: [0, 1]", "seed: [0, one]"), "space.seed", 8),
    ("axis-not-a-list", GOOD.replace("seed: [0, 1]", "seed: 3"), "space.seed", 8),
    ("empty-axis", GOOD.replace("seed: [0, 1]", "seed: []"), "space.seed", 8),
    ("out-of-range-axis-value", GOOD.replace("alpha: [0.5, 1.0]", "alpha: [0.5, -1.0]"),
     "space.alpha", 7),
    ("repeated-axis-value", GOOD.replace("seed: [0, 1]", "seed: [1, 1]"), "space.seed", None),
    ("nan", GOOD.replace("alpha: [0.5, 1.0]", "alpha: [0.5, .nan]"), "space.alpha", 7),
    ("inf", GOOD.replace("workers: 2", "workers: 2\n  lr: .inf"), "trial.lr", 5),
    ("low-ge-high", OPTUNA.replace("low: 0.1, high: 2.0", "low: 2.0, high: 0.5"),
     "space.alpha", 5),
    ("low-eq-high", OPTUNA.replace("low: 0.1, high: 2.0", "low: 1.0, high: 1.0"),
     "space.alpha", 5),
    ("range-missing-high", OPTUNA.replace(", high: 2.0", ""), "space.alpha.high", None),
    ("range-unknown-key", OPTUNA.replace("log: true", "logg: true"), "space.alpha.logg", 5),
    ("log-range-nonpositive", OPTUNA.replace("low: 0.1", "low: 0.0"), "space.alpha", 5),
    ("range-on-text-setting", OPTUNA.replace("R: [0, 3]", "outer: {low: 0, high: 1}"),
     "space.outer", 6),
    ("range-in-grid", GOOD.replace("alpha: [0.5, 1.0]", "alpha: {low: 0.5, high: 1.0}"),
     "space.alpha", 7),
    ("bad-name-uppercase", GOOD.replace("name: ok-sweep", "name: My Sweep"), "name", 1),
    ("bad-name-slash", GOOD.replace("name: ok-sweep", "name: ../escape"), "name", 1),
    ("missing-name", GOOD.replace("name: ok-sweep\n", ""), "name", None),
    ("unknown-search-kind", GOOD.replace("kind: grid", "kind: bayes"), "search.kind", 10),
    ("unknown-sampler", OPTUNA.replace("sampler: random", "sampler: hyperband"),
     "search.sampler", 9),
    ("sampler-key-in-grid", GOOD.replace("kind: grid", "kind: grid\n  num_samples: 3"),
     "search.num_samples", 11),
    ("num-samples-zero", OPTUNA.replace("num_samples: 5", "num_samples: 0"),
     "search.num_samples", 10),
    ("unknown-metric", OPTUNA + "  metric: accuracy\n", "search.metric", 11),
    ("point-unknown-axis", OPTUNA + "  points_to_evaluate:\n    - {alpha: 0.5, R: 0, H: 3}\n",
     "points_to_evaluate[0].H", None),
    ("point-outside-range", OPTUNA + "  points_to_evaluate:\n    - {alpha: 9.0, R: 0}\n",
     "points_to_evaluate[0].alpha", None),
    ("bad-gpu", GOOD + "resources: {cpu: 1, gpu: -1}\n", "resources.gpu", 11),
    ("unknown-resource", GOOD + "resources: {cpus: 1}\n", "resources.cpus", 11),
    ("set-twice", GOOD.replace("workers: 2", "workers: 2\n  alpha: 0.7"), "space.alpha", 8),
    ("unknown-preset", GOOD.replace("model: tiny", "model: tinyy"), "trial.model", 3),
    ("duplicate-key", GOOD.replace("workers: 2", "workers: 2\n  workers: 3"), "workers", 5),
    ("not-a-mapping", "- just\n- a list\n", "a spec is a mapping", None),
    ("not-yaml", "name: [unclosed\n", "not valid YAML", None),
    ("empty-file", "", "empty file", None),
    ("bad-output", GOOD + "output: 3\n", "output", 11),
    ("num-too-small", GOOD.replace("alpha: [0.5, 1.0]", "alpha: {low: 0.5, high: 1.0, num: 1}"),
     "space.alpha.num", 7),
    ("num-not-int", GOOD.replace("alpha: [0.5, 1.0]", "alpha: {low: 0.5, high: 1.0, num: 2.5}"),
     "space.alpha.num", 7),
    ("num-int-repeats", GOOD.replace("seed: [0, 1]", "seed: {low: 0, high: 3, num: 9}"),
     "space.seed.num", None),
    ("num-bad-end", GOOD.replace("alpha: [0.5, 1.0]", "alpha: {low: -1.0, high: 1.0, num: 5}"),
     "space.alpha.low", None),
]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text", [GOOD, OPTUNA], ids=["grid", "optuna"])
def test_good_specs_pass(tmp_path, text):
    spec = load_spec(_write(tmp_path, text))
    assert spec.n_trials in (4, 5)


@pytest.mark.parametrize("case,text,needle,line", REFUSED, ids=[c[0] for c in REFUSED])
@pytest.mark.parametrize("command", ["check", "run"])
def test_refused_spec(tmp_path, capsys, case, text, needle, line, command):
    out = tmp_path / "out"
    spec = _write(tmp_path, text)
    argv = [command, str(spec)] + (["--output", str(out)] if command == "run" else [])
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err, err
    if line is not None:
        assert f"line {line}" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one clear line
    assert not out.exists()  # nothing written, not even the sweep folder


def test_missing_spec_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the spec file" in capsys.readouterr().err


def test_sampler_without_its_package_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmaes", None)  # `import cmaes` now fails, as when missing
    rc = main(["check", str(_write(tmp_path, OPTUNA.replace("sampler: random",
                                                              "sampler: cmaes")))])
    err = capsys.readouterr().err
    assert rc == 2 and "search.sampler" in err and "cmaes" in err


def test_check_prints_spec_and_trial_count(tmp_path, capsys):
    assert main(["check", str(_write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "name: ok-sweep" in out and "# 4 trials (grid: 2 alpha × 2 seed)" in out
    assert main(["check", str(_write(tmp_path, OPTUNA))]) == 0
    assert "# 5 trials (optuna random" in capsys.readouterr().out


@pytest.mark.parametrize("name,trials", [("smoke", 4), ("restart_cpu", 252), ("paper_lm", 300),
                                         ("paper_mini", 280)])
def test_shipped_specs_validate(capsys, name, trials):
    spec = load_spec(SPECS / f"{name}.yaml")
    assert spec.n_trials == trials
    # paper_lm is for a GPU cluster (1 GPU a trial, its corpus on the nodes): checked as such
    cluster = ["--address", "ray://head:10001"] if name == "paper_lm" else []
    assert main(["check", str(SPECS / f"{name}.yaml"), *cluster]) == 0
    assert f"# {trials} trials" in capsys.readouterr().out


def test_paper_grid_is_the_papers():
    s = load_spec(SPECS / "paper_lm.yaml")
    assert list(s.space["alpha"].values) == [0.1, 0.3, 0.5, 0.7, 0.9, 1.1]
    assert list(s.space["beta"].values) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert list(s.space["H"].values) == [64, 128, 512, 1024, 2048]
    assert list(s.space["R"].values) == [0, 3]
    assert s.trial["workers"] == 2 and s.trial["model"] == "paper150m"
    assert s.resources.gpu == 1
    # as the paper ran it: a budget of 12,500 inner steps at every H, 64 × 2048 tokens per
    # worker step, inner AdamW at 1e-3, torch's Nesterov convention (docs/design.md)
    assert s.trial["inner_steps_budget"] == 12500 and "outer_steps" not in s.trial
    assert (s.trial["seq_len"], s.trial["batch_size"], s.trial["lr"]) == (2048, 64, 1e-3)
    assert s.trial["outer"] == "nesterov"


def test_paper_mini_is_the_papers_axes_in_miniature():
    """The paper's α (extended past where both arms break) and β axes, its budget semantics at
    two H, R in {0, 3}, the same outer convention as paper_lm.yaml, the tiny model."""
    mini, paper = (load_spec(SPECS / f"{n}.yaml") for n in ("paper_mini", "paper_lm"))
    alphas = list(mini.space["alpha"].values)
    assert alphas[:6] == list(paper.space["alpha"].values) and max(alphas) >= 18
    assert list(mini.space["beta"].values) == list(paper.space["beta"].values)
    assert list(mini.space["H"].values) == [8, 32] and list(mini.space["R"].values) == [0, 3]
    assert mini.trial["inner_steps_budget"] == 384 and "outer_steps" not in mini.trial
    assert mini.trial["outer"] == paper.trial["outer"] and mini.trial["model"] == "tiny"
    assert mini.trial["workers"] == paper.trial["workers"] == 2
    assert {p["H"]: trial_config(mini, p).outer_steps for p in
            ({"alpha": 1.1, "beta": 0.9, "H": h, "R": 3, "seed": 0} for h in (8, 32))} \
        == {8: 48, 32: 12}


def test_yaml_details():
    from sweeps.spec import yamlmarks

    d = yamlmarks.load("lr: 1e-3\nx: 5\n")
    assert d == {"lr": 0.001, "x": 5} and isinstance(d["lr"], float)
    assert d.lines == {"lr": 1, "x": 2}
    # an int written for a float setting is the same trial as the float
    a = parse_spec({"name": "a", "space": {"alpha": [1]}})
    b = parse_spec({"name": "a", "space": {"alpha": [1.0]}})
    assert grid_points(a.space) == grid_points(b.space) == [{"alpha": 1.0}]


def test_spec_roundtrips_through_its_dict():
    s = load_spec(SPECS / "smoke.yaml")
    again = parse_spec(s.to_dict())
    assert again.to_dict() == s.to_dict()
    o = parse_spec(yaml_load(OPTUNA))
    assert parse_spec(o.to_dict()).to_dict() == o.to_dict()


def yaml_load(text: str):
    import yaml

    return yaml.safe_load(text)


def test_python_m_sweeps_check_subprocess(tmp_path):
    """The real command line: exit codes and one-line errors, as a user sees them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "sweeps", "check", str(SPECS / "smoke.yaml")],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "# 4 trials" in ok.stdout
    bad = _write(tmp_path, GOOD.replace("workers: 2", "wokers: 2"))
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(bad), "--output",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "diloco-sweep: error: trial.wokers: unknown key (line 4); did you mean 'workers'?"]
    assert not (tmp_path / "out").exists()


HEAVY = ("ray", "torch", "optuna", "plotly", "pandas")


@pytest.mark.parametrize("name", ["smoke", "restart_cpu", "restart_boundary", "toy_map",
                                  "paper_lm"])
def test_check_imports_no_heavy_library(tmp_path, name):
    """`check` reads a shipped spec without Ray, torch, Optuna, plotly or pandas (docs/sweeps.md,
    "check"): a fresh interpreter, then the modules it loaded. A GPU spec (paper_lm) too, on a
    machine without an NVIDIA driver; where there is one, torch counts the GPUs."""
    from sweeps.estimate.preflight import cuda_gpus

    want = "0 ['torch']" if name == "paper_lm" and cuda_gpus() else "0 []"
    code = ("import contextlib, io, sys\nfrom sweeps.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['check', {str(SPECS / (name + '.yaml'))!r}])\n"
            f"print(rc, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.stdout.strip() == want, r.stdout + r.stderr[-2000:]


def test_a_refused_spec_imports_no_heavy_library(tmp_path):
    bad = _write(tmp_path, GOOD.replace("model: tiny", "model: {preset: tiny, N_layer: 1}"))
    code = ("import contextlib, io, sys\nfrom sweeps.cli import main\n"
            "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
            f"    rc = main(['check', {str(bad)!r}])\n"
            f"print(rc, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
            "print(err.getvalue())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    first, message = r.stdout.split("\n", 1)
    assert first == "2 []", r.stdout + r.stderr[-2000:]
    assert "trial.model.N_layer: not a model field; did you mean 'n_layer'?" in message


def test_spec_error_is_a_value_error():
    with pytest.raises(SpecError):
        parse_spec({"name": "x", "trial": {"H": 0}})
    with pytest.raises(ValueError, match="trial.H"):
        parse_spec({"name": "x", "trial": {"H": 0}})


def test_pack_is_grid_only_and_a_positive_integer(tmp_path, capsys):
    assert main(["check", str(_write(tmp_path, GOOD + "resources: {pack: 0}\n"))]) == 2
    assert "resources.pack: expected an integer >= 1" in capsys.readouterr().err
    assert main(["check", str(_write(tmp_path, OPTUNA + "resources: {pack: 4}\n"))]) == 2
    assert "resources.pack: packing needs a grid search" in capsys.readouterr().err
    assert main(["check", str(_write(tmp_path, GOOD + "resources: {pack: 4}\n"))]) == 0


def test_every_problem_of_a_spec_is_reported_at_once(tmp_path, capsys):
    text = ("name: many\n"
            "trial:\n"
            "  wokers: 4\n"                      # line 3: unknown trial key
            "  lr: -1\n"                         # line 4: a value the trainer refuses
            "space:\n"
            "  alpha: [0.5, 0.5]\n"              # line 6: a repeated value
            "  bogus: [1]\n"                     # line 7: not a setting
            "resources: {cpu: 0}\n"              # line 8
            "output: ''\n")
    p = tmp_path / "many.yaml"
    p.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(p)
    msg = str(e.value)
    for key in ("trial.wokers", "trial.lr", "space.alpha", "space.bogus", "resources.cpu",
                "output"):
        assert key in msg, (key, msg)
    assert msg.splitlines()[0].startswith("trial.wokers: unknown key (line 3)")
    assert "(6 problems)" in msg
    assert main(["check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "trial.wokers" in err and "resources.cpu" in err and "(6 problems)" in err


def test_one_problem_reads_as_before():
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "x", "trial": {"wokers": 4}})
    assert str(e.value).startswith("trial.wokers: unknown key") and "\n" not in str(e.value)


def test_a_spaced_axis_is_a_grid_axis_of_evenly_spaced_values(tmp_path):
    """{low, high, num} (and log: true) spans num values, ends included, as numpy does."""
    text = GOOD.replace("alpha: [0.5, 1.0]", "alpha: {low: 0.1, high: 1.0, num: 4, log: true}")
    text = text.replace("seed: [0, 1]", "seed: {low: 0, high: 6, num: 3}")
    spec = load_spec(_write(tmp_path, text))
    assert spec.space["alpha"].values == (0.1, 0.215443469003, 0.464158883361, 1.0)
    assert spec.space["seed"].values == (0, 3, 6)
    assert spec.n_trials == 12
