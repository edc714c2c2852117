"""`python -m benchmarks [name ...]`: run the benchmark suite; every line ends in a ratio."""

import argparse
import importlib
import sys

SUITE = ["trainer_overhead", "sweep_overhead", "batched", "packed", "mfu", "diverged_cost",
         "stacked_forward", "boundary", "grid_start"]


def parse(argv: list[str]) -> list[str]:
    """The benchmarks to run, in order (all of SUITE when none is named); --help exits here."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmarks (all six take about 3½ minutes on 2 CPU cores); each "
                    "prints lines ending in a ratio against a baseline run in the same "
                    "invocation. docs/performance.md has the latest table.")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="benchmarks to run, default all: " + ", ".join(SUITE))
    names = ap.parse_args(argv).names
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SUITE)}")
    return names or SUITE


if __name__ == "__main__":
    for name in parse(sys.argv[1:]):
        print(f"# {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])
