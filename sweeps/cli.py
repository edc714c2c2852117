"""``diloco-sweep``: run, check and inspect sweeps; train one trial; report on results.

Exit codes: 0 success, 2 bad input (a refused spec, a wrong argument), 1 any other error,
130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP.
Errors are one line on stderr; set DILOCO_SWEEP_DEBUG=1 for the traceback.
Ray, Optuna, torch and the analysis code are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from sweeps.store.errors import ALLOW_FLAG
from sweeps.store.redact import redact

__all__ = ["main", "build_parser", "report_path"]

PROG = "diloco-sweep"


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


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
            _finish_report(s.folder or s.store_uri)
        return 0
    if cmd == "check":
        return _check(args.spec, args.address, args.card, args.mfu, args.output,
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
        _check_tol(args.tol)
        _check_rise(args.rise)
        from sweeps.store.status import open_results

        store, _ = open_results(args.results)
        import analysis

        kw = {k: v for k, v in (("tol", args.tol), ("rise", args.rise)) if v is not None}
        kw["skipped"] = store.skipped
        kw["x"] = args.x
        if cmd == "show":
            with _warnings_said():
                print(analysis.render_show(args.results, **kw))
            return 0
        _name_skipped(store.skipped)
        if args.theory_spectrum:
            kw["theory_overlay"] = _spectrum_overlay(args)
        out = args.out or report_path(args.results)
        with _warnings_said():
            analysis.write_report(args.results, out, png_dir=args.png,
                                  source=redact(args.results), **kw)
        print(out)
        return 0
    if cmd == "train":
        from sweeps import cli_train

        return cli_train.main(args)
    if cmd == "theory":
        from analysis import theory_cli

        return theory_cli.main(args)
    raise UsageError(f"unknown command {cmd!r}")


def report_path(folder: str) -> Path:
    """Where `run` and `report` put the HTML report unless told (the README states this rule):
    ``report.html`` in the sweep's folder, beside its results; for a sweep on s3:// (not
    openable in a browser) ``<name>-report.html`` in the working directory."""
    base = folder.partition("?")[0].rstrip("/")
    if "://" not in base or base.startswith("file://"):
        return Path(base.removeprefix("file://")) / "report.html"
    return Path(f"{base.rsplit('/', 1)[-1]}-report.html")


def _finish_report(store_uri: str) -> None:
    """The end of `run`: the terminal summary, and the report where report_path says."""
    import analysis

    from sweeps.store.status import open_results

    out = report_path(store_uri)
    try:
        skipped = open_results(store_uri)[0].skipped
        with _warnings_said():
            print(analysis.render_show(store_uri, skipped=skipped))
            analysis.write_report(store_uri, out, source=redact(store_uri), skipped=skipped)
    except Exception as e:  # the results are safe in the store; only the summary failed
        print(f"{PROG}: results stored, but the report failed: {e}", file=sys.stderr)
        return
    print(f"report: {out}")


@contextlib.contextmanager
def _warnings_said():
    """What analysis warns of (a curve file it could not read, a row it refused), said once
    each on stderr in the CLI's voice, without Python's file:line noise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            said = []
            for w in caught:
                msg = str(w.message)
                if issubclass(w.category, UserWarning) and msg not in said:
                    said.append(msg)
                    print(f"{PROG}: {msg}", file=sys.stderr)


def _name_skipped(skipped: dict[str, str]) -> None:
    for f, why in skipped.items():
        print(f"{PROG}: left out (not a trustworthy trial row; its trial counts as missing): "
              f"{f}: {why}", file=sys.stderr)


def _spectrum_overlay(args: argparse.Namespace):
    import analysis
    from analysis.theory_report import spectrum_overlay

    eta = args.theory_eta
    if eta is None:
        lrs = analysis.load_trials(args.results).get("lr")
        if lrs is None or lrs.nunique() != 1:
            raise UsageError("--theory-eta: the sweep has no single lr; give η explicitly")
        eta = float(lrs.iloc[0])
    return spectrum_overlay(args.theory_spectrum, eta)


def _check_tol(tol: float | None) -> None:
    if tol is not None and not (0 < tol < 10):
        raise UsageError(f"--tol: expected a relative tolerance such as 0.05, got {tol}")


def _check_rise(rise: float | None) -> None:
    if rise is not None and not (0 < rise < 100):
        raise UsageError(f"--rise: expected a relative rise above 0 such as 0.1 (10% above the "
                         f"best), got {rise}")


def _check(path: str, address: str | None = None, card: str = "h100", mfu: float = 0.4,
           output: str | None = None, allow_other_settings: bool = False) -> int:
    """Every check `run` makes before Ray starts (the same functions), and nothing written."""
    import yaml

    from sweeps.estimate.cost import format_cost, sweep_cost
    from sweeps.estimate.cpu_time import cpu_time
    from sweeps.tune.loggers import check_loggers
    from sweeps.estimate.preflight import preflight
    from sweeps.tune.runner import resolve_output, runs_locally
    from sweeps.spec.parse import SpecError, load_spec

    spec = load_spec(path)
    spec.search_kind.check(spec)
    out = resolve_output(output or spec.output)
    check_loggers(spec, out, SpecError)
    from sweeps.spec.history import check_stored  # run's refusal of another experiment under this name

    for note in check_stored(spec, out, allow_other_settings):
        print(f"# note: {note}", file=sys.stderr)
    local = runs_locally(address)
    try:
        preflight(spec, local=local)
    except SpecError as e:
        # a spec for GPUs this machine does not have is a cluster's: check it as `run
        # --address` would, and say that a local run refuses it
        if not (local and spec.resources.gpu and str(e).startswith("resources.gpu:")):
            raise
        preflight(spec, local=False)
        print(f"# note: checked as for a cluster; a local run refuses it ({e})", file=sys.stderr)
    print(yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=False,
                         allow_unicode=True).rstrip())
    print(f"# {spec.describe()}")
    if not 0 < mfu <= 1:
        raise UsageError(f"--mfu: expected a fraction in (0, 1] such as 0.4, got {mfu}")
    sc = sweep_cost(spec)
    print(format_cost(sc, card, mfu, gpu=spec.resources.gpu))
    est = cpu_time(spec, sc, max_concurrent=spec.search.max_concurrent) if local else None
    if est is not None:
        print(est.line())
        if est.long:
            print(f"# WARNING: {est.warning()}", file=sys.stderr)
    corpus = spec.base.corpus
    if isinstance(corpus, str) and corpus != "stdlib" and "://" not in corpus \
            and not os.path.exists(corpus):
        print(f"# note: corpus {corpus!r} is not on this machine; the trials' nodes need it",
              file=sys.stderr)
    return 0
