"""TrainConfig: every setting of one DiLoCo trial, typed, documented and validated.

Field names follow the words of docs/design.md: alpha, beta, H, R, workers, outer_steps, seed.
A config is flat on purpose: one trial row in Parquet carries every field as a column. It is
put together from sections: ``trainer.settings.TrialSettings`` (what every trial kind reads) and each
trial kind's own settings dataclass (``trainer/kinds/``), whose fields it takes as its own, so
a spec writes ``seq_len: 64`` and a row has a ``seq_len`` column whatever the kind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from .checks import INT_MAX, SEED_MAX, ConfigError, nearest
from .checks import check_choice as _check_choice
from .kinds import TRIAL_KINDS, TrialKind
from .kinds.python import PARAM_PREFIX, fold_params
from .settings import DEVICES, OUTER_STEPS_DEFAULT, TrialSettings

__all__ = ["TrainConfig", "TrialSettings", "ConfigError", "INT_MAX", "SEED_MAX", "TRIAL_KINDS",
           "KIND_READS", "DEVICES", "BATCHED_ON_CPU", "nearest"]

KIND_READS: dict[str, tuple[str, ...]] = {k.name: (*k.fields(), *k.reads)
                                          for k in TRIAL_KINDS.values()}
"""The kind sections' settings each trial kind reads: its own, and what it ``reads`` of another's
(the others ignore them, so a report of a sweep of one kind lists only what its trials read)."""
BATCHED_ON_CPU = True
"""batched=auto on CPU: stacked M=4 tiny workers measured 1.17-1.49x the sequential inner-step
rate on 2 cores (docs/performance.md), never slower; flip here if a machine says otherwise."""


def _sections() -> tuple[type, ...]:
    """TrainConfig's sections, in its field order: the common part, then each kind's settings;
    a name in two sections is refused (a flat field has one owner)."""
    sections = (TrialSettings, *(k.settings for k in TRIAL_KINDS.values()))
    owner: dict[str, type] = {}
    for section in sections:
        for f in dataclasses.fields(section):
            if f.name in owner:
                raise TypeError(f"{section.__name__}.{f.name}: {owner[f.name].__name__} has a "
                                f"setting of that name already; a TrainConfig field has one owner")
            owner[f.name] = section
    return sections


_SECTIONS = _sections()


@dataclass
class TrainConfig(*reversed(_SECTIONS)):  # type: ignore[misc]
    """One trial: every section's settings as one flat dataclass (a dataclass takes its bases'
    fields, the last base's first), validated when built.

    ``TrainConfig(kind="toy", toy_dim=16, alpha=0.5)``; ``cfg.trial_kind`` is the kind's
    registry entry, which builds its Problem and models its memory and FLOPs."""

    def __post_init__(self) -> None:
        self.validate()
        self.outer_steps = self.budget_rounds()  # with a budget, T = ⌊budget / H⌋

    @property
    def trial_kind(self) -> TrialKind:
        """The entry of ``trainer.kinds.TRIAL_KINDS`` this trial's ``kind`` names."""
        return TRIAL_KINDS.lookup(self.kind)

    def batched_on(self, device_type: str) -> bool:
        """Whether the workers run stacked on a device of this type ('cpu', 'cuda'): on/off as
        asked; auto: for M > 1 on CUDA, and on CPU if BATCHED_ON_CPU. Batched workers hold all
        M workers' activations at once (sequential ones, one worker's): set batched=off where
        memory is short. The trainer and the memory estimate both ask here."""
        if self.batched != "auto":
            return self.batched == "on"
        return self.workers > 1 and (device_type == "cuda" or BATCHED_ON_CPU)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range: every section's
        (a trial carries, and its id hashes, every kind's settings, so all must be valid)."""
        _check_choice(self, "kind", tuple(TRIAL_KINDS))
        for section in _SECTIONS:
            section.check(self)

    # ------------------------------------------------------------- conversion
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> its annotated type (``int``, ``float``, ``str``, ``str | dict``, ...),
        what the spec, the store and Tune coerce a value to."""
        return dict(_TYPES)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping as a user writes one (a spec, the command line): unknown keys
        are refused with the nearest known name, and outer_steps beside a budget
        (``inner_steps_budget`` > 0) is refused, since the budget sets T. A user parameter
        may come as its own key, ``params.<name>`` (a spec's axis, a stored column)."""
        d = fold_params(d)
        known = set(cls.field_names())
        for key in d:
            if key not in known:
                raise ConfigError(f"{key}: not a trainer setting{_suggest(key, known)}")
        budget = d.get("inner_steps_budget")
        if "outer_steps" in d and budget and not isinstance(budget, bool):
            raise ConfigError(f"outer_steps: not with inner_steps_budget ({budget!r}), from which "
                              f"each trial's T = ⌊budget / H⌋ follows; set one of the two")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar but a mapping (the LM's ``model``): copy those deeply
        # (dataclasses.asdict deep-copies every field, the cost of planning a large grid)
        d = {name: getattr(self, name) for name in _FIELDS}
        for name in _MAPPINGS:
            if isinstance(d[name], dict):
                d[name] = copy.deepcopy(d[name])
        return d

    def flat(self) -> dict[str, Any]:
        """Scalar columns for a Parquet row: a mapping (a model's fields) becomes its JSON text;
        each user parameter is a column of its own too, ``params.<name>`` (kinds/python.py)."""
        d = self.to_dict()
        for name in _MAPPINGS:
            if isinstance(d[name], dict):
                d[name] = json.dumps(d[name], sort_keys=True)
        d.update({PARAM_PREFIX + k: v for k, v in (self.params or {}).items()})
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; with a budget, T is derived again (from a new H too)."""
        if "outer_steps" not in changes and changes.get("inner_steps_budget",
                                                        self.inner_steps_budget):
            changes["outer_steps"] = OUTER_STEPS_DEFAULT
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_TYPES: dict[str, Any] = {name: typing.get_type_hints(TrainConfig)[name] for name in _FIELDS}
_MAPPINGS = tuple(n for n, t in _TYPES.items() if dict in typing.get_args(t) or t is dict)
"""The fields that may hold a mapping (stored as JSON text)."""


def _suggest(key: str, known: set[str]) -> str:
    close = nearest(key, sorted(known))
    return f" (did you mean '{close}'?)" if close else f"; known: {', '.join(sorted(known))}"
