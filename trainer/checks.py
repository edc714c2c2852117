"""The error every setting is refused with, and the range checks every settings section uses.

Here, below ``trainer.config`` and the trial kinds (``trainer.kinds``), so that a kind's
settings, the model shape and the torch modules can refuse a value without importing the
config they are part of. ``trainer.config`` re-exports these names.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Iterable

__all__ = ["ConfigError", "INT_MAX", "SEED_MAX", "nearest", "check_number", "check_int",
           "check_choice"]

INT_MAX = 2**31 - 1
"""Upper bound of every integer setting but the seed: counts and sizes torch and numpy index
with 32-bit integers; anything near it is refused by the memory check or runs for ever."""
SEED_MAX = 2**63 - 1
"""Upper bound of the seed: the largest value a Parquet int64 column stores and
``torch.manual_seed`` takes (a larger seed used to train, then fail to be stored)."""


class ConfigError(ValueError):
    """A setting is out of range; the message names the field and what is allowed."""


def nearest(key: object, known: Iterable[str]) -> str | None:
    """The known name closest to a mistyped ``key``, if any is close (the one spelling hint
    of every "unknown key" message, here and in the sweep spec). A name that differs only in
    case comes first (``r`` is ``R``, not ``lr``); else difflib's closest."""
    known = list(known)
    same = [k for k in known if k.casefold() == str(key).casefold()]
    if same:
        return same[0]
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return close[0] if close else None


def check_number(cfg: Any, name: str, ok: Callable[[float], bool], allowed: str) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name}: expected {allowed}, got {v!r}")
    if not math.isfinite(v) or not ok(v):
        raise ConfigError(f"{name}: expected {allowed}, got {v!r}")


def check_int(cfg: Any, name: str, low: int, high: int = INT_MAX) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {v!r}")
    if v > high:
        raise ConfigError(f"{name}: expected an integer from {low} to {high}, got {v!r}")


def check_choice(cfg: Any, name: str, allowed: Iterable[str]) -> None:
    v = getattr(cfg, name)
    allowed = tuple(allowed)
    if v not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {v!r}")
