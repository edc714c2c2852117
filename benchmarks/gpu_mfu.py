"""Part (c) of the GPU run: bf16 training tokens/s and MFU of the base and paper150m presets.

The baseline is the dense bf16 matmul rate measured on the card in this run
(benchmarks.mfu.matmul_peak, 8192×8192 on CUDA): each preset's model FLOP/s (6·params·tokens/s,
attention's T² term left out, as benchmarks.mfu) is a fraction of it, and also of the card's
nominal dense bf16 peak (989 TFLOP/s on an H100 or H200 SXM; --nominal-tflops for another
card), whose ratio to the measured peak is printed too. Two figures per preset:

- inner steps: the worker group's steady-state rate (benchmarks.batched.steps_path: H inner
  steps, no set-up, eval or outer step), the median of the repeats after a warm-up;
- whole trial: one trial's tokens over its wall time (set-up, evals, outer steps included).

Shapes per worker (M workers, stacked: batched=auto on CUDA): base M=4, B=32, T=512; paper150m
M=2, B=16, T=1024, paper_lm.yaml's shape. On CPU (--quick, the rehearsal) autocast is a no-op:
the presets are tiny and base at M=2, B=2, T=32, the peak is float32 and no nominal peak exists.
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

import torch

from trainer import TrainConfig
from trainer.model_config import count_params, resolve_model

from .batched import line, median_runs, steps_path, trial_path
from .mfu import matmul_peak

__all__ = ["main", "nominal_peak", "NOMINAL_BF16", "SHAPES", "QUICK_SHAPES"]

NOMINAL_BF16 = {"NVIDIA H200": 989.4e12, "NVIDIA H100 80GB HBM3": 989.4e12}
"""Dense (no 2:4 sparsity) bf16 tensor-core peak, FLOP/s, of the SXM cards, from NVIDIA's
data sheets, by torch.cuda.get_device_name(); NVL and PCIe cards are lower and not listed."""
SHAPES = {"base": (4, 32, 512), "paper150m": (2, 16, 1024)}
"""preset: (workers M, batch_size B, seq_len T) on CUDA."""
QUICK_SHAPES = {"tiny": (2, 2, 32), "base": (2, 2, 32)}
"""The rehearsal's: paper150m (152M parameters) is no CPU rehearsal; tiny stands in for it."""


def nominal_peak(device_name: str) -> float | None:
    """The card's nominal dense bf16 FLOP/s, or None when this table does not know it."""
    return NOMINAL_BF16.get(device_name)


def _preset(preset: str, shape: tuple[int, int, int], args: argparse.Namespace,
            peak: float, nominal: float | None, dtype: str) -> dict[str, Any]:
    M, B, T = shape
    cfg = TrainConfig(model=preset, workers=M, batch_size=B, seq_len=T, H=args.H,
                      outer_steps=args.outer_steps, eval_batches=2, warmup_steps=2,
                      dtype=dtype, device=args.device)
    n = count_params(resolve_model(preset, cfg.vocab_size))
    steps_s, steps_tok = median_runs({"steps": steps_path(cfg, cfg.H)}, args.repeats)["steps"]
    gc.collect()                        # the steps path's model and workers go before the trial's
    trial_s, trial_tok = median_runs({"trial": trial_path(cfg)}, 1)["trial"]
    out: dict[str, Any] = {"params": n, "workers": M, "batch_size": B, "seq_len": T, "H": cfg.H,
                           "dtype": dtype, "inner_tok_s": steps_tok / steps_s,
                           "trial_tok_s": trial_tok / trial_s}
    what = f"{preset} ({n / 1e6:.1f}M) M={M} B={B} T={T} {dtype}"
    for key, label in (("inner", "inner steps"), ("trial", "whole trial")):
        flops = out[f"{key}_flops"] = 6 * n * out[f"{key}_tok_s"]
        out[f"{key}_mfu"] = flops / peak
        line("gpu-mfu", f"{what}, {label}",
             f"{out[f'{key}_tok_s']:.0f} tok/s {flops / 1e12:.2f} TFLOP/s", flops / peak)
    if nominal:
        out["inner_vs_nominal"] = out["inner_flops"] / nominal
        line("gpu-mfu", f"{preset} inner steps / nominal dense bf16",
             f"{nominal / 1e12:.0f} TFLOP/s nominal", out["inner_vs_nominal"])
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_mfu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true", help="the rehearsal's presets and shapes")
    p.add_argument("--H", type=int, default=10, help="inner steps per round (and per timing)")
    p.add_argument("--outer-steps", type=int, default=2, help="rounds of the whole trial")
    p.add_argument("--repeats", type=int, default=3, help="timed inner-step runs per preset")
    p.add_argument("--nominal-tflops", type=float, default=0.0,
                   help="the card's nominal dense bf16 peak (default: NOMINAL_BF16's entry)")
    args = p.parse_args(argv)
    if args.quick:
        args.H, args.outer_steps, args.repeats = min(args.H, 2), 1, 1
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    dtype = "bfloat16" if cuda else "float32"       # CPU trials compute float32 (autocast_for)
    peak = matmul_peak(device, torch.bfloat16 if cuda else torch.float32,
                       n=0 if cuda or not args.quick else 256, seconds=1.0 if cuda else 0.3)
    nominal = (args.nominal_tflops * 1e12 or nominal_peak(name)) if cuda else None
    shapes = QUICK_SHAPES if args.quick else SHAPES
    presets = {preset: _preset(preset, shape, args, peak, nominal, dtype)
               for preset, shape in shapes.items()}
    line("gpu-mfu", f"peak: dense {dtype} matmul on {name} (the baseline)",
         f"{peak / 1e12:.3f} TFLOP/s", 1.0)
    if nominal:
        line("gpu-mfu", "peak measured / nominal dense bf16", f"{nominal / 1e12:.0f} TFLOP/s",
             peak / nominal)
    return {"ratio": presets[list(shapes)[-1]]["inner_mfu"], "peak_flops": peak,
            "peak_dtype": dtype, "nominal_flops": nominal, "device_name": name,
            "presets": presets}


if __name__ == "__main__":
    main()
