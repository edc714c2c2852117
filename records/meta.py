"""sweep.json as every reader takes it: parsed, its shape checked, or a reason why not.

The store writes it (``sweeps.store.store.Store.write_meta``); the service refuses a damaged one with
one message (``Store.read_meta``), ``analysis.load_sweep_meta`` warns and reads on without it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["META_DEPTH", "meta_problem", "parse_meta"]


META_DEPTH = 64
"""How deep sweep.json may nest (what the store writes nests about 8 deep; Python's own
recursion limit would otherwise decide, with a RecursionError, in json or any later walk)."""
_META_TYPES = {"runs": list, "spec": dict, "search": dict, "versions": dict}


def meta_problem(meta: Any) -> str | None:
    """Why ``meta`` (sweep.json as parsed) is not of the shape the store writes, or None: an
    object, nested at most META_DEPTH deep, whose ``runs`` is a list of objects and whose
    ``spec``, ``search`` and ``versions`` are objects (each may be absent or null)."""
    if not isinstance(meta, dict):
        return f"a JSON {_json_kind(meta)} where an object is expected"
    for key, typ in _META_TYPES.items():
        v = meta.get(key)
        if v is not None and not isinstance(v, typ):
            return (f"{key!r} is a JSON {_json_kind(v)} where "
                    f"{'a list' if typ is list else 'an object'} is expected")
    bad = next((i for i, r in enumerate(meta.get("runs") or []) if not isinstance(r, dict)), None)
    if bad is not None:
        return f"runs[{bad}] is a JSON {_json_kind(meta['runs'][bad])} where an object is expected"
    level, depth = [meta], 0
    while level:  # breadth first, no recursion: the depth is what is being checked
        depth += 1
        if depth > META_DEPTH:
            return f"nested more than {META_DEPTH} deep"
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v)
                 if isinstance(c, (dict, list))]
    return None


def _json_kind(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(v), type(v).__name__)


def parse_meta(data: bytes) -> tuple[Any, str | None]:
    """sweep.json's bytes as parsed, and why it is not what the store writes (None when it is)."""
    try:
        meta = json.loads(data)
    except RecursionError:
        return None, "nested too deep to read"
    except ValueError as e:
        return None, str(e)
    return meta, meta_problem(meta)
