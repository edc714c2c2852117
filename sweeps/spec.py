"""The sweep spec: YAML → typed, validated ``SweepSpec`` (see docs/design.md, "The sweep spec").

Everything that can be wrong with a spec is found here, before Ray starts and before anything is
written, and reported as one ``SpecError`` whose message names the key (``space.alpha``) and the
line of the YAML file when it is known.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import ConfigError, TrainConfig

from . import yamlmarks
from .yamlmarks import LineDict, YamlError, plain

__all__ = ["SpecError", "SweepSpec", "SpaceAxis", "SearchSpec", "Resources", "load_spec",
           "parse_spec", "field_kind", "SAMPLERS", "METRICS", "SEARCH_KINDS"]

SEARCH_KINDS = ("grid", "optuna")
SAMPLERS = ("tpe", "random", "qmc", "cmaes", "gp")
METRICS = ("final_loss", "best_loss", "peak_loss")  # losses: always minimized
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
TOP_KEYS = ("name", "description", "trial", "space", "search", "resources", "output")
SEARCH_KEYS = ("kind", "sampler", "num_samples", "metric", "seed", "points_to_evaluate",
               "max_concurrent", "max_failures")
RESOURCE_KEYS = ("cpu", "gpu", "pack")
RANGE_KEYS = ("low", "high", "log")


class SpecError(ValueError):
    """The spec is refused; the message names the key and, when known, the YAML line."""


@dataclass(frozen=True)
class SpaceAxis:
    """One swept setting: a list of values (a grid axis, or a choice for a sampler) or a range."""

    name: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def to_dict(self) -> Any:
        if self.values is not None:
            return list(self.values)
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        return d


@dataclass(frozen=True)
class SearchSpec:
    kind: str = "grid"
    sampler: str = "tpe"
    num_samples: int = 10
    metric: str = "final_loss"
    seed: int | None = None
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    max_concurrent: int | None = None
    max_failures: int = 1
    """Tune retries of a crashed trial before it is recorded as failed."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind == "optuna":
            d.update(sampler=self.sampler, num_samples=self.num_samples, metric=self.metric,
                     seed=self.seed, points_to_evaluate=[dict(p) for p in self.points_to_evaluate])
        d.update(max_concurrent=self.max_concurrent, max_failures=self.max_failures)
        return d


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    """CPUs per Ray trial."""
    gpu: float = 0.0
    """GPUs per Ray trial; a fraction packs several Ray trials on one card."""
    pack: int = 1
    """Grid only: up to this many trials of one shape trained as one batched computation."""

    def to_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu, "pack": self.pack}


