"""CPU time before launch: `check` prints how long a CPU spec takes on this machine (the cost
estimate's FLOPs over a calibrated rate, or the rate the sweep's stored trials measured), and
`check` and `run` warn before a sweep or a trial of more than two hours (`H: 1000000000` used
to get "0.142 GPU-h" and a months-long trial without a word). No Ray.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

import sweeps.tune.runner
from sweeps.cli import main
from sweeps.estimate.cost import sweep_cost
from sweeps.estimate.cpu_time import CPU_FLOPS, LONG_S, cpu_time, long_run_warning
from sweeps.spec.parse import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "sweeps" / "specs").glob("*.yaml"))
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1, "threads": 1}


@pytest.fixture(autouse=True)
def _no_trials(no_ray, monkeypatch):
    monkeypatch.setattr(sweeps.tune.runner, "run_trials", lambda *a, **k: [])  # nothing trains
    monkeypatch.setattr("sweeps.estimate.cpu_time.local_cpus", lambda: 2)


def _long(tmp_path: Path) -> Path:
    p = tmp_path / "long.yaml"
    p.write_text(json.dumps({"name": "long", "trial": {**TINY, "H": 1_000_000_000},
                             "space": {"seed": [0, 1]}, "output": str(tmp_path / "out")}))
    return p


def test_check_and_run_warn_of_a_months_long_cpu_spec(tmp_path, capsys):
    spec = _long(tmp_path)
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr()
    line = next(x for x in out.out.splitlines() if x.startswith("# CPU time:"))
    days = int(re.search(r"about ([\d,]+) days on this machine", line)[1].replace(",", ""))
    assert days > 100, line
    assert f"{CPU_FLOPS:.3g} per CPU thread" in line
    assert "# WARNING: this CPU sweep would take about" in out.err
    assert "more than 2 hours" in out.err and "resources.gpu" in out.err

    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    warn = [x for x in err.splitlines() if "WARNING: this CPU sweep" in x]
    assert len(warn) == 1 and warn[0].startswith("[diloco-sweep] WARNING:"), err
    assert err.index("to run →") < err.index("WARNING")  # said before any trial starts


def test_shipped_cpu_specs_get_an_estimate_and_no_warning(capsys):
    for path in SPECS:
        t = time.monotonic()
        assert main(["check", str(path)]) == 0
        took = time.monotonic() - t
        out = capsys.readouterr()
        spec = load_spec(path)
        lm = spec.base.kind == "lm"
        assert ("# CPU time:" in out.out) == (lm and not spec.resources.gpu), path
        assert "WARNING" not in out.err, (path, out.err)
        assert took < 20, (path, took)  # ~0.3 to 1 s on a quiet machine; a loaded one is slower
    assert main(["check", str(ROOT / "sweeps/specs/restart_cpu.yaml")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("# CPU time:"))
    # 5.03e13 FLOP over 2 trials at once at 2e10 FLOP/s: 21 minutes (12 to 22 measured)
    assert line.startswith("# CPU time: about 20:57 on this machine (2 trial(s) at once"), line


def test_the_rate_stored_trials_measured_is_used():
    spec = parse_spec({"name": "m", "trial": TINY, "space": {"seed": [0, 1, 2, 3]}})
    sc = sweep_cost(spec)
    rows = [{"flops": 4e9, "wall_s": 1.0}, {"flops": 6e9, "wall_s": 2.0},
            {"flops": 5e9, "wall_s": 1.0}, {"flops": None, "wall_s": 3.0}]
    est = cpu_time(spec, sc, trials=2, rows=rows)
    assert est.measured and est.rate == 4e9 and "measured on this sweep" in est.line()
    assert est.flops == pytest.approx(sc.bounds()[1] / 2)
    assert est.slots == 2 and not est.long
    assert cpu_time(spec, sc, max_concurrent=1).slots == 1
    assert cpu_time(spec, sc).rate == CPU_FLOPS  # no rows: the calibrated rate
    gpu = parse_spec({"name": "g", "trial": TINY, "space": {"seed": [0]},
                      "resources": {"gpu": 1}})
    assert cpu_time(gpu, sweep_cost(gpu)) is None
    toy = parse_spec({"name": "t", "trial": {"kind": "toy"}, "space": {"seed": [0]}})
    assert cpu_time(toy, sweep_cost(toy)) is None
    long = parse_spec({"name": "l", "trial": {**TINY, "H": 1_000_000_000},
                       "space": {"seed": [0]}})
    assert long_run_warning(long, 1) and long_run_warning(long, 0) is None
    assert cpu_time(long, sweep_cost(long)).trial_s > LONG_S
