"""Read a sweep's results store (docs/design.md, "The results store") into pandas.

Paths are local folders or URIs that ``pyarrow.fs`` understands (``s3://bucket/prefix``).
Every Parquet file is read on its own so that

- files written by different versions read together: schemas are unified with
  ``promote_options="permissive"``, so a column that only newer files have comes back null
  for the older rows instead of being dropped (pyarrow's dataset reader would infer the schema
  from one file);
- a damaged or half-written file is skipped with a warning naming it, not a crash;
- temporaries (names starting with ``.`` or ``_``) are ignored, as the dataset reader does.
"""

from __future__ import annotations

import json
import posixpath
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainer.result import curve_rise, end_rises

__all__ = ["load_trials", "load_curves", "load_sweep_meta", "curve_stats", "fill_from_curves",
           "fill_end_rise",
           "column_roles", "Filters"]

Filters = Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None
"""A mapping column -> value (or list of values), or pyarrow-style ``[(col, op, value), ...]``."""

_PARTS = ("trials", "curves")
_READ_THREADS = 8  # small files on S3 are latency-bound; threads overlap the round trips


def _filesystem(path: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it, for a local path or a URI."""
    text = str(path)
    if "://" in text:
        fs, inner = pafs.FileSystem.from_uri(text)
        return fs, inner.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _data_dir(fs: pafs.FileSystem, base: str, part: str) -> str | None:
    """The folder holding ``part`` files ("trials" or "curves"), or None when there is none.

    ``base`` may be the sweep folder, the part folder itself, or its sibling (the curves of
    ``<name>/trials`` are in ``<name>/curves``); a plain folder of Parquet files is read as is.
    """
    name = posixpath.basename(base)
    if name == part and _is_dir(fs, base):
        return base
    if _is_dir(fs, posixpath.join(base, part)):
        return posixpath.join(base, part)
    if name in _PARTS:
        sibling = posixpath.join(posixpath.dirname(base), part)
        return sibling if _is_dir(fs, sibling) else None
    if not _is_dir(fs, base):
        return None
    # a sweep folder without this part is not a folder of it: never read trials as curves
    children = {posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(base))}
    return None if children & {*_PARTS, "sweep.json"} else base


def _parquet_files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """Parquet files under ``folder`` (recursive), temporaries left out, oldest first."""
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    keep = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        rel = posixpath.relpath(info.path, folder)
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        keep.append(info)
    # oldest first: when a trial was written twice (a rerun), the later file wins the dedup
    keep.sort(key=lambda i: (i.mtime_ns or 0, i.path))
    return keep


def _read_all(fs: pafs.FileSystem, files: list[pafs.FileInfo],
              filter_expr: pc.Expression | None = None) -> pa.Table | None:
    """Read each file alone; warn about and skip those that do not read."""

    def read(info: pafs.FileInfo) -> pa.Table | None:
        try:
            with fs.open_input_file(info.path) as f:
                why = _footer_problem(f)
                if why is not None:
                    warnings.warn(f"analysis: skipped {info.path}: {why}", stacklevel=4)
                    return None
                table = pq.read_table(f)
        except Exception as exc:  # a truncated file raises ArrowInvalid/OSError; any is a skip
            warnings.warn(f"analysis: skipped unreadable Parquet file {info.path}: {exc}",
                          stacklevel=4)
            return None
        foreign = [f.name for f in table.schema if _has_extension(f.type)]
        if foreign:  # never convert: Ray's arrow_pickled_object type unpickles its values
            warnings.warn(f"analysis: skipped {info.path}: column {foreign[0]!r} has an Arrow "
                          f"extension type; not a diloco-sweep results file", stacklevel=4)
            return None
        return table

    if len(files) > 4:
        with ThreadPoolExecutor(_READ_THREADS) as pool:
            tables = list(pool.map(read, files))
    else:
        tables = [read(f) for f in files]
    tables = [t for t in tables if t is not None]
    if not tables:
        return None
    schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    table = pa.concat_tables([_conform(t, schema) for t in tables])
    # filtered after unifying, so a column an older file lacks is null there and never matches
    return table if filter_expr is None else table.filter(filter_expr)


_MAX_FOOTER = 64 << 20  # bytes of Parquet metadata; sweeps.store.MAX_FOOTER says why


def _footer_problem(f: pa.NativeFile) -> str | None:
    """sweeps.store.footer_problem, for readers without the sweep service: a footer claiming
    more metadata than the file holds or than _MAX_FOOTER is refused before pyarrow
    allocates it."""
    size = f.size()
    if size < 12:
        return None
    tail = f.read_at(8, size - 8)
    n = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1":
        return None
    if n > size - 12:
        return f"its Parquet footer claims {n} bytes of metadata, more than the file's {size}"
    if n > _MAX_FOOTER:
        return (f"its Parquet footer claims {n} bytes of metadata, more than the "
                f"{_MAX_FOOTER >> 20} MiB a results file may have; not read")
    return None


def _has_extension(typ: pa.DataType) -> bool:
    if isinstance(typ, pa.BaseExtensionType):
        return True
    return any(_has_extension(typ.field(i).type) for i in range(typ.num_fields))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with every column of ``schema`` (missing ones null), in its order and types."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table[field.name].cast(field.type))
        else:
            cols.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _filter_expression(filters: Filters) -> pc.Expression | None:
    if filters is None:
        return None
    if isinstance(filters, Mapping):
        expr = None
        for col, value in filters.items():
            if isinstance(value, (list, tuple, set, frozenset)):
                term = pc.field(col).isin(list(value))
            else:
                term = pc.field(col) == value
            expr = term if expr is None else expr & term
        return expr
    return pq.filters_to_expression(list(filters))


def load_trials(path: str | Path, filters: Filters = None,
                exclude: Iterable[str] = ()) -> pd.DataFrame:
    """All trial rows of a sweep, one per trial.

    ``path`` is the sweep folder ``<output>/<name>`` or its ``trials/`` folder, local or a URI.
    ``filters`` keeps matching rows only: ``{"H": 64, "R": [0, 4]}`` or
    ``[("H", "==", 64), ("alpha", "<", 2.0)]``. When a trial appears in several files (a rerun
    after a failure), the newest row that did not fail is kept. Returns an empty frame when
    there is nothing to read. ``exclude`` names files to leave out (file names, or paths
    ending in them): the ``diloco-sweep`` command line passes the files its store skipped as
    not trustworthy (a row whose settings do not hash to its trial_id, a foreign table).
    """
    fs, base = _filesystem(path)
    folder = _data_dir(fs, base, "trials")
    if folder is None:
        return pd.DataFrame()
    skip = {posixpath.basename(str(e)) for e in exclude}
    files = [f for f in _parquet_files(fs, folder) if f.base_name not in skip]
    table = _read_all(fs, files, _filter_expression(filters))
    if table is None:
        return pd.DataFrame()
    df = table.to_pandas()
    df.attrs["roles"] = column_roles(table.schema)
    if "trial_id" in df.columns and len(df):
        failed = df["status"].eq("failed") if "status" in df.columns else False
        # stable sort on "failed" keeps file order among equals: the last row is the newest
        df = (df.assign(_failed=failed).sort_values("_failed", ascending=False, kind="stable")
              .drop_duplicates("trial_id", keep="last").drop(columns="_failed"))
    order = [c for c in ("H", "R", "alpha", "beta", "seed") if c in df.columns]
    if order:
        df = df.sort_values(order, kind="stable")
    df = df.reset_index(drop=True)
    if not len(df):
        return df
    return fill_end_rise(fill_from_curves(df, lambda ids: load_curves(path, trial_ids=ids)))


def column_roles(schema: pa.Schema) -> dict[str, str]:
    """Column -> role (axis, setting, runtime, result, bookkeeping) from the Parquet field
    metadata the store writes; columns of files written before roles existed have none."""
    return {f.name: f.metadata[b"role"].decode() for f in schema
            if f.metadata and b"role" in f.metadata}


_FROM_CURVES = ("rise", "peak_loss")


def curve_stats(curves: pd.DataFrame) -> pd.DataFrame:
    """Per trial_id, from its eval curve: ``rise`` (trainer.result.curve_rise, the one
    definition) and ``peak_loss`` (highest eval loss after the first round; the only one when
    there is one), as the trainer writes them (docs/design.md)."""
    c = curves[["trial_id", "outer_step", "eval_loss"]].sort_values(["trial_id", "outer_step"])
    loss = pd.to_numeric(c["eval_loss"], errors="coerce").astype(float)
    by = loss.groupby(c["trial_id"])
    rise = by.apply(lambda s: curve_rise(s.tolist()))
    finite = loss.where(np.isfinite(loss))
    later = finite.where(c.groupby("trial_id").cumcount() > 0)
    peak = later.groupby(c["trial_id"]).max().fillna(finite.groupby(c["trial_id"]).max())
    return pd.DataFrame({"rise": rise, "peak_loss": peak})


def fill_from_curves(trials: pd.DataFrame, read_curves) -> pd.DataFrame:
    """``trials`` with ``rise`` and ``peak_loss`` computed from curves where a row lacks them
    (rows written before those columns existed); still null where no curve is stored."""
    missing = pd.Series(False, index=trials.index)
    for col in _FROM_CURVES:
        if col not in trials:
            trials[col] = np.nan
        missing |= trials[col].isna()
    if not missing.any() or "trial_id" not in trials:
        return trials
    curves = read_curves(trials.loc[missing, "trial_id"].astype(str).tolist())
    if curves.empty or "eval_loss" not in curves:
        return trials
    stats = curve_stats(curves)
    ids = trials["trial_id"].astype(str)
    for col in _FROM_CURVES:
        trials[col] = trials[col].astype(float).fillna(ids.map(stats[col]))
    return trials


def fill_end_rise(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with ``end_rise`` (trainer.result.end_rises: final / best - 1) computed from the
    row's own final_loss and best_loss where a row lacks it (rows written before the column
    existed): no curves needed."""
    if "end_rise" not in trials:
        trials["end_rise"] = np.nan
    missing = pd.to_numeric(trials["end_rise"], errors="coerce").isna()
    if missing.any() and {"final_loss", "best_loss"} <= set(trials.columns):
        final, best = (pd.to_numeric(trials.loc[missing, c], errors="coerce").to_numpy(float)
                       for c in ("final_loss", "best_loss"))
        trials.loc[missing, "end_rise"] = end_rises(final, best)
    trials["end_rise"] = pd.to_numeric(trials["end_rise"], errors="coerce").astype(float)
    return trials


def load_curves(path: str | Path, trial_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Curve rows (one per trial and outer step), sorted by trial and step.

    ``path`` is the sweep folder, its ``curves/`` folder, or its ``trials/`` folder (the sibling
    ``curves/`` is read). ``trial_ids`` keeps those trials only.
    """
    fs, base = _filesystem(path)
    folder = _data_dir(fs, base, "curves")
    if folder is None:
        return pd.DataFrame()
    expr = None
    if trial_ids is not None:
        expr = pc.field("trial_id").isin([str(t) for t in trial_ids])
    table = _read_all(fs, _parquet_files(fs, folder), expr)
    if table is None:
        return pd.DataFrame()
    df = table.to_pandas()
    keys = [c for c in ("trial_id", "outer_step") if c in df.columns]
    if len(keys) == 2:
        df = df.drop_duplicates(keys, keep="last")
    if keys:
        df = df.sort_values(keys, kind="stable")
    return df.reset_index(drop=True)


def load_sweep_meta(path: str | Path) -> dict[str, Any]:
    """The sweep's ``sweep.json`` (spec as run, versions, commit, times); {} when absent.

    ``path`` is the sweep folder or one of its ``trials/`` or ``curves/`` folders.
    """
    fs, base = _filesystem(path)
    for folder in (base, posixpath.dirname(base)):
        target = posixpath.join(folder, "sweep.json")
        if fs.get_file_info(target).type == pafs.FileType.File:
            try:
                with fs.open_input_stream(target) as f:
                    meta = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError, RecursionError) as exc:  # nested too deep: Recursion
                warnings.warn(f"analysis: could not read {target}: {exc!r}", stacklevel=2)
                return {}
            return meta if isinstance(meta, dict) else {}
    return {}