@dataclass
class SweepSpec:
    name: str
    trial: dict[str, Any] = field(default_factory=dict)
    """Trainer settings shared by every trial (TrainConfig defaults for the rest)."""
    space: dict[str, SpaceAxis] = field(default_factory=dict)
    search: SearchSpec = field(default_factory=SearchSpec)
    resources: Resources = field(default_factory=Resources)
    output: str = "results"
    description: str = ""
    source: str | None = None
    """The file the spec was read from, if any."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "trial": dict(self.trial),
                "space": {k: a.to_dict() for k, a in self.space.items()},
                "search": self.search.to_dict(), "resources": self.resources.to_dict(),
                "output": self.output}

    @property
    def n_trials(self) -> int:
        """Trials the spec asks for: the grid's size, or num_samples for a sampler."""
        if self.search.kind == "grid":
            return math.prod(len(a.values) for a in self.space.values())
        return self.search.num_samples

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid axes, in spec order (last axis fastest)."""
        names = list(self.space)
        combos = itertools.product(*(self.space[n].values for n in names))
        return [dict(zip(names, c)) for c in combos]


# ---------------------------------------------------------------------------- field kinds
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def field_kind(name: str) -> str:
    """'int', 'float', 'str' or 'model' for a TrainConfig field."""
    if name == "model":
        return "model"
    d = _DEFAULTS[name]
    return "int" if isinstance(d, int) and not isinstance(d, bool) else \
        "float" if isinstance(d, float) else "str"


def coerce(name: str, value: Any) -> Any:
    """An int written for a float field becomes a float (so 1 and 1.0 are one trial)."""
    if field_kind(name) == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ---------------------------------------------------------------------------- loading
def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; SpecError on any problem (missing file included)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec file ({e.strerror or e})") from None
    try:
        data = yamlmarks.load(text)
    except YamlError as e:
        raise SpecError(f"{path}: {e}") from None
    spec = parse_spec(data, where=str(path))
    spec.source = str(p)
    return spec


def _at(d: Any, key: Any) -> str:
    line = getattr(d, "lines", {}).get(key) if isinstance(d, LineDict) else None
    if line is None:
        line = getattr(d, "line", None)
    return f" (line {line})" if line else ""


def _suggest(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"


def _check_keys(d: dict, known: tuple[str, ...] | list[str], prefix: str) -> None:
    for key in d:
        if key not in known:
            raise SpecError(f"{prefix}{key}: unknown key{_at(d, key)}{_suggest(key, known)}")


def _mapping(d: Any, key: str, parent: Any) -> dict:
    if d is None:
        return LineDict()
    if not isinstance(d, dict):
        raise SpecError(f"{key}: expected a mapping, got {_show(d)}{_at(parent, key.split('.')[-1])}")
    return d


def _show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return type(v).__name__.replace("LineDict", "mapping").replace("LineList", "list")
    return repr(v)


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


def _nonfinite_anywhere(v: Any) -> bool:
    if isinstance(v, dict):
        return any(_nonfinite_anywhere(x) for x in v.values())
    if isinstance(v, list):
        return any(_nonfinite_anywhere(x) for x in v)
    return not _finite(v)


def _trial_check(base: dict[str, Any], key: str, value: Any, prefix: str, where: str,
                 label: str | None = None) -> None:
    """Build a TrainConfig with key=value on top of the trial settings; SpecError if refused."""
    label = label or f"{prefix}{key}"
    try:
        TrainConfig.from_dict({**base, key: coerce(key, value)})
    except ConfigError as e:
        msg = str(e)
        if msg.startswith(f"{key}:"):
            msg = msg[len(key) + 1:].strip()
        raise SpecError(f"{label}: {msg}{where}") from None
    except TypeError as e:  # a constructor surprise: still name the key
        raise SpecError(f"{label}: {e}{where}") from None


def _check_model(value: Any, key: str, where: str) -> None:
    if isinstance(value, dict):  # a mapping of model fields: refused here, not by the first trial
        from trainer.model import resolve_model  # imports torch: only for a model mapping

        try:
            resolve_model(plain(value), 256)
        except ConfigError as e:
            raise SpecError(f"{key}{str(e).removeprefix('model')}{where}") from None
        return
    if not isinstance(value, str):
        return
    try:
        from trainer import PRESETS  # imports torch: only when the spec names a preset
    except ImportError:
        return
    if value not in PRESETS:
        raise SpecError(f"{key}: unknown model preset {value!r}{where}"
                        f"{_suggest(value, sorted(PRESETS))}")


def parse_spec(data: Any, where: str = "spec") -> SweepSpec:
    """Validate parsed YAML (a mapping) into a SweepSpec; SpecError names the offending key."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec is a mapping with keys {', '.join(TOP_KEYS)}; "
                        f"got {_show(data) if data is not None else 'an empty file'}")
    _check_keys(data, TOP_KEYS, "")
    fields = TrainConfig.field_names()

    # name
    name = data.get("name")
    if name is None:
        raise SpecError("name: missing; every spec names its results folder, e.g. name: my-sweep")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SpecError(f"name: {_show(name)} is not a safe folder name; use lowercase letters, "
                        f"digits, '-' and '_', starting with a letter or digit{_at(data, 'name')}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise SpecError(f"description: expected text{_at(data, 'description')}")

    # trial
    trial_raw = _mapping(data.get("trial"), "trial", data)
    _check_keys(trial_raw, fields, "trial.")
    trial: dict[str, Any] = {}
    for key, value in trial_raw.items():
        w = _at(trial_raw, key)
        if _nonfinite_anywhere(value):
            raise SpecError(f"trial.{key}: NaN and infinity are not allowed{w}")
        _trial_check(trial, key, plain(value), "trial.", w)
        if key == "model":
            _check_model(value, "trial.model", w)
        trial[key] = coerce(key, plain(value))

    # search (before space: a range axis is only allowed with a sampler)
    search_raw = _mapping(data.get("search"), "search", data)
    _check_keys(search_raw, SEARCH_KEYS, "search.")
    kind = search_raw.get("kind", "grid")
    if kind not in SEARCH_KINDS:
        raise SpecError(f"search.kind: {_show(kind)} is not a search kind{_at(search_raw, 'kind')}"
                        f"; use one of {', '.join(SEARCH_KINDS)}")
    if kind == "grid":
        extra = [k for k in ("sampler", "num_samples", "metric", "seed", "points_to_evaluate")
                 if k in search_raw]
        if extra:
            raise SpecError(f"search.{extra[0]}: only for search kind optuna; a grid runs every "
                            f"combination of the space{_at(search_raw, extra[0])}")

    # space
    space_raw = _mapping(data.get("space"), "space", data)
    _check_keys(space_raw, fields, "space.")
    space: dict[str, SpaceAxis] = {}
    for key, value in space_raw.items():
        w = _at(space_raw, key)
        if key in trial:
            raise SpecError(f"space.{key}: also set under trial (line "
                            f"{trial_raw.lines.get(key, '?')}); set it in one place{w}")
        space[key] = _parse_axis(key, value, trial, kind, w)

    search = _parse_search(search_raw, kind, trial, space)
    resources = _parse_resources(_mapping(data.get("resources"), "resources", data))
    if resources.pack > 1 and search.kind != "grid":
        raise SpecError(f"resources.pack: packing needs a grid search (a sampler proposes one "
                        f"trial at a time), got search.kind {search.kind!r}"
                        f"{_at(data.get('resources') or {}, 'pack')}")

    output = data.get("output", "results")
    if not isinstance(output, str) or not output.strip():
        raise SpecError(f"output: expected a directory or s3:// URI{_at(data, 'output')}")

    return SweepSpec(name=name, trial=trial, space=space, search=search, resources=resources,
                     output=output, description=description)


def _canon(d: dict) -> str:
    import json
    return json.dumps(d, sort_keys=True)


def _parse_axis(key: str, value: Any, trial: dict, kind: str, w: str) -> SpaceAxis:
    fk = field_kind(key)
    if isinstance(value, list):
        if not value:
            raise SpecError(f"space.{key}: empty axis; give at least one value{w}")
        seen: list[str] = []
        for i, v in enumerate(value):
            wi = f" (line {value.lines[i]})" if getattr(value, "lines", None) else w
            if _nonfinite_anywhere(v):
                raise SpecError(f"space.{key}: NaN and infinity are not allowed{wi}")
            _trial_check(trial, key, plain(v), "space.", wi)
            if key == "model":
                _check_model(v, f"space.{key}", wi)
            c = _canon({"v": coerce(key, plain(v))})
            if c in seen:
                raise SpecError(f"space.{key}: value {plain(v)!r} appears twice{wi}")
            seen.append(c)
        return SpaceAxis(key, values=tuple(coerce(key, plain(v)) for v in value))
    if isinstance(value, dict):
        if kind == "grid":
            raise SpecError(f"space.{key}: a range {{low, high}} needs a sampler (search.kind: "
                            f"optuna); a grid axis is a list of values{w}")
        _check_keys(value, RANGE_KEYS, f"space.{key}.")
        if fk not in ("int", "float"):
            raise SpecError(f"space.{key}: a range needs a numeric setting; {key} takes "
                            f"{'text' if fk == 'str' else 'a preset or a mapping'}: give a list{w}")
        for end in ("low", "high"):
            if end not in value:
                raise SpecError(f"space.{key}.{end}: missing; a range is {{low, high}}{w}")
            v = value[end]
            we = _at(value, end)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SpecError(f"space.{key}.{end}: expected a number, got {_show(v)}{we}")
            if not _finite(v):
                raise SpecError(f"space.{key}.{end}: NaN and infinity are not allowed{we}")
            if fk == "int" and not isinstance(v, int):
                raise SpecError(f"space.{key}.{end}: {key} is an integer setting, got {v!r}{we}")
            _trial_check(trial, key, v, "space.", we, label=f"space.{key}.{end}")
        low, high = value["low"], value["high"]
        if low >= high:
            raise SpecError(f"space.{key}: low ({low}) must be below high ({high}){w}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"space.{key}.log: expected true or false, got {_show(log)}"
                            f"{_at(value, 'log')}")
        if log and low <= 0:
            raise SpecError(f"space.{key}: a log range needs low > 0, got {low}{w}")
        return SpaceAxis(key, low=coerce(key, low), high=coerce(key, high), log=log,
                         integer=(fk == "int"))
    raise SpecError(f"space.{key}: expected a list of values (grid axis) or a range "
                    f"{{low, high, log}}, got {_show(value)}{w}")


def _int_at_least(d: dict, key: str, low: int, prefix: str, optional: bool = False) -> int | None:
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"{prefix}{key}: expected an integer >= {low}, got {_show(v)}{_at(d, key)}")
    return v


