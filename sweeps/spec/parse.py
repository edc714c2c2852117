"""The sweep spec: YAML → typed, validated ``SweepSpec`` (see docs/design.md, "The sweep spec").

Everything that can be wrong with a spec is found here, before Ray starts and before anything is
written, and reported as one ``SpecError`` whose message names the key (``space.alpha``) and the
line of the YAML file when it is known. The axes are parsed in ``space.py``, the ``search:``
section by its kind's entry in the registry (``search/``).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from trainer.config import TrainConfig

from sweeps.spec import yamlmarks
from sweeps.tune.loggers import parse_loggers
from sweeps.spec.params import check_user_entry, is_param_key, param_axes, trial_kind_of
from sweeps.search import COMMON_KEYS, SEARCH_KINDS, GridSettings, SearchKind, search_kind
from sweeps.spec.space import SpaceAxis, parse_axis
from sweeps.spec.validate import SpecError, at, check_key, check_keys, finite, int_at_least, mapping, setting, show
from sweeps.spec.yamlmarks import YamlError

__all__ = ["SpecError", "SweepSpec", "SpaceAxis", "SearchSpec", "Resources", "load_spec",
           "parse_spec"]

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
TOP_KEYS = ("name", "description", "trial", "space", "search", "resources", "output", "loggers")
RESOURCE_KEYS = ("cpu", "gpu", "pack")


@dataclass(frozen=True)
class SearchSpec:
    """The ``search:`` section: the kind, its own settings, and what every kind takes."""

    kind: str = "grid"
    """A registered search kind (``sweeps.search.SEARCH_KINDS``)."""
    settings: Any = field(default_factory=GridSettings)
    """The kind's own settings dataclass (``GridSettings``, ``SamplerSettings``, ...)."""
    max_concurrent: int | None = None
    """Trials running at once at most; None fills the cluster."""
    max_failures: int = 1
    """Tune retries of a crashed trial before it is recorded as failed."""

    @property
    def metric(self) -> str:
        """The loss each trial reports to Tune as its objective."""
        return self.settings.metric

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.settings.to_dict(),
                "max_concurrent": self.max_concurrent, "max_failures": self.max_failures}


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    """CPUs per Ray trial."""
    gpu: float = 0.0
    """GPUs per Ray trial; a fraction packs several Ray trials on one card."""
    pack: int = 1
    """Up to this many trials of one shape trained as one batched computation (a search kind
    that knows its points up front, such as a grid)."""

    def to_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu, "pack": self.pack}


@dataclass
class SweepSpec:
    name: str
    """The sweep's folder name under the output."""
    trial: dict[str, Any] = field(default_factory=dict)
    """Trainer settings shared by every trial, as written (``base`` has them with defaults)."""
    space: dict[str, SpaceAxis] = field(default_factory=dict)
    """The swept settings, in spec order."""
    search: SearchSpec = field(default_factory=SearchSpec)
    resources: Resources = field(default_factory=Resources)
    output: str = "results"
    """A directory or an s3:// URI; the sweep lands in ``<output>/<name>``."""
    description: str = ""
    source: str | None = None
    """The file the spec was read from, if any."""
    loggers: tuple[str, ...] = ()
    """Ray Tune logger callbacks to turn on (sweeps/tune/loggers.py): tensorboard, mlflow, wandb."""

    @cached_property
    def base(self) -> TrainConfig:
        """The trial settings with the trainer's defaults for the rest (axes not applied)."""
        return TrainConfig.from_dict(self.trial)

    @property
    def search_kind(self) -> SearchKind:
        """The registry entry of ``search.kind``."""
        return search_kind(self.search.kind)

    @property
    def n_trials(self) -> int:
        """Trials the spec asks for (for an adaptive search, the most it can spend)."""
        return self.search_kind.n_trials(self)

    def describe(self) -> str:
        return self.search_kind.describe(self)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "trial": dict(self.trial),
                "space": {k: a.to_dict() for k, a in self.space.items()},
                "search": self.search.to_dict(), "resources": self.resources.to_dict(),
                "output": self.output, **({"loggers": list(self.loggers)} if self.loggers else {})}


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


