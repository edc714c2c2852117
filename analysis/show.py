"""The terminal view of a sweep: metrics tables and a text stability map per slice.

Map symbols: ``#`` stable, ``.`` unstable (trained, but not within the tolerance), ``~``
spiked, ``x`` diverged, ``!`` only failed trials, blank: no trial. β grows upwards, α to the
right, as in the report. Scattered (Optuna) slices are binned: α on a log2 scale, β linearly,
and the seeds of a bin pooled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .figures import fmt, slice_title
from .load import load_sweep_meta, load_trials
from .metrics import TOLS, gain_table, summarize
from .theory_report import default_tol
from .stability import (SPIKE, cell_outcome, tol_text, display_keys, fixed_settings, group_by,
                        slice_keys)

__all__ = ["render_show", "render_summary", "text_map", "SYMBOLS"]

SYMBOLS = {"stable": "#", "unstable": ".", "spiked": "~", "diverged": "x", "failed": "!"}
MAX_AXIS = 14  # more distinct values than this on an axis: bin them
BINS = 8
_CORNER = "β\\α"


def _axis(values: pd.Series, log: bool) -> tuple[np.ndarray, list[str]]:
    """Per value, its column index; and the column labels."""
    uniq = np.sort(values.unique())
    if len(uniq) <= MAX_AXIS:
        return np.searchsorted(uniq, values.to_numpy()), [fmt(u) for u in uniq]
    v = np.log2(values.to_numpy(dtype=float)) if log else values.to_numpy(dtype=float)
    edges = np.linspace(v.min(), v.max(), BINS + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, BINS - 1)
    mids = (edges[:-1] + edges[1:]) / 2
    return idx, [fmt(2 ** m if log else m) for m in mids]


def text_map(slice_cells: pd.DataFrame) -> str:
    """A compact text map of one slice's cells (see the module docstring)."""
    xi, xl = _axis(slice_cells["alpha"], log=True)
    yi, yl = _axis(slice_cells["beta"], log=False)
    counts = np.zeros((len(yl), len(xl), 4))  # n, n_stable, n_diverged, n_spiked per bin
    present = np.zeros((len(yl), len(xl)), dtype=bool)
    cols = ["n", "n_stable", "n_diverged", "n_spiked"]
    for (x, y), row in zip(zip(xi, yi), slice_cells[cols].to_numpy(dtype=float)):
        counts[y, x] += row
        present[y, x] = True
    outcome = cell_outcome(*(counts[..., i] for i in range(4)))
    width = max(len(s) for s in xl) + 1
    ylw = max(max(len(s) for s in yl), len(_CORNER))
    lines = [f"{_CORNER:>{ylw}} " + "".join(f"{s:>{width}}" for s in xl)]
    for y in reversed(range(len(yl))):
        marks = "".join(f"{SYMBOLS[outcome[y, x]] if present[y, x] else ' ':>{width}}"
                        for x in range(len(xl)))
        lines.append(f"{yl[y]:>{ylw}} " + marks)
    return "\n".join(lines)


def _frame(df: pd.DataFrame) -> str:
    if df.empty:
        return "  (none)"
    text = df.to_string(index=False, na_rep="-",
                        formatters={c: _cell for c in df.columns})
    return "\n".join("  " + line for line in text.splitlines())


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return fmt(v)


def render_summary(s: dict[str, Any], name: str = "") -> str:
    """The terminal text of a ``summarize`` result."""
    tol = s["tol"]
    trials = s["trials"]
    c = s["cells"]
    counts = trials["outcome"].value_counts()
    fixed = fixed_settings(c)
    hide = list(fixed)
    head = (f"sweep {name}: {len(trials)} trials · tolerance {tol_text(tol)} · "
            + ", ".join(f"{counts.get(o, 0)} {o}" for o in SYMBOLS))
    slices = s["slices"].drop(columns=hide + ["initial_loss", "n_failed", "best_loss_std",
                                              "grid"], errors="ignore")
    out = [head]
    if fixed:
        out.append("same in every slice: " + slice_title(fixed, fixed.values()))
    out += ["",
            "restart gain = stable fraction of the (α, β) grid at R / at R=0 "
            "[95% bootstrap over seeds] (stable cells at R vs R=0):",
            _frame(gain_table(s["restart_gain"].drop(columns=hide, errors="ignore"), tol)), "",
            f"slices (tol {tol_text(tol)}):", _frame(slices), "",
            "stable α range per β:",
            _frame(s["alpha_range"].drop(columns=hide, errors="ignore")), "",
            "maps: # stable  . unstable  ~ spiked  x diverged  ! failed"]
    keys = slice_keys(c)
    shown = display_keys(c)
    for key, sl in (group_by(c, keys) if keys else [((), c)]):
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        title = slice_title(shown, [values[k] for k in shown]) or "all trials"
        out += ["", f"{title}: stable {int(sl['stable'].sum())}/{len(sl)} cells", text_map(sl)]
    return "\n".join(out)


def render_show(path: str | Path, tol: float | None = None, *, diverge: float | None = None,
                spike: float | None = SPIKE, tols: Sequence[float] = TOLS) -> str:
    """The terminal view of the sweep at ``path``: metrics tables, then a map per slice.

    ``tol=None`` picks the default: 5% for LM sweeps, none (inf) for toy sweeps.
    """
    trials = load_trials(path)
    if trials.empty:
        return f"no trial results under {path}"
    tol, tols = default_tol(trials, tol, tols)
    meta = load_sweep_meta(path)
    name = (meta.get("spec") or {}).get("name") or Path(str(path).rstrip("/")).name
    return render_summary(summarize(trials, tol=tol, tols=tols, diverge=diverge, spike=spike),
                          name)