def _parse_search(d: dict, kind: str, trial: dict, space: dict[str, SpaceAxis]) -> SearchSpec:
    max_concurrent = _int_at_least(d, "max_concurrent", 1, "search.", optional=True)
    max_failures = _int_at_least(d, "max_failures", 0, "search.", optional=True)
    max_failures = 1 if max_failures is None else max_failures
    if kind == "grid":
        return SearchSpec(kind="grid", max_concurrent=max_concurrent, max_failures=max_failures)
    sampler = d.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpecError(f"search.sampler: {_show(sampler)} is not a sampler{_at(d, 'sampler')}"
                        f"; use one of {', '.join(SAMPLERS)}")
    num_samples = _int_at_least(d, "num_samples", 1, "search.") if "num_samples" in d else 10
    metric = d.get("metric", "final_loss")
    if metric not in METRICS:
        raise SpecError(f"search.metric: {_show(metric)} is not a metric{_at(d, 'metric')}; "
                        f"use one of {', '.join(METRICS)} (always minimized)")
    seed = _int_at_least(d, "seed", 0, "search.", optional=True)
    if not space:
        raise SpecError("space: empty; an optuna search needs at least one axis to search")
    points = d.get("points_to_evaluate") or []
    if not isinstance(points, list):
        raise SpecError(f"search.points_to_evaluate: expected a list of mappings"
                        f"{_at(d, 'points_to_evaluate')}")
    parsed = []
    for i, p in enumerate(points):
        pre = f"search.points_to_evaluate[{i}]."
        wi = f" (line {points.lines[i]})" if getattr(points, "lines", None) else ""
        if not isinstance(p, dict):
            raise SpecError(f"search.points_to_evaluate[{i}]: expected a mapping of space axes{wi}")
        _check_keys(p, list(space), pre)
        missing = [k for k in space if k not in p]
        if missing:
            raise SpecError(f"{pre}{missing[0]}: missing; a starting point sets every axis{wi}")
        for k, v in p.items():
            if _nonfinite_anywhere(v):
                raise SpecError(f"{pre}{k}: NaN and infinity are not allowed{_at(p, k)}")
            _trial_check(trial, k, plain(v), pre, _at(p, k))
            ax = space[k]
            if ax.values is not None and coerce(k, plain(v)) not in ax.values:
                raise SpecError(f"{pre}{k}: {plain(v)!r} is not one of the axis values "
                                f"{list(ax.values)}{_at(p, k)}")
            if ax.values is None and not (ax.low <= v <= ax.high):
                raise SpecError(f"{pre}{k}: {v!r} is outside [{ax.low}, {ax.high}]{_at(p, k)}")
        parsed.append({k: coerce(k, plain(v)) for k, v in p.items()})
    if len(parsed) > num_samples:
        raise SpecError(f"search.points_to_evaluate: {len(parsed)} points but num_samples is "
                        f"{num_samples}{_at(d, 'points_to_evaluate')}")
    return SearchSpec(kind="optuna", sampler=sampler, num_samples=num_samples, metric=metric,
                      seed=seed, points_to_evaluate=tuple(parsed), max_concurrent=max_concurrent,
                      max_failures=max_failures)


def _parse_resources(d: dict) -> Resources:
    _check_keys(d, RESOURCE_KEYS, "resources.")
    out = {}
    for key, default, low_ok in (("cpu", 1.0, False), ("gpu", 0.0, True)):
        v = d.get(key, default)
        w = _at(d, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) \
                or v < 0 or (v == 0 and not low_ok):
            need = "a number >= 0" if low_ok else "a number > 0"
            raise SpecError(f"resources.{key}: expected {need}, got {_show(v)}{w}")
        if v > 1 and v != int(v):
            raise SpecError(f"resources.{key}: above 1 it must be a whole number, got {v}{w}")
        out[key] = float(v)
    pack = d.get("pack", 1)
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise SpecError(f"resources.pack: expected an integer >= 1 (trials per Ray trial), "
                        f"got {_show(pack)}{_at(d, 'pack')}")
    return Resources(**out, pack=pack)
