"""Another spec under the same name: refused when its fixed trial settings differ from every
spec the stored sweep has run (naming each key, its stored and its new value, and the flag),
before anything in the folder changes; more axis values, more seeds, a setting moved onto an
axis that holds its value, or another search kind over the same settings extend the sweep.
sweep.json keeps every spec run. `check` says the same before a run. No Ray: the trials of an
accepted run are written by a stand-in for Tune.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sweeps.tune.runner
from sweeps.cli import main
from sweeps.spec.history import ALLOW_FLAG, check_settings, setting_changes
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import Store, trial_id
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1}


@pytest.fixture(autouse=True)
def _fake_tune(no_ray, monkeypatch):
    """Tune's stand-in: every planned point gets a completed row."""

    def tune(spec, p, out, *a, **k):
        store = Store(out, spec.name)
        for point in p.todo:
            cfg = trial_config(spec, point)
            store.write_trial({"sweep": spec.name, "trial_id": trial_id(cfg), **cfg.flat(),
                               "status": "completed", "final_loss": 3.0},
                              [{"outer_step": 0, "tokens": 1, "eval_loss": 3.0}])
        return []

    monkeypatch.setattr(sweeps.tune.runner, "run_trials", tune)


def _spec(tmp_path: Path, label: str, trial: dict | None = None, space: dict | None = None,
          search: dict | None = None) -> Path:
    space = space if space is not None else {"seed": [0, 1]}
    trial = {k: v for k, v in {**TINY, **(trial or {})}.items() if k not in space}
    p = tmp_path / f"{label}.yaml"
    p.write_text(json.dumps({"name": "same", "trial": trial, "space": space,
                             "search": search or {}, "output": str(tmp_path / "out")}))
    return p


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _rows(folder: Path) -> int:
    return len(list((folder / "trials").glob("*.parquet")))


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["run", *argv, "--no-report"])
    return rc, capsys.readouterr().err


def test_other_fixed_settings_are_refused_and_extensions_are_added(tmp_path, capsys):
    folder = tmp_path / "out" / "same"
    first = _spec(tmp_path, "first")
    assert _run(capsys, str(first))[0] == 0 and _rows(folder) == 2

    # outer_steps 3 → 5: refused by run and by check, naming the key, both values, the flag
    other = _spec(tmp_path, "other", trial={"outer_steps": 5, "lr": 0.002})
    before = _snapshot(folder)
    for cmd in ("run", "check"):
        rc = main([cmd, str(other)] + (["--no-report"] if cmd == "run" else []))
        out = capsys.readouterr()
        assert rc == 2, out.err
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("diloco-sweep: error: trial settings: "), \
            out.err
        assert "outer_steps: stored 3, this spec 5" in out.err
        assert "lr: stored 0.003, this spec 0.002" in out.err  # a default counts as set
        assert ALLOW_FLAG in out.err and str(folder) in out.err
        assert _snapshot(folder) == before  # nothing changed, no lock left

    # extensions: more seeds; a fixed setting moved onto an axis holding its value; a runtime
    # setting; another search kind over the same settings
    more = _spec(tmp_path, "more", space={"seed": [0, 1, 2]})
    rc, err = _run(capsys, str(more))
    assert rc == 0 and "2 already stored, 1 to run" in err, err
    onto = _spec(tmp_path, "onto", space={"seed": [0], "outer_steps": [3, 4]})
    assert main(["check", str(onto)]) == 0
    rc, err = _run(capsys, str(onto))
    assert rc == 0 and "1 already stored, 1 to run" in err, err
    threads = _spec(tmp_path, "threads", trial={"threads": 1})
    assert _run(capsys, str(threads))[0] == 0
    boundary = _spec(tmp_path, "boundary", space={"seed": [0]},
                     search={"kind": "boundary", "low": 0.5, "high": 2})
    assert _run(capsys, str(boundary))[0] == 0
    assert _rows(folder) == 4 + 2  # the boundary's two first probes

    # with the flag: added, and said so
    capsys.readouterr()
    assert main(["check", str(other), ALLOW_FLAG]) == 0
    assert "outer_steps: stored 3, this spec 5" in capsys.readouterr().err
    rc, err = _run(capsys, str(other), ALLOW_FLAG)
    assert rc == 0 and "adding trials with other fixed settings" in err, err
    assert _rows(folder) == 6 + 2

    # sweep.json keeps every spec, and each run names its own
    meta = json.loads((folder / "sweep.json").read_text())
    stored = [s["space"] for s in meta["specs"]]
    assert len(meta["specs"]) == 6 and stored[1] == {"seed": [0, 1, 2]}
    assert meta["spec"] == meta["specs"][-1] and meta["spec"]["trial"]["outer_steps"] == 5
    assert [r["spec"] for r in meta["runs"]] == [0, 1, 2, 3, 4, 5]
    # a rerun of the first spec matches a spec the sweep has run: no refusal, no new entry
    assert _run(capsys, str(first))[0] == 0
    meta = json.loads((folder / "sweep.json").read_text())
    assert len(meta["specs"]) == 6 and meta["runs"][-1]["spec"] == 0


