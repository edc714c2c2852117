"""Every benchmark the docs name runs, at a tiny size: a documented command that crashes fails here.

The trainer benchmarks run in this process (a few seconds together); those that start Ray or
`diloco-sweep run` subprocesses are `slow`. `gpu` (with its parts `gpu_mfu` and `gpu_sweep`)
has its own CPU rehearsal in tests/test_benchmarks_gpu.py.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import pytest

from benchmarks.__main__ import SUITE

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

TINY = ["--model", "tiny", "--workers", "2", "--H", "2", "--outer-steps", "1",
        "--batch-size", "2", "--seq-len", "16", "--repeats", "1", "--threads", "1"]
FAST = {
    "trainer_overhead": ["--repeats", "1", "--outer-steps", "1", "--H", "2"],
    "batched": TINY,
    "packed": [*TINY, "--K", "2"],
    "mfu": [*TINY, "--K", "2", "--peak-seconds", "0.05"],
    "diverged_cost": [*TINY, "--outer-steps", "2", "--K", "2"],
    "stacked_forward": ["--slots", "2", "--steps", "1", "--repeats", "1"],
}
SLOW = {
    "sweep_overhead": ["--trials", "1"],
    "boundary": ["--resolution", "0.5"],
    "map": ["--toy-size", "17x9"],
    "grid_start": ["--points", "1000", "--baseline", "1000"],
    "scale": ["--points", "1000", "--trials", "4", "--no-driver", "--store-trials", "50"],
    "driver_memory": ["--trials", "6", "--baseline-trials", "6", "--warmup", "0",
                      "--every", "0.2"],
}
ELSEWHERE = {"gpu", "gpu_mfu", "gpu_sweep"}  # tests/test_benchmarks_gpu.py


def _documented() -> set[str]:
    """Benchmarks the docs name: the whole suite (``python -m benchmarks``) and each by name."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    named = set(re.findall(r"python -m benchmarks\.(\w+)", text))
    named |= set(re.findall(r"benchmarks/(\w+)\.py", text))
    for run in re.findall(r"python -m benchmarks((?: [a-z_]+)+)", text):
        named |= set(run.split())
    return named | set(SUITE)


def _ran(name: str, argv: list[str]) -> dict[str, float]:
    out = importlib.import_module(f"benchmarks.{name}").main(argv)
    assert out, f"{name} returned no figures"
    bad = {k: v for k, v in out.items() if not (isinstance(v, float) and math.isfinite(v))}
    assert not bad, f"{name}: figures that are not finite numbers: {bad}"
    return out


def test_every_documented_benchmark_has_a_tiny_run() -> None:
    documented = _documented()
    assert {"sweep_overhead", "gpu_mfu", "stacked_forward"} <= documented  # the parser reads
    missing = documented - set(FAST) - set(SLOW) - ELSEWHERE
    assert not missing, f"documented benchmarks with no tiny run in this file: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(FAST))
def test_trainer_benchmark_runs_tiny(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _ran(name, FAST[name])
    assert capsys.readouterr().out.strip(), f"{name} printed nothing"
    assert all(v > 0 for k, v in out.items() if k != "same"), out


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_service_benchmark_runs_tiny(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    _ran(name, SLOW[name])
    assert re.search(r"ratio", capsys.readouterr().out), f"{name} printed no ratio"


def test_driver_memory_fits_the_slope_past_the_warm_up() -> None:
    from benchmarks.driver_memory import fit, slopes

    assert fit([0, 1, 2, 3], [1, 3, 5, 7]) == 2.0 and fit([1, 1], [0, 5]) == 0.0
    samples = [{"n": n, "rss": 1024 * (100 if n < 10 else 50 + 3 * n), "blocks": 7 * n}
               for n in range(20)]
    samples.append({"n": 19, "rss": 2**30, "blocks": 0})  # the end of the run
    s = slopes(samples, warmup=10)  # the warm-up's jump and the end are left out
    assert s["rss_kb"] == pytest.approx(3.0) and s["blocks"] == pytest.approx(7.0)
    assert s["points"] == 9 and s["trials"] == 19 and s["rss_end_mb"] == 1024
