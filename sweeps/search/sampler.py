"""``kind: optuna``: an Optuna sampler proposes trials through Ray Tune's ``OptunaSearch``.

The spec's axes become Optuna distributions (a list is a choice, a range a float or int
distribution), the sampler is the one named, with its seed and ``points_to_evaluate``. Stored
trials of this spec are handed to the study as evaluated points, so a rerun continues the
search instead of repeating it. Every trial reports ``objective``: the spec's metric, with a
diverged trial scored as the worst loss a stable one can have (``trial.objective``).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from sweeps.spec.space import MAX_TRIALS, SpaceAxis
from sweeps.store.store import trial_id
from sweeps.tune.trial import OBJECTIVE, objective, trial_config
from sweeps.spec.validate import SpecError, at, int_at_least, item_at, setting, show, check_keys
from sweeps.search.base import Plan, SearchKind, TuneSetup, check_size
from sweeps.search.grid import stored_ids
from sweeps.search.study import hold_study, storage_file

if TYPE_CHECKING:
    from sweeps.spec.parse import SweepSpec

__all__ = ["Sampler", "SamplerSettings", "SAMPLERS", "METRICS", "make_sampler", "make_storage",
           "optuna_searcher"]

SAMPLERS = ("tpe", "random", "qmc", "cmaes", "gp")
METRICS = ("final_loss", "best_loss", "peak_loss")  # losses: always minimized


@dataclass(frozen=True)
class SamplerSettings:
    sampler: Literal["tpe", "random", "qmc", "cmaes", "gp"] = "tpe"
    """The Optuna sampler."""
    num_samples: int = 10
    """Trials in all, counting those already stored."""
    metric: Literal["final_loss", "best_loss", "peak_loss"] = "final_loss"
    """The loss the sampler minimizes."""
    seed: int | None = None
    """The sampler's seed; None draws one. A rerun with n trials stored uses seed + n."""
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    """Points tried first, each setting every axis."""
    storage: str | None = None
    """Where the Optuna study lives beyond the driver: a journal file path, or an RDB URL
    (``sqlite:///study.db``, ``postgresql://…``); None keeps it in memory. The trial store
    stays the source of truth: a rerun tells the study only what it lacks."""

    def to_dict(self) -> dict[str, Any]:
        d = {"sampler": self.sampler, "num_samples": self.num_samples, "metric": self.metric,
             "seed": self.seed, "points_to_evaluate": [dict(p) for p in self.points_to_evaluate]}
        if self.storage is not None:
            d["storage"] = self.storage
        return d


