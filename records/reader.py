"""The one reader of a store's ``trials/`` and ``curves/`` (docs/design.md, "The results store").

The sweep service (``sweeps.store.store.Store``), ``analysis.load_trials`` and ``load_curves`` all
read here, so they see the same rows and refuse the same files:

- every Parquet file is read on its own (a file written by an older version reads beside a
  newer one: its missing columns come back null), temporaries (``.``/``_`` names) left out;
- a file that cannot be trusted (``records.trust``) is skipped and named with the reason;
  so is a name that leads nowhere (a broken link, a link loop): nothing is dropped unsaid;
- a file that vanishes while being read (a ``compact`` running beside the reader merges own
  files into a compacted one, then deletes them) makes the reader list the folder again;
- a trial in several files (a compacted copy beside its own file, a failed row and its rerun)
  keeps its newest row that did not fail.
"""

from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .columns import CURVE_SCHEMA, TRIAL_SCHEMA
from .trust import ForeignFileError, damaged, footer_problem, has_extension, row_problem

__all__ = ["Read", "read_part", "read_parquet", "list_parquet", "Part"]

Part = Literal["trials", "curves"]
_SCHEMAS = {"trials": TRIAL_SCHEMA, "curves": CURVE_SCHEMA}
_THREADS = 8  # pyarrow reads without the GIL; on S3 the threads overlap round trips
_RELISTS = 3  # how often a read starts over when files vanish under it (a compact at work)


@dataclass
class Read:
    """What a read of one part gives: the rows, and every file left out with the reason."""

    table: pa.Table
    """The rows: the part's declared columns that some file has first (in their declared types),
    then any other column some file has; one row per trial (trials) or per trial and step (curves)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Path -> why it was not read or not believed."""


def read_parquet(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, its footer checked first and extension types refused
    (ForeignFileError): the one place a store's file is opened."""
    with fs.open_input_file(path) as f:
        why = footer_problem(f)
        if why is not None:
            raise ForeignFileError(f"{path}: {why}")
        table = pq.read_table(f, columns=columns)
    for fl in table.schema:
        if has_extension(fl.type):
            raise ForeignFileError(f"{path}: column {fl.name!r} has the Arrow extension type "
                                   f"{fl.type}; not a diloco-sweep results file")
    return table


def list_parquet(fs: pafs.FileSystem, folder: str, recursive: bool = False
                 ) -> tuple[list[pafs.FileInfo], dict[str, str]]:
    """The Parquet files under ``folder``, oldest first (temporaries left out), and the
    ``.parquet`` names that lead nowhere (a broken link, a link loop), with why."""
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=recursive,
                                               allow_not_found=True))
    files = []
    for i in infos:
        rel = posixpath.relpath(i.path, folder)
        if i.type != pafs.FileType.File or not i.path.endswith(".parquet") \
                or any(p.startswith((".", "_")) for p in rel.split("/")):
            continue
        files.append(i)
    files.sort(key=lambda i: (i.mtime_ns or 0, i.path))
    lost = {}
    if fs.type_name == "local" and os.path.isdir(folder):
        seen = {i.base_name for i in infos}
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.endswith(".parquet") and not e.name.startswith((".", "_")) \
                        and e.name not in seen:
                    lost[e.path] = "cannot be read: a link that leads nowhere (broken, or a loop)"
    return files, lost


def read_part(fs: pafs.FileSystem, folder: str, part: Part, *, recursive: bool = False,
              trial_ids: set[str] | None = None, exclude: Iterable[str] = ()) -> Read:
    """Every row of one part of a store (or of a plain folder of such files), trusted.
    ``trial_ids`` keeps those trials only; ``exclude`` names files (base names) to leave out."""
    exclude = {posixpath.basename(str(e)) for e in exclude}
    cache: dict[tuple[str, int | None, int | None], tuple[pa.Table | None, str | None]] = {}
    for attempt in range(_RELISTS + 1):
        files, lost = list_parquet(fs, folder, recursive)
        files = [f for f in files if f.base_name not in exclude]
        vanished = False

        def one(info: pafs.FileInfo) -> tuple[pa.Table | None, str | None]:
            key = (info.path, info.mtime_ns, info.size)
            if key not in cache:
                cache[key] = _read_one(fs, info.path, part)
            return cache[key]

        if len(files) > 4:
            with ThreadPoolExecutor(_THREADS) as pool:
                results = list(pool.map(one, files))
        else:
            results = [one(f) for f in files]
        vanished = any(why == _VANISHED for _, why in results)
        if not vanished or attempt == _RELISTS:
            break
    skipped = dict(lost)
    kept: list[tuple[pafs.FileInfo, pa.Table]] = []
    for info, (table, why) in zip(files, results):
        if why == _VANISHED:
            continue  # gone after the last listing: its rows are in the file that replaced it
        if why is not None:
            skipped[info.path] = why
        else:
            kept.append((info, table))
    return Read(_combine(kept, part, trial_ids, skipped), skipped)


