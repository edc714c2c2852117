"""A user's own trial in the spec (kind: python): its entry and its parameters, checked.

``trial: {kind: python, entry: "mypkg.problem:make", params: {noise: 0.1}}`` fixes parameters;
``space: {params: {width: [8, 16]}}`` (or ``params.width: [8, 16]``) sweeps them, one axis
each, named ``params.width`` as its Parquet column is; an axis is a list, ``{low, high, num,
log}`` or, for a sampler, a range ``{low, high, log}``, as any other axis. Before anything runs the entry is
imported and every parameter checked against the function's signature: a missing module or
function, a parameter it does not take, one it needs and no one sets, or a value of another
type than its annotation is refused naming the key and the YAML line (docs/user-kind.md).
An int written for a float parameter becomes a float, so 1 and 1.0 are one trial.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from trainer.config import TRIAL_KINDS, TrainConfig, TrialKind
from trainer.kinds.python import PARAM_PREFIX, PARAMS_FIELD
from trainer.user_entry import EntryError, Param, entry_parameters, load_entry

from sweeps.spec.space import NUM_MAX, SpaceAxis, spaced_values
from sweeps.spec.validate import SpecError, at, check_keys, item_at, plain, show

__all__ = ["is_param_key", "param_axes", "check_user_entry", "trial_kind_of"]

_SCALARS = (bool, int, float, str)


def is_param_key(key: Any) -> bool:
    """``params`` (a mapping of axes) or ``params.<name>`` (one axis), under ``space``."""
    return isinstance(key, str) and (key == PARAMS_FIELD or key.startswith(PARAM_PREFIX))


def param_axes(key: str, value: Any, w: str, ranges: bool = False,
               kind: str = "grid") -> dict[str, SpaceAxis]:
    """The axes of ``space.params`` (a mapping name -> axis) or of ``space.params.<name>``:
    each a list of scalars, ``{low, high, num, log}`` (evenly spaced numbers) or, for a search
    kind that samples (``ranges``), a range ``{low, high, log}``, as any other axis. Integer
    ends make integer values; the entry's annotation checks the type (``check_user_entry``)."""
    if key == PARAMS_FIELD:
        if not isinstance(value, dict) or not value:
            raise SpecError(f"space.params: expected a mapping of parameter name to an axis, "
                            f"got {show(value)}{w}")
        out: dict[str, SpaceAxis] = {}
        for name, v in value.items():
            out.update(param_axes(f"{PARAM_PREFIX}{name}", v, at(value, name), ranges, kind))
        return out
    name = key[len(PARAM_PREFIX):]
    if not name.isidentifier():
        raise SpecError(f"space.{key}: {name!r} is not a Python parameter name{w}")
    if isinstance(value, dict):
        if "num" not in value and not ranges:
            raise SpecError(f"space.{key}: a range {{low, high}} needs a sampler (search.kind: "
                            f"optuna); a {kind} axis is a list of values or {{low, high, num}}"
                            f"{w}")
        return {key: _param_range(key, value, w)}
    if not isinstance(value, list) or not value:
        raise SpecError(f"space.{key}: expected a non-empty list of values, {{low, high, num}} "
                        f"or a range {{low, high, log}}, got {show(value)}{w}")
    seen = []
    for i, v in enumerate(value):
        _scalar(f"space.{key}", v, item_at(value, i, w))
        if any(type(v) is type(s) and v == s for s in seen):
            raise SpecError(f"space.{key}: value {v!r} appears twice{item_at(value, i, w)}")
        seen.append(v)
    return {key: SpaceAxis(key, values=tuple(plain(v) for v in value))}


