"""`diloco-sweep report` and `show`, and the summary `run` ends with: the read side of the CLI.

Analysis (pandas, plotly) is imported here only when a command needs it; what it warns of is
said on stderr in the CLI's voice.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

from sweeps.cli_errors import PROG, UsageError
from sweeps.store.redact import redact

__all__ = ["report_or_show", "finish_report", "report_path"]


def report_or_show(args: argparse.Namespace) -> int:
    """`report` (the HTML page) or `show` (the terminal summary) of a stored sweep."""
    _check_tol(args.tol)
    _check_rise(args.rise)
    from sweeps.store.status import open_results

    store, _ = open_results(args.results)
    import analysis

    kw = {k: v for k, v in (("tol", args.tol), ("rise", args.rise)) if v is not None}
    kw["skipped"] = store.skipped
    kw["x"] = args.x
    if args.command == "show":
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


def report_path(folder: str) -> Path:
    """Where `run` and `report` put the HTML report unless told (the README states this rule):
    ``report.html`` in the sweep's folder, beside its results; for a sweep on s3:// (not
    openable in a browser) ``<name>-report.html`` in the working directory."""
    base = folder.partition("?")[0].rstrip("/")
    if "://" not in base or base.startswith("file://"):
        return Path(base.removeprefix("file://")) / "report.html"
    return Path(f"{base.rsplit('/', 1)[-1]}-report.html")


def finish_report(store_uri: str) -> None:
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
