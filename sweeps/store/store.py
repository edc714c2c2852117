"""The results store: ``<output>/<name>/{sweep.json, trials/, curves/}`` through ``pyarrow.fs``.

A local path, a shared filesystem and ``s3://bucket/prefix`` all work (for an S3-compatible
endpoint add ``?endpoint_override=host:port&scheme=http`` to the URI, or set AWS_ENDPOINT_URL).
Every trial writes one Parquet file for its row and one for its curve, each whole or not at all:
on a filesystem through a hidden temporary (``.<file>.tmp-diloco-<uuid>``, which the Parquet
dataset reader skips, and the only name ``remove_temporaries`` deletes) and a rename; on S3 as a single object upload, which is atomic by itself.
Reading is ``records.reader``'s, the one reader (``analysis.load_trials`` reads there too): it
checks every trial row against its trial_id (``records.trust.row_problem``) and skips, named in
``Store.skipped``, a file that fails. Where a store may be: ``sweeps.store.uri``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import uuid
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from records.columns import (CURVE_SCHEMA, PARAM_PREFIX, TRIAL_SCHEMA, curve_rows_table,
                             curve_table, rows_table)
from records.identity import row_trial_id, trial_id
from records.meta import META_DEPTH, meta_problem, parse_meta
from records.reader import list_parquet, read_parquet, read_part
from records.trust import (COMPACTED_PREFIX, MAX_FOOTER, damaged, footer_problem, is_compacted,
                           row_problem)

from sweeps.store.errors import DamagedMetaError, OutsideLinkError
from sweeps.store.uri import open_fs

__all__ = ["Store", "trial_id", "row_trial_id", "row_problem", "TRIAL_SCHEMA", "CURVE_SCHEMA",
           "DONE_STATUSES", "open_fs", "COMPACTED_PREFIX", "is_compacted", "curve_table",
           "meta_problem", "META_DEPTH", "footer_problem", "MAX_FOOTER"]

DONE_STATUSES = ("completed", "diverged")
_TEMP = re.compile(r"\.(?:[0-9a-f]{16}\.parquet|compacted-(?:pack-)?[0-9a-f]{16}\.parquet"
                   r"|sweep\.json|\.compact-journal\.json)\.tmp-(?:diloco-)?[0-9a-f]{32}")
"""The temporaries ``Store._put`` makes: ``.<file>.tmp-diloco-<uuid>`` of a file the store writes
(a trial's, a compacted one, sweep.json, compact's journal); before the ``diloco-`` mark, ``.<file>.tmp-<uuid>``.
Nothing else is ever deleted as a temporary."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """One sweep's folder. Cheap to build; picklable through its URI (trials rebuild it)."""

    def __init__(self, output: str, name: str) -> None:
        self.output = output
        self.name = name
        self.fs, base = open_fs(output)
        self.root = f"{base}/{name}" if base else name
        self.is_s3 = self.fs.type_name == "s3"
        self.skipped: dict[str, str] = {}
        """Files a read skipped as damaged or foreign, with the reason."""
        self.rows: pa.Table | None = None
        """The trial rows as a command read them once (``sweeps.store.status.open_results``)."""

    @classmethod
    def at(cls, folder: str) -> "Store":
        """The store of one sweep's folder, ``<output>/<name>`` (a path or a URI)."""
        base, _, query = folder.partition("?")
        base = base.rstrip("/")
        if "://" not in base:
            base = os.path.abspath(os.path.expanduser(base))
        parent, _, name = base.rpartition("/")
        if not name or not parent or parent.endswith(":/"):
            raise ValueError(f"{folder}: expected a sweep folder <output>/<name>")
        return cls(parent + (f"?{query}" if query else ""), name)

    def __reduce__(self):
        return (Store, (self.output, self.name))

    @property
    def uri(self) -> str:
        return self.output.rstrip("/") + "/" + self.name if "://" not in self.output \
            else self.output.split("?", 1)[0].rstrip("/") + "/" + self.name

    @property
    def folder(self) -> str:
        """The sweep folder as `Store.at` and the readers take it: `uri` plus any
        `?endpoint_override=…` query of the output (a local S3 needs it to be found again)."""
        query = self.output.partition("?")[2] if "://" in self.output else ""
        return self.uri + (f"?{query}" if query else "")

    # ------------------------------------------------------------------ writing
    def _put(self, path: str, data: bytes) -> None:
        """Write bytes so that ``path`` appears whole or not at all."""
        parent = path.rsplit("/", 1)[0]
        if self.is_s3:  # one object upload: S3 shows the object only once it is complete
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-diloco-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, path)  # rename(2): atomic on one local or shared filesystem
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise

    @staticmethod
    def _parquet_bytes(table: pa.Table) -> bytes:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    def write_trial(self, row: dict[str, Any], curve: Iterable[dict[str, Any]] = ()) -> None:
        """Curve first, then the row: a row on disk means its curve is there too."""
        tid = row["trial_id"]
        self._put(f"{self.root}/curves/{tid}.parquet",
                  self._parquet_bytes(curve_rows_table(tid, list(curve))))
        self._put(f"{self.root}/trials/{tid}.parquet", self._parquet_bytes(rows_table([row])))

    def write_pack(self, rows: list[dict[str, Any]], curves: pa.Table) -> str:
        """The rows of many trials (a pack) as one file, their curves as another, each whole
        or not at all, curves first; both named ``compacted-pack-<uuid>``, so every reader
        treats them as it treats a compacted file, trial by trial. Returns the file name."""
        name = f"{COMPACTED_PREFIX}pack-{uuid.uuid4().hex[:16]}.parquet"
        self._put(f"{self.root}/curves/{name}", self._parquet_bytes(curves))
        self._put(f"{self.root}/trials/{name}", self._parquet_bytes(rows_table(rows)))
        return name

    def write_meta(self, meta: dict[str, Any]) -> None:
        self._put(f"{self.root}/sweep.json",
                  json.dumps(meta, indent=2, sort_keys=False, default=str).encode())

    # ------------------------------------------------------------------ reading
    def read_meta(self) -> dict[str, Any] | None:
        """sweep.json, or None when there is none. Any other failure raises: a run must not
        take an unreachable store for an empty one and overwrite the history of its runs.
        DamagedMetaError (exit 2) when it is not JSON or not of the shape ``meta_problem``
        allows: every command that reads it gives that one answer, and none writes over it."""
        try:
            with self.fs.open_input_stream(f"{self.root}/sweep.json") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        meta, why = parse_meta(data)
        if why is not None:
            raise DamagedMetaError(f"{self.uri}: damaged sweep.json ({why}); move it aside to "
                                   f"go on (the trial rows do not depend on it)")
        return meta

    def _files(self, sub: str) -> list[str]:
        return [i.path for i in list_parquet(self.fs, f"{self.root}/{sub}")[0]]

    def read_trials(self, columns: list[str] | None = None) -> pa.Table:
        """Every trusted trial row, with TRIAL_SCHEMA (an empty table when there is none)."""
        return self._read("trials", TRIAL_SCHEMA, columns)

    def read_curves(self) -> pa.Table:
        return self._read("curves", CURVE_SCHEMA, None)

    def _read(self, sub: str, schema: pa.Schema, columns: list[str] | None) -> pa.Table:
        """``records.reader.read_part``, the one reader: a damaged, foreign or (in ``trials/``)
        untrustworthy file is skipped and named in ``skipped``: its trial counts as missing
        and runs again, which replaces the file."""
        read = read_part(self.fs, f"{self.root}/{sub}", sub)  # type: ignore[arg-type]
        self.skipped.update(read.skipped)
        t = read.table
        params = [c for c in t.column_names if c.startswith(PARAM_PREFIX)] \
            if schema is TRIAL_SCHEMA else []  # a user's parameters, typed as stored
        t = pa.Table.from_arrays([t[f.name] if f.name in t.column_names
                                  else pa.nulls(len(t), f.type) for f in schema]
                                 + [t[c] for c in params],
                                 schema=pa.schema(list(schema) + [t.schema.field(c) for c in params]))
        return t.select(columns) if columns else t

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file of the store (``records.reader.read_parquet``: footer checked,
        extension types refused)."""
        return read_parquet(self.fs, path, columns)

    def _read_file(self, path: str, schema: pa.Schema) -> pa.Table:
        """One Parquet file as ``schema``."""
        t = self.read_parquet(path)
        cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
                for f in schema]
        return pa.Table.from_arrays(cols, schema=schema)

    def remove_temporaries(self) -> list[str]:
        """Delete the temporaries ``_put`` makes (``_TEMP``) left by killed writers (a
        filesystem only; S3 has none), and compacted curves whose rows never landed (a pack or a
        compaction killed between its two writes: its trials were not stored, and run again).
        Call it only while holding the sweep's lock, with no trial running."""
        gone = []
        rows = {f.rsplit("/", 1)[-1] for f in self._files("trials") if is_compacted(f)}
        for f in self._files("curves"):
            if is_compacted(f) and f.rsplit("/", 1)[-1] not in rows:
                self.fs.delete_file(f)
                gone.append(f)
        if self.fs.type_name != "local":
            return gone
        for sub in ("", "/trials", "/curves"):
            sel = pafs.FileSelector(self.root + sub, allow_not_found=True)
            for i in self.fs.get_file_info(sel):
                if i.type == pafs.FileType.File and _TEMP.fullmatch(i.base_name):
                    self.fs.delete_file(i.path)
                    gone.append(i.path)
        return gone

    def check_links(self) -> None:
        """Refuse (OutsideLinkError) a sweep folder where a run would write or delete outside
        it: ``trials/``, ``curves/``, ``sweep.json``, ``.lock`` or an entry of ``trials/`` or
        ``curves/`` that is a symbolic link resolving outside the folder. A linked output or
        sweep folder is fine (a scratch disk): links are resolved against the folder's own
        real path. Call it before the lock is taken (the lock writes ``.lock``)."""
        if self.fs.type_name != "local":
            return
        root = os.path.realpath(self.root)
        bad = []

        def check(path: str) -> None:
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                bad.append((path, real))

        for name in ("trials", "curves", "sweep.json", ".lock"):
            if os.path.islink(f"{self.root}/{name}"):
                check(f"{self.root}/{name}")
        for sub in ("trials", "curves"):
            folder = f"{self.root}/{sub}"
            if not os.path.isdir(folder) or any(p == folder for p, _ in bad):
                continue
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.is_symlink():
                        check(e.path)
        if bad:
            (path, real), more = bad[0], len(bad) - 1
            raise OutsideLinkError(
                f"{path}: a symbolic link to {real}, outside the sweep folder {self.uri}"
                + (f" (and {more} more such link(s))" if more else "")
                + "; diloco-sweep writes and deletes only inside a sweep's folder: replace the "
                  "link by what it points to, or link the whole sweep folder or output instead")

    def statuses(self) -> dict[str, str]:
        """trial_id → status of every row on disk."""
        t = self.read_trials(columns=["trial_id", "status"])
        return dict(zip(t.column("trial_id").to_pylist(), t.column("status").to_pylist()))

    def done_among(self, ids: Iterable[str]) -> set[str]:
        """The trial_ids of ``ids`` that have a done (completed or diverged) row: one listing,
        the trial_id column of each compacted file, and a full read (with ``row_problem``)
        only of the files that hold one of them. What a retried pack asks before it trains."""
        want = set(ids)
        own = [stem for stem in (f.rsplit("/", 1)[-1].removesuffix(".parquet")
                                 for f in self._files("trials") if not is_compacted(f))
               if stem in want]
        shared = [f for f, held in self.compacted_ids().items() if held & want]
        done = set()
        for tid in own:
            row = self.read_row(tid)
            if row is not None and row["status"] in DONE_STATUSES:
                done.add(row["trial_id"])
        for f in shared:
            t = self._read_file(f, TRIAL_SCHEMA)
            why = row_problem(t, f)
            if why is not None:
                self.skipped[f] = why
                continue
            done |= {tid for tid, st in zip(t["trial_id"].to_pylist(), t["status"].to_pylist())
                     if tid in want and st in DONE_STATUSES}
        return done

    def done_row(self, tid: str) -> dict[str, Any] | None:
        """The stored row of trial `tid` when it is done (completed or diverged), else None."""
        row = self.read_row(tid)
        return row if row is not None and row["status"] in DONE_STATUSES else None

    def read_row(self, tid: str) -> dict[str, Any] | None:
        """The row of ``trials/<tid>.parquet`` when it passes ``row_problem``, else None: the
        same rule as ``read_trials``, so the trial's own check and the driver's plan agree."""
        path = f"{self.root}/trials/{tid}.parquet"
        try:
            table = self._read_file(path, TRIAL_SCHEMA)
        except (OSError, ValueError, pa.ArrowException):
            # missing (or compacted), unreadable or foreign: the trial runs and replaces it
            return self._compacted_row(tid)
        why = row_problem(table, path)
        if why is not None or table.num_rows != 1:
            self.skipped[path] = why or f"holds {table.num_rows} rows"
            return None
        return table.to_pylist()[0]

    # ------------------------------------------------------------------ compacted files
    # `sweeps.store.compact` merges done trials' files into `compacted-<uuid>.parquet`; their own
    # files are deleted afterwards. Until then (a compaction killed halfway) a trial has a copy
    # in both: the readers take the compacted one, so every row still appears once.
    def compacted_ids(self, sub: str = "trials") -> dict[str, set[str]]:
        """Compacted file -> the trial_ids it holds (its trial_id column; a damaged file holds
        none here, and the reader skips and names it as any other)."""
        out = {}
        for f in self._files(sub):
            if is_compacted(f):
                try:
                    t = self.read_parquet(f, columns=["trial_id"])
                except Exception as e:  # noqa: BLE001
                    if not damaged(e):
                        raise
                    t = pa.table({"trial_id": pa.array([], pa.string())})
                out[f] = set(t.column("trial_id").to_pylist())
        return out

    def _compacted_row(self, tid: str) -> dict[str, Any] | None:
        for f, ids in self.compacted_ids().items():
            if tid in ids:
                try:
                    table = self._read_file(f, TRIAL_SCHEMA).filter(pc.field("trial_id") == tid)
                except (OSError, ValueError, pa.ArrowException):
                    return None
                why = row_problem(table, f)  # the same rule as for a trial's own file
                if why is not None:
                    self.skipped[f] = why
                    return None
                rows = table.to_pylist()
                return rows[0] if rows else None
        return None
