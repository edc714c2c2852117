"""An embedded run prints only diloco-sweep's own lines; `--verbose` lets Ray's through.

Each test is a real `python -m sweeps run` in a subprocess, with its own embedded Ray. Tune's
slow-step warning (``ray.tune.utils.util.warn_if_slow``) fires only after a minute of process
time and past 0.5 s, which a two-trial sweep never reaches; the probe below arms it for every
step (threshold ~0, clock started an hour ago), so the warnings are there to be hidden.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # two embedded Ray starts, 15-50 s each

REPO = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 2, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "warmup_steps": 1, "threads": 1}
# arm Tune's slow-step warning for every step, then run the CLI as `python -m sweeps` does
PROBE = ("import sys, time; import ray.tune.utils.util as u; "
         "u.START_OF_TIME = time.time() - 3600; u.warn_if_slow.DEFAULT_THRESHOLD = 1e-9; "
         "from sweeps.cli import main; sys.exit(main(sys.argv[1:]))")


def _run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    spec = {"name": "quiet", "trial": TINY, "space": {"alpha": [0.5, 1.0]},
            "search": {"kind": "optuna", "num_samples": 2, "seed": 0},
            "resources": {"cpu": 1, "gpu": 0}, "output": str(tmp_path / "out")}
    path = tmp_path / "quiet.yaml"
    path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", PROBE, "run", str(path), "--no-report",
                           *flags], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)


def _seconds(hms: str) -> int:
    """'1:02:05' or '2:05' as seconds."""
    out = 0
    for part in hms.split(":"):
        out = out * 60 + int(part)
    return out


def test_embedded_run_prints_only_its_own_lines(tmp_path):
    r = _run(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert any("2/2 trials" in ln for ln in lines), r.stderr  # the progress line is there
    up = [ln for ln in lines if ln.startswith("[diloco-sweep] Ray is up after ")]
    assert len(up) == 1, r.stderr
    # elapsed counts from the command's start: the first trial's line is past Ray's start
    ray_s = _seconds(up[0].rsplit(" ", 1)[1])
    first = next(ln for ln in lines if "1/2 trials" in ln)
    assert _seconds(first.split("elapsed ")[1].split(",")[0]) >= ray_s, (up[0], first)
    # every time it prints is m:ss, the end's as well
    done = [ln for ln in lines if " finished in " in ln]
    assert len(done) == 1 and re.fullmatch(r".* finished in \d+:\d\d: 2 completed.*", done[0])
    foreign = [ln for ln in lines if not ln.startswith("[diloco-sweep] ")]
    assert not foreign, "lines on stderr that are not diloco-sweep's:\n" + "\n".join(foreign)
    assert r.stdout.strip() == f"{tmp_path / 'out' / 'quiet'}: 2 completed, 0 diverged, 0 failed"


def test_verbose_run_shows_tunes_warnings(tmp_path):
    """The probe is armed: with --verbose the same run prints Tune's slow-step warnings."""
    r = _run(tmp_path, "--verbose")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "operation took" in r.stderr
