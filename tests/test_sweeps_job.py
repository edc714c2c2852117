"""The real submission path: `ray start --head` on loopback, then `ray job submit --working-dir .
-- python -m sweeps run sweeps/specs/smoke.yaml`, with Ray's token authentication on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def head():
    """A Ray head of our own: loopback, its own ports and temp dir, stopped by process group."""
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths are limited
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep Ray on 127.0.0.1
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(tmp) / "head.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", f"--temp-dir={tmp}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         # its own job agent port: the default (52365) is taken by any other Ray head here
         f"--dashboard-agent-listen-port={_free_port()}",
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # 401 without the token: the server is up
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("ray head did not start: "
                                       + (Path(tmp) / "head.log").read_text()[-2000:])
                time.sleep(1)
        yield url, env
    finally:
        # never `ray stop` (it ends every Ray on the machine): end our own process group
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()


def test_job_submit_runs_the_smoke_spec(head, tmp_path):
    url, env = head
    out = tmp_path / "results"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".", "--",
           sys.executable, "-m", "sweeps", "run", "sweeps/specs/smoke.yaml", "--output", str(out)]

    # token authentication is on: a client without the token is turned away
    no_token = {**env, "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run(cmd, cwd=ROOT, env=no_token, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert not out.exists()
    refused = r.stdout + r.stderr

    r = subprocess.run(cmd, cwd=ROOT, env={**env, "RAY_AUTH_MODE": "token"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout + r.stderr
    trials = pd.read_parquet(out / "smoke" / "trials")
    curves = pd.read_parquet(out / "smoke" / "curves")
    assert len(trials) == 4 and (trials.status == "completed").all()
    assert sorted(zip(trials.alpha, trials.R)) == [(0.7, 0), (0.7, 2), (1.0, 0), (1.0, 2)]
    assert len(curves) == 4 * 3 and set(curves.trial_id) == set(trials.trial_id)

    # the token is read, never shown or stored: not in the client's output (the job's logs
    # included), not in any results file (sweep.json records argv and versions, not env)
    token = _auth_token(env)
    assert len(token) >= 16
    assert token not in r.stdout + r.stderr and token not in refused
    for f in out.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f


def test_job_submit_runs_a_users_project_from_its_working_dir(head, tmp_path):
    """kind: python (docs/user-kind.md): the user's package travels as the job's working dir;
    the tool is on the nodes (here: on PYTHONPATH, as an installed package would be)."""
    import json
    import shutil

    url, env = head
    proj = tmp_path / "tinyfit"
    shutil.copytree(ROOT / "examples" / "tinyfit", proj,
                    ignore=shutil.ignore_patterns("results", "__pycache__"))
    out = tmp_path / "results"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".",
           "--runtime-env-json", json.dumps({"env_vars": {"PYTHONPATH": str(ROOT)}}), "--",
           sys.executable, "-m", "sweeps", "run", "spec.yaml", "--output", str(out)]
    for _ in range(10):  # a fresh head's job agent may not be up yet (a loaded machine)
        r = subprocess.run(cmd, cwd=proj, env={**env, "RAY_AUTH_MODE": "token"},
                           capture_output=True, text=True, timeout=600)
        if "No available agent" not in r.stdout + r.stderr:
            break
        time.sleep(5)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trials = pd.read_parquet(out / "tinyfit" / "trials")
    assert len(trials) == 16 and set(trials.status) <= {"completed", "diverged"}
    assert str(trials["params.width"].dtype) == "int64" and trials.code_hash.nunique() == 1


def _auth_token(env: dict) -> str:
    """The token the head and the client use: $RAY_AUTH_TOKEN, else Ray's token file."""
    if env.get("RAY_AUTH_TOKEN"):
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip()
