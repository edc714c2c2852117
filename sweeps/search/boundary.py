"""``kind: boundary``: on every line, bracket then bisect α for the stable edge.

A *line* is one combination of the space's values (β, H, R, seed, ...); along it the search
varies one setting, ``axis`` (α by default), between ``low`` and ``high``. The edge is the
largest stable α below the first unstable one (docs/design.md, "The boundary search"):

1. probe both ends; a stable ``high`` ends the line (edge ≥ high), an unstable ``low`` too
   (edge below the range);
2. bisect (geometric means on a log axis) between the largest stable and the smallest unstable
   α until they are within ``resolution`` (relative: hi/lo − 1 on a log axis, else
   (hi − lo)/(high − low));
3. probe ``check_above`` points between that unstable α and ``high``: a line stable again
   above an unstable α is *ragged*, and the report says so instead of smoothing it over.

Each probe is an ordinary trial row. Every α a line asks for is a function of the outcomes it
has seen (``Line.wanted``), so a rerun replays the stored rows and continues where it stopped:
no probe is trained twice, and a killed sweep ends with the same edges. A probe is stable when
``trainer.result.outcome`` says so at ``rise`` (it ended within ``rise`` of its best: a spike
that recovered is stable), the rule the analysis labels with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Iterable, Literal

from trainer.config import TrainConfig
from trainer.result import RISE, outcome

from sweeps.spec.space import grouped_points, iter_points
from sweeps.store.store import DONE_STATUSES, trial_id
from sweeps.tune.trial import trial_config
from sweeps.spec.validate import SpecError, at, field_kind, int_at_least, show, trial_check
from sweeps.search.base import Plan, SearchKind, TuneSetup, check_size

if TYPE_CHECKING:
    from sweeps.spec.parse import SweepSpec

__all__ = ["Boundary", "BoundarySettings", "Line", "word_of_row"]


@dataclass(frozen=True)
class BoundarySettings:
    axis: str = "alpha"
    """The setting bisected along each line (a float trainer setting, not in ``space``)."""
    low: float = 0.1
    """The lower end of the range searched."""
    high: float = 10.0
    """The upper end of the range searched."""
    log: bool = True
    """Bisect on a log scale (geometric means)."""
    resolution: float = 0.05
    """Stop when the bracket is this narrow (relative; see the module docstring)."""
    check_above: int = 2
    """Probes between the first unstable α and ``high`` after converging, to find ragged lines."""
    rise: float = RISE
    """The threshold that decides whether a probe is stable: it ended within this of its best
    eval loss (docs/design.md, "Stable")."""
    metric: Literal["final_loss"] = "final_loss"
    """The loss each trial reports to Tune as its objective (the search reads the outcome)."""

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "low": self.low, "high": self.high, "log": self.log,
                "resolution": self.resolution, "check_above": self.check_above,
                "rise": self.rise}

    def max_probes(self) -> int:
        """Probes one line spends at most: both ends, the bisection, the checks above."""
        return 2 + self.bisections() + self.check_above

    def bisections(self) -> int:
        span = (math.log(self.high / self.low) / math.log1p(self.resolution) if self.log
                else 1.0 / self.resolution)
        return max(0, math.ceil(math.log2(span))) if span > 1 else 0

    def mid(self, lo: float, hi: float) -> float:
        x = math.sqrt(lo * hi) if self.log else (lo + hi) / 2
        return float(f"{x:.6g}")  # readable α in the store; the same float on every replay

    def narrow(self, lo: float, hi: float) -> bool:
        if self.log:
            return hi / lo - 1 <= self.resolution
        return (hi - lo) / (self.high - self.low) <= self.resolution

    def above(self, hi: float) -> list[float]:
        """The check points strictly between ``hi`` and ``high``, evenly spaced."""
        n = self.check_above
        if n == 0 or self.narrow(hi, self.high):
            return []
        pts = [hi * (self.high / hi) ** (j / (n + 1)) if self.log else
               hi + (self.high - hi) * j / (n + 1) for j in range(1, n + 1)]
        return [float(f"{p:.6g}") for p in pts]


@dataclass
class Line:
    """One line's probes so far: α → outcome word (``stable``, ``blew_up``, ``failed``, ...)."""

    point: dict[str, Any]
    """The line's values of the space axes."""
    seen: dict[float, str] = field(default_factory=dict)

    def wanted(self, s: BoundarySettings) -> list[float]:
        """The α values this line needs next, given what it has seen; [] when it has ended.

        Ends early on a failed probe: a crash says nothing about stability, and the line
        resumes on a rerun (failed rows are trained again).
        """
        if "failed" in self.seen.values():
            return []
        ends = [a for a in (s.low, s.high) if a not in self.seen]
        if ends:
            return ends
        if self.stable(s.high):
            return []                                 # edge at or above high
        lo, hi = self.bracket()
        if lo is not None and not s.narrow(lo, hi):
            return [s.mid(lo, hi)]
        return [a for a in s.above(hi) if a not in self.seen]

    def stable(self, a: float) -> bool:
        return self.seen.get(a) == "stable"

    def bracket(self) -> tuple[float | None, float]:
        """(largest stable α below the first unstable one or None, the first unstable α)."""
        hi = min(a for a, w in self.seen.items() if w != "stable")
        below = [a for a, w in self.seen.items() if w == "stable" and a < hi]
        return (max(below) if below else None), hi


