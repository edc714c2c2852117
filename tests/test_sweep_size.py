"""How big a sweep may be: a spec over ``MAX_TRIALS`` is refused by `check` and `run` in well
under a second, before the lock or anything else is written (a 10^13-point grid used to hang
both: `check` priced it point by point, `run` planned it with the lock held). A spec under the
limit is priced per cost group and its memory checked at the ends of each axis, so `check`
of a 10^6-point grid returns in seconds, with the same numbers as point by point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.estimate.cost import sweep_cost
from sweeps.estimate.preflight import largest_configs
from sweeps.spec.space import MAX_TRIALS, grouped_points, iter_points
from sweeps.spec.parse import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1}
# 10 axes of 20 values: 20^10 ≈ 1.02e13 points
HUGE = {"alpha": [round(0.1 * (i + 1), 2) for i in range(20)],
        "beta": [round(0.04 * i, 2) for i in range(20)],
        "lr": [1e-4 * (i + 1) for i in range(20)],
        "weight_decay": [0.01 * i for i in range(20)],
        "seed": list(range(20)),
        "grad_clip": [0.5 + 0.1 * i for i in range(20)],
        "warmup_steps": list(range(20)),
        "H": list(range(1, 21)),
        "outer_steps": list(range(1, 21)),
        "batch_size": list(range(1, 21))}


def _write(tmp_path: Path, space: dict, search: dict | None = None, name: str = "huge") -> Path:
    trial = {k: v for k, v in TINY.items() if k not in space}
    p = tmp_path / f"{name}.yaml"
    p.write_text(json.dumps({"name": name, "trial": trial, "space": space,
                             "search": search or {}, "output": str(tmp_path / "out")}))
    return p


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_huge_grid_is_refused_at_once_by_check_and_run(tmp_path, command):
    spec = _write(tmp_path, HUGE)
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sweeps", command, str(spec)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    took = time.monotonic() - t
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diloco-sweep: error: space: the grid has "
                                                   "20 alpha × 20 beta"), r.stderr
    assert "10,240,000,000,000 trials" in r.stderr and f"{MAX_TRIALS:,}" in r.stderr
    assert "search.kind: boundary" in r.stderr and "optuna" in r.stderr
    assert not (tmp_path / "out").exists()  # no lock, no folder: nothing written
    assert took < 15, took  # the interpreter's start and imports; the refusal itself is instant


def test_every_kind_refuses_more_than_the_limit():
    space = {k: HUGE[k] for k in ("alpha", "beta", "seed", "lr", "weight_decay")}  # 3.2e6
    with pytest.raises(SpecError, match=r"^space: the grid has .* = 3,200,000 trials"):
        parse_spec({"name": "g", "trial": TINY, "space": space})
    lines = {k: v for k, v in space.items() if k != "alpha"}  # 160,000 lines × 12 probes
    with pytest.raises(SpecError, match=r"^space: 160,000 lines × at most \d+ probes"):
        parse_spec({"name": "b", "trial": TINY, "space": lines,
                    "search": {"kind": "boundary", "low": 0.1, "high": 10}})
    with pytest.raises(SpecError, match=r"^space: the maps stand for a grid of .* = 3,200,000"):
        parse_spec({"name": "m", "trial": TINY, "space": space, "search": {"kind": "map"}})
    with pytest.raises(SpecError, match=r"^search.num_samples: num_samples = 2,000,000 trials"):
        parse_spec({"name": "o", "trial": TINY, "space": {"alpha": {"low": 0.1, "high": 2}},
                    "search": {"kind": "optuna", "num_samples": 2_000_000}})
    parse_spec({"name": "o", "trial": TINY, "space": {"alpha": {"low": 0.1, "high": 2}},
                "search": {"kind": "optuna", "num_samples": MAX_TRIALS}})  # at the limit: fine


def test_a_million_point_grid_is_checked_in_seconds(tmp_path):
    space = {"alpha": HUGE["alpha"][:10], "beta": HUGE["beta"][:10], "seed": list(range(10)),
             "lr": HUGE["lr"][:10], "H": list(range(1, 11)), "batch_size": list(range(1, 11))}
    spec = _write(tmp_path, space, name="million")
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sweeps", "check", str(spec)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    took = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    assert "# 1000000 trials (grid:" in r.stdout and "# sweep: 1000000 trials" in r.stdout
    assert took < 30, took


def test_grouped_cost_equals_the_point_by_point_sum():
    s = parse_spec({"name": "g", "trial": {k: v for k, v in TINY.items()
                                           if k not in ("H", "batch_size")},
                    "space": {"alpha": [0.5, 1.0, 1.5], "H": [1, 2, 4], "seed": [0, 1],
                              "batch_size": [2, 4]}})
    grouped = sweep_cost(s)
    by_point: dict[tuple, int] = {}
    for p in iter_points(s.space):
        key = (p["H"], p["batch_size"])
        by_point[key] = by_point.get(key, 0) + 1
    assert {(d["H"], d["batch_size"]): k for d, k, _ in grouped.groups} == by_point
    assert sum(n for _, n in grouped_points(s.space, ("H",))) == 36
    # memory: the ends of each numeric axis, not every combination
    big = parse_spec({"name": "m", "trial": {"model": "tiny", "eval_batches": 1},
                      "space": {"workers": list(range(1, 21)), "batch_size": list(range(1, 21)),
                                "seq_len": list(range(16, 36))}})
    assert len(largest_configs(big)) == 8
