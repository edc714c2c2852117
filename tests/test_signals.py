"""sweeps.tune.signals without Ray, in a real process that signals itself: the first SIGTERM or
SIGHUP becomes Terminated (exit 128 + signal); a second one during the recording is only
noted; work deferred until the end is recorded (Ray's shutdown) that outlasts SHUTDOWN_S is
cut short by the watchdog, with the same exit code.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import sweeps.tune.signals as S
    S.SHUTDOWN_S = 1.0
    sig, slow = int(sys.argv[1]), sys.argv[2] == "slow"
    with S.stop_signals() as stop:
        try:
            os.kill(os.getpid(), sig)
            time.sleep(30)
            sys.exit(3)  # the signal was not turned into Terminated
        except S.Terminated:
            os.kill(os.getpid(), sig)  # a second one while the end is recorded: only noted
            time.sleep(0.2)
            print("recorded", flush=True)
            assert S.defer_if_stopping(lambda: time.sleep(30 if slow else 0))
        try:
            stop.raise_if_stopped()
        except S.Terminated as e:
            sys.exit(e.exit_code)
""")


@pytest.mark.parametrize("sig,code", [(15, 143), (1, 129)], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("slow", [False, True], ids=["quick-shutdown", "slow-shutdown"])
def test_a_stop_signal_ends_with_its_exit_code_and_a_slow_shutdown_is_cut_short(sig, code,
                                                                                 slow):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(sig), "slow" if slow else "quick"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    took = time.monotonic() - t
    assert r.returncode == code, r.stderr
    assert "recorded" in r.stdout
    assert ("Ray's shutdown took more than 1 s" in r.stderr) == slow, r.stderr
    assert took < 15, took
