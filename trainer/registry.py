"""A named registry, the extension point of outer rules and search kinds.

Entries carry their own ``name``; ``register`` adds one (twice is an error), ``lookup`` finds
one or raises ``error`` with the known names. A registry is a dict, so ``in``, iteration and
``monkeypatch.setitem`` work as on one.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, what: str, error: Callable[[str, list[str]], Exception]) -> None:
        super().__init__()
        self.what = what
        """What an entry is, in words ('outer rule')."""
        self._error = error

    def register(self, entry: T) -> T:
        name = entry.name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry called ``name``; ``error(name, known)`` otherwise."""
        try:
            return self[name]
        except KeyError:
            raise self._error(name, list(self)) from None
