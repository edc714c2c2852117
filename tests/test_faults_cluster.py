"""Faults injected for real into sweeps on a simulated multi-node Ray cluster (one per module).

``ray.cluster_utils.Cluster`` on loopback: a head with no CPUs and two 1-CPU worker nodes, so
two trials run at once, each in its own worker process. Each test runs ``diloco-sweep run``
through ``main()`` in this process (it finds Ray initialized and uses it) and then checks the
store: one row per trial_id, nothing lost, nothing half-written.

- a trial SIGKILLs itself mid-training, and another between writing its row's temporary and
  renaming it (``sweeps.tune.faults``): Tune retries both, each ends with exactly one row;
- the output disk fills up mid-sweep (a real 1 MiB tmpfs): what could not be written is
  reported, exit 1, rows already written intact, a rerun completes the sweep;
- a sweep into S3 (moto server on loopback), read back by ``status``, ``show`` and ``report``;
- a worker node is removed mid-sweep: the sweep finishes on the other node, every trial stored.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import fill_disk, local_s3, loopback_cluster, mount_tmpfs
from sweeps.spec.space import grid_points
from sweeps.cli import main
from sweeps.spec.parse import load_spec
from sweeps.store.store import trial_id
from sweeps.tune.trial import trial_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # real faults on a cluster: ~2 min

TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def cluster():
    """Two 1-CPU nodes; dummy AWS credentials in the environment they inherit (the S3 test)."""
    with loopback_cluster(nodes=2, num_cpus=1, env=AWS) as c:
        yield c


def _spec(tmp_path: Path, name: str, space: dict, output: str, trial: dict | None = None,
          search: dict | None = None) -> Path:
    spec = {"name": name, "trial": {**TINY, **(trial or {})}, "space": space,
            "search": search or {"kind": "grid", "max_failures": 1},
            "resources": {"cpu": 1, "gpu": 0}, "output": output}
    p = tmp_path / f"{name}.yaml"
    p.write_text(json.dumps(spec))
    return p


def _ids(spec_path: Path) -> list[str]:
    spec = load_spec(spec_path)
    return [trial_id(trial_config(spec, p)) for p in grid_points(spec.space)]


def _check_store(folder: Path, ids: list[str], outer_steps: int) -> pd.DataFrame:
    """Exactly one whole row and one whole curve per trial, and nothing hidden left over."""
    files = sorted(p.name for p in (folder / "trials").iterdir())
    assert files == sorted(f"{i}.parquet" for i in ids)
    t = pd.read_parquet(folder / "trials")
    assert sorted(t.trial_id) == sorted(ids)  # no row lost, none twice
    curves = pd.read_parquet(folder / "curves")
    for tid, n in curves.groupby("trial_id").size().items():
        assert n == outer_steps, (tid, n)  # a retried trial's curve replaced, not appended
    assert set(curves.trial_id) == set(ids)
    hidden = [p.name for p in folder.rglob(".*")]
    assert hidden == [], hidden  # no temporaries, no lock left
    return t


def test_trial_sigkilled_mid_training_and_mid_write_is_stored_once(cluster, tmp_path, capsys,
                                                                   monkeypatch):
    spec = _spec(tmp_path, "kill", {"seed": [0, 1, 2]}, str(tmp_path / "out"))
    ids = _ids(spec)
    markers = tmp_path / "markers"
    # trial 0 dies at outer step 1 (mid-training); trial 1 dies with its row's temporary
    # written and not yet renamed; trial 2 runs normally. Each dies on its first attempt only.
    monkeypatch.setenv("DILOCO_FAULT_KILL_AT", f"{ids[0]}:1:{markers},{ids[1]}:write:{markers}")
    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in markers.iterdir()) == sorted([f"{ids[0]}.1",
                                                                 f"{ids[1]}.write"])
    assert err.count("trial crashed, retrying") == 2, err
    assert "removed 1 temporary file(s) left by killed trials" in err  # the torn write
    t = _check_store(tmp_path / "out" / "kill", ids, TINY["outer_steps"])
    assert (t.status == "completed").all() and t.error.isna().all()




def test_disk_full_mid_sweep_reports_what_was_not_written(cluster, tmp_path, capsys):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    try:
        # no retries: a trial that cannot write its row fails at once (and is reported)
        spec = _spec(tmp_path, "full", {"seed": [0, 1, 2]}, str(disk),
                     search={"kind": "grid", "max_failures": 0})
        ids = _ids(spec)
        trials = disk / "full" / "trials"

        def fill_after_first_row():
            deadline = time.time() + 120
            while time.time() < deadline:
                if trials.exists() and any(p.suffix == ".parquet" for p in trials.iterdir()):
                    fill_disk(disk / "filler")
                    return
                time.sleep(0.02)

        filler = threading.Thread(target=fill_after_first_row, daemon=True)
        filler.start()
        rc = main(["run", str(spec), "--no-report"])
        filler.join(timeout=5)
        err = capsys.readouterr().err
        assert rc == 1, err
        stored = sorted(p.stem for p in trials.glob("*.parquet"))
        lost = [i for i in ids if i not in stored]
        assert 1 <= len(stored) < 3 and lost
        last = err.strip().splitlines()[-1]
        assert last.startswith("diloco-sweep: error: ") and "could not be written" in last
        for tid in lost:  # each trial that could not be stored is named, none dropped silently
            assert f"NOT STORED: {tid}:" in err and tid in last
        assert "No space left on device" in err
        for f in trials.glob("*.parquet"):  # what was written before the disk filled is whole
            assert pq.read_table(f).num_rows == 1
        meta = json.loads((disk / "full" / "sweep.json").read_text())  # still whole JSON
        assert meta["runs"][-1]["ended_at"] is None  # the end could not be recorded
        assert not list((disk / "full").rglob(".*.tmp-*"))

        (disk / "filler").unlink()  # space again: the same command finishes the sweep
        assert main(["run", str(spec), "--no-report"]) == 0
        err = capsys.readouterr().err
        assert f"{len(stored)} already stored, {len(lost)} to run" in err
        t = _check_store(disk / "full", ids, TINY["outer_steps"])
        assert (t.status == "completed").all()
        runs = json.loads((disk / "full" / "sweep.json").read_text())["runs"]
        assert len(runs) == 2 and runs[-1]["counts"]["completed"] == 3
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_s3_sweep_then_status_show_report(cluster, tmp_path, capsys, monkeypatch):
    with local_s3() as port:
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                          allow_bucket_creation=True).create_dir("bucket")
        uri = f"s3://bucket/sweeps?endpoint_override=127.0.0.1:{port}&scheme=http"
        spec = _spec(tmp_path, "s3sweep", {"alpha": [0.5, 1.0], "R": [0, 2]}, uri)
        ids = _ids(spec)
        monkeypatch.chdir(tmp_path)  # run's own report of an S3 sweep lands in the cwd
        assert main(["run", str(spec)]) == 0
        out, err = capsys.readouterr()
        assert "report failed" not in err and "report: s3sweep-report.html" in out
        assert (tmp_path / "s3sweep-report.html").stat().st_size > 1000
        results = f"s3://bucket/sweeps/s3sweep?endpoint_override=127.0.0.1:{port}&scheme=http"
        assert main(["status", results]) == 0
        out = capsys.readouterr().out
        assert "completed        4" in out and "missing          0" in out
        assert main(["show", results]) == 0
        assert "4 trials" in capsys.readouterr().out
        html = tmp_path / "s3.html"
        assert main(["report", results, "-o", str(html)]) == 0
        assert html.stat().st_size > 1000

        # the endpoint from AWS_ENDPOINT_URL instead of the URI: the same sweep, read back
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        assert main(["status", "s3://bucket/sweeps/s3sweep"]) == 0
        assert "completed        4" in capsys.readouterr().out
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http")
        keys = sorted(i.path for i in fs.get_file_info(pafs.FileSelector("bucket",
                                                                         recursive=True))
                      if i.type == pafs.FileType.File)
        assert keys == sorted([f"bucket/sweeps/s3sweep/{d}/{i}.parquet"
                               for d in ("trials", "curves") for i in ids]
                              + ["bucket/sweeps/s3sweep/sweep.json"])  # lock object removed


def test_node_lost_mid_sweep_finishes_on_the_other_node(cluster, tmp_path, capsys):
    """Last in the module: it leaves the cluster with one worker node."""
    import ray  # noqa: F401 - puts Ray's bundled psutil on the path
    import psutil

    # 240 rounds: about 4 s a trial on a quiet 2-core machine. At 60 (1 s) the node was killed
    # after its last trial had ended, and nothing was left to retry.
    steps = 240
    spec = _spec(tmp_path, "nodeloss", {"seed": [0, 1, 2, 3]}, str(tmp_path / "out"),
                 trial={"outer_steps": steps}, search={"kind": "grid", "max_failures": 3})
    ids = _ids(spec)
    trials = tmp_path / "out" / "nodeloss" / "trials"
    victim = sorted(cluster.worker_nodes, key=lambda n: n.node_id)[-1]
    raylet = psutil.Process(victim.all_processes["raylet"][0].process.pid)
    removed = threading.Event()

    def training_on_victim() -> bool:
        try:
            return any(p.name().startswith("ray::ImplicitFunc.train")
                       for p in raylet.children(recursive=True))
        except psutil.Error:
            return False

    def remove_when_busy():
        """Once a trial has finished (all warmed up) and the victim has been training another
        for 0.5 s (so that trial is mid-way, not reporting its last result), kill the node.
        Tune calls the actor's `train` once per reported result, so "training" flickers
        between reports: only 0.3 s without it counts as the trial having ended."""
        deadline, busy_since, last_busy = time.time() + 120, None, 0.0
        while time.time() < deadline:
            now = time.time()
            if trials.exists() and any(trials.glob("*.parquet")) and training_on_victim():
                if busy_since is None or now - last_busy > 0.3:
                    busy_since = now
                last_busy = now
                if now - busy_since > 0.5:
                    cluster.remove_node(victim, allow_graceful=False)  # mid-trial
                    removed.set()
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=remove_when_busy, daemon=True)
    killer.start()
    assert main(["run", str(spec), "--no-report"]) == 0
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert removed.is_set()
    assert "trial crashed, retrying" in err, err  # the trial on the lost node ran again
    t = _check_store(tmp_path / "out" / "nodeloss", ids, steps)
    assert (t.status == "completed").all()
    survivor = {n.node_id for n in cluster.worker_nodes}
    last = t.sort_values("finished_at").tail(2)
    assert set(last.node_id) <= survivor  # the end of the sweep ran on the remaining node
