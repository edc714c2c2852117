"""Trial ids are a user's compute: they are pinned, and an upgrade must not change them.

docs/architecture.md, "Trial identity": every setting of ``ID_SETTINGS_V1`` enters the hash as it
always did; a setting added later enters only when it differs from its default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from records import identity
from records.identity import ID_SETTINGS_V1, RUNTIME_FIELDS, row_trial_id, settings_id, trial_id
from sweeps.spec.parse import load_spec
from sweeps.store.store import Store
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

# hex written out by hand from the code of 2026-12-05 (sweeps.store.store.trial_id then): never
# regenerate these; a change here reruns every user's stored sweep
PINNED = [
    (dict(), "dc3aa0ff00bba19c"),
    (dict(alpha=1, beta=0.5, H=20, R=3, seed=2), "15427281f9f706dd"),
    (dict(model={"n_layer": 2, "n_head": 2, "n_embd": 32}, seq_len=32), "bcfdf742937e9042"),
    (dict(kind="toy", toy_dim=64, lr=0.5, H=4, outer_steps=30, alpha=2.0, beta=0.9, R=2, seed=1),
     "5990514baca399f3"),
    (dict(device="cpu", threads=1, batched="off"), "dc3aa0ff00bba19c"),  # runtime: same trial
    (dict(kind="toy", toy_dim=16, alpha=0.5), "ab55a6ba42978b8e"),
    (dict(model={"preset": "tiny", "d_model": 32}, seq_len=32, lr=1e-3), "d42dea1955d2d7c2"),
]


@pytest.mark.parametrize("settings,expected", PINNED)
def test_trial_ids_are_pinned(settings, expected):
    cfg = TrainConfig(**settings)
    assert trial_id(cfg) == expected
    assert row_trial_id(cfg.flat()) == expected  # a stored row hashes back to the same id


def test_every_setting_of_the_first_rule_is_still_a_setting():
    """A V1 setting may be regrouped, never dropped: its value keeps entering every id."""
    assert ID_SETTINGS_V1 <= set(TrainConfig.field_names())
    assert not ID_SETTINGS_V1 & set(RUNTIME_FIELDS)


def test_a_new_setting_at_its_default_leaves_every_id_alone(monkeypatch):
    """Adding a setting (here a made-up `new_knob`, default 0.5) keeps stored ids; a trial that
    sets it to something else is another trial. A row written before it existed (null) too."""
    cfg = TrainConfig(alpha=1.5, R=2)
    before = trial_id(cfg)
    kinds = {**identity._kinds(), "new_knob": "float"}
    defaults = {**identity.setting_defaults(), "new_knob": 0.5}
    monkeypatch.setattr(identity, "_kinds", lambda: kinds)
    monkeypatch.setattr(identity, "setting_defaults", lambda: defaults)
    d = cfg.to_dict()
    assert settings_id({**d, "new_knob": 0.5}) == before
    assert settings_id({**d, "new_knob": None}) == before
    assert settings_id({**d, "new_knob": 0.7}) != before
    # a V1 setting at its default still enters (as it always did): dropping it changes the id
    assert settings_id({k: v for k, v in d.items() if k != "toy_dim"}) != before


def test_new_settings_are_not_v1():
    """Every TrainConfig field that is neither V1 nor runtime was added after the rule: the
    list of V1 settings is closed (adding a name there would change the ids of new trials)."""
    later = set(TrainConfig.field_names()) - ID_SETTINGS_V1 - set(RUNTIME_FIELDS)
    for name in later:
        f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
        assert f.default is not dataclasses.MISSING, f"{name}: a setting added later needs a default"


@pytest.mark.parametrize("spec_file,store", [
    ("restart_cpu.yaml", "restart-cpu"),
    ("restart_boundary.yaml", "restart-boundary"),
    ("restart_toy.yaml", "restart-toy"),
    ("restart_map.yaml", "restart-map"),
    ("paper_mini.yaml", "paper-mini"),
])
def test_each_committed_store_reruns_zero_trials(spec_file, store, tmp_path, monkeypatch, capsys):
    """Each spec with a committed store, run into a copy of that store, trains nothing: every
    stored id is still the id its spec makes (Ray is never started: nothing to run)."""
    import shutil

    import sweeps.tune.runner as runner
    from sweeps.cli import main

    shutil.copytree(ROOT / "docs/results" / store, tmp_path / store)
    monkeypatch.setattr(runner, "run_trials", lambda *a, **k: pytest.fail("a trial would run"))
    spec = load_spec(ROOT / "sweeps/specs" / spec_file)
    rows = Store.at(str(tmp_path / store)).read_trials().to_pylist()
    assert rows and spec.search_kind.plan(spec, rows, False).to_sample == 0
    assert main(["run", str(ROOT / "sweeps/specs" / spec_file), "--output", str(tmp_path),
                 "--no-report"]) == 0
    assert "0 to run" in capsys.readouterr().err