class Sampler(SearchKind):
    name = "optuna"
    summary = "a sampler proposes one trial at a time"
    keys = ("sampler", "num_samples", "metric", "seed", "points_to_evaluate", "storage")
    ranges = True

    def parse(self, d: dict, trial: dict[str, Any], space: dict[str, SpaceAxis]) -> SamplerSettings:
        sampler = d.get("sampler", "tpe")
        if sampler not in SAMPLERS:
            raise SpecError(f"search.sampler: {show(sampler)} is not a sampler{at(d, 'sampler')}"
                            f"; use one of {', '.join(SAMPLERS)}")
        num_samples = int_at_least(d, "num_samples", 1, "search.") if "num_samples" in d else 10
        check_size(num_samples, "search.num_samples", "num_samples",
                   f"ask for at most {MAX_TRIALS:,}")
        metric = d.get("metric", "final_loss")
        if metric not in METRICS:
            raise SpecError(f"search.metric: {show(metric)} is not a metric{at(d, 'metric')}; "
                            f"use one of {', '.join(METRICS)} (always minimized)")
        seed = int_at_least(d, "seed", 0, "search.", optional=True)
        if not space:
            raise SpecError("space: empty; an optuna search needs at least one axis to search")
        points = _points(d, trial, space)
        if len(points) > num_samples:
            raise SpecError(f"search.points_to_evaluate: {len(points)} points but num_samples is "
                            f"{num_samples}{at(d, 'points_to_evaluate')}")
        return SamplerSettings(sampler=sampler, num_samples=num_samples, metric=metric, seed=seed,
                               points_to_evaluate=tuple(points), storage=_storage(d))

    def n_trials(self, spec: "SweepSpec") -> int:
        return spec.search.settings.num_samples

    def check(self, spec: "SweepSpec") -> None:
        make_sampler(spec.search.settings.sampler, spec.search.settings.seed)
        if spec.search.settings.storage is not None:
            make_storage(spec.search.settings.storage)
        for k, ax in spec.space.items():
            if ax.values is not None and any(isinstance(v, (dict, list)) for v in ax.values):
                raise SpecError(f"space.{k}: a sampler chooses among plain values (preset names, "
                                f"numbers); model mappings only work in a grid")

    def hold(self, spec: "SweepSpec", output: str,
             log: Callable[[str], None]) -> AbstractContextManager[None]:
        """One driver per study: a stored study is held for the run (sweeps/search/study.py);
        trials a dead driver left RUNNING in it are failed when it is taken."""
        storage = spec.search.settings.storage
        if storage is None:
            return nullcontext()
        return hold_study(storage, spec.name, output, log, make_storage)

    def plan(self, spec: "SweepSpec", rows: list[dict[str, Any]], force: bool) -> Plan:
        s = spec.search.settings
        done = stored_ids(rows, force)
        history, mine = [], set()
        for r in rows:
            if r["trial_id"] not in done:
                continue
            params = {k: r.get(k) for k in spec.space}
            try:  # a row of this spec's trial settings, inside this spec's space?
                cfg = trial_config(spec, params)
                if trial_id(cfg) != r["trial_id"] or \
                        not all(spec.space[k].contains(v) for k, v in params.items()):
                    continue
            except (ValueError, KeyError, TypeError):
                continue
            history.append((params, objective(r["status"], r.get(s.metric), r.get("initial_loss"),
                                              cfg.diverge_factor)))
            mine.add(r["trial_id"])
        todo = [p for p in s.points_to_evaluate if trial_id(trial_config(spec, p)) not in mine]
        n = max(0, s.num_samples - len(history))
        return Plan(total=s.num_samples, todo=todo[:n], to_sample=n, history=history,
                    done=len(history))

    def tune(self, spec: "SweepSpec", plan: Plan, out: str) -> TuneSetup:
        return TuneSetup(searcher=optuna_searcher(spec, plan),
                         num_samples=plan.to_sample, n_tune=plan.to_sample)

    def describe(self, spec: "SweepSpec") -> str:
        s = spec.search.settings
        return f"{s.num_samples} trials (optuna {s.sampler}, minimizing {s.metric})"


def _points(d: dict, trial: dict[str, Any], space: dict[str, SpaceAxis]) -> list[dict[str, Any]]:
    points = d.get("points_to_evaluate") or []
    if not isinstance(points, list):
        raise SpecError(f"search.points_to_evaluate: expected a list of mappings"
                        f"{at(d, 'points_to_evaluate')}")
    parsed = []
    for i, p in enumerate(points):
        pre = f"search.points_to_evaluate[{i}]."
        wi = item_at(points, i)
        if not isinstance(p, dict):
            raise SpecError(f"search.points_to_evaluate[{i}]: expected a mapping of space axes{wi}")
        check_keys(p, list(space), pre)
        missing = [k for k in space if k not in p]
        if missing:
            raise SpecError(f"{pre}{missing[0]}: missing; a starting point sets every axis{wi}")
        point = {}
        for k, v in p.items():
            point[k] = setting(trial, k, v, pre, at(p, k))
            if not space[k].contains(point[k]):
                raise SpecError(f"{pre}{k}: {point[k]!r} is not {space[k].describe()}{at(p, k)}")
        parsed.append(point)
    return parsed


RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def _storage(d: dict) -> str | None:
    v = d.get("storage")
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise SpecError(f"search.storage: expected a journal file path or an RDB URL such as "
                        f"sqlite:///study.db, got {show(v)}{at(d, 'storage')}")
    scheme = v.split("://", 1)[0].split("+", 1)[0] if "://" in v else None
    if scheme is not None and scheme not in RDB_SCHEMES:
        raise SpecError(f"search.storage: {scheme}:// is not an Optuna storage; use a journal "
                        f"file path or an RDB URL ({', '.join(s + '://' for s in RDB_SCHEMES)})"
                        f"{at(d, 'storage')}")
    return v


def make_storage(uri: str, tries: int = 5):
    """The Optuna storage ``search.storage`` names: an RDB for a URL, else a journal file.

    Two processes opening a new database at once race to create its tables ("table studies
    already exists", "database is locked"): a failed open is tried again ``tries`` times in
    all before it is reported (a second driver exited 2, "bad input", on that race)."""
    import optuna.storages as st

    if "://" in uri:
        db = storage_file(uri)  # a SQLite file: its folder is made, as a journal's is
        if db is not None:
            try:
                os.makedirs(os.path.dirname(db), exist_ok=True)
            except OSError as e:
                raise SpecError(f"search.storage: cannot make the folder of {db}: {e}") from None
        for i in range(tries):
            try:
                return st.RDBStorage(uri)
            except ImportError as e:  # a missing driver: no retry helps
                raise SpecError(f"search.storage: cannot open {uri}: {type(e).__name__}: "
                                f"{e}") from None
            except Exception as e:  # noqa: BLE001 - a race, an unreachable server
                if i + 1 == tries:
                    raise SpecError(f"search.storage: cannot open {uri}: {type(e).__name__}: "
                                    f"{e}") from None
                time.sleep(0.2 * (i + 1))
    from optuna.storages.journal import JournalFileBackend

    path = os.path.abspath(os.path.expanduser(uri))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return st.JournalStorage(JournalFileBackend(path))
    except OSError as e:
        raise SpecError(f"search.storage: cannot write the journal {path}: {e}") from None


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


def optuna_searcher(spec: "SweepSpec", p: Plan):
    """An OptunaSearch over the spec's axes that minimizes OBJECTIVE, warm-started by history."""
    from ray.tune.search.optuna import OptunaSearch

    s = spec.search.settings
    space = {k: _distribution(ax) for k, ax in spec.space.items()}
    stored, known = {}, set()
    if s.storage is not None:
        storage = make_storage(s.storage)
        stored = dict(storage=storage, study_name=spec.name)
        known = _told(storage, spec.name)
    # a seeded sampler built afresh replays its stream: a rerun that has n trials stored draws
    # from seed + n instead, so it neither repeats them nor loses determinism
    seed = None if s.seed is None else s.seed + len(p.history)
    searcher = OptunaSearch(space=space, metric=OBJECTIVE, mode="min",
                            sampler=make_sampler(s.sampler, seed),
                            points_to_evaluate=[dict(x) for x in p.todo] or None, **stored)
    for params, value in p.history:
        if _key(params) not in known:
            searcher.add_evaluated_point(params, value)
    return searcher


def _told(storage, name: str) -> set[str]:
    """The points a study kept in ``storage`` already holds with a value (COMPLETE): a FAIL
    trial (a crash, or one a killed driver left RUNNING) taught the sampler nothing, so a
    stored row of the same point is told again."""
    import optuna
    from optuna.trial import TrialState

    if name not in optuna.study.get_all_study_names(storage):
        return set()
    study = optuna.load_study(study_name=name, storage=storage)
    return {_key(t.params) for t in study.get_trials(deepcopy=False,
                                                     states=(TrialState.COMPLETE,))}


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, default=str)
