"""The effective outer learning rate as a map's and an edge's axis (docs/analysis.md).

Codebases write the outer momentum in different conventions: torch's Nesterov sums Δ into m
(m ← β·m + Δ), others average it (m ← β·m + (1 − β)·Δ), and the same α then means steps
1/(1 − β) apart. Each outer rule says what its α amounts to (``OuterRule.effective_lr``: the
multiple of Δ a step moves θ by once Δ is constant and the momentum has settled; nesterov and
heavy_ball α/(1 − β), nesterov_normalized α), so maps of different conventions can be laid
side by side on that axis. Edges and gains are measured on the α grid as always (a line is
one β, where α ↦ effective LR is increasing, so an edge is the same cell in either view) and
only then shown on the effective axis; a rule without an equivalent (adam) shows NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trainer.outer_rules import OUTER_RULES, effective_lr

__all__ = ["X_AXES", "effective_alpha", "effective_view", "x_title", "edge_title",
           "convention_note"]

X_AXES = ("alpha", "effective")
"""What a map's x axis and an edge's value can be: α as run, or the effective outer LR."""
_DEFAULT_RULE = "nesterov"  # TrialSettings.outer's default: a frame without the column ran it


def effective_alpha(frame: pd.DataFrame, column: str = "alpha") -> np.ndarray:
    """The effective outer LR of each row: its rule's ``effective_lr`` at (frame[column],
    frame.beta); NaN for a rule without one or an unknown rule."""
    outer = frame["outer"] if "outer" in frame else pd.Series(_DEFAULT_RULE, index=frame.index)
    out = np.full(len(frame), np.nan)
    alpha = frame[column].to_numpy(dtype=float)
    beta = frame["beta"].to_numpy(dtype=float)
    for rule in pd.unique(outer.fillna(_DEFAULT_RULE)):
        if rule not in OUTER_RULES:
            continue
        rows = (outer.fillna(_DEFAULT_RULE) == rule).to_numpy()
        out[rows] = effective_lr(rule, alpha[rows], beta[rows])
    return out


def effective_view(s: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``analysis.summarize``'s result whose α values are effective outer LRs: the
    cells' ``alpha`` (the maps' x; cells of a rule without one are left out and counted in
    ``x_dropped``), the edges' ``edge``, ``edge_lo``, ``edge_hi`` and the
    restart gains' ``edge``, ``edge_R0`` (the gains, ratios on one line, are unchanged), and
    the slices' ``best_alpha``. ``s["x"]`` says which view a summary is."""
    out = dict(s)
    c = s["cells"].copy()
    c["alpha"] = effective_alpha(c)
    out["x_dropped"] = int(c["alpha"].isna().sum())   # cells of a rule with no equivalent
    out["cells"] = c[c["alpha"].notna()]
    e = s["edges"].copy()
    for col in ("edge", "edge_lo", "edge_hi", "first_unstable"):
        if col in e and len(e):
            e[col] = effective_alpha(e, col)
    out["edges"] = e
    g = s["restart_gain"].copy()
    for col in ("edge", "edge_R0"):
        if col in g and len(g):
            g[col] = effective_alpha(g, col)
    out["restart_gain"] = g
    sl = s["slices"].copy()
    if "best_alpha" in sl and len(sl):
        sl["best_alpha"] = effective_alpha(sl.assign(beta=sl["best_beta"]), "best_alpha")
    out["slices"] = sl
    out["x"] = "effective"
    return out


def x_title(x: str) -> str:
    """The x axis' title of a map."""
    return "effective outer LR" if x == "effective" else "α (outer LR)"


def edge_title(x: str) -> str:
    """The edges' axis title."""
    return "stable edge, effective outer LR" if x == "effective" else "stable α edge"


def convention_note(frame: pd.DataFrame) -> str:
    """One line: what the effective outer LR is for each rule in ``frame``."""
    rules = sorted(pd.unique(frame["outer"].fillna(_DEFAULT_RULE))) if "outer" in frame \
        else [_DEFAULT_RULE]
    words = {"nesterov": "α/(1 − β)", "heavy_ball": "α/(1 − β)", "nesterov_normalized": "α"}
    parts = []
    for r in rules:
        rule = OUTER_RULES.get(r)
        what = words.get(r) if rule is not None and rule.effective_lr is not None else None
        if rule is not None and rule.effective_lr is not None and what is None:
            what = "its effective_lr(α, β)"
        parts.append(f"{r}: {what}" if what else f"{r}: none (left blank)")
    return ("x: effective outer LR, the multiple of Δ a step moves θ by once the momentum has "
            "settled (" + "; ".join(parts) + "); edges are found on the α grid, then shown so")