def word_of_row(row: dict[str, Any] | None, rise: float) -> str:
    """A stored row's outcome (``failed`` when there is none)."""
    if row is None:
        return "failed"
    return outcome(row.get("status"), row.get("final_loss"), row.get("initial_loss"),
                   row.get("end_rise"), rise, best_loss=row.get("best_loss"))


class Boundary(SearchKind):
    name = "boundary"
    adaptive = True
    summary = "a boundary search bisects one setting along every line of the space"
    keys = ("axis", "low", "high", "log", "resolution", "check_above", "rise")

    def parse(self, d: dict, trial: dict[str, Any], space: dict) -> BoundarySettings:
        axis = d.get("axis", "alpha")
        if not isinstance(axis, str) or axis not in TrainConfig.field_names() or field_kind(axis) != "float":
            raise SpecError(f"search.axis: {show(axis)} is not a float trainer setting"
                            f"{at(d, 'axis')}; use alpha, beta, or another real-valued setting")
        for where, keys in (("space", space), ("trial", trial)):
            if axis in keys:
                raise SpecError(f"{where}.{axis}: the boundary search varies {axis} itself "
                                f"(search.low .. search.high); remove it from {where}")
        ends = {}
        for end in ("low", "high"):
            v = d.get(end)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"search.{end}: expected a number (the {end} end of {axis}), "
                                f"got {show(v)}{at(d, end)}")
            trial_check(trial, axis, float(v), "search.", at(d, end), label=f"search.{end}")
            ends[end] = float(v)
        log = d.get("log", True)
        if not isinstance(log, bool):
            raise SpecError(f"search.log: expected true or false, got {show(log)}{at(d, 'log')}")
        if ends["low"] >= ends["high"] or (log and ends["low"] <= 0):
            raise SpecError(f"search: need {'0 < ' if log else ''}low < high, got low "
                            f"{ends['low']} and high {ends['high']}{at(d, 'low')}")
        res = _fraction(d, "resolution", 0.05, 1.0)
        rise = _fraction(d, "rise", RISE, 100.0)
        check = int_at_least(d, "check_above", 0, "search.", optional=True)
        if check is not None and check > 16:
            raise SpecError(f"search.check_above: at most 16 probes above the edge, got {check}"
                            f"{at(d, 'check_above')}")
        settings = BoundarySettings(axis=axis, low=ends["low"], high=ends["high"], log=log,
                                    resolution=res, check_above=2 if check is None else check,
                                    rise=rise)
        lines = math.prod(len(a.values) for a in space.values() if a.values is not None)
        check_size(lines * settings.max_probes(), "space",
                   f"{lines:,} lines × at most {settings.max_probes()} probes",
                   "give fewer values (the search probes every combination of the space's "
                   "values), a coarser search.resolution, or search.kind: optuna (num_samples "
                   "points of the space)")
        return settings

    def axes(self, spec: "SweepSpec") -> list[str]:
        return [*spec.space, spec.search.settings.axis]

    def n_trials(self, spec: "SweepSpec") -> int:
        return self.n_lines(spec) * spec.search.settings.max_probes()

    def cost_points(self, spec: "SweepSpec", keys: Collection[str] | None = None
                    ) -> Iterable[tuple[dict[str, Any], int]]:
        """Every line, at its most probes (the axis is a float setting: no cost field)."""
        most = spec.search.settings.max_probes()
        return ((point, n * most) for point, n in grouped_points(spec.space, keys))

    def n_lines(self, spec: "SweepSpec") -> int:
        return math.prod(len(a.values) for a in spec.space.values())

    def lines(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> list[Line]:
        """Every line, with the stored probes that lie on it replayed in."""
        s = spec.search.settings
        lines = [Line(point) for point in iter_points(spec.space)]
        if force:
            return lines
        by_id = {r["trial_id"]: r for r in rows if r["status"] in DONE_STATUSES}
        for line in lines:
            while True:  # replay: the α values it would ask for, as long as they are stored
                fresh = False
                for a in line.wanted(s):
                    row = by_id.get(trial_id(trial_config(spec, {**line.point, s.axis: a})))
                    if row is not None:
                        line.seen[a] = word_of_row(row, s.rise)
                        fresh = True
                if not fresh:
                    break
        return lines

    def plan(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> Plan:
        s = spec.search.settings
        lines = self.lines(spec, rows, force)
        done = sum(len(line.seen) for line in lines)
        todo = [{**line.point, s.axis: a} for line in lines for a in line.wanted(s)]
        left = sum(s.max_probes() - len(line.seen) for line in lines if line.wanted(s))
        return Plan(total=len(lines) * s.max_probes(), todo=todo, to_sample=max(left, 0),
                    done=done, state=lines)

    def tune(self, spec: "SweepSpec", plan: Plan, out: str) -> TuneSetup:
        from sweeps.search.tune_searchers import CallbackSearcher  # imports Ray: only when a run starts

        s = spec.search.settings
        lines: list[Line] = plan.state
        pending: set[tuple[int, float]] = set()
        turn = [0]

        def propose() -> dict[str, Any] | str | None:
            for k in range(len(lines)):  # round robin, so every line moves
                i = (turn[0] + k) % len(lines)
                for a in lines[i].wanted(s):
                    if (i, a) not in pending:
                        pending.add((i, a))
                        turn[0] = i + 1
                        params = {**lines[i].point, s.axis: a}
                        return {"params": params, "line": i,
                                "trial_id": trial_id(trial_config(spec, params))}
            return None if pending else "finished"

        def landed(config: dict[str, Any], result: dict | None, error: bool) -> None:
            # the trial's last report carries what its stored row says (status, losses,
            # end_rise): judged here as the plan judges the row, with no read of the store
            i, a = config["line"], config["params"][s.axis]
            done = not error and result and result.get("status") in DONE_STATUSES
            lines[i].seen[a] = word_of_row(result if done else None, s.rise)
            pending.discard((i, a))

        n = max(plan.to_sample, 1)
        return TuneSetup(searcher=CallbackSearcher(propose, landed),
                         num_samples=n, n_tune=plan.to_sample)

    def describe(self, spec: "SweepSpec") -> str:
        s = spec.search.settings
        return (f"at most {self.n_trials(spec)} trials (boundary: {self.n_lines(spec)} lines × "
                f"at most {s.max_probes()} probes of {s.axis} in [{s.low:g}, {s.high:g}] to "
                f"{s.resolution:g}; a grid as fine has {self.grid_equivalent(spec)} trials)")

    def about(self, spec: "SweepSpec") -> dict[str, Any]:
        s = spec.search.settings
        return {**super().about(spec), "lines": True, "axis": s.axis, "rise": s.rise,
                "resolution": s.resolution, "low": s.low, "high": s.high}

    def grid_equivalent(self, spec: "SweepSpec") -> int:
        """Trials of a grid with the same resolution along the axis, on the same lines."""
        s = spec.search.settings
        per_line = (math.ceil(math.log(s.high / s.low) / math.log1p(s.resolution)) if s.log
                    else math.ceil(1 / s.resolution)) + 1
        return self.n_lines(spec) * per_line


def _fraction(d: dict, key: str, default: float, most: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= most):
        raise SpecError(f"search.{key}: expected a number in (0, {most:g}], got {show(v)}"
                        f"{at(d, key)}")
    return float(v)
