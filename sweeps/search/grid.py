"""``kind: grid``: every combination of the space's values, each trial run once.

The plan walks the combinations lazily and keeps those whose trial_id has no completed or
diverged row, so a rerun starts nothing for done points and a grid of any size plans in time
linear in its points. Tune gets the points through a ``Searcher`` that hands out one at a time
(``tune.grid_search`` would copy its whole list for every point), or packs of up to
``resources.pack`` points of one shape, trained as one batched computation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Iterable, Literal

from sweeps.spec.space import grid_size, grouped_points, iter_points
from sweeps.store.store import DONE_STATUSES, trial_id
from sweeps.tune.trial import trial_config
from sweeps.search.base import Plan, SearchKind, TuneSetup, check_size

if TYPE_CHECKING:
    from sweeps.spec.parse import SweepSpec

__all__ = ["Grid", "GridSettings", "packs", "stored_ids"]


@dataclass(frozen=True)
class GridSettings:
    """A grid has no settings of its own: it runs every combination of the space."""

    metric: Literal["final_loss"] = "final_loss"
    """The loss each trial reports to Tune as its objective (a grid only shows it)."""

    def to_dict(self) -> dict[str, Any]:
        return {}


def stored_ids(rows: list[dict[str, Any]], force: bool) -> set[str]:
    """trial_ids with a completed or diverged row (none when ``force`` reruns everything)."""
    return set() if force else {r["trial_id"] for r in rows if r["status"] in DONE_STATUSES}


class Grid(SearchKind):
    name = "grid"
    packs = True
    grid = True
    summary = "a grid runs every combination of the space"

    def parse(self, d: dict, trial: dict[str, Any], space: dict) -> GridSettings:
        shape = " × ".join(f"{len(a.values)} {k}" for k, a in space.items())
        check_size(grid_size(space), "space", f"the grid has {shape}",
                   "give fewer values, or let a search choose the points: search.kind: "
                   "boundary (bisects alpha on each line of the other axes) or optuna "
                   "(num_samples points of the space)")
        return GridSettings()

    def n_trials(self, spec: "SweepSpec") -> int:
        return grid_size(spec.space)

    def cost_points(self, spec: "SweepSpec", keys: Collection[str] | None = None
                    ) -> Iterable[tuple[dict[str, Any], int]]:
        return grouped_points(spec.space, keys)

    def plan(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> Plan:
        done = stored_ids(rows, force)
        total, todo, ids = 0, [], []
        for point in iter_points(spec.space):
            total += 1
            tid = trial_id(trial_config(spec, point))  # the one build and hash of a trial
            if tid not in done:
                todo.append(point)
                ids.append(tid)
        return Plan(total=total, todo=todo, ids=ids, to_sample=len(todo),
                    done=total - len(todo))

    def tune(self, spec: "SweepSpec", plan: Plan, out: str) -> TuneSetup:
        from sweeps.search.tune_searchers import PointSearcher  # imports Ray: only when a run starts

        if spec.resources.pack > 1:
            units = [{"pack": g} for g in packs(spec, plan.todo, spec.resources.pack)]
        else:
            units = [{"params": p, "trial_id": tid} for p, tid in zip(plan.todo, plan.ids)]
        return TuneSetup(searcher=PointSearcher(units),
                         num_samples=len(units), n_tune=len(units))

    def describe(self, spec: "SweepSpec") -> str:
        shape = " × ".join(f"{len(a.values)} {k}" for k, a in spec.space.items()) or "1 point"
        return f"{self.n_trials(spec)} trials (grid: {shape})"

    def about(self, spec: "SweepSpec") -> dict[str, Any]:
        return {**super().about(spec), "axes": {k: list(a.values) for k, a in spec.space.items()
                                               if k in ("alpha", "beta")}}

    def members(self, spec: "SweepSpec") -> set[str]:
        return {trial_id(trial_config(spec, p)) for p in iter_points(spec.space)}


def packs(spec: "SweepSpec", todo: list[dict[str, Any]], pack: int) -> list[list[dict[str, Any]]]:
    """Group points into packs: same shape (all but trainer.packed.PACKABLE), <= pack each."""
    from trainer.packed import PACKABLE  # imports torch: only when packing

    groups: dict[str, list[dict[str, Any]]] = {}
    for point in todo:
        cfg = trial_config(spec, point).to_dict()
        shape = json.dumps({k: v for k, v in cfg.items() if k not in PACKABLE}, sort_keys=True)
        groups.setdefault(shape, []).append(point)
    return [g[i:i + pack] for g in groups.values() for i in range(0, len(g), pack)]
