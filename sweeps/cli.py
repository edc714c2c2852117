"""``diloco-sweep``: run, check and inspect sweeps; train one trial; report on results.

Exit codes: 0 success, 2 bad input (a refused spec, a wrong argument), 1 any other error,
130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP.
Errors are one line on stderr; set DILOCO_SWEEP_DEBUG=1 for the traceback.
Ray, Optuna, torch and the analysis code are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from sweeps.cli_errors import PROG, UsageError
from sweeps.store.errors import ALLOW_FLAG

__all__ = ["main", "build_parser"]


ALLOW_HELP = ("add this spec's trials to a stored sweep of the same name whose fixed trial "
              "settings (those no axis sweeps) differ; without it such a spec is refused "
              "(exit 2), as its trials would mix with another experiment's (docs/sweeps.md)")

RISE_HELP = ("threshold: a trial that ended more than this above its best eval loss blew "
             "up; a stable one that rose more than this on the way spiked (default 0.1; "
             "docs/design.md, \"Stable\", says why)")
X_HELP = ("the maps' x axis and the edges: alpha (as run) or effective (the rule's effective "
          "outer LR, nesterov α/(1 − β), nesterov_normalized α: sweeps of different momentum "
          "conventions side by side; docs/analysis.md)")

def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Stability sweeps for DiLoCo two-phase "
                                 "training: spec file → Ray Tune → one Parquet row per trial.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a sweep spec (embedded Ray, or the cluster at --address)")
    p.add_argument("spec", help="sweep spec YAML file")
    p.add_argument("--output", "-o", help="results directory or s3:// URI (overrides the spec)")
    p.add_argument("--max-concurrent", type=_positive, metavar="N",
                   help="at most N trials at once (default: as many as resources allow)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else an "
                   "embedded local Ray)")
    p.add_argument("--force", action="store_true", help="rerun trials that are already stored")
    p.add_argument(ALLOW_FLAG, dest="allow_other_settings", action="store_true",
                   help=ALLOW_HELP)
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="at the end, print only the counts: no metrics table, no report.html")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print Ray Tune's and Optuna's own log lines (an embedded run "
                        "hides them; a run against a cluster always shows them)")

    p = sub.add_parser("check", help="validate a spec; print it, the number of trials and "
                       "their cost (FLOPs, GPU-hours)")
    p.add_argument("spec")
    p.add_argument("--card", default="h100", choices=("h100", "h200", "a100"),
                   help="GPU the GPU-hours are estimated for (bf16 dense peak; default h100)")
    p.add_argument("--mfu", type=float, default=0.4,
                   help="model FLOPs utilization assumed for GPU-hours (default 0.4)")
    p.add_argument("--address", help="check as a run against this Ray cluster would (default: "
                   "$RAY_ADDRESS, else as a local run: this machine's CPUs, GPUs and files)")
    p.add_argument("--output", "-o", help="compare with the sweep stored here, as `run "
                   "--output` would (default: the spec's output)")
    p.add_argument(ALLOW_FLAG, dest="allow_other_settings", action="store_true",
                   help=ALLOW_HELP)

    p = sub.add_parser("status", help="count completed, diverged, failed and missing trials")
    p.add_argument("results", help="a sweep's folder: <output>/<name> (path or s3:// URI)")
    p.add_argument("--spec", help="compare with this spec instead of the one in sweep.json")

    p = sub.add_parser("compact", help="merge a sweep's one-file-per-trial rows into a few "
                       "large files (readers return the same rows)")
    p.add_argument("results", help="a sweep's folder: <output>/<name> (path or s3:// URI)")
    p.add_argument("--max-trials", type=_positive, default=10_000, metavar="N",
                   help="at most N trials per merged file (default 10000)")

    p = sub.add_parser("report", help="write the HTML stability report of a sweep")
    p.add_argument("results")
    p.add_argument("-o", "--out", help="HTML file (default: report.html in the sweep's folder, "
                   "as `run` writes it; for a sweep on s3://, NAME-report.html here)")
    p.add_argument("--png", metavar="DIR", help="also write each figure as PNG into DIR")
    p.add_argument("--rise", type=float, default=None,
                   help=RISE_HELP)
    p.add_argument("--tol", type=float, default=None,
                   help="near-optimal tolerance to the best final loss of any R (default 0.05)")
    p.add_argument("--theory-spectrum", metavar="SPEC",
                   help="LM sweeps: draw the linearized theory's boundary for this assumed "
                        "spectrum (powerlaw:DIM:POWER or a file of eigenvalues); labelled as assumed")
    p.add_argument("--theory-eta", type=float, metavar="ETA",
                   help="inner step size η for --theory-spectrum (default: the sweep's lr)")
    p.add_argument("--x", choices=("alpha", "effective"), default="alpha",
                   help=X_HELP)

    p = sub.add_parser("show", help="print a sweep's stability tables in the terminal")
    p.add_argument("results")
    p.add_argument("--x", choices=("alpha", "effective"), default="alpha", help=X_HELP)
    p.add_argument("--rise", type=float, default=None,
                   help=RISE_HELP)
    p.add_argument("--tol", type=float, default=None,
                   help="near-optimal tolerance to the best final loss of any R (default 0.05)")

    # train and theory come from other modules; only import them when they are asked for
    first = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, mod, text in (("train", "sweeps.cli_train", "run one trial, no Ray"),
                            ("theory", "analysis.theory_cli", "the linearized stability theory")):
        if first == name:
            import importlib

            importlib.import_module(mod).add_parser(sub)
        else:
            q = sub.add_parser(name, help=text, add_help=False)
            q.add_argument("rest", nargs=argparse.REMAINDER)
    return ap


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v}")
    return v


def main(argv: list[str] | None = None) -> int:
    """Run one command; every line it (or Ray, or Tune) prints goes out redacted."""
    started = time.time()  # `run`'s elapsed time counts from here, Ray's start included
    from sweeps.store.redact import RedactingStream

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return _main(argv, started)
    finally:
        for s in (sys.stdout, sys.stderr):
            s.flush()
        sys.stdout, sys.stderr = saved


def _main(argv: list[str] | None, started: float) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser(argv)
    args = ap.parse_args(argv)  # argparse exits 2 on a usage error
    from sweeps.store.errors import BadUriError, DamagedMetaError, OutsideLinkError, StoreError
    from sweeps.tune.signals import Terminated
    from sweeps.spec.parse import SpecError
    from sweeps.spec.yamlmarks import YamlError

    try:
        return int(_dispatch(args, started) or 0)
    except (SpecError, YamlError, UsageError, BadUriError, DamagedMetaError,
            OutsideLinkError) as e:
        _fail(e)
        return 2
    except StoreError as e:  # not writable, full, unreachable, busy: the message says which
        _fail(e)
        return 1
    except Terminated as e:  # SIGTERM (Kubernetes) or SIGHUP: as Ctrl-C, exit 128 + signal
        print(f"{PROG}: interrupted by {e.name}", file=sys.stderr)
        # the end is recorded and Ray shut down; the interpreter's teardown (Ray's and Tune's
        # threads: 4 s at load 19 on 2 cores) would only eat into Kubernetes' 30 s grace
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(e.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, not a traceback
        _fail(e, prefix=f"{type(e).__name__}: ")
        return 1


def _fail(e: BaseException, prefix: str = "") -> None:
    if os.environ.get("DILOCO_SWEEP_DEBUG"):
        import traceback

        traceback.print_exception(e)
    print(f"{PROG}: error: {prefix}{e}", file=sys.stderr)


def _dispatch(args: argparse.Namespace, started: float) -> Any:
    cmd = args.command
    if cmd == "run":
        from sweeps.tune.runner import run_sweep
        from sweeps.spec.parse import load_spec

        spec = load_spec(args.spec)
        s = run_sweep(spec, output=args.output, max_concurrent=args.max_concurrent,
                      address=args.address, force=args.force, verbose=args.verbose,
                      started=started, allow_other_settings=args.allow_other_settings)
        print(f"{s.store_uri}: " + ", ".join(f"{v} {k}" for k, v in s.counts.items()))
        if args.report:
            from sweeps.cli_report import finish_report

            finish_report(s.folder or s.store_uri)
        return 0
    if cmd == "check":
        from sweeps.cli_check import check

        return check(args.spec, args.address, args.card, args.mfu, args.output,
                      args.allow_other_settings)
    if cmd == "status":
        from sweeps.store.status import status

        print(status(args.results, spec_path=args.spec))
        return 0
    if cmd == "compact":
        from sweeps.store.compact import compact
        from sweeps.store.status import require_sweep
        from sweeps.store.store import Store

        require_sweep(args.results)
        store = Store.at(args.results)
        if store.name in ("trials", "curves"):
            raise UsageError(f"{args.results}: give the sweep's folder <output>/<name>, not its "
                             f"{store.name}/")
        print(compact(store, max_trials=args.max_trials).line(store.uri))
        return 0
    if cmd in ("report", "show"):
        from sweeps.cli_report import report_or_show

        return report_or_show(args)
    if cmd == "train":
        from sweeps import cli_train

        return cli_train.main(args)
    if cmd == "theory":
        from analysis import theory_cli

        return theory_cli.main(args)
    raise UsageError(f"unknown command {cmd!r}")
