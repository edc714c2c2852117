"""Analysis of sweep results: load Parquet, label stability, the answer, HTML report, terminal view.

Reads only the results store of docs/design.md (``trials/*.parquet``, ``curves/*.parquet``,
``sweep.json``), local or ``s3://``; it never imports torch, the sweep service, Ray or
Optuna, and of the trainer only its numbers-only ``outer_rules`` and ``result``. Typical use::

    import analysis
    trials = analysis.load_trials("results/restart-cpu")
    analysis.label(trials)["stable"]               # a property of each trial alone
    s = analysis.summarize(trials)                 # rise threshold 10%, near-optimal at 5%
    print(analysis.answer_sentence(s))
    s["restart_gain"], s["area_gain"], s["paired"], s["edges"]
    analysis.write_report("results/restart-cpu", "report.html")
    print(analysis.render_show("results/restart-cpu"))
"""

from .answer import answer_sentence, line_verdicts, verdict
from .load import curve_stats, load_curves, load_sweep_meta, load_trials
from .metrics import (alpha_edges, area_gain, near_optimal_table, paired_effect, restart_gain,
                      sign_test, summarize)
from .report import PngExportError, find_browser, write_pngs, write_report
from .show import render_show, render_summary
from .stability import RISE, RISES, TOLS, cells, label, slice_keys, wilson

__all__ = [
    "load_trials", "load_curves", "load_sweep_meta", "curve_stats",
    "label", "cells", "wilson", "slice_keys", "RISE", "RISES", "TOLS",
    "summarize", "restart_gain", "area_gain", "alpha_edges", "paired_effect",
    "near_optimal_table", "sign_test", "answer_sentence", "verdict", "line_verdicts",
    "write_report", "write_pngs", "find_browser", "PngExportError",
    "render_show", "render_summary",
]
