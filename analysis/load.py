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

import posixpath
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from records.columns import column_roles
from records.meta import parse_meta
from records.reader import read_part
from trainer.result import curve_rise, end_rises

__all__ = ["load_trials", "load_curves", "load_sweep_meta", "curve_stats", "fill_from_curves",
           "fill_end_rise",
           "column_roles", "Filters"]

Filters = Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None
"""A mapping column -> value (or list of values), or pyarrow-style ``[(col, op, value), ...]``."""

_PARTS = ("trials", "curves")


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


def _read(fs: pafs.FileSystem, folder: str, part: str, exclude: Iterable[str] = (),
          trial_ids: Iterable[str] | None = None) -> tuple[pa.Table, dict[str, str]]:
    """``records.reader.read_part``, the one reader of a store (the service's too), recursive
    for a plain folder of files: every file it leaves out is named in a warning with why."""
    read = read_part(fs, folder, part, recursive=True, exclude=exclude,  # type: ignore[arg-type]
                     trial_ids=None if trial_ids is None else {str(t) for t in trial_ids})
    for path, why in read.skipped.items():
        warnings.warn(f"analysis: skipped {path}: {why}", stacklevel=3)
    return read.table, read.skipped


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
    there is nothing to read. The rows are read by ``records.reader``, as every command of
    ``diloco-sweep`` reads them: a file it does not trust (a row whose settings do not hash to
    its trial_id, a foreign table, a damaged file) is left out with a warning naming it, and
    ``df.attrs["skipped"]`` maps each such path to why. ``exclude`` names files to leave out
    unread (file names, or paths ending in them).
    """
    fs, base = _filesystem(path)
    folder = _data_dir(fs, base, "trials")
    if folder is None:
        return pd.DataFrame()
    table, skipped = _read(fs, folder, "trials", exclude)
    expr = _filter_expression(filters)
    if expr is not None:
        table = table.filter(expr)
    if not table.num_rows:
        return pd.DataFrame()
    df = table.to_pandas()
    df.attrs["roles"] = column_roles(table.schema)
    df.attrs["skipped"] = skipped
    order = [c for c in ("H", "R", "alpha", "beta", "seed") if c in df.columns]
    if order:
        df = df.sort_values(order, kind="stable")
    df = df.reset_index(drop=True)
    if not len(df):
        return df
    return fill_end_rise(fill_from_curves(df, lambda ids: load_curves(path, trial_ids=ids)))


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
    table, _ = _read(fs, folder, "curves", trial_ids=trial_ids)
    if not table.num_rows:
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
                    meta, why = parse_meta(f.read())
            except OSError as exc:
                meta, why = None, repr(exc)
            if why is not None:  # records.meta: the shape every reader checks
                warnings.warn(f"analysis: could not read {target}: {why}", stacklevel=2)
                return {}
            return meta
    return {}
