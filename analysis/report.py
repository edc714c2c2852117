"""The HTML report: one self-contained offline file, plotly's JS embedded once.

Sections, in order: the tolerance and counts; the restart gain across tolerances; the metrics
per slice and per β; the stability facets; an optional theory figure; chosen loss curves with
momentum_cos; the spec, versions and commit from sweep.json. ``png_dir`` also writes every
figure as a PNG through kaleido, which needs a Chrome or Chromium.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .curves import curve_figure, curve_trial_ids
from .figures import Overlay, facet_figures, fmt, slice_title
from .load import load_curves, load_sweep_meta, load_trials
from .metrics import TOLS, gain_table, summarize
from .stability import SPIKE, fixed_settings, slice_keys, tol_text
from .theory_report import default_tol, is_toy, toy_overlay, toy_theory_figure

__all__ = ["write_report", "write_pngs", "find_browser", "PngExportError", "Theory"]

Theory = Callable[[pd.DataFrame, dict], "go.Figure | None"]
"""A theory overlay: called with the cell table and sweep.json, returns a figure or None."""

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; max-width: 1500px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; }
p.lead { color: #444; margin-top: 4px; }
table.metrics { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.metrics th { background: #f2f2f2; }
table.metrics tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto; }
.note { color: #555; font-size: 13px; max-width: 1100px; }
"""


class PngExportError(RuntimeError):
    """PNG export is impossible here (no Chrome/Chromium, or kaleido missing)."""


