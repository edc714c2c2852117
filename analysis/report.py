"""The HTML report: one self-contained offline file, plotly's JS embedded once.

Sections, in order: the generated answer; the thresholds and counts; the α edges per (H, β)
with their figure; the gain at other thresholds; the stable area; the paired runs;
near-optimal cells; the slices; the stability facets; an optional theory figure; chosen loss
curves with momentum_cos; the spec, versions and commit from sweep.json. ``png_dir`` also writes every
figure as a PNG through kaleido, which needs a Chrome or Chromium.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .curves import curve_figure, curve_trial_ids
from .figures import Overlay, facet_figures, fmt, slice_title
from .load import load_curves, load_sweep_meta, load_trials
from .answer import answer_sentence
from .boundary_report import boundary_parts, is_line_search, store_rise
from .map_report import is_map_search, map_parts
from .edge_figure import edge_figure
from .effective import X_AXES, convention_note, edge_title, effective_view, x_title
from .metrics import summarize
from .show import answer_tables, partial_note
from .stability import (OUTCOMES, RISE, RISES, TOLS, fixed_settings, pct, read_settings,
                        slice_keys)
from .theory_report import is_toy, toy_overlay, toy_theory_figure

__all__ = ["write_report", "write_pngs", "find_browser", "PngExportError", "Theory"]

Theory = Callable[[pd.DataFrame, dict], "go.Figure | None"]
"""A theory overlay: called with the cell table and sweep.json, returns a figure or None."""

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; max-width: 1500px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; }
p.lead { color: #444; margin-top: 4px; max-width: 1100px; }
p.answer { font-size: 17px; max-width: 1100px; background: #f4f7fb; border-left: 4px solid #1f77b4;
           padding: 10px 14px; }
table.metrics { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.metrics th { background: #f2f2f2; }
table.metrics tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: 10px; font-size: 12px; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; }
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
    return df.to_html(index=False, classes="metrics", border=0, na_rep="–",
                      formatters={c: fmt for c in df.columns}, escape=True)


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
    """What the search kind wrote of itself into sweep.json (None for an older store: the
    figures then tell a grid from the trials themselves)."""
    return (meta.get("search") or {}).get("grid")


def _alphas(cell_table: pd.DataFrame) -> list[float]:
    return sorted(float(a) for a in cell_table["alpha"].unique())


def write_report(path: str | Path, out_html: str | Path, rise: float | None = None,
                 tol: float = 0.05, png_dir: str | Path | None = None, *,
                 diverge: float | None = None, rises: Sequence[float] = RISES,
                 tols: Sequence[float] = TOLS,
                 theory: "Theory | go.Figure | None" = None,
                 theory_overlay: "Overlay | None" = None,
                 source: str | None = None,
                 skipped: Mapping[str, str] | None = None, x: str = "alpha") -> Path:
    """Write the report of the sweep at ``path`` (folder or s3:// URI) to ``out_html``.

    ``source`` is how the footer names where the results came from (default ``path``; the
    command line passes ``path`` with any credentials in it redacted). ``skipped``: files
    left out (not trustworthy trial rows), named on the page with why.

    ``rise`` is the threshold (blew up on end rise, spiked on rise; default RISE; for a
    boundary search, the threshold
    it searched with) and ``tol`` the near-optimal tolerance (both stated on
    the page); the answer is also shown at every threshold of ``rises`` and near-optimal at
    every tolerance of ``tols``. ``theory`` is a hook for a theory overlay: a figure, or a
    callable ``theory(cells, meta)`` returning one, shown after the heatmaps;
    ``theory_overlay(settings, alphas, betas)`` returns traces drawn over each facet (see
    ``figures.facet_figures``), e.g. a predicted boundary. With ``png_dir`` every figure is
    also written as a PNG (PngExportError when that is impossible; the HTML is written
    first). ``x``: ``alpha`` (the α as run) or ``effective``: maps and edges against the
    effective outer LR (analysis.effective), so sweeps of different momentum conventions can
    be laid side by side (no theory overlay in that view). Returns the HTML's path.
    """
    if x not in X_AXES:
        raise ValueError(f"x: expected one of {', '.join(X_AXES)}, got {x!r}")
    meta = load_sweep_meta(path)
    skipped = dict(skipped or {})
    trials = load_trials(path, exclude=skipped)
    if trials.empty:
        raise ValueError(f"no trial results under {path}")
    name = (meta.get("spec") or {}).get("name") or str(trials.get("sweep", pd.Series([""]))
                                                       .iloc[0] or Path(str(path)).name)
    if is_line_search(meta):  # probes on lines, not a grid: the page of boundary_report
        if x != "alpha":
            raise ValueError("x: the effective outer LR view is for a grid's store; a "
                             "boundary search's edges are on its α axis")
        parts, figures = boundary_parts(trials, store_rise(meta, rise), _table, meta)
        parts[:0] = _head(name, meta, len(trials))
        return _write_page(path, out_html, png_dir, name, meta, parts, figures,
                           "line keys: every setting but α", source, skipped)
    if is_map_search(meta):  # a lattice refined where it changes: the page of map_report
        parts, figures = map_parts(trials, meta, _table)
        parts[:0] = _head(name, meta, len(trials))
        return _write_page(path, out_html, png_dir, name, meta, parts, figures,
                           "map keys: every setting but the map's two axes", source, skipped)
    rise = RISE if rise is None else rise
    s = summarize(trials, rise=rise, tol=tol, rises=rises, tols=tols, diverge=diverge,
                  curves=lambda ids: load_curves(path, trial_ids=ids))
    if x == "effective":  # measured on α, shown on the effective LR; overlays are in α
        s, theory, theory_overlay = effective_view(s), False, None
    c = s["cells"]
    keys = slice_keys(c)
    if theory is False:
        theory = None
    elif is_toy(trials) and theory is None and theory_overlay is None:
        # a toy sweep holds its own spectrum: draw the prediction beside the measurement
        theory_overlay = toy_overlay(trials)
        theory = lambda _c, _m: toy_theory_figure(  # noqa: E731
            trials, lambda ids: load_curves(path, trial_ids=ids))
    figures: list[tuple[str, go.Figure]] = []
    grid = _search_is_grid(meta)
    efig = (edge_figure(s["edges"], _alphas(c), y_title=edge_title(x))
            if grid is not False and len(s["edges"]) and len(c) else None)
    if efig is not None:
        figures.append(("edges", efig))
    maps = facet_figures(c, tol, grid=False if x == "effective" else grid,
                         overlay=theory_overlay, x_title=x_title(x)) if len(c) else []
    for i, (title, fig) in enumerate(maps):
        fig.update_layout(title=dict(text=f"Final loss and stable region — {title}", x=0.01))
        figures.append((f"stability_{i}", fig))
    if theory is not None:
        tfig = theory(c, meta) if callable(theory) else theory
        if tfig is not None:
            figures.append(("theory", tfig))
    cfig = curve_figure(c, load_curves(path, trial_ids=curve_trial_ids(c)))
    if cfig is not None:
        figures.append(("curves", cfig))

    counts = s["trials"]["outcome"].value_counts()
    fixed = fixed_settings(c)
    hide = list(fixed)
    tables = answer_tables(s, hide)
    unknown = int((s["trials"]["stable"] & s["trials"]["rise"].isna()).sum())
    n_spiked = int(s["trials"]["spiked"].sum())
    lead = (f"{len(trials)} trials in {len(s['slices'])} slices: "
            + ", ".join(f"{counts.get(o, 0)} {o.replace('_', ' ')}"
                        + (f" ({n_spiked} of them spiked on the way and recovered)"
                           if o == "stable" else "") for o in OUTCOMES) + "."
            + (f" {unknown} stable trials have no recorded rise (older rows without curves) "
               f"and are never counted as spiked." if unknown else ""))
    same = {k: fixed[k] for k in read_settings(c, fixed)}
    if same:
        lead += "<br>Same in every slice: " + html.escape(slice_title(same, same.values()))
    if x == "effective":
        lead += "<br>" + html.escape(convention_note(trials)) + (
            f" ({s['x_dropped']} cells of a rule without one are not drawn)"
            if s["x_dropped"] else "")
    parts = [*_head(name, meta, len(trials)),
             f"<p class='answer'>{html.escape(answer_sentence(s))}</p>",
             f"<p class='lead'>{lead}</p>"]
    sections = [
        ("edges", "Stable α edge per (H, β)", "The largest α such that it and every smaller α "
         "of the grid are stable, at R=0 and with restarts. ≥: stable up to the grid's largest "
         "α (a lower bound; the gain is then bounded, marked ≥, ≤ or ? when both are). below: "
         "not even the smallest α is stable. Edge gain = edge at R / edge at R=0 [95% "
         "bootstrap over seeds, the same seeds drawn for both arms]."),
        ("sensitivity", "The same gain at other thresholds", "A trial blew up when it ended "
         "more than the threshold above its best eval loss (a spike that came back down "
         "within the threshold is stable)."),
        ("area", "Stable area", "Stable cells weighted by their share of the grid in (log α, "
         "β), with restarts over without [95% bootstrap over seeds]."),
        ("paired", "Paired runs", "Each pair: the same α, β and seed (same init and data) with "
         "and without restarts. lowered / raised: pairs whose final loss is lower / higher with "
         "restarts (a diverged run counts as worse than any); median_diff: final loss with "
         "restarts minus without; p: two-sided sign test, ties left out."),
        ("near", "Near-optimal cells", "Stable, and final loss within the tolerance of the best "
         "final loss of any R in the group (one bar for every R): does it train as well as it "
         "can, a different question from whether it trains."),
    ]
    for key, title, note in sections:
        if key in tables:
            parts += [f"<h2>{title}</h2><p class='note'>{note}</p>", _table(tables[key])]
            if key == "edges" and efig is not None:
                parts.append(efig.to_html(full_html=False, include_plotlyjs=False,
                                          config={"responsive": True}))
    slices = s["slices"].drop(columns=hide + ["initial_loss"], errors="ignore")
    parts += ["<h2>Slices</h2><p class='note'>A slice: the trials sharing every setting but "
              "α, β and seed. n_trials: its trials; n_cells: its (α, β) cells, seeds pooled; "
              "stable_cells, stable_frac: cells where every seed is stable; n_seeds: the most "
              "seeds in one cell; n_blew_up, n_diverged, n_stalled, n_failed: trials; "
              "best_alpha, best_beta, best_loss: the stable cell of lowest mean final loss; "
              "grid: yes when the cells cover the (α, β) grid (at least half of every α × β "
              "pair), so the maps are heatmaps and edges and areas are measured; no for a "
              "sampler's scattered points, drawn as a scatter.</p>", _table(slices),
              "<h2>Stability maps</h2><p class='note'>Colour: final loss, mean over seeds, "
              "one scale capped at the initial loss; blank: every seed diverged. Marks (the "
              "worst any seed did; k/n when only some seeds did): × diverged, ↑ blew up (ended "
              f"more than {pct(rise)} above its best), – stalled (ended above its initial "
              f"loss), and on a stable cell ↕ spiked (rose more than {pct(rise)} above its "
              "running minimum on the way, then came back down). Red outline: stable region "
              "(every seed stable, spiked ones included); dotted white outline: near-optimal at "
              f"{pct(tol)}. Hover a cell for all its numbers.</p>"]
    for name_, fig in figures:
        if name_ == "edges":
            continue
        if name_ == "theory":
            parts.append("<h2>Theory</h2>")
        if name_ == "curves":
            parts.append("<h2>Loss curves of chosen cells</h2><p class='note'>Per slice: the "
                         "best cell, the stable cell of largest α (edge), and where present a "
                         "spiked one (a seed that rose and came back down), a blown-up one "
                         "(stayed up) and a diverged one, each at its smallest α (a seed that "
                         "did so). The loss axis holds the other curves: a diverged run leaves "
                         "it at the top. Right: cos(m, Δ) before each update; dotted lines: "
                         "restarts.</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False,
                                 config={"responsive": True}))
    return _write_page(path, out_html, png_dir, name, meta, parts, figures,
                       f"slice keys: {', '.join(read_settings(c, keys))}", source, skipped)


def _head(name: str, meta: dict, n_trials: int) -> list[str]:
    """The page's title, the spec's description, and the partial-results mark when due."""
    about = (meta.get("spec") or {}).get("description")
    partial = partial_note(meta, n_trials)
    return [f"<h1>Sweep {html.escape(str(name))}</h1>"
            + (f"<p class='lead'>{html.escape(str(about))}</p>" if about else ""),
            *([f"<p class='answer'><b>{html.escape(partial)}</b></p>"] if partial else [])]


def _write_page(path: str | Path, out_html: str | Path, png_dir: str | Path | None, name: str,
                meta: dict, parts: list[str], figures: list[tuple[str, go.Figure]],
                keys_note: str, source: str | None, skipped: Mapping[str, str]) -> Path:
    """The page around ``parts``: files left out, provenance, stamp, plotly once; PNGs."""
    parts = list(parts)
    if skipped:
        parts.append("<h2>Files left out</h2><p class='note'>Not trustworthy trial rows; their "
                     "trials count as missing and a rerun writes them again.</p><ul>"
                     + "".join(f"<li>{html.escape(f)}: {html.escape(w)}</li>"
                               for f, w in skipped.items()) + "</ul>")
    parts.append("<h2>Sweep as run</h2>" + _meta_html(meta))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = source if source is not None else path
    parts.append(f"<p class='note'>Written {stamp} by diloco-sweep analysis from "
                 f"{html.escape(str(where))}; {html.escape(keys_note)}.</p>")
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
