"""Every registered search kind keeps the one protocol (sweeps/search/base.py).

Shared behaviour, run against each entry of the registry: its section round-trips through
``to_dict``; it describes itself with its trial count; planning on an empty store runs
something and on a store that holds every planned trial runs less; Tune gets a searcher whose
first suggestions are configs ``trial_config`` accepts. A kind added without an example here
fails ``test_every_kind_has_an_example``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeps.search import SEARCH_KINDS
from sweeps.spec.parse import SpecError, parse_spec
from sweeps.store.store import trial_id
from sweeps.tune.trial import trial_config

ROOT = Path(__file__).resolve().parents[1]
TRIAL = {"kind": "toy", "toy_dim": 16, "outer_steps": 5, "workers": 1}
EXAMPLES = {
    "grid": {"space": {"alpha": [0.5, 1.0], "beta": [0.0, 0.9], "R": [0, 3]}},
    "optuna": {"space": {"alpha": {"low": 0.1, "high": 2.0, "log": True}, "beta": [0.0, 0.9]},
               "search": {"kind": "optuna", "sampler": "random", "num_samples": 4, "seed": 0,
                          "points_to_evaluate": [{"alpha": 0.5, "beta": 0.0}]}},
    "boundary": {"space": {"beta": [0.0, 0.9], "R": [0, 3]},
                 "search": {"kind": "boundary", "low": 0.25, "high": 4.0, "resolution": 0.1}},
    "map": {"space": {"alpha": {"low": 0.25, "high": 4.0, "num": 9, "log": True},
                      "beta": {"low": 0.0, "high": 0.9, "num": 6}, "R": [0, 3]},
            "search": {"kind": "map", "coarse": 1, "audits": 2}},
}


def _spec(name: str):
    ex = EXAMPLES[name]
    return parse_spec({"name": f"ex-{name}", "trial": TRIAL, "space": ex["space"],
                       "search": ex.get("search", {"kind": name})})


def _row(spec, point: dict, status: str = "completed") -> dict:
    cfg = trial_config(spec, point)
    return {"trial_id": trial_id(cfg), **cfg.flat(), "status": status, "final_loss": 0.5,
            "initial_loss": 1.0, "rise": 0.0}


def test_every_kind_has_an_example() -> None:
    assert set(SEARCH_KINDS) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_section_round_trips_and_describes_itself(name: str) -> None:
    spec = _spec(name)
    assert spec.search.kind == name
    again = parse_spec(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert str(spec.n_trials) in spec.describe()
    assert set(spec.space) <= set(spec.search_kind.axes(spec))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_plan_counts_the_stored_rows(name: str) -> None:
    spec = _spec(name)
    kind = spec.search_kind
    first = kind.plan(spec, [], False)
    assert first.done == 0 and 0 < first.to_sample <= first.total == spec.n_trials
    rows = [_row(spec, p) for p in first.todo]
    assert rows  # each example knows some points up front (a sampler: its starting points)
    later = kind.plan(spec, rows, False)
    assert later.done == len(rows) and later.to_sample < first.to_sample
    ids = {r["trial_id"] for r in rows}
    assert not any(trial_id(trial_config(spec, p)) in ids for p in later.todo)  # none twice
    assert kind.plan(spec, rows, True).to_sample == first.to_sample  # force: all again


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_tune_gets_configs_the_trial_accepts(name: str) -> None:
    spec = _spec(name)
    kind = spec.search_kind
    p = kind.plan(spec, [], False)
    setup = kind.tune(spec, p, out="/nonexistent")
    assert setup.num_samples >= 1 and setup.n_tune >= 1
    searcher = setup.searcher
    searcher.set_search_properties("objective", "min", {})
    for i in range(2):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict), config
        cfg = trial_config(spec, config)
        for k in spec.space:
            assert spec.space[k].contains(getattr(cfg, k))


def test_a_key_of_another_kind_is_refused_with_its_owner() -> None:
    with pytest.raises(SpecError, match=r"search.sampler: only for search kind optuna"):
        parse_spec({"name": "x", "space": {"alpha": [1.0]}, "search": {"sampler": "tpe"}})
    with pytest.raises(SpecError, match=r"search.resolution: only for search kind boundary"):
        parse_spec({"name": "x", "space": {"alpha": [1.0]}, "search": {"resolution": 0.1}})
    with pytest.raises(SpecError, match=r"search.kind: 'bisect' is not a search kind.*boundary"):
        parse_spec({"name": "x", "search": {"kind": "bisect"}})


def test_no_switch_on_the_kind_outside_the_registry() -> None:
    pattern = re.compile(r"""search\.kind\s*(==|!=|\bin\b)|["']search["']\).*["']kind["']""")
    found = []
    for pkg in ("sweeps", "analysis", "trainer", "benchmarks"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "search" in path.relative_to(ROOT).parts[1:2]:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, found


def test_optuna_storage_is_checked_before_anything_runs(tmp_path) -> None:
    base = {"name": "x", "trial": TRIAL, "space": {"alpha": {"low": 0.1, "high": 2.0}}}
    with pytest.raises(SpecError, match=r"search.storage: redis:// is not an Optuna storage"):
        parse_spec({**base, "search": {"kind": "optuna", "storage": "redis://h/0"}})
    with pytest.raises(SpecError, match=r"search.storage: only for search kind optuna"):
        parse_spec({**base, "space": {"alpha": [1.0]}, "search": {"storage": "j.log"}})
    spec = parse_spec({**base, "search": {"kind": "optuna", "storage": str(tmp_path / "j.log")}})
    assert parse_spec(spec.to_dict()).search.settings.storage == str(tmp_path / "j.log")
