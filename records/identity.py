"""Trial identity: the trial_id of a configuration, and the rule that keeps it across upgrades.

A trial_id is the first 16 hex digits of the sha256 of the canonical JSON of the trial's
settings (docs/design.md, "The results store"). A stored id is a user's compute: a rerun skips
every trial whose id is stored, so an id must not change when the tool gains a setting. Hence
two kinds of setting (docs/architecture.md, "Trial identity"):

- ``ID_SETTINGS_V1``, the settings that existed when this rule was made: each enters the hash
  whenever it has a value, default or not, as it always did (a row written before a setting
  existed has it null, and the writing version left it out);
- every setting added since: it enters only when it differs from its default, so adding one
  with a default never changes a stored id, and a trial that uses it is a new trial.

Runtime settings (how a trial runs, not what it trains) never enter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from functools import lru_cache
from typing import Any, Literal, Mapping

from trainer.config import TrainConfig
from trainer.kinds.python import PARAM_PREFIX

__all__ = ["trial_id", "row_trial_id", "settings_id", "setting_kind", "SettingKind",
           "ID_SETTINGS_V1", "RUNTIME_FIELDS", "setting_defaults"]

SettingKind = Literal["int", "float", "str", "model", "param"]

RUNTIME_FIELDS = ("batched", "threads", "device", "micro_batches")
"""Settings left out of trial_id: batched and sequential workers do the same math, as do one
batch and its micro-batches, and a thread count or device choice must not make a finished trial
look missing on rerun."""

ID_SETTINGS_V1 = frozenset((
    "alpha", "beta", "H", "R", "workers", "outer_steps", "seed", "outer", "kind", "model",
    "corpus", "vocab_size", "split", "seq_len", "batch_size", "lr", "warmup_steps",
    "min_lr_ratio", "weight_decay", "adam_beta1", "adam_beta2", "grad_clip", "eval_batches",
    "diverge_factor", "diverge_check_every", "toy_dim", "toy_power", "toy_noise", "toy_batch",
    "dtype",
))
"""Written out, never computed: the settings of 2026-12 that enter every id as they always did.
Do not add to it: a setting added later enters an id only when it is not at its default."""


@lru_cache(maxsize=None)
def _kinds() -> dict[str, SettingKind]:
    return {name: _kind_of(name, t) for name, t in TrainConfig.field_types().items()}


def _kind_of(name: str, annotation: Any) -> SettingKind:
    args = [t for t in typing.get_args(annotation) if t is not type(None)]  # T | None: a T
    if dict in args:
        return "model"  # a name or a mapping (the LM's model), stored as text
    kind = {int: "int", float: "float", str: "str"}.get(args[0] if len(args) == 1 else annotation)
    if kind is None:
        raise TypeError(f"TrainConfig.{name}: type {annotation} has no column type; use int, "
                        f"float, str (or one of them | None), or str | dict")
    return kind  # type: ignore[return-value]


def setting_kind(name: str) -> SettingKind:
    """'int', 'float', 'str' or 'model' (a preset name or a mapping) for a TrainConfig field,
    from its annotation; 'param' for a user parameter, ``params.<name>`` (its type is the
    entry's, checked by the spec: trainer/kinds/python.py)."""
    kind = _kinds().get(name)  # the hot path: planning asks for every field of every trial
    if kind is None:
        if not name.startswith(PARAM_PREFIX):
            raise KeyError(name)
        return "param"
    return kind


@lru_cache(maxsize=None)
def setting_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def trial_id(config: TrainConfig) -> str:
    """The stable id of a trial's configuration (seed included, runtime settings not)."""
    return settings_id(config.to_dict())


def row_trial_id(row: Mapping[str, Any]) -> str:
    """The trial_id a stored row's own settings hash to: its TrainConfig columns, a model
    mapping read back from its JSON text; a null column (a file written before the setting
    existed) is left out, as the writing version left it out."""
    fields = {k: row.get(k) for k in TrainConfig.field_names()}
    for name, kind in _kinds().items():  # the LM's model, a user's params
        v = fields.get(name)
        if kind == "model" and isinstance(v, str) and v.startswith("{"):
            try:
                fields[name] = json.loads(v)
            except ValueError:
                pass
    return settings_id(fields)


def settings_id(fields: Mapping[str, Any]) -> str:
    defaults = setting_defaults()
    canon = {}
    for k, v in fields.items():
        if k in RUNTIME_FIELDS or v is None:
            continue
        kind = setting_kind(k)  # 1 and 1.0 are one α: Parquet gives back the column's type
        if kind == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif kind == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)
        if k not in ID_SETTINGS_V1 and v == defaults[k]:
            continue
        canon[k] = v
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