def test_a_sweep_json_without_specs_still_reads(tmp_path, capsys):
    """Written before `specs` was kept: its one `spec` is what a new spec is compared with."""
    folder = tmp_path / "out" / "same"
    first = _spec(tmp_path, "first")
    assert _run(capsys, str(first))[0] == 0
    meta = json.loads((folder / "sweep.json").read_text())
    del meta["specs"]
    for r in meta["runs"]:
        del r["spec"]
    (folder / "sweep.json").write_text(json.dumps(meta))
    rc, err = _run(capsys, str(_spec(tmp_path, "other", trial={"outer_steps": 5})))
    assert rc == 2 and "outer_steps: stored 3, this spec 5" in err
    assert _run(capsys, str(_spec(tmp_path, "more", space={"seed": [0, 1, 2]})))[0] == 0
    meta = json.loads((folder / "sweep.json").read_text())
    assert [s["space"] for s in meta["specs"]] == [{"seed": [0, 1]}, {"seed": [0, 1, 2]}]
    # a stored spec this version cannot parse: nothing to compare with, the run goes on
    meta["specs"] = [{"name": "same", "trial": {"not_a_setting": 1}}]
    assert setting_changes(parse_spec(json.loads(first.read_text())), meta) is None


def test_a_value_off_the_new_axis_is_a_change():
    old = parse_spec({"name": "s", "trial": TINY, "space": {"seed": [0]}})
    meta = {"spec": old.to_dict()}
    new = parse_spec({"name": "s", "trial": {k: v for k, v in TINY.items() if k != "H"},
                      "space": {"seed": [0], "H": [4, 8]}})
    with pytest.raises(SpecError, match=r"H: stored 2, this spec swept over \[4, 8\]"):
        check_settings(new, meta, "out/s")
    assert check_settings(new, meta, "out/s", allow=True) == [("H", 2, "swept over [4, 8]")]


def test_the_real_command_exits_2(tmp_path, capsys):
    assert _run(capsys, str(_spec(tmp_path, "first")))[0] == 0
    other = _spec(tmp_path, "other", trial={"outer_steps": 5})
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(other)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "outer_steps: stored 3, this spec 5" in r.stderr, r.stderr


def test_check_leaves_a_remote_store_to_run():
    """`check` stays offline: a sweep on S3 is compared by `run` (it used to make `check` of
    paper_lm.yaml wait seconds for an S3 endpoint)."""
    from sweeps.spec.history import check_stored

    spec = parse_spec({"name": "s", "trial": TINY, "space": {"seed": [0]}})
    assert check_stored(spec, "s3://no-such-bucket/x?endpoint_override=127.0.0.1:9") == []
