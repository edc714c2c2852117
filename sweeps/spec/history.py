"""One sweep, one set of fixed trial settings (docs/sweeps.md, "Running into a stored sweep").

A run into ``<output>/<name>`` that already holds a sweep adds to it: more axis values, more
seeds, another search kind over the same settings. A spec whose *fixed* trial settings (every
trainer setting neither spec sweeps; runtime ones such as ``threads`` aside) differ from every
spec the sweep has run would mix trials of another experiment into it under the same name: a
different ``outer_steps`` made 16 rows where there were 8, silently, and ``sweep.json``
then described only the second spec. ``check_settings`` refuses that (SpecError, exit 2),
naming each key with its stored and new value, unless ``--allow-other-settings`` is given.

A setting fixed in one spec and swept in the other is the same experiment when the fixed
value is one the axis gives (the stored trials are points of the new space, or the new ones
of the old). ``sweep.json`` keeps every spec run, in order, under ``specs``; each run names
its own by index (``runs[].spec``). A ``sweep.json`` written before ``specs`` has its one
``spec``; a stored spec this version cannot parse is not compared (nothing to compare with).
"""

from __future__ import annotations

import json
from typing import Any

from records.identity import RUNTIME_FIELDS

from sweeps.store.errors import ALLOW_FLAG, DamagedMetaError
from sweeps.spec.parse import SpecError, SweepSpec, parse_spec
from sweeps.spec.space import SpaceAxis

__all__ = ["ALLOW_FLAG", "check_settings", "check_stored", "setting_changes", "stored_specs",
           "record_spec", "fixed_settings", "describe_changes"]

"""The `run` and `check` option that adds a spec with other fixed settings anyway."""

Change = tuple[str, Any, Any]
"""(the setting, its stored value or axis, the new spec's)."""


def fixed_settings(spec: SweepSpec) -> dict[str, Any]:
    """Every trainer setting the spec does not sweep, with the trainer's defaults filled in,
    runtime settings (which do not change what is trained) left out."""
    swept = set(spec.search_kind.axes(spec))
    return {k: v for k, v in spec.base.to_dict().items()
            if k not in swept and k not in RUNTIME_FIELDS}


def stored_specs(meta: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The specs a sweep has run, oldest first: ``specs``, or the one ``spec`` of a
    sweep.json written before the list was kept."""
    meta = meta or {}
    specs = meta.get("specs")
    if isinstance(specs, list):
        return [s for s in specs if isinstance(s, dict)]
    return [meta["spec"]] if isinstance(meta.get("spec"), dict) else []


def _axis_text(ax: SpaceAxis) -> str:
    return f"swept over {ax.to_dict()}"


def _changes(old: SweepSpec, new: SweepSpec) -> list[Change]:
    a, b = fixed_settings(old), fixed_settings(new)
    out: list[Change] = []
    for key in dict.fromkeys([*a, *b]):
        if key in a and key in b:
            if a[key] != b[key]:
                out.append((key, a[key], b[key]))
        elif key in a:  # the new spec sweeps it: fine when the stored value is on its axis
            ax = new.space.get(key)
            if ax is not None and not ax.contains(a[key]):
                out.append((key, a[key], _axis_text(ax)))
        else:  # the stored spec swept it
            ax = old.space.get(key)
            if ax is not None and not ax.contains(b[key]):
                out.append((key, _axis_text(ax), b[key]))
    return out


def setting_changes(spec: SweepSpec, meta: dict[str, Any] | None) -> list[Change] | None:
    """The fixed settings in which ``spec`` differs from the sweep's last spec, or None when
    it matches one of the specs the sweep has run (or there is none to compare with)."""
    parsed = []
    for d in stored_specs(meta):
        try:
            parsed.append(parse_spec(d, where="sweep.json"))
        except SpecError:
            continue  # written by another version: nothing this one can compare with
    if not parsed:
        return None
    changes = [_changes(old, spec) for old in parsed]
    if any(not c for c in changes):
        return None
    return changes[-1]


def _show(v: Any) -> str:
    return v if isinstance(v, str) and v.startswith("swept over") else repr(v)


def describe_changes(changes: list[Change]) -> str:
    """'outer_steps: stored 3, this spec 5; ...' for a message."""
    return "; ".join(f"{k}: stored {_show(old)}, this spec {_show(new)}" for k, old, new in changes)


def check_settings(spec: SweepSpec, meta: dict[str, Any] | None, where: str,
                   allow: bool = False) -> list[Change]:
    """Refuse (SpecError, exit 2) a spec whose fixed settings differ from those of every spec
    the stored sweep at ``where`` has run; with ``allow``, return the changes instead (the
    caller says that they are added anyway). [] when the settings are the sweep's."""
    changes = setting_changes(spec, meta)
    if not changes:
        return []
    if allow:
        return changes
    raise SpecError(f"trial settings: this spec's differ from those of the sweep stored at "
                    f"{where} ({describe_changes(changes)}); its trials would mix with the "
                    f"stored ones under one name. Give it another name or output, or pass "
                    f"{ALLOW_FLAG} to add them to this sweep anyway")


def record_spec(meta: dict[str, Any], spec_dict: dict[str, Any]) -> int:
    """Add ``spec_dict`` to ``meta['specs']`` unless it is there; return its index (what
    ``runs[].spec`` holds). ``meta['spec']`` stays the latest, as before."""
    specs = stored_specs(meta)
    keys = [_canon(s) for s in specs]
    if _canon(spec_dict) not in keys:
        specs.append(spec_dict)
        keys.append(_canon(spec_dict))
    meta["specs"] = specs
    meta["spec"] = spec_dict
    return keys.index(_canon(spec_dict))


def _canon(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def check_stored(spec: SweepSpec, out: str, allow: bool = False) -> list[str]:
    """`check`'s side of `run`'s refusal: compare ``spec`` with the sweep stored under
    ``out`` (SpecError as `run` raises it); return notes to print: the changes added with
    ``allow``, or that the store could not be read here (`run` says what is wrong with it).
    A remote store (s3://) is left to `run`: `check` stays offline and quick."""
    from sweeps.store.store import Store

    if "://" in out and not out.startswith("file://"):
        return []
    try:
        store = Store(out, spec.name)
        meta = store.read_meta()
    except DamagedMetaError:
        raise
    except (OSError, ValueError) as e:
        return [f"the stored sweep could not be read to compare its settings ({e})"]
    changes = check_settings(spec, meta, store.uri, allow)
    return [f"{describe_changes(changes)}; added to the sweep ({ALLOW_FLAG})"] if changes else []
