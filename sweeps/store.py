"""The results store: ``<output>/<name>/{sweep.json, trials/, curves/}`` through ``pyarrow.fs``.

A local path, a shared filesystem and ``s3://bucket/prefix`` all work (for an S3-compatible
endpoint add ``?endpoint_override=host:port&scheme=http`` to the URI, or set AWS_ENDPOINT_URL).
Every trial writes one Parquet file for its row and one for its curve, each whole or not at all:
on a filesystem through a hidden temporary (``.<file>.tmp-diloco-<uuid>``, which the Parquet
dataset reader skips, and the only name ``remove_temporaries`` deletes) and a rename; on S3 as a single object upload, which is atomic by itself.
Reading is ``records.reader``'s, the one reader (``analysis.load_trials`` reads there too): it
checks every trial row against its trial_id (``records.trust.row_problem``) and skips, named in
``Store.skipped``, a file that fails. Where a store may be: ``sweeps.uri``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import uuid
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from records.columns import CURVE_SCHEMA, PARAM_PREFIX, TRIAL_SCHEMA, param_fields
from records.identity import row_trial_id, trial_id
from records.reader import list_parquet, read_parquet, read_part
from records.trust import (COMPACTED_PREFIX, MAX_FOOTER, damaged, footer_problem, is_compacted,
                           row_problem)

from .errors import DamagedMetaError, OutsideLinkError
from .uri import open_fs

__all__ = ["Store", "trial_id", "row_trial_id", "row_problem", "TRIAL_SCHEMA", "CURVE_SCHEMA",
           "DONE_STATUSES", "open_fs", "COMPACTED_PREFIX", "is_compacted", "curve_table",
           "meta_problem", "META_DEPTH", "footer_problem", "MAX_FOOTER"]

DONE_STATUSES = ("completed", "diverged")
_TEMP = re.compile(r"\.(?:[0-9a-f]{16}\.parquet|compacted-(?:pack-)?[0-9a-f]{16}\.parquet"
                   r"|sweep\.json|\.compact-journal\.json)\.tmp-(?:diloco-)?[0-9a-f]{32}")
"""The temporaries ``Store._put`` makes: ``.<file>.tmp-diloco-<uuid>`` of a file the store writes
(a trial's, a compacted one, sweep.json, compact's journal); before the ``diloco-`` mark, ``.<file>.tmp-<uuid>``.
Nothing else is ever deleted as a temporary."""


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
        """The trial rows as a command read them once (``sweeps.status.open_results``)."""

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
        curve = list(curve)
        # a problem's own curve columns (the toy's mode_idx, mode_err) follow DESIGN's, typed
        # from their values; dropping them would lose what the theory is compared against
        extra = sorted({k for r in curve for k in r} - set(CURVE_SCHEMA.names))
        schema = CURVE_SCHEMA
        if extra:
            inferred = pa.Table.from_pylist([{k: r.get(k) for k in extra} for r in curve]).schema
            schema = pa.schema(list(CURVE_SCHEMA) + list(inferred))
        rows = [{**{c: r.get(c) for c in schema.names}, "trial_id": tid} for r in curve]
        self._put(f"{self.root}/curves/{tid}.parquet",
                  self._parquet_bytes(pa.Table.from_pylist(rows, schema=schema)))
        self._put(f"{self.root}/trials/{tid}.parquet", self._parquet_bytes(_rows_table([row])))

    def write_pack(self, rows: list[dict[str, Any]], curves: pa.Table) -> str:
        """The rows of many trials (a pack) as one file, their curves as another, each whole
        or not at all, curves first; both named ``compacted-pack-<uuid>``, so every reader
        treats them as it treats a compacted file, trial by trial. Returns the file name."""
        name = f"{COMPACTED_PREFIX}pack-{uuid.uuid4().hex[:16]}.parquet"
        self._put(f"{self.root}/curves/{name}", self._parquet_bytes(curves))
        self._put(f"{self.root}/trials/{name}", self._parquet_bytes(_rows_table(rows)))
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
        try:
            meta = json.loads(data)
        except RecursionError:
            why = "nested too deep to read"
        except ValueError as e:
            why = str(e)
        else:
            why = meta_problem(meta)
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
    # `sweeps.compact` merges done trials' files into `compacted-<uuid>.parquet`; their own
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


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Trial rows as a TRIAL_SCHEMA table, each value cast to its column's type, then a user's
    parameters, a typed column each (``records.columns.param_fields``)."""
    schema = pa.schema(list(TRIAL_SCHEMA) + param_fields(rows))
    return pa.Table.from_pylist([{f.name: _cast(r.get(f.name), f.type) for f in schema}
                                 for r in rows], schema=schema)


def curve_table(ids: list[str], trial: Any, columns: dict[str, Any]) -> pa.Table:
    """Curve rows in columns (trainer.tracker.TrialTracker.curve_columns: trial index (N,),
    column -> (N,) or (N, n) values) as the table ``write_trial`` would write, trial by trial:
    CURVE_SCHEMA's columns, then a problem's own (a 2-D column becomes a list column)."""
    trial = np.asarray(trial, dtype=np.int64)
    arrays, fields = [pa.array(np.asarray(ids, dtype=object)[trial], pa.string())], \
        [CURVE_SCHEMA.field("trial_id")]
    for name in CURVE_SCHEMA.names[1:]:
        typ = CURVE_SCHEMA.field(name).type
        v = columns.get(name)
        arrays.append(pa.nulls(len(trial), typ) if v is None else pa.array(np.asarray(v), typ))
        fields.append(CURVE_SCHEMA.field(name))
    for name in sorted(set(columns) - set(CURVE_SCHEMA.names)):
        v = np.asarray(columns[name])
        if v.ndim == 2:  # (N, n): n values a row, as a list column
            offsets = pa.array(np.arange(0, v.size + 1, v.shape[1], dtype=np.int32))
            arr = pa.ListArray.from_arrays(offsets, pa.array(v.reshape(-1)))
        else:
            arr = pa.array(v)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _cast(v: Any, typ: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_floating(typ):
        return float(v)
    if pa.types.is_integer(typ):
        return int(v)
    if pa.types.is_string(typ) and not isinstance(v, str):
        return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
    return v
