"""`python -m benchmarks [name ...]`: run the benchmark suite; every line ends in a ratio.

`python -m benchmarks NAME --option ...` passes the options to that one benchmark's main
(`python -m benchmarks gpu --json gpu.json`); options after several names are refused.
"""

import argparse
import importlib
import sys

SUITE = ["trainer_overhead", "sweep_overhead", "batched", "packed", "mfu", "diverged_cost",
         "stacked_forward", "boundary", "map", "grid_start", "scale", "driver_memory", "gpu"]


def parse(argv: list[str]) -> tuple[list[str], list[str]]:
    """(benchmarks to run, in order: all of SUITE when none is named; the options for the one
    named); --help exits here."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        usage="python -m benchmarks [-h] [NAME ...] [OPTIONS for one NAME]",
        description="Run the benchmarks (the whole suite takes minutes on 2 CPU cores); "
                    "each prints lines ending in a ratio against a baseline run in the "
                    "same invocation. Options after one NAME go to it (python -m benchmarks gpu "
                    "--json gpu.json; python -m benchmarks gpu --help). docs/performance.md has "
                    "the latest table.")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="benchmarks to run, default all: " + ", ".join(SUITE))
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first], argv[first:]
    if not names:
        ap.parse_args(options)  # --help prints and exits; any other option is refused
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SUITE)}")
    if options and len(names) > 1:
        ap.error(f"options ({' '.join(options)}) go to one benchmark; name only one, e.g. "
                 f"python -m benchmarks {names[0]} {' '.join(options)}")
    return names or SUITE, options


if __name__ == "__main__":
    names, options = parse(sys.argv[1:])
    for name in names:
        print(f"# {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(options)
