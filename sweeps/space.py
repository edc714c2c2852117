"""From a SweepSpec to what Ray Tune runs: a filtered grid, or an Optuna searcher.

A grid becomes one ``tune.grid_search`` over the list of points still to run (the points whose
trial_id has no completed or diverged row yet), so a rerun starts no Ray trial for done ones.
An Optuna search gets the spec's axes as Optuna distributions, the sampler named in the spec,
its seed and ``points_to_evaluate``; stored results of earlier runs are handed to the study as
evaluated trials, so a rerun continues the search instead of repeating it.
Ray and Optuna are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .spec import SpaceAxis, SpecError, SweepSpec
from .store import DONE_STATUSES, trial_id
from .trainable import OBJECTIVE, objective, trial_config

__all__ = ["Plan", "plan", "grid_param_space", "optuna_searcher", "make_sampler"]


@dataclass
class Plan:
    """What a run of the spec will do, decided before Ray starts."""

    total: int
    """Trials the spec asks for."""
    todo: list[dict[str, Any]] = field(default_factory=list)
    """Grid: the points to run. Optuna: the starting points not yet run."""
    to_sample: int = 0
    """Trials to run (grid: len(todo); optuna: num_samples minus trials already stored)."""
    history: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    """Optuna: stored trials of this spec, as (params, objective) for the study."""
    done: int = 0


def plan(spec: SweepSpec, rows: list[dict[str, Any]], force: bool = False) -> Plan:
    """Decide what to run, given the stored rows (dicts with at least the config columns)."""
    done_rows = {} if force else {r["trial_id"]: r for r in rows if r["status"] in DONE_STATUSES}
    if spec.search.kind == "grid":
        points = spec.grid_points()
        todo = [p for p in points if trial_id(trial_config(spec, p)) not in done_rows]
        return Plan(total=len(points), todo=todo, to_sample=len(todo),
                    done=len(points) - len(todo))
    history = []
    done_ids = set()
    for tid, r in done_rows.items():
        params = {k: r.get(k) for k in spec.space}
        try:  # a row of this spec's trial settings, inside this spec's space?
            if trial_id(trial_config(spec, params)) != tid or not _inside(spec, params):
                continue
        except (ValueError, KeyError, TypeError):
            continue
        history.append((params, objective(r["status"], r.get(spec.search.metric),
                                          r.get("initial_loss"),
                                          float(r.get("diverge_factor") or 2.0))))
        done_ids.add(tid)
    todo = [p for p in spec.search.points_to_evaluate
            if trial_id(trial_config(spec, p)) not in done_ids]
    n = max(0, spec.search.num_samples - len(history))
    return Plan(total=spec.search.num_samples, todo=todo[:n], to_sample=n, history=history,
                done=len(history))


def _inside(spec: SweepSpec, params: dict[str, Any]) -> bool:
    for k, v in params.items():
        ax = spec.space[k]
        if ax.values is not None and v not in ax.values:
            return False
        if ax.values is None and not (ax.low <= v <= ax.high):
            return False
    return True


def grid_param_space(todo: list[dict[str, Any]], pack: int = 1,
                     spec: SweepSpec | None = None) -> dict[str, Any]:
    """One Tune grid point per trial, or per pack of up to `pack` trials of one shape."""
    from ray import tune

    if pack <= 1:
        return {"params": tune.grid_search(todo)}
    return {"pack": tune.grid_search(packs(spec, todo, pack))}


def packs(spec: SweepSpec, todo: list[dict[str, Any]], pack: int) -> list[list[dict[str, Any]]]:
    """Group grid points into packs: same shape (all but trainer.packed.PACKABLE), <= pack each."""
    from trainer.packed import PACKABLE

    groups: dict[str, list[dict[str, Any]]] = {}
    for point in todo:
        cfg = trial_config(spec, point).to_dict()
        shape = json.dumps({k: v for k, v in cfg.items() if k not in PACKABLE}, sort_keys=True)
        groups.setdefault(shape, []).append(point)
    return [g[i:i + pack] for g in groups.values() for i in range(0, len(g), pack)]


def _distribution(ax: SpaceAxis):
    import optuna.distributions as od

    if ax.values is not None:
        return od.CategoricalDistribution(list(ax.values))
    if ax.integer:
        return od.IntDistribution(int(ax.low), int(ax.high), log=ax.log)
    return od.FloatDistribution(float(ax.low), float(ax.high), log=ax.log)


def make_sampler(name: str, seed: int | None):
    """The Optuna sampler named in the spec; SpecError when its extra package is missing."""
    import optuna.samplers as s

    try:
        if name == "tpe":
            return s.TPESampler(seed=seed)
        if name == "random":
            return s.RandomSampler(seed=seed)
        if name == "qmc":
            return s.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
        if name == "cmaes":
            import cmaes  # noqa: F401  - Optuna imports it lazily, at the first sample

            return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "gp":
            import scipy  # noqa: F401  - GPSampler needs scipy and torch

            return s.GPSampler(seed=seed)
    except ImportError as e:
        raise SpecError(f"search.sampler: {name} needs the package {e.name!r}; "
                        f"pip install {e.name}") from None
    raise SpecError(f"search.sampler: unknown sampler {name!r}")


def check_sampler(spec: SweepSpec) -> None:
    """Refuse a sampler whose package is missing, or an axis Optuna cannot take, early."""
    if spec.search.kind != "optuna":
        return
    make_sampler(spec.search.sampler, spec.search.seed)
    for k, ax in spec.space.items():
        if ax.values is not None and any(isinstance(v, (dict, list)) for v in ax.values):
            raise SpecError(f"space.{k}: a sampler chooses among plain values (preset names, "
                            f"numbers); model mappings only work in a grid")


def optuna_searcher(spec: SweepSpec, p: Plan):
    """An OptunaSearch over the spec's axes that minimizes OBJECTIVE, warm-started by history."""
    from ray.tune.search.optuna import OptunaSearch

    space = {k: _distribution(ax) for k, ax in spec.space.items()}
    searcher = OptunaSearch(space=space, metric=OBJECTIVE, mode="min",
                            sampler=make_sampler(spec.search.sampler, spec.search.seed),
                            points_to_evaluate=[dict(x) for x in p.todo] or None)
    for params, value in p.history:
        searcher.add_evaluated_point(params, value)
    return searcher
