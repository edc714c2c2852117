"""What a search kind is: the protocol every entry of the registry implements.

A search kind owns its section of the spec (``search:``), decides what a run does given the
rows already stored, gives Tune what it runs (a ``Searcher``), and
says in words what it is for ``check``, ``status`` and the report. Nothing outside the registry
asks which kind a spec has (see docs/architecture.md, "Registries").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Iterable

from sweeps.spec.space import MAX_TRIALS
from sweeps.spec.validate import SpecError

if TYPE_CHECKING:  # types only: the spec imports the registry
    from sweeps.spec.space import SpaceAxis
    from sweeps.spec.parse import SweepSpec

__all__ = ["SearchKind", "Plan", "TuneSetup", "COMMON_KEYS", "check_size"]

COMMON_KEYS = ("kind", "max_concurrent", "max_failures")
"""Keys of ``search:`` that every kind takes; the rest belong to the kind."""


def check_size(n: int, key: str, what: str, instead: str) -> None:
    """Refuse a spec asking for more than MAX_TRIALS trials, before anything is planned:
    SpecError naming ``key``, the count (``what``: how it comes about) and the limit."""
    if n > MAX_TRIALS:
        raise SpecError(f"{key}: {what} = {n:,} trials, more than the {MAX_TRIALS:,} one sweep "
                        f"may plan (docs/sweeps.md, \"How big a sweep may be\"); {instead}")


@dataclass
class Plan:
    """What a run of the spec will do, decided before Ray starts."""

    total: int
    """Trials the spec asks for (for an adaptive search: its most)."""
    todo: list[dict[str, Any]] = field(default_factory=list)
    """Points known now to run (grid: all of them; a sampler: its starting points)."""
    ids: list[str] = field(default_factory=list)
    """The trial_id of each point of ``todo`` where the kind knows it (a grid): hashed once,
    here, and carried through Tune in the trial's config (``trial_id``)."""
    to_sample: int = 0
    """Trials this run will start at most."""
    done: int = 0
    """Trials of the spec already stored (completed or diverged)."""
    history: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    """Stored trials a sampler learns from before it proposes: (axis values, objective)."""
    state: Any = None
    """A kind's own state from planning, handed to its searcher (the boundary's lines)."""


@dataclass
class TuneSetup:
    """What ``Tuner`` gets: a searcher and the trial count (every kind proposes its trials
    through a Searcher, which the runner wraps in a ConcurrencyLimiter)."""

    searcher: Any
    """A ray.tune.search.Searcher."""
    num_samples: int
    n_tune: int
    """Tune trials this run starts at most (a pack of trials counts once)."""


class SearchKind(ABC):
    """One entry of the search-kind registry; subclasses set the class attributes."""

    name: ClassVar[str]
    summary: ClassVar[str]
    """What it does, in a clause: 'a grid runs every combination of the space'."""
    keys: ClassVar[tuple[str, ...]] = ()
    """Its own keys under ``search:`` (besides COMMON_KEYS)."""
    ranges: ClassVar[bool] = False
    """Whether a space axis may be a range {low, high} rather than a list."""
    packs: ClassVar[bool] = False
    """Whether resources.pack > 1 works with it (the points must be known up front)."""
    adaptive: ClassVar[bool] = False
    """Whether it decides as it runs how many trials it needs (``n_trials`` is then a most)."""
    grid: ClassVar[bool] = False
    """Whether its trials fill every cell of the space (holes in a heatmap are then missing
    trials, not cells the search chose not to visit)."""

    @abstractmethod
    def parse(self, d: dict, trial: dict[str, Any], space: dict[str, "SpaceAxis"]) -> Any:
        """Its settings (a dataclass with ``to_dict``) from the ``search:`` mapping ``d``, or
        SpecError naming the key."""

    @abstractmethod
    def n_trials(self, spec: "SweepSpec") -> int:
        """Trials the spec asks for (for an adaptive search: the most it can spend)."""

    @abstractmethod
    def plan(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> Plan:
        """What to run, given the stored rows (dicts with at least the config columns)."""

    @abstractmethod
    def tune(self, spec: "SweepSpec", plan: Plan, out: str) -> TuneSetup:
        """What Tune runs for ``plan``; ``out`` is the output every node writes to."""

    @abstractmethod
    def describe(self, spec: "SweepSpec") -> str:
        """A few words for ``check`` and ``status``: '216 trials (grid: 3 H × 2 R)'."""

    def axes(self, spec: "SweepSpec") -> list[str]:
        """The settings a Tune config of this kind may set: the space's axes."""
        return list(spec.space)

    def check(self, spec: "SweepSpec") -> None:
        """Checks that need more than the spec text (a sampler's package); SpecError."""

    def hold(self, spec: "SweepSpec", output: str,
             log: Callable[[str], None]) -> AbstractContextManager[None]:
        """What a run holds besides its sweep's lock, from before it plans to its end (a
        sampler's shared study: one driver at a time); raises SweepBusyError when another run
        has it. ``log`` takes one line for the user."""
        return nullcontext()

    def about(self, spec: "SweepSpec") -> dict[str, Any]:
        """What sweep.json records of the search for the report (``search`` there)."""
        return {"kind": self.name, "grid": self.grid, "about": self.describe(spec)}

    def cost_points(self, spec: "SweepSpec", keys: Collection[str] | None = None
                    ) -> Iterable[tuple[dict[str, Any], int]] | None:
        """Where its trials fall, for the cost estimate: (a point of the space, the most trials
        run at it), or None when it cannot say before running (a sampler: the estimate then
        prices the corners of the space). ``keys``: the settings the cost depends on; points
        that agree on them may come as one, with their trials summed (a grid of 10^6 points
        is then priced per cost group, not point by point)."""
        return None

    def members(self, spec: "SweepSpec") -> set[str] | None:
        """The trial_ids the spec names, when known before running (a grid); else None."""
        return None
