"""The spec's ``space``: one ``SpaceAxis`` per swept trainer setting, and the grid they span.

An axis is a list of values (a grid axis, or a choice for a sampler), ``{low, high, num}``
for ``num`` evenly spaced values from low to high (``log: true`` for a geometric spacing), as
``numpy.linspace``/``geomspace`` give them, or a range ``{low, high, log}`` (only for a search
kind that samples). Each value is checked as a trainer
setting on top of the spec's ``trial`` settings, so a bad α is refused with its line before
anything runs (see docs/design.md, "The sweep spec").
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Iterator

import numpy as np

from sweeps.spec.validate import (SpecError, at, check_keys, coerce, field_kind, finite, item_at,
                       setting, show, trial_check)

__all__ = ["SpaceAxis", "parse_axis", "spaced_values", "grid_size", "grid_points", "iter_points", "RANGE_KEYS",
           "NUM_MAX", "MAX_TRIALS", "grouped_points", "numeric_ends"]

RANGE_KEYS = ("low", "high", "log")
NUM_MAX = 1_000_000
"""The most values one ``{low, high, num}`` axis spans."""
MAX_TRIALS = 1_000_000
"""The most trials one spec may ask for (docs/sweeps.md, "How big a sweep may be"): planning
walks every point (about 31 µs a point, docs/performance.md), so 1,000,000 plans in about half
a minute; a spec over it is refused before anything runs, not planned for ever."""


@dataclass(frozen=True)
class SpaceAxis:
    """One swept setting: a list of values (a grid axis, or a choice for a sampler) or a range."""

    name: str
    values: tuple[Any, ...] | None = None
    """The axis's values, in spec order; None for a range."""
    low: float | None = None
    """A range's lower end (inclusive)."""
    high: float | None = None
    """A range's upper end (inclusive)."""
    log: bool = False
    """A range sampled on a log scale."""
    integer: bool = False
    """A range of an integer setting."""

    def contains(self, value: Any) -> bool:
        """Is ``value`` one this axis can give (one of its values, or inside its range)?"""
        if self.values is not None:
            return coerce(self.name, value) in self.values
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def describe(self) -> str:
        """The allowed values, for an error message."""
        if self.values is not None:
            return f"one of the axis values {list(self.values)}"
        return f"inside [{self.low}, {self.high}]"

    def to_dict(self) -> Any:
        if self.values is not None:
            return list(self.values)
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        return d


def grid_size(space: dict[str, SpaceAxis]) -> int:
    return math.prod(len(a.values) for a in space.values())


def iter_points(space: dict[str, SpaceAxis]) -> Iterator[dict[str, Any]]:
    """Every combination of the axes' values, in spec order (last axis fastest), lazily."""
    names = list(space)
    for combo in itertools.product(*(space[n].values for n in names)):
        yield dict(zip(names, combo))


def grid_points(space: dict[str, SpaceAxis]) -> list[dict[str, Any]]:
    return list(iter_points(space))


def grouped_points(space: dict[str, SpaceAxis], keys: Collection[str] | None = None
                   ) -> Iterator[tuple[dict[str, Any], int]]:
    """The grid grouped by the axes in ``keys``: one point per combination of their values
    (every other axis at its first value) and how many grid points share it. Time goes with
    the combinations of ``keys``, not with the grid (the cost of a grid sums per group).
    ``keys`` None: every point, once."""
    if keys is None:
        yield from ((p, 1) for p in iter_points(space))
        return
    swept = [k for k in space if k in keys]
    first = {k: a.values[0] for k, a in space.items() if k not in keys}
    rest = math.prod(len(a.values) for k, a in space.items() if k not in keys)
    for combo in itertools.product(*(space[k].values for k in swept)):
        yield {**first, **dict(zip(swept, combo))}, rest


def numeric_ends(values: Iterable[Any]) -> list[Any]:
    """The smallest and the largest of numbers (what bounds an estimate that grows with the
    setting); other values (presets, mappings, text, booleans) all of them, in order."""
    values = list(values)
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return list(dict.fromkeys((min(values), max(values))))
    return values