def _param_range(key: str, value: dict, w: str) -> SpaceAxis:
    """``{low, high, log}`` (a range) or with ``num`` (that many values, as numpy's linspace or
    geomspace space them); integers when both ends are."""
    check_keys(value, ("low", "high", "num", "log"), f"space.{key}.")
    for end in ("low", "high"):
        v = value.get(end)
        we = at(value, end) or w
        if end not in value:
            raise SpecError(f"space.{key}.{end}: missing; a range is {{low, high}}{w}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpecError(f"space.{key}.{end}: expected a finite number, got {show(v)}{we}")
    low, high, log = value["low"], value["high"], value.get("log", False)
    if low >= high:
        raise SpecError(f"space.{key}: low ({low}) must be below high ({high}){w}")
    if not isinstance(log, bool):
        raise SpecError(f"space.{key}.log: expected true or false, got {show(log)}"
                        f"{at(value, 'log')}")
    if log and low <= 0:
        raise SpecError(f"space.{key}: a log range needs low > 0, got {low}{w}")
    ends = SpaceAxis(key, low=low, high=high, log=log,
                     integer=isinstance(low, int) and isinstance(high, int))
    if "num" not in value:
        return ends
    num, wn = value["num"], at(value, "num") or w
    if isinstance(num, bool) or not isinstance(num, int) or not 2 <= num <= NUM_MAX:
        raise SpecError(f"space.{key}.num: expected an integer from 2 to {NUM_MAX:,} (values "
                        f"from low to high), got {show(num)}{wn}")
    why = "integer ends make integer values" if ends.integer else "rounded to 12 digits"
    return SpaceAxis(key, values=tuple(spaced_values(key, ends, num, why, wn)))


def _scalar(label: str, v: Any, where: str) -> None:
    if not isinstance(v, _SCALARS) or (isinstance(v, float) and not math.isfinite(v)):
        raise SpecError(f"{label}: expected an int, float, str or bool (finite), got "
                        f"{show(v)}{where}")


def trial_kind_of(trial: dict[str, Any]) -> TrialKind:
    """The registry entry of the spec's ``trial.kind`` (the default kind when unset); the
    kind was checked with the trial settings."""
    return TRIAL_KINDS.lookup(trial.get("kind", TrainConfig.__dataclass_fields__["kind"].default))


def check_user_entry(trial_raw: dict, trial: dict[str, Any], space: dict[str, SpaceAxis],
                     space_raw: dict, load: bool = True) -> None:
    """Import the entry of a ``kind: python`` spec and check its parameters (module
    docstring); coerce ``trial['params']`` and the param axes to the entry's types in place.
    A spec of another kind may not set ``entry`` or ``params``. ``load=False``: the entry is
    not imported; each parameter's values need only share one type (a stored spec)."""
    kind = trial_kind_of(trial)
    swept = [k for k in space if k.startswith(PARAM_PREFIX)]
    fixed = dict(trial.get(PARAMS_FIELD) or {})
    if not kind.takes_entry:
        for key in ("entry", PARAMS_FIELD):
            if trial.get(key):
                raise SpecError(f"trial.{key}: only for a trial kind that runs a user's entry "
                                f"(kind: python); this spec's kind is {kind.name}"
                                f"{at(trial_raw, key)}")
        if swept:
            raise SpecError(f"space.{swept[0]}: user parameters are for kind: python; this "
                            f"spec's kind is {kind.name}{_space_at(space_raw, swept[0])}")
        return
    entry = trial.get("entry")
    if not entry:
        raise SpecError(f"trial.entry: missing; kind {kind.name} runs a user's function, "
                        f"e.g. entry: \"mypkg.problem:make\"{at(trial_raw, 'kind')}")
    try:
        takes, anything = entry_parameters(load_entry(entry)) if load else ({}, True)
    except EntryError as e:
        raise SpecError(f"trial.{e}{at(trial_raw, 'entry')}") from None
    params_raw = trial_raw.get(PARAMS_FIELD) or {}
    for name in fixed:
        if f"{PARAM_PREFIX}{name}" in space:
            raise SpecError(f"space.{PARAM_PREFIX}{name}: also set under trial.params (line "
                            f"{getattr(params_raw, 'lines', {}).get(name, '?')}); set it in one "
                            f"place{_space_at(space_raw, PARAM_PREFIX + name)}")
    where = {**{n: (f"trial.params.{n}", at(params_raw, n)) for n in fixed},
             **{k[len(PARAM_PREFIX):]: (f"space.{k}", _space_at(space_raw, k)) for k in swept}}
    for name, (label, w) in where.items():
        if name not in takes and not anything:
            raise SpecError(f"{label}: {entry} takes no parameter {name!r}{w}; it takes "
                            f"{', '.join(takes) or 'none'}")
    for p in takes.values():
        if p.required and p.name not in where:
            raise SpecError(f"trial.params.{p.name}: missing; {entry} takes it with no "
                            f"default: set it under trial.params or sweep it under space"
                            f"{at(trial_raw, PARAMS_FIELD) or at(trial_raw, 'entry')}")
    for name, (label, w) in where.items():
        key = f"{PARAM_PREFIX}{name}"
        if key in space and space[key].values is None:  # a range: the annotation types it
            space[key] = _typed_range(takes.get(name), space[key], label, w)
            continue
        values = list(space[key].values) if key in space else [fixed[name]]
        typed = _typed(takes.get(name), values, label, w)
        if key in space:
            space[key] = dataclasses.replace(space[key], values=tuple(typed))
        else:
            fixed[name] = typed[0]
    if PARAMS_FIELD in trial:
        trial[PARAMS_FIELD] = fixed or None


def _typed(p: Param | None, values: list[Any], label: str, w: str) -> list[Any]:
    """``values`` as the parameter's type (its annotation, else its values' common type)."""
    typ = p.type if p is not None else None
    if typ is None:
        kinds = {type(v) for v in values}
        typ = float if kinds == {int, float} else kinds.pop() if len(kinds) == 1 else None
        if typ is None:
            raise SpecError(f"{label}: its values mix types ({', '.join(sorted(t.__name__ for t in kinds))}) "
                            f"and the entry does not annotate it; one type per parameter{w}")
    out = []
    for v in values:
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if type(v) is not typ:
            raise SpecError(f"{label}: expected {typ.__name__} (the entry's annotation), got "
                            f"{v!r}{w}")
        out.append(v)
    return out


def _typed_range(p: Param | None, ax: SpaceAxis, label: str, w: str) -> SpaceAxis:
    """A range of an int parameter needs integer ends; one of a float parameter samples
    floats (integer ends or not); text and booleans take no range."""
    typ = p.type if p is not None else None
    if typ in (str, bool):
        raise SpecError(f"{label}: a range needs a numeric parameter; the entry annotates it "
                        f"{typ.__name__}: give a list{w}")
    if typ is int and not ax.integer:
        raise SpecError(f"{label}: expected int ends (the entry's annotation), got "
                        f"{ax.low!r} and {ax.high!r}{w}")
    if typ is float:
        return dataclasses.replace(ax, low=float(ax.low), high=float(ax.high), integer=False)
    return ax


def _space_at(space_raw: dict, key: str) -> str:
    if key in space_raw:
        return at(space_raw, key)
    nested = space_raw.get(PARAMS_FIELD)
    return at(nested, key[len(PARAM_PREFIX):]) if isinstance(nested, dict) else ""
