"""Ctrl-C and a store that dies, for real: a `python -m sweeps run` interrupted by SIGINT to its
process group (what a terminal sends), and an output disk that fills up mid-sweep on a
simulated cluster. Nothing stored is lost, nothing is stored twice, and the run says what
happened: exit 130 with the missing count and the resume command; or, after the store fails,
no more trials started (none trained twice) and every trial not stored named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import fill_disk, kill_group, loopback_cluster, mount_tmpfs, run_until_stored
from sweeps.cli import main
from sweeps.spec.parse import load_spec
from sweeps.store.store import trial_id
from sweeps.spec.space import grid_points
from sweeps.tune.trial import trial_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}


def _spec(tmp_path: Path, name: str, seeds: int, output: Path, **trial) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(json.dumps({"name": name, "trial": {**TINY, **trial},
                             "space": {"seed": list(range(seeds))},
                             "resources": {"cpu": 1, "gpu": 0}, "output": str(output)}))
    return p


def _ids(spec: Path) -> list[str]:
    s = load_spec(spec)
    return [trial_id(trial_config(s, p)) for p in grid_points(s.space)]


def _stored(folder: Path) -> list[str]:
    d = folder / "trials"
    return sorted(p.stem for p in d.glob("*.parquet")) if d.exists() else []


def test_ctrl_c_exits_130_says_what_is_missing_and_how_to_resume(tmp_path, env):
    n = 5
    out = tmp_path / "out"
    spec = _spec(tmp_path, "cc", n, out, outer_steps=8)
    folder = out / "cc"
    p, log = run_until_stored(tmp_path, spec, folder, env)
    try:
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        rc = p.wait(timeout=120)
    finally:
        kill_group(p)
    text = log.read_text()
    stored = _stored(folder)
    assert rc == 130, text[-3000:]
    assert 1 <= len(stored) < n
    assert f"{n - len(stored)} of {n} trials missing" in text, text[-3000:]
    assert f"diloco-sweep run {spec} --output {out}" in text
    assert "diloco-sweep: interrupted" in text
    for noise in ("Tuner.restore", "FileNotFoundError", "Traceback", "finished in"):
        assert noise not in text, (noise, text[-3000:])
    assert not (folder / "report.html").exists()  # no report that looks whole
    run = json.loads((folder / "sweep.json").read_text())["runs"][-1]
    assert run["interrupted"] is True and run["ended_at"] and run["outcome"] == "interrupted"
    assert not list(folder.rglob(".*.tmp-*"))

    # a report written now says it is partial
    assert main(["report", str(folder), "-o", str(tmp_path / "r.html")]) == 0
    assert "PARTIAL RESULTS: its last run was interrupted" in (tmp_path / "r.html").read_text()
    # the printed command resumes it: only the missing trials run, each stored once
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec), "--output", str(out),
                        "--no-report"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{len(stored)} already stored, {n - len(stored)} to run" in r.stderr
    t = pd.read_parquet(folder / "trials")
    assert sorted(t.trial_id) == sorted(_ids(spec))  # every trial once




def test_after_the_store_fails_no_more_trials_start(tmp_path, capsys):
    """One 1-CPU node: trials run one at a time. The disk fills as soon as the first row
    lands; the next trial cannot store its row. It is not retried (it used to train twice
    before NOT STORED), no later trial starts, and every trial not stored is named."""
    n = 5
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    try:
        spec = _spec(tmp_path, "gone", n, disk)  # search.max_failures: the default 1
        trials = disk / "gone" / "trials"

        def fill_after_first_row():
            deadline = time.time() + 300
            while time.time() < deadline:
                if _stored(disk / "gone"):
                    fill_disk(disk / "filler")
                    return
                time.sleep(0.02)

        filler = threading.Thread(target=fill_after_first_row, daemon=True)
        with loopback_cluster(nodes=1, num_cpus=1):
            filler.start()
            rc = main(["run", str(spec), "--no-report"])
            filler.join(timeout=5)
            err = capsys.readouterr().err
            assert rc == 1, err
            stored = _stored(disk / "gone")
            lost = [i for i in _ids(spec) if i not in stored]
            assert len(stored) == 1 and len(lost) == n - 1, err
            assert "retrying" not in err  # no trial trained a second time
            assert "starting no more trials" in err and "No space left on device" in err
            trained = err.count("NOT STORED: cannot write")  # progress lines of trained trials
            assert 1 <= trained <= 2, err  # the one that failed (and one already running)
            last = err.strip().splitlines()[-1]
            for tid in lost:
                assert f"NOT STORED: {tid}:" in err and tid in last
            assert "not run: no trial was started after the results store failed" in err
            (disk / "filler").unlink()  # space again: the same command finishes the sweep
            assert main(["run", str(spec), "--no-report"]) == 0
            assert f"1 already stored, {n - 1} to run" in capsys.readouterr().err
        t = pd.read_parquet(trials)
        assert sorted(t.trial_id) == sorted(_ids(spec)) and (t.status == "completed").all()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