def parse_axis(key: str, value: Any, trial: dict, ranges: bool, kind: str, w: str) -> SpaceAxis:
    """One axis of ``space``; ``ranges`` says whether the search kind takes {low, high}."""
    if isinstance(value, list):
        return _values_axis(key, value, trial, w)
    if isinstance(value, dict) and "num" in value:
        return _spaced_axis(key, value, trial, w)
    if isinstance(value, dict):
        if not ranges:
            raise SpecError(f"space.{key}: a range {{low, high}} needs a sampler (search.kind: "
                            f"optuna); a {kind} axis is a list of values{w}")
        return _range_axis(key, value, trial, w)
    raise SpecError(f"space.{key}: expected a list of values (grid axis), {{low, high, num}} "
                    f"(num evenly spaced values) or a range {{low, high, log}}, got "
                    f"{show(value)}{w}")


def _spaced_axis(key: str, value: dict, trial: dict, w: str) -> SpaceAxis:
    """``{low, high, num, log}``: a list axis of num evenly spaced values, ends included, each
    rounded to 12 significant digits so that the YAML a user reads is the α a trial gets."""
    num = value["num"]
    wn = at(value, "num")
    if isinstance(num, bool) or not isinstance(num, int) or not 2 <= num <= NUM_MAX:
        raise SpecError(f"space.{key}.num: expected an integer from 2 to {NUM_MAX:,} (values "
                        f"from low to high), got {show(num)}{wn}")
    ends = _range_axis(key, {k: v for k, v in value.items() if k != "num"}, trial, w)
    why = f"{key} is an integer setting" if ends.integer else "rounded to 12 digits"
    return _values_axis(key, spaced_values(key, ends, num, why, wn), trial, w)


def spaced_values(key: str, ends: SpaceAxis, num: int, why: str, wn: str) -> list[Any]:
    """``num`` values from ``ends.low`` to ``ends.high`` as numpy's linspace (geomspace when
    ``ends.log``) spaces them: integers when ``ends.integer``, else rounded to 12 significant
    digits (the YAML a user reads is the value a trial gets); refused when some repeat."""
    grid = (np.geomspace if ends.log else np.linspace)(ends.low, ends.high, num)
    if ends.integer:
        values = [int(round(v)) for v in grid]
    else:
        values = [float(f"{v:.12g}") for v in grid]
    if len(set(values)) < num:
        raise SpecError(f"space.{key}.num: {num} values from {ends.low} to {ends.high} repeat "
                        f"some ({why}); give at most {len(set(values))}{wn}")
    return values


def _values_axis(key: str, value: list, trial: dict, w: str) -> SpaceAxis:
    if not value:
        raise SpecError(f"space.{key}: empty axis; give at least one value{w}")
    seen: set[str] = set()
    values = []
    for i, v in enumerate(value):
        wi = item_at(value, i, w)
        v = setting(trial, key, v, "space.", wi)
        c = json.dumps(v, sort_keys=True)
        if c in seen:
            raise SpecError(f"space.{key}: value {v!r} appears twice{wi}")
        seen.add(c)
        values.append(v)
    return SpaceAxis(key, values=tuple(values))


def _range_axis(key: str, value: dict, trial: dict, w: str) -> SpaceAxis:
    fk = field_kind(key)
    check_keys(value, RANGE_KEYS, f"space.{key}.")
    if fk not in ("int", "float"):
        raise SpecError(f"space.{key}: a range needs a numeric setting; {key} takes "
                        f"{'text' if fk == 'str' else 'a preset or a mapping'}: give a list{w}")
    for end in ("low", "high"):
        if end not in value:
            raise SpecError(f"space.{key}.{end}: missing; a range is {{low, high}}{w}")
        v = value[end]
        we = at(value, end)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpecError(f"space.{key}.{end}: expected a number, got {show(v)}{we}")
        if not finite(v):
            raise SpecError(f"space.{key}.{end}: NaN and infinity are not allowed{we}")
        if fk == "int" and not isinstance(v, int):
            raise SpecError(f"space.{key}.{end}: {key} is an integer setting, got {v!r}{we}")
        trial_check(trial, key, v, "space.", we, label=f"space.{key}.{end}")
    low, high = value["low"], value["high"]
    if low >= high:
        raise SpecError(f"space.{key}: low ({low}) must be below high ({high}){w}")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"space.{key}.log: expected true or false, got {show(log)}"
                        f"{at(value, 'log')}")
    if log and low <= 0:
        raise SpecError(f"space.{key}: a log range needs low > 0, got {low}{w}")
    return SpaceAxis(key, low=coerce(key, low), high=coerce(key, high), log=log,
                     integer=(fk == "int"))
