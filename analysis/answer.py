"""The sentence the report and ``show`` lead with: do restarts widen the stable region?

Generated from the numbers of ``metrics.summarize`` and nothing else, so that it can say no,
in part, or the opposite, when the data does. Per R > 0 each (H, β) line is *wider* (edge ratio above 1,
or something stable where R=0 had nothing), *narrower*, *same*, or *undetermined* (both arms
stable up to the grid's largest α: the grid does not reach where either breaks); a line on which
one arm ran no trial is *no_data* and not counted. A line on which one arm is stable up to the
grid's largest α is wider (or narrower) by *at least* (at most) the ratio, and the sentence
says so. After the verdict, one sentence on spikes that recovered (docs/design.md, "Stable:
the run settles"): how many trials spiked in each arm, and how many of those spikes came within
the first R rounds, which both arms share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .effects import pair_summary
from .stability import pct, why_no_groups

__all__ = ["line_verdicts", "verdict", "answer_sentence", "threshold_text", "spike_text",
           "VERDICT_WORDS"]


def line_verdicts(gains: pd.DataFrame) -> pd.Series:
    """Per row of a restart-gain table: wider, narrower, same or undetermined."""
    out = []
    for g, bound in zip(gains["gain"].to_numpy(dtype=float), gains["bound"]):
        if bound == "no_data":
            out.append("no_data")        # one arm ran no trial on this line
        elif np.isnan(g):
            out.append("same")           # nothing stable in either arm
        elif bound == "unknown":
            out.append("undetermined")
        elif g > 1:
            out.append("wider")
        elif g < 1:
            out.append("narrower")
        else:
            out.append("same")
    return pd.Series(out, index=gains.index, dtype=object)


def verdict(gains: pd.DataFrame) -> str:
    """yes, in_part, opposite, in_part_opposite, mixed, none, undetermined or no_data, from the
    lines of one R. Wider on some lines and narrower on none is *yes* only when it is at least
    half of the lines the grid measured (wider or the same); fewer is *in part*: one line in
    ten a grid step wider is not an answer of yes (and the same, mirrored, for narrower)."""
    v = line_verdicts(gains).value_counts()
    counted = len(gains) - v.get("no_data", 0)
    if not counted:
        return "no_data"
    wider, narrower, same = v.get("wider", 0), v.get("narrower", 0), v.get("same", 0)
    if wider and narrower:
        return "mixed"
    if wider:
        return "yes" if 2 * wider >= wider + same else "in_part"
    if narrower:
        return "opposite" if 2 * narrower >= narrower + same else "in_part_opposite"
    return "undetermined" if v.get("undetermined", 0) == counted else "none"


_LEAD = {
    "yes": "Yes: restarts every R={r} outer steps widen the stable region.",
    "in_part": "In part: restarts every R={r} outer steps widen the stable region on fewer "
               "than half of the lines and leave it where it is on the rest.",
    "opposite": "No, the opposite: restarts every R={r} outer steps narrow the stable region.",
    "in_part_opposite": "Mostly no: restarts every R={r} outer steps leave the stable region "
                        "where it is on most lines and narrow it on the rest.",
    "mixed": "Mixed: restarts every R={r} outer steps widen the stable region on some lines "
             "and narrow it on others.",
    "none": "No: restarts every R={r} outer steps leave the stable region where it is.",
    "no_data": "No answer for R={r}: no line has trials in both arms.",
    "undetermined": "Not measured: with and without restarts every R={r} outer steps, every "
                    "line is stable up to the largest α of the grid, so the grid does not reach "
                    "where training breaks.",
}


VERDICT_WORDS = {"yes": "yes", "in_part": "in part", "opposite": "the opposite",
                 "in_part_opposite": "mostly no", "mixed": "mixed", "none": "no",
                 "undetermined": "not measured", "no_data": "no data"}
"""A verdict as the answer's words say it (README.md, "Reading the report")."""


def _num(x: float) -> str:
    return "–" if np.isnan(x) else "∞" if np.isinf(x) else f"{x:.3g}"


def _ties(ties: int, both: int) -> str:
    if not ties:
        return ""
    why = (" (both diverged)" if both == ties else f", {both} of them where both diverged"
           if both else "")
    return f"; {ties} tied{why}"


def _paired_text(p: pd.Series) -> str:
    k, m, n = int(p["lowered"]), int(p["raised"]), int(p["pairs"])
    if n == 0:
        return ""
    counts = (f"lower in {k} and higher in {m} of {n} paired runs (same α, β, seed"
              + _ties(n - k - m, int(p.get("both_diverged", 0)))
              + f"; median change {p['median_diff']:+.3g}, sign test p = {p['p']:.2g})")
    if p["p"] < 0.05:
        way = "lowered" if k > m else "raised"
        return f" Restarts {way} the final loss: {counts}."
    return f" Restarts did not change the final loss consistently: {counts}."


def threshold_text(rise: float, tol: float) -> str:
    """The words of the labels, with the thresholds in force."""
    return (f"Stable: not diverged, ended within {pct(rise)} of its best eval loss (else blew "
            f"up), and below its initial loss; a cell is stable when every seed is. Spiked: "
            f"stable, but on the way its eval loss rose more than {pct(rise)} above its running "
            f"minimum. Near-optimal: stable and within {pct(tol)} of the best final loss of "
            f"any R.")


