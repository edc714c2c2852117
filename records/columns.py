"""The trial columns of the results store, each declared once with its role.

Roles (written into each Parquet field's metadata as ``role``, so that every reader, pandas
users included, can tell what a column is without a list of names):

- ``axis``: α, β and seed, the swept coordinates inside a slice (docs/design.md, "Words");
- ``setting``: every other TrainConfig field; the settings that vary define the slices;
- ``runtime``: settings that do not change what is trained (device, threads, batched);
  left out of ``trial_id``;
- ``result``: what the trial produced: every field of ``trainer.TrainResult``, and ``error``;
- ``bookkeeping``: sweep, trial_id and provenance.

The settings come from TrainConfig and the results from TrainResult, so a new result is one
field there: the store writes it, the schema types it, and analysis reads it as a result.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from trainer.config import TrainConfig
from trainer.kinds.python import PARAM_PREFIX, PARAMS_FIELD
from trainer.result import CURVE_COLUMNS, TrainResult

from .identity import RUNTIME_FIELDS, setting_kind

__all__ = ["Role", "ROLES", "ROLE_KEY", "AXES", "RUNTIME_FIELDS", "TRIAL_COLUMNS",
           "TRIAL_SCHEMA", "CURVE_SCHEMA", "trial_roles", "column_roles", "rows_table",
           "curve_table", "curve_rows_table", "param_fields", "PARAM_PREFIX"]

Role = Literal["axis", "setting", "runtime", "result", "bookkeeping"]
ROLES: tuple[Role, ...] = ("axis", "setting", "runtime", "result", "bookkeeping")
ROLE_KEY = b"role"
AXES = ("alpha", "beta", "seed")

_KIND_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(),
               "model": pa.string()}
_RESULT_TYPES = {"str": pa.string(), "str | None": pa.string(), "float": pa.float64(),
                 "int": pa.int64()}
_LEAD = ["alpha", "beta", "H", "R", "workers", "seed"]  # column order a reader sees first


def _field(name: str, typ: pa.DataType, role: Role) -> pa.Field:
    return pa.field(name, typ, metadata={ROLE_KEY: role.encode()})


def _config_columns() -> list[pa.Field]:
    names = sorted(TrainConfig.field_names(),
                   key=lambda n: (n not in _LEAD, _LEAD.index(n) if n in _LEAD else 0))
    # a user's params: JSON text, what the trial_id hashes; each is a typed setting column of
    # its own (param_fields), so the mapping itself is bookkeeping, not a slice key
    return [_field(n, _KIND_TYPES[setting_kind(n)], "axis" if n in AXES else
                   "runtime" if n in RUNTIME_FIELDS else
                   "bookkeeping" if n == PARAMS_FIELD else "setting") for n in names]


def _result_columns() -> list[pa.Field]:
    out = []
    for f in dataclasses.fields(TrainResult):
        if f.name == "curve":  # its own table, curves/
            continue
        typ = _RESULT_TYPES.get(str(f.type))
        if typ is None:
            raise TypeError(f"TrainResult.{f.name}: type {f.type} has no Parquet column type; "
                            f"use one of {', '.join(_RESULT_TYPES)}")
        out.append(_field(f.name, typ, "result"))
    return out


TRIAL_COLUMNS: tuple[pa.Field, ...] = tuple(
    [_field("sweep", pa.string(), "bookkeeping"), _field("trial_id", pa.string(), "bookkeeping")]
    + _config_columns() + _result_columns()
    + [_field("error", pa.string(), "result")]
    # the cost estimate of what the trial ran (sweeps.estimate.cost.row_flops); null for toy trials
    + [_field("flops", pa.float64(), "result")]
    + [_field(n, pa.string(), "bookkeeping") for n in ("node_id", "started_at", "finished_at")]
    # the user's code a kind-python trial ran (trainer.user_entry.code_hash); null otherwise
    + [_field("code_hash", pa.string(), "bookkeeping")])
TRIAL_SCHEMA = pa.schema(TRIAL_COLUMNS)

_PARAM_TYPES = ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64()), (str, pa.string()))


def param_fields(rows: list[dict]) -> list[pa.Field]:
    """The typed columns of the user parameters in ``rows`` (``params.<name>``, role
    ``setting``), in name order, each typed by its values' Python type (the spec gives every
    value of one parameter one type: trainer/kinds/python.py)."""
    out = []
    for name in sorted({k for r in rows for k in r if k.startswith(PARAM_PREFIX)}):
        v = next((r[name] for r in rows if r.get(name) is not None), None)
        typ = next((t for py, t in _PARAM_TYPES if isinstance(v, py)), pa.string())
        out.append(_field(name, typ, "setting"))
    return out


def trial_roles() -> dict[str, Role]:
    """Column name -> role, as the store writes it."""
    return {f.name: f.metadata[ROLE_KEY].decode() for f in TRIAL_COLUMNS}  # type: ignore[misc]


def column_roles(schema: pa.Schema) -> dict[str, str]:
    """Column -> role from a table's Parquet field metadata, as the store writes it; columns of
    files written before roles existed have none."""
    return {f.name: f.metadata[ROLE_KEY].decode() for f in schema
            if f.metadata and ROLE_KEY in f.metadata}


_CURVE_TYPES = {"outer_step": pa.int64(), "tokens": pa.int64()}
CURVE_SCHEMA = pa.schema([pa.field("trial_id", pa.string())]
                         + [pa.field(c, _CURVE_TYPES.get(c, pa.float64())) for c in CURVE_COLUMNS])
"""One row per trial and outer step (trainer.result.CURVE_COLUMNS); a problem's own columns
(the toy's mode_idx, mode_err) follow, typed from their values."""


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Trial rows as a TRIAL_SCHEMA table, each value cast to its column's type, then a user's
    parameters, a typed column each (``param_fields``)."""
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


def curve_rows_table(tid: str, curve: list[dict[str, Any]]) -> pa.Table:
    """One trial's curve rows (trainer.result.CURVE_COLUMNS dicts) as its curve file holds them.

    A problem's own curve columns (the toy's mode_idx, mode_err) follow the declared ones, typed
    from their values: dropping them would lose what the theory is compared against."""
    extra = sorted({k for r in curve for k in r} - set(CURVE_SCHEMA.names))
    schema = CURVE_SCHEMA
    if extra:
        inferred = pa.Table.from_pylist([{k: r.get(k) for k in extra} for r in curve]).schema
        schema = pa.schema(list(CURVE_SCHEMA) + list(inferred))
    rows = [{**{c: r.get(c) for c in schema.names}, "trial_id": tid} for r in curve]
    return pa.Table.from_pylist(rows, schema=schema)
