"""A stability map refined on a lattice: the one rule the map search plans with and the report
rebuilds from stored rows (docs/design.md, "The map search").

The lattice is the grid a map stands for: ``shape`` = (values of the first axis, values of the
second), indices into the spec's values. A *leaf* is a rectangle of lattice indices, corners
included, ``(i0, i1, j0, j1)``. The map measures the corners of every leaf; a leaf whose
measured points (its corners, and any point of its closed rectangle measured for a neighbour
or an audit) disagree, stable against not, is split at the middle index of each axis that
still has a point inside (uneven halving: ``(i0 + i1) // 2``), until the leaves along the
region's edge are single lattice cells. A leaf whose measured points agree fills every point
inside it with their outcome. Then ``audits`` points drawn at random (seeded by ``key``) from
the filled ones are measured; one that disagrees leaves its leaf mixed, so the leaf is refined
around it. The first ``coarse`` halvings are made whatever the outcomes: a feature smaller than
a coarse leaf with agreeing corners is what only the audits can find.

Every batch (``wanted``) is a function of the outcomes seen, and a new batch is asked only when
the last one has landed, so a replay of the stored rows (``replay``) walks the same leaves and
asks for the same points: the search resumes where it stopped and the report rebuilds the map
the search made, from the rows alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

__all__ = ["LatticeMap", "replay", "estimate", "Point", "Rect", "FILLED", "MEASURED",
           "AUDIT", "UNKNOWN"]

Point = tuple[int, int]
Rect = tuple[int, int, int, int]
"""A leaf: (i0, i1, j0, j1), lattice indices of its corners, ends included."""

UNKNOWN, FILLED, MEASURED, AUDIT = -1, 0, 1, 2
"""How ``LatticeMap.kinds`` says a point's outcome is known."""


