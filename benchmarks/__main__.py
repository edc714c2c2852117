"""`python -m benchmarks [name ...]`: run the benchmark suite; every line ends in a ratio."""

import importlib
import sys

SUITE = ["trainer_overhead", "sweep_overhead", "batched", "packed", "mfu", "diverged_cost",
         "stacked_forward", "boundary", "grid_start"]

if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("-")] or SUITE
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        module.main([])