def _bounds_notes(g: pd.DataFrame, lines: pd.Series) -> list[str]:
    """Which lines are bounds, not measured ratios: an arm stable up to the grid's largest α
    has its edge at or beyond the grid's end."""
    v = line_verdicts(g)
    least = int(((v == "wider") & (g["bound"] == "at_least")).sum())
    most = int(((v == "narrower") & (g["bound"] == "at_most")).sum())
    notes = []
    if least:
        notes.append(f"on {least} of the {lines.get('wider', 0)} higher the restarted arm is "
                     f"stable up to the grid's largest α, so the gain is at least the one shown")
    if most:
        notes.append(f"on {most} of the {lines.get('narrower', 0)} lower the unrestarted arm "
                     f"is stable up to the grid's largest α, so the ratio is at most the one shown")
    if lines.get("undetermined", 0):
        notes.append(f"{lines['undetermined']} stable to the grid's end in both arms")
    return notes


def spike_text(spikes: pd.DataFrame, r: Any, rise: float) -> str:
    """The spike sentence for restart period ``r`` from ``summarize``'s ``spikes`` table."""
    mine = spikes[spikes["R"] == r] if len(spikes) else spikes
    if mine.empty:
        return ""
    arm0, arm = ({k: (0 if pd.isna(v) else int(v)) for k, v in
                  mine[mine["arm"] == a].iloc[0].items()} for a in (0, r))
    if arm0["spiked"] == 0 and arm["spiked"] == 0:
        return " No stable trial spiked on the way in either arm."
    text = (f" Spikes that recovered: {arm0['spiked']} of {arm0['trials']} trials without "
            f"restarts and {arm['spiked']} of {arm['trials']} with restarts every R={r}")
    if arm0["timed"] < arm0["spiked"] or arm["timed"] < arm["spiked"]:
        return text + "; when they came is not known (their curves were not read)."
    text += (f"; of those, {arm0['early']} and {arm['early']} came within the first {r} rounds, "
             f"which both arms share")
    fate = [f"{arm[f'twin_{o}']} {w}" for o, w in (("blew_up", "blew up"),
                                                    ("diverged", "diverged"),
                                                    ("stable", "recovered as well"))
            if arm[f"twin_{o}"]]
    if arm["early"] and fate:
        text += ("; their unrestarted twins (the same overshoot, no restart after it): "
                 + ", ".join(fate))
    return text + "."


def answer_sentence(s: dict[str, Any]) -> str:
    """One paragraph answering the question from a ``summarize`` result (plain text)."""
    gains, areas, pairs = s["restart_gain"], s["area_gain"], s["pairs"]
    if gains.empty:
        return (f"No answer on restarts: {why_no_groups(s['trials'])}. "
                + threshold_text(s["rise"], s["tol"]))
    rise = s["rise"]
    spikes = s.get("spikes", pd.DataFrame())
    parts = []
    for r, g in gains[np.isclose(gains["rise"], rise)].groupby("R", sort=True):
        lines = line_verdicts(g).value_counts()
        v = verdict(g)
        text = _LEAD[v].format(r=r)
        if v not in ("undetermined", "no_data"):
            counted = len(g) - lines.get("no_data", 0)
            text += (f" The stable α edge is higher on {lines.get('wider', 0)}, lower on "
                     f"{lines.get('narrower', 0)} and the same on {lines.get('same', 0)} of "
                     f"{counted} (H, β) lines")
            notes = _bounds_notes(g, lines)
            text += f" ({'; '.join(notes)})" if notes else ""
            if lines.get("no_data", 0):
                text += f"; {lines['no_data']} more have no trials in one arm and are not counted"
            a = areas[(areas["R"] == r) & np.isclose(areas["rise"], rise)]
            if len(a):
                text += "; stable area ×" + ", ×".join(
                    f"{_num(x['gain'])} [{_num(x['gain_lo'])}, {_num(x['gain_hi'])}]"
                    + (f" at H={x['H']:g}" if "H" in x and len(a) > 1 else "")
                    for _, x in a.iterrows())
            text += "."
        text += spike_text(spikes, r, rise)
        mine = pairs[pairs["R"] == r] if len(pairs) else pairs
        if len(mine):  # every pair of every group at this R, one median and one sign test
            text += _paired_text(pd.Series(pair_summary(mine)))
        others = {}
        for t, gt in gains[(gains["R"] == r) & ~np.isclose(gains["rise"], rise)].groupby("rise"):
            others[t] = verdict(gt)
        if others:
            same = [pct(t) for t, w in others.items() if w == v]
            diff = [f"{pct(t)}: {VERDICT_WORDS[w]}" for t, w in others.items() if w != v]
            text += ((" At threshold" + ("s " if len(same) > 1 else " ")
                      + ", ".join(same) + " the answer is the same") if same else " ")
            text += ("; it differs at " + ", ".join(diff) if diff and same else
                     ("It differs at " + ", ".join(diff) if diff else "")) + "."
        parts.append(text)
    return " ".join(parts) + " " + threshold_text(rise, s["tol"])
