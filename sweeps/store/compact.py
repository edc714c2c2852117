"""``diloco-sweep compact``: merge a sweep's one-file-per-trial rows into a few large files.

A sweep of many thousands of trials on S3 is many thousands of small objects in ``trials/`` and
as many in ``curves/``: every read lists and opens each one. Compaction moves the rows of done
trials (completed or diverged) into ``trials/compacted-<uuid>.parquet`` and their curves into
``curves/compacted-<uuid>.parquet`` (at most ``max_trials`` trials per file), then deletes the
trials' own files. What every reader returns stays the same (docs/design.md, "The results
store"): the store, ``analysis.load_trials`` and ``pd.read_parquet`` of the folder.

- Rows stay keyed by ``trial_id``: a rerun reads them and runs nothing that is done.
- Failed rows keep their own files (a rerun replaces them); so do damaged files.
- Order: the compacted curves, then the compacted rows, then a journal (``JOURNAL`` in the
  sweep folder: the trials whose own files are to go), then the deletes, then the journal is
  removed. While the deletes run, and after a compaction killed among them, some trials are in
  both places: the store's reader and ``analysis`` take the compacted copy, but a raw reader
  (``pd.read_parquet`` of ``trials/``) sees both. The next ``run``, ``status`` or ``compact``
  finds the journal and finishes the deletes (``finish_interrupted``): it deletes only the own
  files of trials a readable compacted file holds, so a compacted file lost meanwhile rolls
  back to the own files, which are kept.
- ``run --force`` first expands compacted files back into one file per trial (``expand``), so
  a rerun's new rows replace the old ones as before.
- Each file's schema is the union of the files it merges, field metadata (the roles) included:
  a column no merged file had is not added, and the toy's own curve columns are kept.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sweeps.tune import faults
from sweeps.store.lock import SweepLock
from sweeps.store.store import COMPACTED_PREFIX, DONE_STATUSES, Store, is_compacted

__all__ = ["CompactSummary", "compact", "expand", "MAX_TRIALS", "JOURNAL", "finish_interrupted"]

MAX_TRIALS = 10_000
"""Trials per compacted file: one file of rows is ~1 kB per trial, its curves ~1 kB per step."""

_PARTS = ("curves", "trials")  # written in this order: a row on disk means its curve is there
JOURNAL = ".compact-journal.json"
"""In the sweep folder while a compaction deletes: ``{"trials": [trial_id, ...]}``, the trials
whose own files it deletes. Only ever names trials; what is deleted is decided again from the
compacted files when it is read."""
_TRIAL_ID = re.compile(r"[0-9a-f]{16}")


@dataclass
class CompactSummary:
    trials: int = 0
    """Trials whose files were merged."""
    files_before: int = 0
    """Parquet files in trials/ and curves/ before."""
    files_after: int = 0
    copies_removed: int = 0
    """Own files of trials already in a compacted file (left by a compaction killed halfway)."""

    def line(self, uri: str) -> str:
        return (f"{uri}: {self.trials} trials compacted; {self.files_before} files → "
                f"{self.files_after}" + (f" ({self.copies_removed} leftover copies removed)"
                                         if self.copies_removed else ""))


def _tid(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def _merge(store: Store, files: list[str]) -> pa.Table:
    tables = [store.read_parquet(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive")


def compact(store: Store, max_trials: int = MAX_TRIALS) -> CompactSummary:
    """Merge the done trials' own files of ``store``; holds the sweep's lock throughout
    (SweepBusyError while a run of the sweep is going on); refuses a damaged sweep.json
    (DamagedMetaError) or a link out of the sweep folder (OutsideLinkError) before it changes
    anything."""
    store.check_links()  # before the lock: it writes .lock
    with SweepLock(store):
        store.read_meta()  # DamagedMetaError: the one answer every command gives a damaged one
        finish_interrupted(store)  # its leftovers would count as copies anyway; this is quicker
        s = CompactSummary(files_before=sum(len(store._files(p)) for p in _PARTS))
        held = set().union(*store.compacted_ids("trials").values())
        own = {_tid(f): f for f in store._files("trials") if not is_compacted(f)}
        curves = {_tid(f): f for f in store._files("curves") if not is_compacted(f)}
        copies = sorted(t for t in own if t in held)
        statuses = store.statuses()  # copies excluded: the compacted row is the one read
        todo = [t for t in own if t not in held and statuses.get(t) in DONE_STATUSES]
        # oldest first, as analysis orders files: rows it cannot tell apart keep their order
        infos = store.fs.get_file_info([own[t] for t in todo])
        info = {_tid(i.path): i.mtime_ns or 0 for i in infos}
        todo.sort(key=lambda t: (info[t], t))
        for i in range(0, len(todo), max_trials):
            chunk = todo[i:i + max_trials]
            name = f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:16]}.parquet"
            with_curve = [curves[t] for t in chunk if t in curves]
            if with_curve:
                store._put(f"{store.root}/curves/{name}",
                           store._parquet_bytes(_merge(store, with_curve)))
            store._put(f"{store.root}/trials/{name}",
                       store._parquet_bytes(_merge(store, [own[t] for t in chunk])))
        if todo or copies:
            store._put(f"{store.root}/{JOURNAL}", json.dumps({"trials": todo + copies}).encode())
            _delete_own(store, todo + copies, own, curves)
            store.fs.delete_file(f"{store.root}/{JOURNAL}")
        s.trials, s.copies_removed = len(todo), len(copies)
        s.files_after = sum(len(store._files(p)) for p in _PARTS)
        return s


def _delete_own(store: Store, ids: list[str], own: dict[str, str],
                curves: dict[str, str]) -> None:
    n = 0
    for t in ids:  # the row first: a row on disk keeps its curve
        for f in (own.get(t), curves.get(t)):
            if f is None:
                continue
            try:
                store.fs.delete_file(f)
            except FileNotFoundError:  # gone already: deleted before a compaction was killed
                pass
            n += 1
            faults.compact_deleted(n)


def finish_interrupted(store: Store) -> int | None:
    """Finish the deletes of a compaction killed among them (its JOURNAL is there): delete the
    own files of the trials it names that a readable compacted file holds; a trial no
    compacted file holds keeps its own files (rolled back). Removes the journal. Returns how
    many trials' own files went, or None when there was no journal. The caller holds the
    sweep's lock (``run``, ``compact``; ``status`` takes it)."""
    path = f"{store.root}/{JOURNAL}"
    try:
        with store.fs.open_input_stream(path) as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        named = json.loads(data).get("trials")
        named = {t for t in named if isinstance(t, str) and _TRIAL_ID.fullmatch(t)}
    except (ValueError, AttributeError, TypeError):  # not one the store wrote: delete nothing
        named = set()
    held = named & set().union(set(), *store.compacted_ids("trials").values())
    own = {_tid(f): f for f in store._files("trials") if not is_compacted(f)}
    curves = {_tid(f): f for f in store._files("curves") if not is_compacted(f)}
    gone = sorted(t for t in held if t in own or t in curves)
    _delete_own(store, gone, own, curves)
    store.fs.delete_file(path)
    return len(gone)


def expand(store: Store) -> int:
    """Write every compacted trial back to its own files and delete the compacted files; the
    caller holds the sweep's lock (``run --force`` does this before it reruns). Returns the
    number of trials expanded."""
    n = 0
    for part in _PARTS:
        for f in [f for f in store._files(part) if is_compacted(f)]:
            table = store.read_parquet(f)
            ids = sorted(set(table.column("trial_id").to_pylist()))
            for t in ids:
                one = table.filter(pc.field("trial_id") == t)
                store._put(f"{store.root}/{part}/{t}.parquet", store._parquet_bytes(one))
            n += len(ids) if part == "trials" else 0
    for part in reversed(_PARTS):  # compacted rows first, then their curves
        for f in [f for f in store._files(part) if is_compacted(f)]:
            store.fs.delete_file(f)
    return n