@dataclass
class LatticeMap:
    """One map (one slice, one seed): its leaves and the outcomes it has seen."""

    shape: tuple[int, int]
    coarse: int = 4
    """Halvings of each axis made before any outcome is seen."""
    audits: int = 8
    """Filled points measured once the refinement has settled."""
    key: str = ""
    """Seeds the audit draw, so that a rerun draws the same points."""
    seen: dict[Point, str] = field(default_factory=dict)
    """Lattice point → the outcome word of its trial (``trainer.result.outcome``)."""
    audit_fill: dict[Point, int] | None = None
    """The audit points, each with the outcome (1 stable, 0 not) its leaf filled it with."""
    rounds: int = 0
    """Batches asked for so far."""

    def __post_init__(self) -> None:
        self._val = np.full(self.shape, -1, dtype=np.int8)  # 1 stable, 0 not, -1 unmeasured
        for p, w in list(self.seen.items()):
            self._val[p] = 1 if w == "stable" else 0
        self.leaves: list[Rect] = [(0, self.shape[0] - 1, 0, self.shape[1] - 1)]
        for _ in range(self.coarse):
            self.leaves = [c for r in self.leaves for c in _halves(r, (True, True))]
        self._batch: set[Point] | None = None

    @property
    def failed(self) -> bool:
        """A probe crashed: the map waits for a rerun (a failed row runs again)."""
        return "failed" in self.seen.values()

    def record(self, p: Point, word: str) -> None:
        """The outcome of the trial at ``p``."""
        self.seen[p] = word
        self._val[p] = 1 if word == "stable" else 0
        if self._batch is not None:
            self._batch.discard(p)

    def wanted(self) -> list[Point]:
        """The points of the current batch not yet seen; the next batch once it has landed;
        [] when the map is finished (or waits on a failed probe)."""
        if self.failed:
            return []
        if self._batch:
            return sorted(self._batch)
        batch = self._corners() if self._batch is None else set()
        while not batch:
            if self._split():
                batch = self._corners()
            elif self.audit_fill is None and self.audits:
                self._draw_audits()
                batch = {p for p in self.audit_fill if p not in self.seen}
            else:
                break
        self._batch = batch
        self.rounds += bool(batch)
        return sorted(batch)

    def _corners(self) -> set[Point]:
        out = set()
        for i0, i1, j0, j1 in self.leaves:
            for p in ((i0, j0), (i0, j1), (i1, j0), (i1, j1)):
                if p not in self.seen:
                    out.add(p)
        return out

    def _split(self) -> bool:
        """Halve every leaf whose measured points disagree; whether any was. A leaf is halved
        along the axes over which its outcome changes (a line of it, along that axis, holds
        both), or along every axis it can be when those are already one cell wide."""
        out, changed = [], False
        for r in self.leaves:
            axes = self._changes(r)
            if axes:
                out += _halves(r, axes)
                changed = True
            else:
                out.append(r)
        self.leaves = out
        return changed

    def _changes(self, r: Rect) -> tuple[bool, bool]:
        """(halve the first axis, halve the second) for leaf ``r``; neither when it agrees."""
        sub = self._val[r[0]:r[1] + 1, r[2]:r[3] + 1]
        hi = sub.max(initial=-1)
        if hi < 1 or sub[sub >= 0].min() == 1:
            return ()
        can = (r[1] - r[0] > 1, r[3] - r[2] > 1)
        lo = np.where(sub >= 0, sub, 2)
        along = (bool(((sub.max(axis=0) == 1) & (lo.min(axis=0) == 0)).any()),
                 bool(((sub.max(axis=1) == 1) & (lo.min(axis=1) == 0)).any()))
        pick = (along[0] and can[0], along[1] and can[1])
        return pick if any(pick) else can if any(can) else ()

    def _draw_audits(self) -> None:
        f = self.fill()
        pool = np.argwhere((self._val < 0) & (f >= 0))
        rng = random.Random(f"audit:{self.key}")
        pick = sorted(rng.sample(range(len(pool)), min(self.audits, len(pool))))
        self.audit_fill = {(int(pool[k][0]), int(pool[k][1])):
                           int(f[pool[k][0], pool[k][1]]) for k in pick}

    def fill(self) -> np.ndarray:
        """Per lattice point: 1 stable, 0 not (measured, or filled from an agreeing leaf), -1
        unknown (its leaf is still mixed or unmeasured: an unfinished map)."""
        out = self._val.copy()
        for i0, i1, j0, j1 in self.leaves:
            sub = out[i0:i1 + 1, j0:j1 + 1]
            known = self._val[i0:i1 + 1, j0:j1 + 1]
            known = known[known >= 0]
            if known.size and known.min() == known.max():
                sub[sub < 0] = known[0]
        return out

    def kinds(self) -> np.ndarray:
        """Per lattice point: MEASURED, AUDIT, FILLED or UNKNOWN."""
        f = self.fill()
        out = np.where(self._val >= 0, MEASURED, np.where(f >= 0, FILLED, UNKNOWN))
        for p in self.audit_fill or {}:
            if p in self.seen:
                out[p] = AUDIT
        return out.astype(np.int8)

    def audit_agreed(self) -> tuple[int, int]:
        """(audits measured, of them: the outcome their leaf had filled them with)."""
        done = [(p, v) for p, v in (self.audit_fill or {}).items() if p in self.seen]
        return len(done), sum(int(self._val[p]) == v for p, v in done)


def _halves(r: Rect, axes: tuple[bool, bool]) -> list[Rect]:
    i0, i1, j0, j1 = r
    im, jm = (i0 + i1) // 2, (j0 + j1) // 2
    ia = [(i0, im), (im, i1)] if axes[0] and i1 - i0 > 1 else [(i0, i1)]
    jb = [(j0, jm), (jm, j1)] if axes[1] and j1 - j0 > 1 else [(j0, j1)]
    return [(a0, a1, b0, b1) for a0, a1 in ia for b0, b1 in jb]


def replay(m: LatticeMap, lookup: Callable[[Point], str | None]) -> LatticeMap:
    """Feed ``m`` the outcomes ``lookup`` knows (None: not stored), batch after batch, as long
    as the points it asks for are known: where a search stopped, or the whole finished map."""
    while True:
        fresh = False
        for p in m.wanted():
            w = lookup(p)
            if w is not None:
                m.record(p, w)
                fresh = True
        if not fresh:
            return m


@lru_cache(maxsize=64)
def estimate(shape: tuple[int, int], coarse: int, audits: int) -> int:
    """Probes a map of ``shape`` spends when one straight edge crosses it corner to corner
    (a smooth boundary costs about this; a ragged one more, at most the whole lattice)."""
    na, nb = shape
    m = replay(LatticeMap(shape, coarse, audits, key="estimate"),
               lambda p: "stable" if p[0] / max(na - 1, 1) + p[1] / max(nb - 1, 1) < 1
               else "diverged")
    return len(m.seen)
