"""Analysis of sweep results: load Parquet, label stability, metrics, HTML report, terminal view.

Reads only the results store of DESIGN.md (``trials/*.parquet``, ``curves/*.parquet``,
``sweep.json``), local or ``s3://``; it never imports the trainer, the sweep service, Ray or
Optuna. Typical use::

    import analysis
    trials = analysis.load_trials("results/restart-cpu")
    s = analysis.summarize(trials, tol=0.05)
    s["restart_gain"], s["slices"], s["alpha_range"]
    analysis.write_report("results/restart-cpu", "report.html")
    print(analysis.render_show("results/restart-cpu"))
"""

from .load import load_curves, load_sweep_meta, load_trials
from .metrics import TOLS, alpha_ranges, gain_table, restart_gain, summarize
from .report import PngExportError, find_browser, write_pngs, write_report
from .show import render_show, render_summary
from .stability import SPIKE, cells, label, slice_keys, wilson

__all__ = [
    "load_trials", "load_curves", "load_sweep_meta",
    "label", "cells", "wilson", "slice_keys", "SPIKE",
    "summarize", "restart_gain", "alpha_ranges", "gain_table", "TOLS",
    "write_report", "write_pngs", "find_browser", "PngExportError",
    "render_show", "render_summary",
]
