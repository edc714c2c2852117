"""Errors of the results store that the command line turns into one clear line: exit code 1,
except the bad input of BadUriError, DamagedMetaError and OutsideLinkError (exit code 2)."""

from __future__ import annotations

from records.trust import ForeignFileError

__all__ = ["ALLOW_FLAG", "StoreError", "SweepBusyError", "StudyBusyError", "UnwrittenError",
           "ForeignFileError", "BadUriError", "DamagedMetaError", "OutsideLinkError"]


ALLOW_FLAG = "--allow-other-settings"
"""The flag of `run` and `check` that adds trials with other fixed settings to a stored sweep
(docs/sweeps.md, "Running into a stored sweep"); the refusal names it."""


class StoreError(OSError):
    """The results store cannot be read or written (not writable, full, unreachable)."""


class SweepBusyError(StoreError):
    """Another run of the same sweep holds its lock."""


class StudyBusyError(SweepBusyError):
    """Another driver holds the Optuna study that ``search.storage`` names."""


class UnwrittenError(StoreError):
    """The sweep ran, but some of what it had to store could not be written.

    ``items`` lists (what, error) pairs: a trial id (its row) or ``sweep.json``. Everything not
    listed is stored; a rerun of the same spec runs the listed trials again.
    """

    def __init__(self, uri: str, items: list[tuple[str, str]]) -> None:
        self.items = items
        trials = [w for w, _ in items if w != "sweep.json"]
        parts = []
        if trials:
            parts.append(f"{len(trials)} trial row(s) could not be written: {', '.join(trials)}")
        if any(w == "sweep.json" for w, _ in items):
            parts.append("sweep.json could not be updated")
        first = items[0][1] if items else ""
        super().__init__(f"{uri}: {'; '.join(parts)} ({first}); a rerun of the same spec runs "
                         f"the missing trials again")


class BadUriError(ValueError):
    """A results store named by a scheme or form diloco-sweep does not support (exit code 2)."""


class DamagedMetaError(ValueError):
    """A sweep.json that is not JSON, or not of the shape diloco-sweep writes (exit code 2): the
    sweep's history is the user's to move aside; nothing reads past it or writes over it."""


class OutsideLinkError(ValueError):
    """A sweep folder whose ``trials/``, ``curves/`` or an entry of them is a symbolic link
    leading outside the folder (exit code 2): a run would write and delete there."""
