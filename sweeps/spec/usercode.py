"""Which user code a sweep's trials ran (kind: python), and a warning when it changed.

A trial_id hashes the trial's settings, never the user's code (docs/user-kind.md): a rerun
after an edit to the user's model skips the stored trials as for any other sweep. So each row
records ``code_hash`` (``trainer.user_entry.code_hash``: the entry's package's ``.py``
files), sweep.json records the code the run was started with (``code``), and ``run`` says how
many stored rows came from other code; ``--force`` reruns them.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from sweeps.store.store import DONE_STATUSES

if TYPE_CHECKING:
    from sweeps.spec.parse import SweepSpec

__all__ = ["spec_code", "other_code_note"]


def spec_code(spec: "SweepSpec") -> dict[str, str] | None:
    """``{entry: code_hash}`` of the spec's user code, or None for a kind that runs none."""
    cfg = spec.base
    code = cfg.trial_kind.code_version(cfg)
    return None if code is None else {cfg.entry: code}


def other_code_note(spec: "SweepSpec", rows: list[dict[str, Any]]) -> str | None:
    """A line for ``run`` when stored done rows of this spec's entry came from other code
    than the code now on disk: they are skipped as done, and ``--force`` reruns them."""
    code = spec_code(spec)
    if not code:
        return None
    (entry, now), = code.items()
    other = Counter(r.get("code_hash") for r in rows if r.get("status") in DONE_STATUSES
                    and r.get("entry") == entry and r.get("code_hash") not in (None, now))
    if not other:
        return None
    n = sum(other.values())
    was = ", ".join(f"{h} ({k})" for h, k in other.most_common(3))
    return (f"warning: {n} stored trial(s) of {entry} ran other code ({was}; the code now is "
            f"{now}): trial ids do not see the code, so they count as done and are not rerun; "
            f"--force reruns every trial")
