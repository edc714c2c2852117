"""A user's entry point (``kind: python``): find it, read what it takes, hash the code it is.

No torch here: ``check`` and the spec read an entry's parameters before anything trains; the
user's module itself may import torch when it is imported. docs/user-kind.md has the contract.

- ``load_entry("mypkg.problem:make")``: the function, imported as Python imports anything,
  the working directory searched too (``ray job submit --working-dir`` starts every worker in
  its copy of it; a local run starts the driver where the spec is run from);
- ``entry_parameters(fn)``: the user's parameters it takes (all but the first, the trial's
  settings), each with its type from the annotation (int, float, str, bool) and its default;
- ``code_hash(entry)``: the content hash of the user's code a trial runs (its package's
  ``.py`` files, or the one module), recorded with every row; trial ids never see it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .checks import ConfigError

__all__ = ["ENTRY_RE", "PARAM_TYPES", "Param", "EntryError", "split_entry", "load_entry",
           "entry_parameters", "code_hash"]

ENTRY_RE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")
"""``module.path:function``: an importable module and a function of it."""
PARAM_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
"""The types a user's parameter may take: its Parquet column is int64, double, string or bool."""


class EntryError(ConfigError):
    """The entry cannot be imported or called as the trial kind needs: the message says why."""


@dataclass(frozen=True)
class Param:
    """One user parameter the entry function takes."""

    name: str
    type: type | None
    """int, float, str or bool from its annotation; None when it has none (then its values'
    own type, the same for every value)."""
    default: Any = inspect.Parameter.empty
    """Its default, or ``inspect.Parameter.empty``: the spec must set it."""

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def split_entry(entry: str) -> tuple[str, str]:
    """(module, function) of ``module.path:function``; EntryError naming the form otherwise."""
    if not isinstance(entry, str) or not ENTRY_RE.fullmatch(entry):
        raise EntryError(f"entry: expected 'module.path:function' (a module Python can import "
                         f"and a function in it), got {entry!r}")
    module, _, name = entry.partition(":")
    return module, name


def load_entry(entry: str) -> Callable[..., Any]:
    """The function ``entry`` names. EntryError when its module is not found (the message says
    where it was looked for), fails to import, or has no such callable."""
    module_name, name = split_entry(entry)
    cwd = os.getcwd()
    if cwd not in sys.path:  # the working dir: a job's --working-dir, or where `run` started
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name) and (e.name == module_name
                                                          or module_name[len(e.name)] == "."):
            raise EntryError(f"entry: no module named {e.name!r} (looked in the working "
                             f"directory {cwd} and on sys.path); run from the folder that "
                             f"holds it, or install it") from None
        raise EntryError(f"entry: importing {module_name!r} failed: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise EntryError(f"entry: importing {module_name!r} failed: "
                         f"{type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        known = sorted(n for n, v in vars(module).items()
                       if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise EntryError(f"entry: module {module_name!r} has no function {name!r}"
                         + (f"; it has {', '.join(known)}" if known else ""))
    return fn


def entry_parameters(fn: Callable[..., Any]) -> tuple[dict[str, Param], bool]:
    """The user parameters ``fn`` takes, by name, and whether it takes any (``**kwargs``).

    Its first parameter is the trial's settings (a TrainConfig) and is not a user parameter.
    EntryError when it takes none, or a parameter's annotation is not int, float, str or bool.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise EntryError(f"entry: cannot read the signature of {fn!r}: {e}") from None
    ps = list(sig.parameters.values())
    first = ps[0].kind if ps else None  # how the parameter is passed (inspect's "kind")
    if first not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise EntryError(f"entry: {getattr(fn, '__name__', fn)} must take the trial's settings "
                         f"as its first parameter, then the user's parameters by name, e.g. "
                         f"def make(trial, width: int = 16)")
    try:
        hints = _hints(fn)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: read it as text
        hints = {}
    out, anything = {}, False
    for p in ps[1:]:
        passed = p.kind
        if passed is inspect.Parameter.VAR_KEYWORD:
            anything = True
            continue
        if passed in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        ann = hints.get(p.name, p.annotation)
        if isinstance(ann, str):
            ann = PARAM_TYPES.get(ann, ann)
        if ann is inspect.Parameter.empty or ann is Any:
            typ = None
        elif ann in PARAM_TYPES.values():
            typ = ann
        else:
            raise EntryError(f"entry: parameter {p.name!r} is annotated {ann!r}; a user "
                             f"parameter is an int, float, str or bool (a column each)")
        out[p.name] = Param(p.name, typ, p.default)
    return out, anything


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn)


@lru_cache(maxsize=64)
def code_hash(entry: str) -> str:
    """``sha256:<16 hex>`` of the entry's code: every ``.py`` file of its top-level package
    (path and bytes, in path order), or its one module's file. Imports the entry."""
    module_name, _ = split_entry(entry)
    load_entry(entry)
    top = sys.modules[module_name.split(".")[0]]
    paths = getattr(top, "__path__", None)
    h = hashlib.sha256()
    if paths:  # a package: every module of it, so a change to its model or data counts
        root = Path(list(paths)[0])
        files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    else:
        root = Path(top.__file__).parent
        files = [Path(sys.modules[module_name].__file__)]
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return f"sha256:{h.hexdigest()[:16]}"
