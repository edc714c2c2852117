"""Shared test helpers: a simulated Ray cluster on loopback, and a real small tmpfs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def loopback_cluster(nodes: int = 2, num_cpus: int = 1, num_gpus: int = 0,
                     env: dict[str, str] | None = None) -> Iterator[object]:
    """Head (0 CPU: no trials there) + `nodes` worker nodes, all on 127.0.0.1, private temp dir.

    Ray swaps 127.0.0.1 for the machine's outward address unless its single-node mode is
    forced, and writes /tmp/ray/ray_current_cluster, which other Ray users on this machine
    read: both are undone here. `env` (e.g. dummy AWS credentials) is set for the nodes.
    """
    import ray
    from ray.cluster_utils import Cluster

    from sweeps.tune.ray_private import no_address_file

    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(env or {})}
    saved_env = {k: os.environ.get(k) for k in env}
    private = no_address_file()
    private.__enter__()
    os.environ.update(env)
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths are limited
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "temp_dir": tmp})
    try:
        for _ in range(nodes):
            c.add_node(num_cpus=num_cpus, num_gpus=num_gpus, node_ip_address="127.0.0.1")
        c.wait_for_nodes()
        ray.init(address=c.address, include_dashboard=False, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        private.__exit__(None, None, None)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def kill_once_stored(p: subprocess.Popen, trials: Path, n: int, log: Path,
                     timeout: float = 300) -> None:
    """Wait until ``trials`` holds at least n Parquet files, then SIGKILL ``p``'s process group
    (a run started with start_new_session): a driver killed mid-sweep, its Ray with it."""
    import time

    deadline = time.time() + timeout
    try:
        while len(list(trials.glob("*.parquet")) if trials.exists() else []) < n:
            assert p.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
    finally:
        kill_group(p)
        p.wait(timeout=30)


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL what is left of ``p``'s process group (a run started with start_new_session:
    its driver, Ray and the agents); nothing when the group is gone already."""
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def ray_env() -> Iterator[dict[str, str]]:
    """The environment of a ``python -m sweeps run`` subprocess with an embedded Ray of its
    own: a fresh RAY_TMPDIR under /tmp (short: Unix socket paths are limited), no usage
    stats, this checkout on PYTHONPATH, no RAY_ADDRESS. The folder is removed afterwards."""
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    try:
        yield env
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def start_run(spec: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """``python -m sweeps run SPEC --no-report`` in a session of its own, output to ``log``."""
    import sys

    return subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(spec), "--no-report",
                             *args], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture()
def env() -> Iterator[dict[str, str]]:
    """``ray_env()`` for one test (a module that runs several sweeps on one Ray scopes its own)."""
    with ray_env() as e:
        yield e


def run_until_stored(tmp_path: Path, spec: Path, folder: Path, env: dict[str, str],
                     timeout: float = 300) -> tuple[subprocess.Popen, Path]:
    """``python -m sweeps run SPEC`` one trial at a time in a session of its own, returned once
    its first row is in ``folder``: the process and its log."""
    import time

    log = tmp_path / "run.log"
    p = start_run(spec, env, log, "--max-concurrent", "1")
    deadline = time.time() + timeout
    trials = folder / "trials"
    while not (trials.exists() and any(trials.glob("*.parquet"))):
        if p.poll() is not None or time.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 9)
            raise AssertionError(log.read_text()[-3000:])
        time.sleep(0.05)
    return p, log


def mount_tmpfs(path: Path, size: str) -> None:
    """A real filesystem of `size` at `path` (unmount with `umount`). Needs root, as CI is:
    a storage-fault test that cannot make its fault must fail, not pass by skipping."""
    path.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a {size} tmpfs for this storage-fault test (run the suite as "
                    f"root, as CI does): {r.stderr.strip()}")


def fill_disk(path: Path) -> None:
    """Write zeros into ``path`` until its filesystem says it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.fixture()
def no_ray(monkeypatch):
    """A refused run must never reach Ray: a run that would start it fails the test."""
    import sweeps.tune.runner

    def tune(*a, **k):
        raise AssertionError("Ray Tune was started")

    monkeypatch.setattr(sweeps.tune.runner, "run_trials", tune)
    monkeypatch.delenv("DILOCO_MEMORY_LIMIT_BYTES", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@contextlib.contextmanager
def local_s3() -> Iterator[int]:
    """A local S3 (moto's server, on a port the OS picked) that starts empty; yields the port.
    moto keeps its buckets in the process, across servers: without the reset a test saw the
    keys an earlier test of the same pytest worker had left (the order pytest-xdist gives)."""
    import urllib.request

    from moto import server as moto_server  # a test extra: missing means fail, never skip

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        port = server.get_host_and_port()[1]
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=30).read()
        yield port
    finally:
        server.stop()