class _Problems:
    """The errors of one spec, gathered so that a user sees them all at once: each part that
    does not depend on a refused one is still checked (a refused trial setting is left out of
    the checks of the axes; a refused search kind skips its own section)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    @contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except SpecError as e:
            self.messages.append(str(e))

    def keys(self, d: dict, known: list[str] | tuple[str, ...], prefix: str) -> None:
        for key in d:
            with self.check():
                check_key(d, key, known, prefix)

    def raise_any(self) -> None:
        if len(self.messages) == 1:
            raise SpecError(self.messages[0])
        if self.messages:
            raise SpecError(f"{self.messages[0]}\n" + "\n".join(
                f"  and {m}" for m in self.messages[1:]) + f"\n  ({len(self.messages)} problems)")


def parse_spec(data: Any, where: str = "spec", user_code: bool = True) -> SweepSpec:
    """Validate parsed YAML (a mapping) into a SweepSpec; one SpecError names every offending
    key (the first on the first line). ``user_code=False`` reads a kind-python spec without
    importing its entry (a stored spec, read where the user's code may not be)."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec is a mapping with keys {', '.join(TOP_KEYS)}; "
                        f"got {show(data) if data is not None else 'an empty file'}")
    problems = _Problems()
    problems.keys(data, TOP_KEYS, "")
    fields = TrainConfig.field_names()

    name = data.get("name")
    with problems.check():
        if name is None:
            raise SpecError("name: missing; every spec names its results folder, e.g. "
                            "name: my-sweep")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise SpecError(f"name: {show(name)} is not a safe folder name; use lowercase "
                            f"letters, digits, '-' and '_', starting with a letter or digit"
                            f"{at(data, 'name')}")
    description = data.get("description") or ""
    with problems.check():
        if not isinstance(description, str):
            raise SpecError(f"description: expected text{at(data, 'description')}")

    trial: dict[str, Any] = {}
    trial_raw: Any = {}
    with problems.check():
        trial_raw = mapping(data.get("trial"), "trial", data)
    for key, value in trial_raw.items():
        with problems.check():
            check_key(trial_raw, key, fields, "trial.")
            trial[key] = setting(trial, key, value, "trial.", at(trial_raw, key))

    # the kind first: it says whether an axis may be a range
    search_raw: Any = {}
    kind: SearchKind | None = None
    with problems.check():
        search_raw = mapping(data.get("search"), "search", data)
        kind = _kind(search_raw)

    space: dict[str, SpaceAxis] = {}
    space_raw: Any = {}
    with problems.check():
        space_raw = mapping(data.get("space"), "space", data)
    for key, value in space_raw.items():
        w = at(space_raw, key)
        with problems.check():
            if is_param_key(key):  # a user's parameter (kind: python): sweeps/spec/params.py
                space.update(param_axes(key, value, w, kind.ranges if kind else True,
                                        kind.name if kind else "grid"))
                continue
            check_key(space_raw, key, fields, "space.")
            if key in trial_raw:
                raise SpecError(f"space.{key}: also set under trial (line "
                                f"{getattr(trial_raw, 'lines', {}).get(key, '?')}); set it in "
                                f"one place{w}")
            space[key] = parse_axis(key, value, trial, kind.ranges if kind else True,
                                    kind.name if kind else "grid", w)
    if "outer_steps" in space and "inner_steps_budget" in space:  # each was checked alone
        with problems.check():
            raise SpecError(f"space.outer_steps: not with space.inner_steps_budget, from which "
                            f"each trial's T = ⌊budget / H⌋ follows; sweep one of the two"
                            f"{at(space_raw, 'outer_steps')}")

    if not problems.messages:  # imports a user's entry (kind: python), checks its params
        with problems.check():
            check_user_entry(trial_raw, trial, space, space_raw, load=user_code)

    search = None
    if kind is not None and not problems.messages:  # its checks read the axes and settings
        with problems.check():
            search = SearchSpec(kind=kind.name, settings=kind.parse(search_raw, trial, space),
                                max_concurrent=int_at_least(search_raw, "max_concurrent", 1,
                                                            "search.", optional=True),
                                max_failures=_max_failures(search_raw))
    resources = None
    with problems.check():
        resources = _parse_resources(mapping(data.get("resources"), "resources", data))
        if kind is not None and resources.pack > 1 and not kind.packs:
            raise SpecError(f"resources.pack: packing needs a grid search (its points known up "
                            f"front) or a map search (a round at a time); {kind.summary}, got search.kind {kind.name!r}"
                            f"{at(data.get('resources') or {}, 'pack')}")
        if resources.pack > 1 and not trial_kind_of(trial).packs:
            raise SpecError(f"resources.pack: trials of kind {trial_kind_of(trial).name} do not "
                            f"pack (their kind has no stack); leave pack at 1"
                            f"{at(data.get('resources') or {}, 'pack')}")

    output = data.get("output", "results")
    with problems.check():
        if not isinstance(output, str) or not output.strip():
            raise SpecError(f"output: expected a directory or s3:// URI{at(data, 'output')}")
    loggers: tuple[str, ...] = ()
    with problems.check():
        loggers = parse_loggers(data.get("loggers"), at(data, "loggers"))
    problems.raise_any()
    return SweepSpec(name=name, trial=trial, space=space, search=search, resources=resources,
                     output=output, description=description, loggers=loggers)


def _kind(d: dict) -> SearchKind:
    """The registered kind ``search.kind`` names, with every other key checked against it."""
    name = d.get("kind", "grid")
    if name not in SEARCH_KINDS:
        raise SpecError(f"search.kind: {show(name)} is not a search kind{at(d, 'kind')}"
                        f"; use one of {', '.join(SEARCH_KINDS)}")
    kind = SEARCH_KINDS[name]
    everyone = list(dict.fromkeys(COMMON_KEYS + sum((k.keys for k in SEARCH_KINDS.values()), ())))
    check_keys(d, everyone, "search.")
    for key in d:
        if key not in COMMON_KEYS and key not in kind.keys:
            owners = [k.name for k in SEARCH_KINDS.values() if key in k.keys]
            raise SpecError(f"search.{key}: only for search kind {' or '.join(owners)}; "
                            f"{kind.summary}{at(d, key)}")
    return kind


def _max_failures(d: dict) -> int:
    v = int_at_least(d, "max_failures", 0, "search.", optional=True)
    return 1 if v is None else v


def _parse_resources(d: dict) -> Resources:
    check_keys(d, RESOURCE_KEYS, "resources.")
    out = {}
    for key, default, low_ok in (("cpu", 1.0, False), ("gpu", 0.0, True)):
        v = d.get(key, default)
        w = at(d, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not finite(v) \
                or v < 0 or (v == 0 and not low_ok):
            need = "a number >= 0" if low_ok else "a number > 0"
            raise SpecError(f"resources.{key}: expected {need}, got {show(v)}{w}")
        if v > 1 and v != int(v):
            raise SpecError(f"resources.{key}: above 1 it must be a whole number, got {v}{w}")
        out[key] = float(v)
    pack = d.get("pack", 1)
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise SpecError(f"resources.pack: expected an integer >= 1 (trials per Ray trial), "
                        f"got {show(pack)}{at(d, 'pack')}")
    return Resources(**out, pack=pack)

