"""The search-kind registry: ``kind:`` under ``search:`` names one entry.

Each kind is one module implementing ``SearchKind`` (``base.py``) and one line below; the spec
parser, the runner, ``check``, ``status`` and the report ask the entry, never the name:

    grid      every combination of the space (``grid.py``)
    optuna    an Optuna sampler proposing trials (``sampler.py``)
    boundary  bisection of α for the stable edge on every line (``boundary.py``)

A new kind: a module with a ``SearchKind`` subclass, and ``register_search_kind(Kind())``.
"""

from __future__ import annotations

from .base import COMMON_KEYS, Plan, SearchKind, TuneSetup
from .boundary import Boundary, BoundarySettings

from .grid import Grid, GridSettings
from .sampler import SAMPLERS, Sampler

__all__ = ["SearchKind", "Plan", "TuneSetup", "COMMON_KEYS", "SEARCH_KINDS",
           "register_search_kind", "search_kind", "GridSettings", "BoundarySettings", "SAMPLERS"]

SEARCH_KINDS: dict[str, SearchKind] = {}


def register_search_kind(kind: SearchKind) -> SearchKind:
    """Add a search kind; its ``name`` is what ``search.kind`` in a spec names."""
    if kind.name in SEARCH_KINDS:
        raise ValueError(f"search kind {kind.name!r} is already registered")
    SEARCH_KINDS[kind.name] = kind
    return kind


def search_kind(name: str) -> SearchKind:
    """The registered kind called ``name``; KeyError names the known ones."""
    try:
        return SEARCH_KINDS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a search kind; known: {', '.join(SEARCH_KINDS)}") from None


for _kind in (Grid(), Sampler(), Boundary()):
    register_search_kind(_kind)
