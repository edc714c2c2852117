"""The results store: ``<output>/<name>/{sweep.json, trials/, curves/}`` through ``pyarrow.fs``.

A local path, a shared filesystem and ``s3://bucket/prefix`` all work (for an S3-compatible
endpoint add ``?endpoint_override=host:port&scheme=http`` to the URI, or set AWS_ENDPOINT_URL).
Every trial writes one Parquet file for its row and one for its curve, each whole or not at all:
on a filesystem through a hidden temporary (``.<id>.tmp-<uuid>``, which the Parquet dataset
reader skips) and a rename; on S3 as a single object upload, which is atomic by itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import uuid
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainer.config import TrainConfig
from trainer.result import CURVE_COLUMNS

from .columns import RUNTIME_FIELDS, TRIAL_SCHEMA
from .errors import ForeignFileError, StoreError

__all__ = ["Store", "trial_id", "TRIAL_SCHEMA", "CURVE_SCHEMA", "DONE_STATUSES", "open_fs",
           "COMPACTED_PREFIX", "is_compacted"]

DONE_STATUSES = ("completed", "diverged")
COMPACTED_PREFIX = "compacted-"
"""Files of many trials' rows (or curves) that ``sweeps.compact`` merged; the others are named
by their one trial_id."""


def is_compacted(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def trial_id(config: TrainConfig) -> str:
    """Stable id of a trial: sha256 of the canonical JSON of its config, 16 hex digits.

    Every field counts (seed included) except RUNTIME_FIELDS.
    """
    fields = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_CURVE_TYPES = {"outer_step": pa.int64(), "tokens": pa.int64()}
CURVE_SCHEMA = pa.schema([pa.field("trial_id", pa.string())]
                         + [pa.field(c, _CURVE_TYPES.get(c, pa.float64())) for c in CURVE_COLUMNS])


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path in it for a local path or a URI (s3://, file://)."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    if uri.startswith("s3://") and "endpoint_override" not in uri and os.environ.get(
            "AWS_ENDPOINT_URL"):
        # older pyarrow builds ignore AWS_ENDPOINT_URL: pass it on explicitly
        ep = os.environ["AWS_ENDPOINT_URL"]
        scheme = "http" if ep.startswith("http://") else "https"
        host = ep.split("://", 1)[-1].rstrip("/")
        sep = "&" if "?" in uri else "?"
        uri = f"{uri}{sep}endpoint_override={host}&scheme={scheme}"
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


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
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{uuid.uuid4().hex}"
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
        full = {f.name: _cast(row.get(f.name), f.type) for f in TRIAL_SCHEMA}
        self._put(f"{self.root}/trials/{tid}.parquet",
                  self._parquet_bytes(pa.Table.from_pylist([full], schema=TRIAL_SCHEMA)))

    def write_meta(self, meta: dict[str, Any]) -> None:
        self._put(f"{self.root}/sweep.json",
                  json.dumps(meta, indent=2, sort_keys=False, default=str).encode())

    # ------------------------------------------------------------------ reading
    def read_meta(self) -> dict[str, Any] | None:
        """sweep.json, or None when there is none. Any other failure raises: a run must not
        take an unreachable store for an empty one and overwrite the history of its runs."""
        try:
            with self.fs.open_input_stream(f"{self.root}/sweep.json") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise StoreError(f"{self.uri}/sweep.json is damaged ({e}); move it aside to go "
                             f"on (the trial rows do not depend on it)") from None

    def _files(self, sub: str) -> list[str]:
        sel = pafs.FileSelector(f"{self.root}/{sub}", allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                      and not i.base_name.startswith((".", "_")))

    def read_trials(self, columns: list[str] | None = None) -> pa.Table:
        """Every trial row, with TRIAL_SCHEMA (an empty table when there is none)."""
        return self._read("trials", TRIAL_SCHEMA, columns)

    def read_curves(self) -> pa.Table:
        return self._read("curves", CURVE_SCHEMA, None)

    def _read(self, sub: str, schema: pa.Schema, columns: list[str] | None) -> pa.Table:
        import pyarrow.dataset as ds

        files = self._without_copies(self._files(sub))
        if not files:
            return schema.empty_table().select(columns or schema.names)
        # an explicit schema: files written before a new column existed read it as null
        try:
            return ds.dataset(files, filesystem=self.fs, format="parquet",
                              schema=schema).to_table(columns=columns)
        except Exception as e:  # noqa: BLE001 - sorted out below
            if not _damaged(e):
                raise
        # a damaged or foreign file: read one by one, skip (and name) the bad ones; a skipped
        # trial counts as missing and runs again, which replaces its file
        tables = []
        for f in files:
            try:
                tables.append(self._read_file(f, schema))
            except Exception as e:  # noqa: BLE001
                if not _damaged(e):
                    raise
                self.skipped[f] = str(e).splitlines()[0][:300]
        t = pa.concat_tables(tables) if tables else schema.empty_table()
        return t.select(columns) if columns else t

    def _read_file(self, path: str, schema: pa.Schema) -> pa.Table:
        """One Parquet file as ``schema``. A file with an Arrow extension type is refused
        unread: some (Ray's ``ray.data.arrow_pickled_object``, registered whenever Ray Tune
        is imported) unpickle their values when converted to Python."""
        t = pq.read_table(path, filesystem=self.fs)
        for f in t.schema:
            if _has_extension(f.type):
                raise ForeignFileError(f"{path}: column {f.name!r} has the Arrow extension "
                                       f"type {f.type}; not a diloco-sweep results file")
        cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
                for f in schema]
        return pa.Table.from_arrays(cols, schema=schema)

    def remove_temporaries(self) -> list[str]:
        """Delete hidden ``.<file>.tmp-<uuid>`` files left by killed writers (a filesystem
        only; S3 has none). Call it only while holding the sweep's lock, with no trial running."""
        if self.fs.type_name != "local":
            return []
        gone = []
        for sub in ("", "/trials", "/curves"):
            sel = pafs.FileSelector(self.root + sub, allow_not_found=True)
            for i in self.fs.get_file_info(sel):
                if i.type == pafs.FileType.File and i.base_name.startswith(".") \
                        and ".tmp-" in i.base_name:
                    self.fs.delete_file(i.path)
                    gone.append(i.path)
        return gone

    def statuses(self) -> dict[str, str]:
        """trial_id → status of every row on disk."""
        t = self.read_trials(columns=["trial_id", "status"])
        return dict(zip(t.column("trial_id").to_pylist(), t.column("status").to_pylist()))

    def done_row(self, tid: str) -> dict[str, Any] | None:
        """The stored row of trial `tid` when it is done (completed or diverged), else None."""
        row = self.read_row(tid)
        return row if row is not None and row["status"] in DONE_STATUSES else None

    def read_row(self, tid: str) -> dict[str, Any] | None:
        path = f"{self.root}/trials/{tid}.parquet"
        try:
            rows = self._read_file(path, TRIAL_SCHEMA).to_pylist()
        except (OSError, ValueError, pa.ArrowException):
            # missing (or compacted), unreadable or foreign: the trial runs and replaces it
            return self._compacted_row(tid)
        return rows[0] if rows else None

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
                    t = pq.read_table(f, filesystem=self.fs, columns=["trial_id"])
                except Exception as e:  # noqa: BLE001
                    if not _damaged(e):
                        raise
                    t = pa.table({"trial_id": pa.array([], pa.string())})
                out[f] = set(t.column("trial_id").to_pylist())
        return out

    def _without_copies(self, files: list[str]) -> list[str]:
        packed = [f for f in files if is_compacted(f)]
        if not packed:
            return files
        sub = files[0].rsplit("/", 2)[-2]
        held = set().union(*self.compacted_ids(sub).values())
        return [f for f in files if is_compacted(f)
                or f.rsplit("/", 1)[-1].removesuffix(".parquet") not in held]

    def _compacted_row(self, tid: str) -> dict[str, Any] | None:
        for f, ids in self.compacted_ids().items():
            if tid in ids:
                try:
                    rows = self._read_file(f, TRIAL_SCHEMA).filter(
                        pc.field("trial_id") == tid).to_pylist()
                except (OSError, ValueError, pa.ArrowException):
                    return None
                return rows[0] if rows else None
        return None


def _has_extension(typ: pa.DataType) -> bool:
    if isinstance(typ, pa.BaseExtensionType):
        return True
    return any(_has_extension(typ.field(i).type) for i in range(typ.num_fields))


def _damaged(e: BaseException) -> bool:
    """A file that cannot be read as ours (skip it), not a store that cannot be reached."""
    if isinstance(e, (ForeignFileError, pa.ArrowInvalid, pa.ArrowTypeError,
                      pa.ArrowNotImplementedError)):
        return True
    text = str(e)
    return isinstance(e, OSError) and not isinstance(e, FileNotFoundError) \
        and "Parquet" in text and "AWS Error" not in text


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
