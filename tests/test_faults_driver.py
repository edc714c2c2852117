"""The driver as users run it: `python -m sweeps run SPEC` subprocesses, each with its own
embedded Ray (private temp dir), killed and raced for real.

- SIGKILL of the driver after some trials are stored: its Ray (GCS, raylet, trial workers)
  dies with it, the process group kill leaves nothing behind, and the same command run again
  runs only the missing trials; every trial_id once. While the first run trains, every
  socket its Ray processes listen on is on loopback.
- Two sweeps at once into one output root: different names both complete, side by side; the
  same name a second time is refused at once, naming the run that holds it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import kill_group, kill_once_stored

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _spec(tmp_path: Path, name: str, seeds: int, file: str | None = None,
          trial: dict | None = None) -> Path:
    spec = {"name": name, "trial": {**TINY, **(trial or {})}, "space": {"seed": list(range(seeds))},
            "output": str(tmp_path / "out")}
    p = tmp_path / (file or f"{name}.yaml")
    p.write_text(json.dumps(spec))
    return p


def _start(spec: Path, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report",
                             *extra], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _tree(pid: int):
    import ray  # noqa: F401 - puts Ray's bundled psutil on the path
    import psutil

    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _bound(procs) -> set[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP and bound UDP socket of procs."""
    import psutil

    out = set()
    for q in procs:
        try:
            for c in q.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr):
                    out.add((q.name(), c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    return out


def _rows(folder: Path) -> dict[str, int]:
    d = folder / "trials"
    return {p.stem: p.stat().st_mtime_ns for p in d.glob("*.parquet")} if d.exists() else {}


def test_driver_sigkilled_then_rerun_runs_only_the_missing_trials(tmp_path, env):
    n = 3
    spec = _spec(tmp_path, "killed", n, trial={"outer_steps": 15})  # ~1 s of training each
    folder = tmp_path / "out" / "killed"
    p = _start(spec, env, tmp_path / "run1.log", "--max-concurrent", "1")
    seen_pids, sockets = set(), set()
    deadline, sampled = time.time() + 240, 0.0
    try:
        while not _rows(folder):
            assert p.poll() is None and time.time() < deadline, \
                (tmp_path / "run1.log").read_text()[-3000:]
            if time.time() - sampled > 0.5:  # Ray's processes and sockets, now and then
                procs = _tree(p.pid)
                seen_pids |= {q.pid for q in procs}
                sockets |= _bound(procs)
                sampled = time.time()
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
        p.wait(timeout=30)
        killed_at = time.time()
        # Ray's GCS, raylet and every trial worker die with their driver: no trial goes on
        # training or writing without it. (Ray's two agent processes notice too, but wait
        # out a hard-coded 60 s GCS timeout before they exit: see docs/reliability.md.)
        deadline = time.time() + 30
        while (alive := [q for q in map(_alive, seen_pids) if q and "Agent" not in q]) \
                and time.time() < deadline:
            time.sleep(0.5)
        assert not alive, alive
    finally:
        kill_group(p)  # the rest of its process group: Ray and the agents
    deadline = time.time() + 15
    while (alive := [q for q in map(_alive, seen_pids) if q]) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive, alive  # nothing of that Ray is left on the machine
    before = _rows(folder)
    assert 1 <= len(before) < n

    # Security: what the embedded Ray listened on while it ran. Nothing beyond loopback.
    assert len(sockets) >= 3, sockets  # gcs, raylet, workers, agents were seen
    assert {ip for _, ip, _ in sockets} <= LOOPBACK, sockets

    # the same command again: finishes the sweep, running only what is missing
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report",
                        "--max-concurrent", "1"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{len(before)} already stored, {n - len(before)} to run" in r.stderr
    assert "taken over" in r.stderr  # the lock the killed driver left was stale
    after = _rows(folder)
    assert {k: after[k] for k in before} == before  # stored rows untouched, not rerun
    t = pd.read_parquet(folder / "trials")
    assert len(t) == n and t.trial_id.is_unique and (t.status == "completed").all()
    new = t[~t.trial_id.isin(before)]
    assert len(new) == n - len(before)
    assert all(pd.Timestamp(s).timestamp() > killed_at for s in new.started_at)
    assert not [q.name for q in folder.rglob(".*")]  # no temporaries, no lock
    runs = json.loads((folder / "sweep.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0]["ended_at"] is None and runs[1]["ended_at"]
    assert runs[1]["planned"] == n - len(before)


def _alive(pid: int):
    import psutil

    try:
        q = psutil.Process(pid)
        return None if q.status() == psutil.STATUS_ZOMBIE else f"{pid} {q.name()}"
    except psutil.NoSuchProcess:
        return None


def test_two_sweeps_at_once_into_one_output(tmp_path, env):
    a = _spec(tmp_path, "alpha-sweep", 2)
    b = _spec(tmp_path, "beta-sweep", 2)
    a_again = _spec(tmp_path, "alpha-sweep", 2, file="alpha-copy.yaml")
    lock = tmp_path / "out" / "alpha-sweep" / ".lock"
    pa = _start(a, env, tmp_path / "a.log", "--max-concurrent", "1")
    try:
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text()):
            assert pa.poll() is None and time.time() < deadline, (tmp_path / "a.log").read_text()
            time.sleep(0.1)
        pb = _start(b, env, tmp_path / "b.log", "--max-concurrent", "1")
        # the same sweep again while the first run holds it: refused at once, holder named
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(a_again), "--no-report"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        assert time.time() - t0 < 60
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and "already being run by pid" in err[0] and str(pa.pid) in err[0]
        assert pb.wait(timeout=300) == 0, (tmp_path / "b.log").read_text()[-3000:]
        assert pa.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-3000:]
    finally:
        for proc in (pa, locals().get("pb")):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for name in ("alpha-sweep", "beta-sweep"):
        folder = tmp_path / "out" / name
        t = pd.read_parquet(folder / "trials")
        assert len(t) == 2 and t.trial_id.is_unique and (t.sweep == name).all()
        assert (t.status == "completed").all()
        meta = json.loads((folder / "sweep.json").read_text())
        assert meta["name"] == name and len(meta["runs"]) == 1  # the refused run wrote nothing
        assert not [q.name for q in folder.rglob(".*")]
    # the same configurations under two names are two sets of files, none shared
    ta = set(pd.read_parquet(tmp_path / "out" / "alpha-sweep" / "trials").trial_id)
    tb = set(pd.read_parquet(tmp_path / "out" / "beta-sweep" / "trials").trial_id)
    assert ta == tb  # same trial configs: ids match, files do not clobber across folders


def test_toy_packs_killed_then_rerun_store_every_trial_once(tmp_path, env):
    """A pack writes its rows as one file; kill the run once the first pack is stored, run it
    again: the stored pack is not trained or written again, the others are, each trial once."""
    spec = tmp_path / "packs.yaml"
    spec.write_text(json.dumps({
        "name": "packs", "output": str(tmp_path / "out"),
        "trial": {"kind": "toy", "toy_dim": 2000, "lr": 0.5, "H": 4, "outer_steps": 300,
                  "threads": 1},
        "space": {"alpha": [0.2, 0.4, 0.6, 0.8], "beta": [0.0, 0.5, 0.9, 0.95]},
        "resources": {"cpu": 1, "gpu": 0, "pack": 4}}))
    folder = tmp_path / "out" / "packs"
    kill_once_stored(_start(spec, env, tmp_path / "run1.log", "--max-concurrent", "1"),
                     folder / "trials", 1, tmp_path / "run1.log")
    first = _rows(folder)
    assert 1 <= len(first) < 4 and all(k.startswith("compacted-pack-") for k in first)
    r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _rows(folder)
    assert {k: after[k] for k in first} == first        # the stored packs untouched
    rows = pd.read_parquet(folder / "trials")
    assert len(rows) == 16 and rows.trial_id.is_unique
    curves = pd.read_parquet(folder / "curves")
    assert curves.groupby("trial_id").size().to_dict() == \
        dict(zip(rows.trial_id, rows.outer_steps_done))
    # a packed row is the row of that trial run alone (its losses to the last bits)
    from trainer import TrainConfig, train

    for r in rows.iloc[[0, 9]].itertuples():
        alone = train(TrainConfig(kind="toy", toy_dim=2000, lr=0.5, H=4, outer_steps=300,
                                  threads=1, alpha=r.alpha, beta=r.beta))
        assert (alone.status, alone.outer_steps_done) == (r.status, r.outer_steps_done)
        assert alone.final_loss == pytest.approx(r.final_loss, rel=1e-12)
