"""`python -m benchmarks gpu`: its CPU rehearsal runs every part end to end, and its budgets hold.

The rehearsal is the script the GPU run will be, on tiny sizes: batched and packed trainers,
the MFU figures against a measured matmul peak, and a slice of the main job through the real
sweep runner on a private Ray that declares a GPU the machine does not have (the trials train
on the CPU). About 25 s on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu, gpu_sweep

REPO = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"ratio (\d+\.\d{3})$")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.mark.ray
@pytest.mark.slow
def test_cpu_rehearsal_runs_every_part_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cuda = gpu.torch.cuda.is_available()  # on a GPU machine, ask for the rehearsal by name
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "benchmarks", "gpu", "--json", str(out),
                        *(["--device", "cpu"] if cuda else [])], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=180)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ("--device cpu" if cuda else "no GPU found") in r.stdout  # says what it ran
    assert "running the CPU rehearsal of every part" in r.stdout
    assert "4 of 4 parts ok" in r.stdout
    assert took < 120, f"the rehearsal took {took:.0f} s"

    report = json.loads(out.read_text())
    assert report["benchmark"] == "gpu" and report["rehearsal"] is True
    assert report["device"] == "cpu" and report["torch"] and _finite(report["wall_s"])
    assert list(report["parts"]) == list(gpu.PARTS)
    for name, part in report["parts"].items():
        assert part["status"] == "ok", (name, part.get("error"))
        assert _finite(part["ratio"]), (name, part["ratio"])
        assert part["wall_s"] < part["budget_s"] == gpu.QUICK_BUDGETS_S[name]
        assert part["lines"], name
        for ln in part["lines"]:  # every line it kept ends in a ratio, and was printed
            assert RATIO.search(ln) and ln in r.stdout, ln

    b = report["parts"]["batched"]
    assert _finite(b["whole_trial_sequential_tokens_s"])
    assert _finite(b["whole_trial_batched_tokens_s"])
    assert b["ratio"] == b["whole_trial"]
    p = report["parts"]["packed"]
    assert _finite(p["packed_tok_s"]) and p["ratio"] == p["speedup_vs_default"]

    m = report["parts"]["mfu"]
    assert m["peak_dtype"] == "float32" and _finite(m["peak_flops"]) and m["nominal_flops"] is None
    assert set(m["presets"]) == {"tiny", "base"}
    for preset in m["presets"].values():
        assert 0 < preset["inner_mfu"] < 2 and 0 < preset["trial_mfu"] < 2
        # the same FLOPs convention as benchmarks.mfu: 6 · params · tokens/s
        assert math.isclose(preset["inner_flops"], 6 * preset["params"] * preset["inner_tok_s"])
        assert math.isclose(preset["inner_mfu"], preset["inner_flops"] / m["peak_flops"])

    s = report["parts"]["sweep"]
    assert s["spec"] == "restart_cpu.yaml" and s["share"] == 0.5
    assert s["resources"]["GPU"] == 1 and s["resources"]["CPU"] == 2  # declared, not present
    assert set(s["runs"]) == {"1", "0.5"}
    for run in s["runs"].values():
        assert run["trials"] == 4 and run["counts"]["failed"] == 0
        assert _finite(run["trials_per_min"])
    assert math.isclose(s["ratio"], s["runs"]["0.5"]["trials_per_min"]
                        / s["runs"]["1"]["trials_per_min"])


def test_a_part_past_its_budget_is_stopped_and_recorded(monkeypatch, capsys) -> None:
    def forever(argv: list[str]) -> dict:
        time.sleep(30)
        return {}

    monkeypatch.setitem(gpu.PARTS, "batched", ("sleeps", forever, [], [], "ratio"))
    t0 = time.monotonic()
    entry = gpu._part("batched", [], 0.5)
    assert time.monotonic() - t0 < 5
    assert entry["status"] == "timed out" and entry["error"] == "over its budget of 0.5 s"
    assert entry["wall_s"] < 5
    assert "batched: timed out" in capsys.readouterr().out


def test_sweep_part_without_ray_is_skipped_not_failed(monkeypatch) -> None:
    real = gpu_sweep.importlib.util.find_spec
    monkeypatch.setattr(gpu_sweep.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    entry = gpu._part("sweep", ["--device", "cpu", "--quick"], 10)
    assert entry["status"] == "skipped" and "ray not installed" in entry["error"]


def test_cuda_asked_for_without_cuda_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        gpu.main(["--device", "cuda"])
    assert e.value.code == 2


@pytest.mark.skipif(gpu.torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_gpu_bench_script_stops_before_running_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_bench.sh")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "sees no CUDA device" in r.stderr
    assert "--device cpu" in r.stderr and not (tmp_path / "out").exists()
