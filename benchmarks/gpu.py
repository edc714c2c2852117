"""`python -m benchmarks gpu`: the GPU run of issue 14, prepared and short (about 3 minutes on
one H200 by estimate, each part under a hard time budget, 6 minutes at most), with its figures as JSON.

  (a) batched  batched M=4 workers against sequential ones, tokens/s (benchmarks.batched,
               its default tiny shape: the "≥ 3 on a GPU" goal of docs/performance.md);
  (b) packed   K=8 trials packed on the card against the same trials one by one
               (benchmarks.packed);
  (c) mfu      bf16 tokens/s and MFU of the base and paper150m presets against the dense bf16
               matmul peak measured on the card, and against its nominal peak
               (benchmarks.gpu_mfu);
  (d) sweep    a slice of the main job (restart_cpu.yaml) through the sweep runner with
               resources.gpu 0.25 (four trials share the card) against 1, trials/minute
               (benchmarks.gpu_sweep; needs Ray and Optuna, else the part says it is skipped).

Every line ends in a ratio against a baseline run in this invocation. --json PATH writes
{"parts": {name: {"status", "ratio", "wall_s", "budget_s", "lines", ...figures}}, ...}, again
after each part, so a run stopped half way still leaves what it measured.

Without CUDA, or with --device cpu, it runs its CPU rehearsal instead: every part on tiny
sizes (under a minute on 2 cores), after a line saying that no GPU was used; its figures
are no GPU figures. --quick on a GPU runs the rehearsal's sizes there (a check of the script).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import torch

from . import batched, gpu_mfu, gpu_sweep, packed

__all__ = ["main", "PARTS", "BUDGETS_S", "QUICK_BUDGETS_S", "PartTimeout", "deadline"]

_QUICK_SHAPE = ["--workers", "2", "--H", "2", "--outer-steps", "1", "--batch-size", "2",
                "--seq-len", "16", "--repeats", "1"]
PARTS: dict[str, tuple[str, Callable[[list[str]], dict], list[str], list[str], str]] = {
    # name: (what, main, its argv on a GPU, its argv in the rehearsal, headline key)
    "batched": ("batched vs sequential workers", batched.main, ["--repeats", "3"],
                _QUICK_SHAPE, "whole trial"),
    "packed": ("K packed trials vs one by one", packed.main, ["--K", "8", "--repeats", "1"],
               ["--K", "2", *_QUICK_SHAPE], "speedup_vs_default"),
    "mfu": ("bf16 tokens/s and MFU, base and paper150m", gpu_mfu.main, [], ["--quick"], "ratio"),
    "sweep": ("main job slice at fractional resources.gpu", gpu_sweep.main, [], ["--quick"],
              "ratio"),
}
BUDGETS_S = {"batched": 60, "packed": 60, "mfu": 90, "sweep": 150}
"""Hard limits per part on a GPU (an estimate, not yet measured: 15, 25, 40 and 60 s on an
H200)."""
QUICK_BUDGETS_S = {"batched": 30, "packed": 30, "mfu": 30, "sweep": 90}


class PartTimeout(BaseException):
    """A part ran past its budget (a BaseException: code that catches Exception lets it by)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise PartTimeout in the block after `seconds` (SIGALRM: main thread, Unix only)."""
    def fire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"over its budget of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _Tee(io.TextIOBase):
    """Writes through to `out` and keeps the ratio lines, for the JSON."""

    def __init__(self, out: Any):
        self.out, self.lines, self._part = out, [], ""

    def write(self, s: str) -> int:
        self.out.write(s)
        self._part += s
        *done, self._part = self._part.split("\n")
        self.lines += [ln for ln in done if " ratio " in ln]
        return len(s)

    def flush(self) -> None:
        self.out.flush()

    def fileno(self) -> int:      # what faulthandler and subprocess-minded code ask a stream
        return self.out.fileno()

    def isatty(self) -> bool:
        return self.out.isatty()


def _clean(v: Any) -> Any:
    """JSON-safe: keys without spaces or signs ("whole trial: batched tokens/s" →
    whole_trial_batched_tokens_s; "0.25" stays), non-finite floats → None."""
    if isinstance(v, dict):
        return {re.sub(r"[^\w.]+", "_", str(k)).strip("_"): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _write(path: str, report: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(report), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def _part(name: str, argv: list[str], budget: float) -> dict[str, Any]:
    """Run one part under its budget; its entry for the JSON, whatever happened."""
    what, run, _, _, headline = PARTS[name]
    t0, tee = time.perf_counter(), _Tee(sys.stdout)
    entry: dict[str, Any] = {"status": "ok", "budget_s": budget, "argv": argv}
    try:
        with deadline(budget), contextlib.redirect_stdout(tee):
            res = run(argv)
        entry.update(res, ratio=res[headline])
    except PartTimeout as e:
        entry.update(status="timed out", error=str(e))
    except gpu_sweep.SkipPart as e:
        entry.update(status="skipped", error=str(e))
    except Exception as e:  # noqa: BLE001 - one part's failure is recorded; the others run
        traceback.print_exc()
        entry.update(status="failed", error=f"{type(e).__name__}: {e}")
    entry.update(wall_s=time.perf_counter() - t0, lines=tee.lines)
    if entry["status"] != "ok":
        print(f"# gpu {name}: {entry['status']} after {entry['wall_s']:.0f} s: {entry['error']}",
              flush=True)
    return entry


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when torch sees it, else the CPU rehearsal")
    p.add_argument("--quick", action="store_true", help="the rehearsal's tiny sizes")
    p.add_argument("--json", metavar="PATH", help="write the figures here as JSON")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--budget-scale", type=float, default=1.0,
                   help="multiply every part's time budget (a slower card)")
    args = p.parse_args(argv)
    parts = [s for s in args.parts.split(",") if s]
    if not parts or set(parts) - set(PARTS):
        p.error(f"--parts: choose from {', '.join(PARTS)}")
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        p.error(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    device = "cuda" if cuda and args.device != "cpu" else "cpu"
    quick = args.quick or device == "cpu"
    if device == "cpu":
        why = "no GPU found" if args.device == "auto" else "--device cpu"
        print(f"# gpu: {why} (torch {torch.__version__}, CUDA {torch.version.cuda}): running the "
              f"CPU rehearsal of every part on tiny sizes; these are no GPU figures", flush=True)
    report: dict[str, Any] = {
        "benchmark": "gpu", "rehearsal": device == "cpu", "quick": quick, "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
        or platform.machine(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "parts": {}}
    t0 = time.perf_counter()
    for name in parts:
        budget = (QUICK_BUDGETS_S if quick else BUDGETS_S)[name] * args.budget_scale
        argv_part = ["--device", device, *PARTS[name][3 if quick else 2]]
        print(f"# gpu ({'abcd'[list(PARTS).index(name)]}) {name}: {PARTS[name][0]}, budget "
              f"{budget:.0f} s", flush=True)
        report["parts"][name] = _part(name, argv_part, budget)
        report["wall_s"] = time.perf_counter() - t0
        if args.json:
            _write(args.json, report)
    ok = sum(e["status"] == "ok" for e in report["parts"].values())
    print(f"# gpu: {ok} of {len(parts)} parts ok in {report['wall_s']:.0f} s"
          + (f"; figures in {args.json}" if args.json else ""), flush=True)
    return report


if __name__ == "__main__":
    sys.exit(0 if all(e["status"] == "ok" for e in main()["parts"].values()) else 1)
