"""From a Tune config to a trial: the one translation, and the searcher's objective.

Raw dicts stop here: ``trial_config(spec, tune_config)`` turns what Tune hands a trial (a
search kind's ``{"params": point}``, a pack ``{"pack": [...]}``, or a sampler's flat axes) into
a typed ``TrainConfig``. The planner, the status count and the trainable all call it, so a
trial is named (``trial_id``) the same way before Ray starts and inside the trial.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from trainer.config import TrainConfig

from sweeps.store.store import trial_id
from sweeps.spec.validate import field_kind

if TYPE_CHECKING:  # types only: the spec imports the search kinds, which import this
    from sweeps.spec.parse import SweepSpec

__all__ = ["trial_config", "pack_configs", "objective", "finite", "display_id", "OBJECTIVE",
           "MEMBER_FIELDS", "member_rows"]

OBJECTIVE = "objective"
"""The name of the value every report carries for the searcher: the spec's metric, finite."""


MEMBER_FIELDS = ("final_loss", "best_loss", "initial_loss", "end_rise")
"""What a pack's last report carries per member it trained (``members``: a JSON list of
[trial_id, status, *MEMBER_FIELDS]): what a searcher judges a probe by
(trainer.result.outcome), as it judges one trial from its own last report."""


def member_rows(result: dict | None) -> dict[str, dict[str, Any]]:
    """trial_id → {status, final_loss, ...} of each member a pack's last report names."""
    members = (result or {}).get("members") or "[]"
    return {m[0]: dict(zip(("status", *MEMBER_FIELDS), m[1:])) for m in json.loads(members)}


def _native(name: str, v: Any) -> Any:
    """numpy scalars and sampler floats → the Python type the TrainConfig field takes."""
    if hasattr(v, "item") and not isinstance(v, (str, dict, list)):
        v = v.item()
    kind = field_kind(name)
    if kind == "float" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if kind == "int" and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def trial_config(spec: "SweepSpec", tune_config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of one trial: the spec's trial settings, then the Tune config's axes.

    A grid nests its point under ``params``; a sampler gives the axes flat. Keys that are not
    axes of the spec (Tune may add its own) are refused, so a typo cannot slip through.
    """
    params = tune_config["params"] if "params" in tune_config else tune_config
    axes = spec.search_kind.axes(spec)
    d = dict(spec.trial)
    for k, v in params.items():
        if k not in axes:
            raise KeyError(f"{k}: not an axis of sweep {spec.name!r}")
        d[k] = _native(k, v)
    return TrainConfig.from_dict(d)


def objective(status: str | None, value: float | None, initial_loss: float | None,
              diverge_factor: float) -> float:
    """A finite number for the sampler (always minimized): a diverged trial, or a non-finite
    loss, scores initial_loss * diverge_factor, the worst loss a non-diverged trial can have."""
    penalty = initial_loss * diverge_factor if finite(initial_loss) else 1e6
    if status == "diverged" or not finite(value):
        return float(penalty)
    return float(min(value, penalty))


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def display_id(spec: "SweepSpec", tune_config: dict[str, Any]) -> str:
    """What the progress line calls a Tune trial: its trial_id, or 'pack of N'."""
    if "pack" in tune_config:
        return f"pack of {len(tune_config['pack'])}"
    return tune_config.get("trial_id") or trial_id(trial_config(spec, tune_config))


def pack_configs(spec: "SweepSpec", tune_config: dict[str, Any]) -> list[TrainConfig]:
    """Every TrainConfig of one Tune trial: one, or the members of a pack."""
    if "pack" in tune_config:
        return [trial_config(spec, point) for point in tune_config["pack"]]
    return [trial_config(spec, tune_config)]