_VANISHED = "vanished while being read"


def _read_one(fs: pafs.FileSystem, path: str, part: Part) -> tuple[pa.Table | None, str | None]:
    try:
        table = read_parquet(fs, path)
    except FileNotFoundError:
        return None, _VANISHED
    except Exception as e:  # noqa: BLE001 - sorted out by damaged()
        if not damaged(e):
            raise
        return None, str(e).splitlines()[0].removeprefix(f"{path}: ")[:300]
    if part == "trials":
        why = row_problem(table, path)
        if why is not None:
            return None, why
    elif "trial_id" not in table.column_names:
        return None, "not a diloco-sweep curve file: it has no trial_id column"
    return table, None


def _combine(kept: list[tuple[pafs.FileInfo, pa.Table]], part: Part,
             trial_ids: set[str] | None, skipped: dict[str, str]) -> pa.Table:
    """One table of the kept files, the declared schema first. A trial in two files (its own
    and a compacted copy, a compact killed before its deletes; a failed row and its rerun)
    keeps its newest row that did not fail: a compacted file is newer than the files it
    merged."""
    declared = _SCHEMAS[part]
    tables = []
    for info, t in sorted(kept, key=lambda k: (k[0].mtime_ns or 0, k[0].path)):
        if trial_ids is not None:  # oldest first: the newest row of a trial wins below
            t = t.filter(pc.is_in(t["trial_id"], pa.array(sorted(trial_ids), pa.string())))
        tables.append((info, t))
    # the declared columns some file has, in their declared types and roles, then the others
    found = pa.unify_schemas([t.schema for _, t in tables] or [declared],
                             promote_options="permissive")
    schema = pa.schema([f for f in declared if f.name in found.names]
                       + [f for f in found if f.name not in declared.names])
    out = []
    for info, t in tables:
        try:
            out.append(_conform(t, schema))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            skipped[info.path] = f"a column of another type: {str(e).splitlines()[0][:200]}"
    table = pa.concat_tables(out) if out else schema.empty_table()
    if part == "trials":
        return _newest_per_trial(table)
    return _newest_file_per_trial(table, np.repeat(np.arange(len(out)), [len(t) for t in out]))


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    if t.schema.equals(schema, check_metadata=False):
        return t.cast(schema) if t.schema != schema else t
    cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _newest_file_per_trial(table: pa.Table, file_index: np.ndarray) -> pa.Table:
    """The curve rows of each trial from the newest file that holds it (files oldest first)."""
    if not table.num_rows:
        return table
    codes = pc.dictionary_encode(table["trial_id"]).combine_chunks().indices.to_numpy(
        zero_copy_only=False)
    newest = np.full(codes.max() + 1, -1)
    np.maximum.at(newest, codes, file_index)
    keep = file_index == newest[codes]
    return table if keep.all() else table.filter(pa.array(keep))


def _newest_per_trial(table: pa.Table) -> pa.Table:
    """One row per trial_id: the last (newest file) that did not fail, else the last."""
    if table.num_rows < 2:
        return table
    ids = table["trial_id"].to_numpy(zero_copy_only=False)
    failed = pc.fill_null(pc.equal(table["status"], "failed"), False).to_numpy(
        zero_copy_only=False)
    order = np.lexsort((np.arange(len(ids)), ~failed))  # failed first, file order kept
    last = {}
    for i in order:
        last[ids[i]] = i
    if len(last) == table.num_rows:
        return table
    return table.take(pa.array(sorted(last.values())))
