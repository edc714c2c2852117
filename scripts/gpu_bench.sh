#!/usr/bin/env bash
# The GPU run (docs/performance.md, "GPU run") in one command, on a machine with an NVIDIA GPU:
#   python -m benchmarks gpu --json "$OUT/gpu.json"      (OUT defaults to results/)
# about 3 minutes on one H200; every part has its own hard budget (6 minutes together) and the
# whole run is stopped at 9 minutes whatever happens. The lines also go to "$OUT/gpu.log".
#
#   scripts/setup && scripts/gpu_bench.sh       a fresh machine: .venv from constraints.txt
#   PYTHON=python3 scripts/gpu_bench.sh         a Python that already has a CUDA torch
#   scripts/gpu_bench.sh --quick                the rehearsal's sizes on the GPU (a check, ~30 s)
#
# torch must be a CUDA build. constraints.txt pins torch==2.13.0; pip takes PyPI's Linux wheel
# for it, which is a CUDA build, unless a local CPU wheel is found first (this project's CPU
# machines have one): then install the CUDA build of the same version first, from PyTorch's
# CUDA wheel index for the machine's driver, and run scripts/setup after it. This script checks
# and stops (exit 3) before anything runs when torch sees no GPU.
# Part (d), the sweep, needs Ray and Optuna (the project's dependencies); without them it is
# reported as skipped and the other parts still run.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[gpu_bench] $*"; }

py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
out="${OUT:-results}"

if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    "$py" -c 'import torch; print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}")' \
        2>&1 | sed 's/^/[gpu_bench] /' >&2 || true
    echo "scripts/gpu_bench.sh: $py's torch sees no CUDA device. Install torch's CUDA build" \
         "(see the header of this script), or run the CPU rehearsal instead:" \
         "$py -m benchmarks gpu --device cpu" >&2
    exit 3
fi
"$py" -c 'import torch; print(f"[gpu_bench] torch {torch.__version__}, CUDA {torch.version.cuda}, "
                             f"{torch.cuda.get_device_name()}")'
if ! "$py" -c 'import ray, optuna' 2>/dev/null; then
    say "note: Ray or Optuna is missing in $py: part (d) will say skipped" \
        "(install: $py -m pip install -c constraints.txt -e .)"
fi

mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
say "python -m benchmarks gpu --json $out/gpu.json $*"
timeout 540 "$py" -m benchmarks gpu --json "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
say "figures: $out/gpu.json (copy them into docs/performance.md, GPU run)"