def find_browser() -> str | None:
    """A Chrome/Chromium executable for kaleido: $BROWSER_PATH, else one on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).exists():
        return env
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def write_pngs(figures: Sequence[tuple[str, go.Figure]], png_dir: str | Path) -> list[Path]:
    """Write each (name, figure) as ``png_dir/name.png`` through kaleido; the paths written.

    Raises PngExportError, saying what to install, when no browser or no kaleido is found.
    """
    browser = find_browser()
    if browser is None:
        raise PngExportError("PNG export needs Chrome or Chromium and none was found: install "
                             "Debian's `chromium` (apt-get install chromium) or set "
                             "BROWSER_PATH to a Chrome/Chromium executable")
    os.environ.setdefault("BROWSER_PATH", browser)  # kaleido (choreographer) reads it
    try:
        import kaleido  # noqa: F401
    except ImportError as exc:
        raise PngExportError("PNG export needs kaleido: pip install 'kaleido>=1.0' "
                             "(or the project's [png] extra)") from exc
    out = Path(png_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png" for name, _ in figures]
    try:
        figs = [f for _, f in figures]
        pio.write_images(figs, paths, width=1400, height=[f.layout.height or 600 for f in figs])
    except Exception as exc:  # kaleido wraps a browser failure in several exception types
        raise PngExportError(f"PNG export through kaleido with {browser} failed: {exc}") from exc
    return paths


def _table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        return fmt(v)
    return df.to_html(index=False, classes="metrics", border=0, na_rep="–",
                      formatters={c: cell for c in df.columns}, escape=True)


def _meta_html(meta: dict) -> str:
    """The provenance of sweep.json: commit, creation, every run of the spec, spec, versions."""
    if not meta:
        return "<p class='note'>No sweep.json was found next to the results.</p>"
    commit = meta.get("git_commit", meta.get("commit"))
    body = (f"<p><b>commit</b>: {html.escape(str(commit or 'unknown (not run from a git checkout)'))}"
            f" · <b>created</b>: {html.escape(str(meta.get('created_at')))}</p>")
    runs = meta.get("runs") or []
    if runs:
        rows = [{"started": r.get("started_at"), "ended": r.get("ended_at"),
                 "planned": r.get("planned"), "skipped (already stored)": r.get("skipped"),
                 **(r.get("counts") or {}), "force": r.get("force")} for r in runs]
        body += "<h3>runs</h3>" + _table(pd.DataFrame(rows))
    for key in ("spec", "versions"):
        text = json.dumps(meta.get(key, {}), indent=2, sort_keys=True, default=str)
        body += f"<h3>{key}</h3><pre>{html.escape(text)}</pre>"
    return body


def _search_is_grid(meta: dict) -> bool | None:
    kind = ((meta.get("spec") or {}).get("search") or {}).get("kind")
    return {"grid": True, "optuna": False}.get(kind)


def write_report(path: str | Path, out_html: str | Path, tol: float | None = None,
                 png_dir: str | Path | None = None, *, diverge: float | None = None,
                 spike: float | None = SPIKE, tols: Sequence[float] = TOLS,
                 theory: "Theory | go.Figure | None" = None,
                 theory_overlay: "Overlay | None" = None) -> Path:
    """Write the report of the sweep at ``path`` (folder or s3:// URI) to ``out_html``.

    ``tol`` is the stability tolerance (stated in the report), ``tols`` those at which the
    restart gain is also shown. ``theory`` is a hook for a theory overlay: a figure, or a
    callable ``theory(cells, meta)`` returning one, shown after the heatmaps;
    ``theory_overlay(settings, alphas, betas)`` returns traces drawn over each facet (see
    ``figures.facet_figures``), e.g. a predicted boundary. With ``png_dir``
    every figure is also written as a PNG (PngExportError when that is impossible; the HTML is
    written first). Returns the HTML's path.
    """
    meta = load_sweep_meta(path)
    trials = load_trials(path)
    if trials.empty:
        raise ValueError(f"no trial results under {path}")
    tol, tols = default_tol(trials, tol, tols)  # None: 5%, or none for a toy sweep
    s = summarize(trials, tol=tol, tols=tols, diverge=diverge, spike=spike)
    c = s["cells"]
    keys = slice_keys(c)
    if is_toy(trials) and theory is None and theory_overlay is None:
        # a toy sweep holds its own spectrum: draw the prediction beside the measurement
        theory_overlay = toy_overlay(trials)
        theory = lambda _c, _m: toy_theory_figure(trials, load_curves(path))  # noqa: E731
    figures: list[tuple[str, go.Figure]] = []
    for i, (title, fig) in enumerate(facet_figures(c, tol, grid=_search_is_grid(meta),
                                                     overlay=theory_overlay)):
        fig.update_layout(title=dict(text=f"Final loss and stable region — {title}", x=0.01))
        figures.append((f"stability_{i}", fig))
    if theory is not None:
        tfig = theory(c, meta) if callable(theory) else theory
        if tfig is not None:
            figures.append(("theory", tfig))
    cfig = curve_figure(c, load_curves(path, trial_ids=curve_trial_ids(c)))
    if cfig is not None:
        figures.append(("curves", cfig))

    name = (meta.get("spec") or {}).get("name") or str(trials.get("sweep", pd.Series([""]))
                                                       .iloc[0] or Path(str(path)).name)
    status = trials["status"].value_counts().to_dict() if "status" in trials else {}
    fixed = fixed_settings(c)
    hide = list(fixed)
    slices = s["slices"].drop(columns=hide + ["initial_loss"], errors="ignore")
    lead = (f"{len(trials)} trials in {len(slices)} slices ("
            + ", ".join(f"{v} {k}" for k, v in status.items()) + "). "
            + (f"<b>Stability tolerance used: {tol:.0%}</b>: a trial is stable when it did not "
               f"diverge or spike, ended below its initial loss, and its final loss is within "
               f"{tol:.0%} of the best final loss of its slice" if np.isfinite(tol) else
               "<b>Stability tolerance used: none</b> (a toy sweep converges exponentially, so "
               "a tolerance to the slice's best would mark only its fastest cell): a trial is "
               "stable when it did not diverge or spike and ended below its initial loss")
            + f"; a cell is stable when a strict majority of its seeds is. "
            f"Spiked: peak loss above {fmt(spike)}× the initial loss, then recovered"
            f"{'' if spike is not None else ' (off)'}.")
    if fixed:
        lead += "<br>Same in every slice: " + html.escape(slice_title(fixed, fixed.values()))
    gains = s["restart_gain"].drop(columns=hide, errors="ignore")
    parts = [f"<h1>Sweep {html.escape(str(name))}</h1><p class='lead'>{lead}</p>",
             "<h2>Restart gain</h2><p class='note'>Stable fraction of the (α, β) grid with "
             "restarts every R outer steps divided by the same at R=0, per tolerance; "
             "[95% bootstrap over seeds] (stable cells with R vs at R=0).</p>",
             _table(gain_table(gains, tol)) if len(gains) else "<p class='note'>No restart gain: it needs slices at R=0 and at "
             "R&gt;0 that differ only in R.</p>",
             f"<h2>Slices (tol {tol_text(tol)})</h2>", _table(slices),
             "<p class='note'>lr_sensitivity: Wortsman et al. 2023 over α: mean over α of "
             "min(final, initial) − its minimum over α, per β, averaged over β (diverged: "
             "initial).</p>",
             "<h2>Stable α range per β</h2>", _table(s["alpha_range"].drop(columns=hide, errors="ignore")),
             "<h2>Stability maps</h2><p class='note'>Colour: final loss, mean over seeds, "
             "one scale capped at the initial loss. × diverged (k/n: seeds), ~ spiked, red "
             "outline: stable region. Hover a cell for all its numbers.</p>"]
    for name_, fig in figures:
        if name_ == "theory":
            parts.append("<h2>Theory</h2>")
        if name_ == "curves":
            parts.append("<h2>Loss curves of chosen cells</h2><p class='note'>Per slice: the "
                         "best cell, the stable cell of largest α (edge), a spiked and a "
                         "diverged one where present (first seed). Right: cos(m, Δ) before "
                         "each update; dotted lines: restarts.</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False,
                                 config={"responsive": True}))
    parts.append("<h2>Sweep as run</h2>" + _meta_html(meta))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>Written {stamp} by diloco-sweep analysis from "
                 f"{html.escape(str(path))}; slice keys: {html.escape(', '.join(keys))}.</p>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>diloco-sweep report: {html.escape(str(name))}</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>"
            "window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    if png_dir is not None:
        write_pngs(figures, png_dir)
    return out
