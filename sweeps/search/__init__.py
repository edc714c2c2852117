"""The search-kind registry: ``kind:`` under ``search:`` names one entry.

Each kind is one module implementing ``SearchKind`` (``base.py``) and one line below; the spec
parser, the runner, ``check``, ``status`` and the report ask the entry, never the name:

    grid      every combination of the space (``grid.py``)
    optuna    an Optuna sampler proposing trials (``sampler.py``)
    boundary  bisection of α for the stable edge on every line (``boundary.py``)
    map       a stable-region map refined where its corners disagree (``map.py``)

A new kind: a module with a ``SearchKind`` subclass, and ``register_search_kind(Kind())``.
"""

from __future__ import annotations

from trainer.registry import Registry

from sweeps.search.base import COMMON_KEYS, Plan, SearchKind, TuneSetup
from sweeps.search.boundary import Boundary, BoundarySettings
from sweeps.search.grid import Grid, GridSettings
from sweeps.search.map import Map, MapSettings
from sweeps.search.sampler import SAMPLERS, Sampler

__all__ = ["SearchKind", "Plan", "TuneSetup", "COMMON_KEYS", "SEARCH_KINDS",
           "register_search_kind", "search_kind", "GridSettings", "BoundarySettings", "MapSettings",
           "SAMPLERS"]

SEARCH_KINDS: Registry[SearchKind] = Registry(
    "search kind", lambda name, known: KeyError(f"{name!r} is not a search kind; known: "
                                                f"{', '.join(known)}"))
register_search_kind = SEARCH_KINDS.register
"""Add a search kind; its ``name`` is what ``search.kind`` in a spec names."""
search_kind = SEARCH_KINDS.lookup
"""The registered kind called ``name``; KeyError names the known ones."""


for _kind in (Grid(), Sampler(), Boundary(), Map()):
    register_search_kind(_kind)
