"""What every CLI command module shares: the program's name in messages, and the error for bad
input (exit code 2)."""

from __future__ import annotations

__all__ = ["PROG", "UsageError"]

PROG = "diloco-sweep"


class UsageError(Exception):
    """Bad input from the user: exit code 2."""
