"""``kind: map``: a stability map at the grid's resolution from a few percent of its trials.

Two axes of the space (α and β unless ``axes`` names others) span a *lattice*: the grid the map
stands for, with the spacing the spec's axes give. Every other combination of the space (the
slice settings and the seed) is one map, refined on that lattice by ``records.lattice_map``
(docs/design.md, "The map search"): the corners of a coarse sub-lattice first, then every
leaf whose measured points disagree (stable against not, by ``trainer.result.outcome`` at
``rise``) is halved, round after round, down to single cells; leaves that agree are filled
from their corners; then ``audits`` filled points per map, drawn with a fixed seed, are
measured, and one that disagrees is refined around. Each probe is the grid's trial at that
point (the same trial_id), so a store can hold a map and its grid.

A map asks for its next round only when the last one has landed; the rounds of all maps go
out together, so a round is one batch on the cluster. Every round is a function of the
outcomes seen, so a rerun replays the stored rows and goes on where it stopped: no probe is
trained twice, and a killed sweep ends with the same map. ``max_trials`` caps the probes of
a run; the report then says which maps stopped unfinished, at which round.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Literal

from records.lattice_map import LatticeMap, estimate, replay
from trainer.result import RISE

from sweeps.spec.space import grid_size, grouped_points, iter_points
from sweeps.store.store import DONE_STATUSES, trial_id
from sweeps.tune.trial import member_rows, trial_config
from sweeps.spec.validate import SpecError, at, int_at_least, show
from sweeps.search.base import Plan, SearchKind, TuneSetup, check_size
from sweeps.search.boundary import _fraction, word_of_row

if TYPE_CHECKING:
    from sweeps.spec.parse import SweepSpec

__all__ = ["Map", "MapSettings", "SliceMap"]


@dataclass(frozen=True)
class MapSettings:
    axes: tuple[str, str] = ("alpha", "beta")
    """The two space axes the map spans (list or {low, high, num} axes, values increasing)."""
    coarse: int = 4
    """Halvings of each axis measured whatever the outcomes: 2^coarse + 1 values per axis
    (all of an axis with fewer) before the refinement starts."""
    audits: int = 8
    """Filled points measured per map once it has settled (docs/design.md, "The map search")."""
    seed: int = 0
    """Seeds the audits' draw (with each map's settings): a rerun draws the same points."""
    rise: float = RISE
    """The threshold that decides whether a probe is stable (docs/design.md, "Stable")."""
    max_trials: int | None = None
    """Probes of the whole search at most (stored ones included); None: no cap."""
    metric: Literal["final_loss"] = "final_loss"
    """The loss each trial reports to Tune as its objective (the search reads the outcome)."""

    def to_dict(self) -> dict[str, Any]:
        d = {"axes": list(self.axes), "coarse": self.coarse, "audits": self.audits,
             "seed": self.seed, "rise": self.rise}
        return {**d, "max_trials": self.max_trials} if self.max_trials is not None else d


@dataclass
class SliceMap:
    """One map: the values of the other axes (slice settings, seed) and its lattice map."""

    point: dict[str, Any]
    lattice: LatticeMap
    stored: Callable[[tuple[int, int]], str | None] = lambda p: None
    """The outcome of a point's stored row, None when none is stored (a later round may ask
    for a point a grid of the same lattice already ran: it is read, not proposed)."""


def _shape(spec: "SweepSpec", params: dict[str, Any]) -> str:
    """What trials must share to be packed together (all but trainer.packed.PACKABLE)."""
    from trainer.packed import PACKABLE  # imports torch: only when packing

    cfg = trial_config(spec, params).to_dict()
    return json.dumps({k: v for k, v in cfg.items() if k not in PACKABLE}, sort_keys=True)


class Map(SearchKind):
    name = "map"
    adaptive = True
    packs = True
    summary = "a map search refines a stable-region map where its corners disagree"
    keys = ("axes", "coarse", "audits", "seed", "rise", "max_trials")

    def parse(self, d: dict, trial: dict[str, Any], space: dict) -> MapSettings:
        axes = d.get("axes", ["alpha", "beta"])
        if (not isinstance(axes, list) or len(axes) != 2 or len(set(map(str, axes))) != 2
                or not all(isinstance(a, str) for a in axes)):
            raise SpecError(f"search.axes: expected two different space axes, e.g. [alpha, "
                            f"beta], got {show(axes)}{at(d, 'axes')}")
        for a in axes:
            ax = space.get(a)
            if ax is None or ax.values is None or len(ax.values) < 2:
                raise SpecError(f"search.axes: {a!r} must be an axis of space with at least 2 "
                                f"values (a list or {{low, high, num}}){at(d, 'axes')}")
            v = ax.values
            if not all(isinstance(x, (int, float)) for x in v) or \
                    any(x >= y for x, y in zip(v, v[1:])):
                raise SpecError(f"space.{a}: a map's axis needs increasing numbers (its "
                                f"lattice, neighbour by neighbour){at(d, 'axes')}")
        coarse = int_at_least(d, "coarse", 0, "search.", optional=True)
        if coarse is not None and coarse > 20:
            raise SpecError(f"search.coarse: at most 20 halvings, got {coarse}{at(d, 'coarse')}")
        audits = int_at_least(d, "audits", 0, "search.", optional=True)
        seed = int_at_least(d, "seed", 0, "search.", optional=True)
        cap = int_at_least(d, "max_trials", 1, "search.", optional=True)
        shape = " × ".join(f"{len(a.values)} {k}" for k, a in space.items())
        # planning walks every map's lattice: the grid it stands for is its bound
        check_size(grid_size(space), "space", f"the maps stand for a grid of {shape}",
                   "give fewer values, or a boundary search (search.kind: boundary)")
        return MapSettings(axes=(axes[0], axes[1]), coarse=4 if coarse is None else coarse,
                           audits=8 if audits is None else audits,
                           seed=0 if seed is None else seed,
                           rise=_fraction(d, "rise", RISE, 100.0), max_trials=cap)

    def shape(self, spec: "SweepSpec") -> tuple[int, int]:
        a, b = spec.search.settings.axes
        return len(spec.space[a].values), len(spec.space[b].values)

    def others(self, spec: "SweepSpec") -> dict:
        return {k: v for k, v in spec.space.items() if k not in spec.search.settings.axes}

    def n_maps(self, spec: "SweepSpec") -> int:
        return math.prod(len(a.values) for a in self.others(spec).values())

    def n_trials(self, spec: "SweepSpec") -> int:
        most = self.n_maps(spec) * math.prod(self.shape(spec))
        cap = spec.search.settings.max_trials
        return most if cap is None else min(most, cap)

    def estimate(self, spec: "SweepSpec") -> int:
        """Probes for maps each crossed by one smooth edge (``records.lattice_map.estimate``)."""
        s = spec.search.settings
        n = self.n_maps(spec) * estimate(self.shape(spec), s.coarse, s.audits)
        return n if s.max_trials is None else min(n, s.max_trials)

    def cost_points(self, spec: "SweepSpec", keys: Collection[str] | None = None
                    ) -> Iterable[tuple[dict[str, Any], int]]:
        """At most every point of the lattice once: the grid it stands for, grouped."""
        return grouped_points(spec.space, keys)

    def maps(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> list[SliceMap]:
        """Every map, with the stored probes that lie on it replayed in."""
        s = spec.search.settings
        by_id = {} if force else {r["trial_id"]: r for r in rows if r["status"] in DONE_STATUSES}
        out = []
        for point in iter_points(self.others(spec)):
            m = SliceMap(point, LatticeMap(self.shape(spec), s.coarse, s.audits,
                                           key=f"{s.seed}:{json.dumps(point, sort_keys=True)}"))
            if by_id:
                def lookup(p, point=point):
                    row = by_id.get(trial_id(trial_config(spec, self.params(spec, point, p))))
                    return None if row is None else word_of_row(row, s.rise)
                m.stored = lookup
                replay(m.lattice, lookup)
            out.append(m)
        return out

    def params(self, spec: "SweepSpec", point: dict[str, Any], p: tuple[int, int]) -> dict:
        a, b = spec.search.settings.axes
        return {**point, a: spec.space[a].values[p[0]], b: spec.space[b].values[p[1]]}

    def plan(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> Plan:
        s = spec.search.settings
        maps = self.maps(spec, rows, force)
        done = sum(len(m.lattice.seen) for m in maps)
        size = math.prod(self.shape(spec))
        todo = [self.params(spec, m.point, p) for m in maps for p in m.lattice.wanted()]
        left = sum(size - len(m.lattice.seen) for m in maps if m.lattice.wanted())
        if s.max_trials is not None:
            left = min(left, max(s.max_trials - done, 0))
        return Plan(total=self.n_trials(spec), todo=todo, to_sample=left, done=done,
                    state=maps)

    def tune(self, spec: "SweepSpec", plan: Plan, out: str) -> TuneSetup:
        from sweeps.search.tune_searchers import CallbackSearcher  # imports Ray: only when a run starts

        s = spec.search.settings
        maps: list[SliceMap] = plan.state
        queue: list[list[tuple[int, int]]] = [[] for _ in maps]
        pending: list[set[tuple[int, int]]] = [set() for _ in maps]
        turn, started = [0], [0]
        room = math.inf if s.max_trials is None else s.max_trials - plan.done
        pack = spec.resources.pack
        shape = [_shape(spec, self.params(spec, m.point, (0, 0))) if pack > 1 else ""
                 for m in maps]

        def ready(i: int) -> list[tuple[int, int]]:
            while not queue[i] and not pending[i]:  # its last round has landed: the next one
                batch = maps[i].lattice.wanted()
                known = {p: w for p in batch if (w := maps[i].stored(p)) is not None}
                for p, w in known.items():  # stored already (a grid's row): read, not run
                    maps[i].lattice.record(p, w)
                queue[i] = [p for p in batch if p not in known][::-1]
                if not batch:
                    break
            return queue[i]

        def take(i: int) -> dict[str, Any]:
            p = queue[i].pop()
            pending[i].add(p)
            started[0] += 1
            params = self.params(spec, maps[i].point, p)
            return {"params": params, "map": i, "at": list(p),
                    "trial_id": trial_id(trial_config(spec, params))}

        def propose() -> dict[str, Any] | str | None:
            order = [(turn[0] + k) % len(maps) for k in range(len(maps))]  # every map moves
            first = next((i for i in order if started[0] < room and ready(i)), None)
            if first is None:
                return None if any(pending) else "finished"
            turn[0] = first + 1
            if pack == 1:
                return take(first)
            members = []  # a pack: the ready rounds of maps of one shape, up to `pack` probes
            for i in order:
                while (shape[i] == shape[first] and len(members) < pack and started[0] < room
                       and ready(i)):
                    members.append(take(i))
            return {"pack": [m["params"] for m in members], "ids": [m["trial_id"] for m in
                    members], "at": [[m["map"], *m["at"]] for m in members]}

        def judge(i: int, p: tuple[int, int], result: dict | None) -> None:
            done = result is not None and result.get("status") in DONE_STATUSES
            maps[i].lattice.record(p, word_of_row(result if done else None, s.rise))
            pending[i].discard(p)

        def landed(config: dict[str, Any], result: dict | None, error: bool) -> None:
            # judged from the trial's last report (status, losses, end_rise; a pack's names
            # each member), as the plan judges the stored row: no read of the store
            if "pack" not in config:
                judge(config["map"], tuple(config["at"]), None if error else result)
                return
            got = {} if error else member_rows(result)
            for tid, (i, a, b) in zip(config["ids"], config["at"]):
                judge(i, (a, b), got.get(tid))  # a member not named (stored before) reruns

        n = max(plan.to_sample, 1)
        return TuneSetup(searcher=CallbackSearcher(propose, landed), num_samples=n,
                         n_tune=plan.to_sample)

    def describe(self, spec: "SweepSpec") -> str:
        s = spec.search.settings
        na, nb = self.shape(spec)
        n = self.n_maps(spec)
        grid = n * na * nb
        cap = f"; capped at {s.max_trials}" if s.max_trials is not None else ""
        return (f"about {self.estimate(spec)} trials, at most {self.n_trials(spec)} (map: "
                f"{n} map{'' if n == 1 else 's'} of {na} {s.axes[0]} × {nb} {s.axes[1]}, coarse "
                f"{s.coarse}, {s.audits} audits each{cap}; the grid it stands for has {grid} "
                f"trials)")

    def about(self, spec: "SweepSpec") -> dict[str, Any]:
        s = spec.search.settings
        return {**super().about(spec), "map": True, "rise": s.rise, "axes": list(s.axes),
                "lattice": {a: list(spec.space[a].values) for a in s.axes},
                "coarse": s.coarse, "audits": s.audits, "seed": s.seed,
                "max_trials": s.max_trials, "others": list(self.others(spec))}
