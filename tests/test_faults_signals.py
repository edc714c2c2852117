"""SIGTERM and SIGHUP, for real: a `python -m sweeps run` stopped mid-sweep the way Kubernetes
stops a pod (SIGTERM, to the driver or to its whole process group, SIGKILL 30 s later) and the
way a closed terminal does (SIGHUP). As with Ctrl-C: `interrupted: true` recorded, the resume
line printed, exit 128 + signal well inside the 30 s grace, Ray's processes gone; the printed
command then finishes the sweep with every trial stored once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import kill_group, run_until_stored
from sweeps.spec.parse import load_spec
from sweeps.spec.space import grid_points
from sweeps.store.store import trial_id
from sweeps.tune.trial import trial_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 8, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}
GRACE_S = 30.0
"""Kubernetes' default terminationGracePeriodSeconds: SIGKILL follows SIGTERM after it."""


def _stored(folder: Path) -> list[str]:
    d = folder / "trials"
    return sorted(p.stem for p in d.glob("*.parquet")) if d.exists() else []


def _group_alive(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "-g", str(pgid)], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


# the resume after a stop reads the same store whichever signal stopped the run: it runs once,
# after Kubernetes' way (SIGTERM to the group)
@pytest.mark.parametrize("sig,to_group,resume", [(signal.SIGTERM, False, False),
                                                 (signal.SIGTERM, True, True),
                                                 (signal.SIGHUP, False, False)],
                         ids=["sigterm-driver", "sigterm-group", "sighup-driver"])
def test_a_stop_signal_records_the_interruption_and_a_rerun_finishes(tmp_path, env, sig, to_group,
                                                                     resume):
    n = 3
    out = tmp_path / "out"
    spec = tmp_path / "sig.yaml"
    spec.write_text(json.dumps({"name": "sig", "trial": TINY, "space": {"seed": list(range(n))},
                                "resources": {"cpu": 1, "gpu": 0}, "output": str(out)}))
    folder = out / "sig"
    p, log = run_until_stored(tmp_path, spec, folder, env)
    try:
        sent = time.monotonic()
        if to_group:
            os.killpg(p.pid, sig)
        else:
            os.kill(p.pid, sig)
        rc = p.wait(timeout=GRACE_S * 2)
        took = time.monotonic() - sent
        left: list[str] = []
        for _ in range(50):  # Ray's processes end with the driver (shut down, not orphaned)
            left = _group_alive(p.pid)
            if not left:
                break
            time.sleep(0.2)
    finally:
        kill_group(p)
    text = log.read_text()
    print(f"{signal.Signals(sig).name} to the {'group' if to_group else 'driver'}: exit "
          f"{rc} after {took:.1f} s; left in the group: {left}")
    name = signal.Signals(sig).name
    assert rc == 128 + sig, text[-3000:]
    assert took < GRACE_S, (took, text[-3000:])
    assert not left, left
    stored = _stored(folder)
    assert 1 <= len(stored) < n
    assert f"interrupted by {name} after" in text and f"of {n} trials missing" in text, text[-3000:]
    assert f"diloco-sweep run {spec} --output {out}" in text
    assert f"diloco-sweep: interrupted by {name}" in text
    for noise in ("Traceback", "finished in", "Aborted", "SIGABRT", "*** "):
        assert noise not in text, (noise, text[-3000:])
    run = json.loads((folder / "sweep.json").read_text())["runs"][-1]
    assert run["interrupted"] is True and run["ended_at"] and run["outcome"] == "interrupted"
    assert run["signal"] == name
    assert not (folder / "report.html").exists()
    if not resume:
        return

    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec), "--output", str(out),
                        "--no-report"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    stored_now = _stored(folder)
    assert f"{len(stored)} already stored, {n - len(stored)} to run" in r.stderr
    t = pd.read_parquet(folder / "trials")
    s = load_spec(spec)
    assert sorted(t.trial_id) == sorted(trial_id(trial_config(s, q)) for q in grid_points(s.space))
    assert len(stored_now) == n
