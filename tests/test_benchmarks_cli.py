"""`python -m benchmarks` parses its arguments before it runs anything."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    return r, time.monotonic() - t0


def test_help_prints_usage_and_exits_at_once():
    r, took = _bench("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m benchmarks")
    assert "sweep_overhead" in r.stdout
    assert took < 10  # the suite itself takes minutes; help imports nothing heavy


def test_unknown_benchmark_is_refused_before_anything_runs():
    r, _ = _bench("trainer_overhead", "nope")
    assert r.returncode == 2 and "unknown benchmark 'nope'" in r.stderr
    assert not r.stdout  # trainer_overhead did not start


def test_options_after_one_name_go_to_that_benchmark():
    r, _ = _bench("gpu", "--help")
    assert r.returncode == 0 and "\nusage: python -m benchmarks gpu" in r.stdout
    assert "--json" in r.stdout and "rehearsal" in r.stdout


def test_options_after_several_names_are_refused():
    r, _ = _bench("batched", "packed", "--repeats", "1")
    assert r.returncode == 2 and "go to one benchmark" in r.stderr and not r.stdout
