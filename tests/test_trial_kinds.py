"""Every registered trial kind keeps the one protocol (trainer/kinds/base.py).

Run against each entry of ``TRIAL_KINDS``: its settings are a documented dataclass with
annotated types, flat in TrainConfig with one owner each; its Problem trains a round; its stack
(if any) trains a pack as the trials alone; its memory model and FLOP model answer without
torch. Also: trial ids and columns that a regrouping of the settings must not move, and no
switch on the trial kind outside the registry. A kind added without an example here fails
``test_every_kind_has_an_example``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from trainer.config import KIND_READS, TRIAL_KINDS, TrainConfig
from trainer.settings import TrialSettings

ROOT = Path(__file__).resolve().parents[1]
# kind python's example is the user project of examples/tinyfit, imported as its own package
sys.path.insert(0, str(ROOT / "examples" / "tinyfit"))
EXAMPLES = {
    "lm": {"kind": "lm", "workers": 2, "H": 2, "outer_steps": 2, "seq_len": 16, "batch_size": 2,
           "eval_batches": 1, "threads": 1},
    "toy": {"kind": "toy", "toy_dim": 32, "workers": 2, "H": 2, "outer_steps": 2, "lr": 0.5,
            "threads": 1},
    "python": {"kind": "python", "entry": "tinyfit.problem:make", "params": {"width": 4},
               "workers": 2, "H": 2, "outer_steps": 2, "threads": 1},
}


def test_every_kind_has_an_example() -> None:
    assert set(TRIAL_KINDS) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_settings_are_a_documented_typed_section_of_train_config(name: str) -> None:
    kind = TRIAL_KINDS[name]
    assert kind.name == name
    section = kind.settings
    assert dataclasses.is_dataclass(section) and issubclass(TrainConfig, section)
    hints = typing.get_type_hints(section)
    source = inspect.getsource(section)
    for f in dataclasses.fields(section):
        assert f.name in hints and TrainConfig.field_types()[f.name] == hints[f.name]
        # each field has its docstring on the line after it, as TrainConfig's do
        assert re.search(rf"^\s+{f.name}: .*\n\s+\"\"\"", source, re.M), f"{name}.{f.name}"
    assert KIND_READS[name] == (*kind.fields(), *kind.reads)
    for key in kind.reads:  # another section's settings, read by this kind too
        assert key in TrainConfig.field_names() and key not in kind.fields(), key
    section().check()  # the defaults are valid
    for key in (*kind.memory_keys, *kind.cost_keys, *kind.theory_keys):
        assert key in TrainConfig.field_names(), key


def test_every_setting_has_one_owner() -> None:
    owners = [f.name for f in dataclasses.fields(TrialSettings)]
    for kind in TRIAL_KINDS.values():
        owners += kind.fields()
    assert len(owners) == len(set(owners))
    assert sorted(owners) == sorted(TrainConfig.field_names())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_bad_setting_of_a_kind_is_refused_by_name(name: str) -> None:
    from trainer.config import ConfigError

    first = TRIAL_KINDS[name].fields()[0]
    bad = {"model": 3, "toy_dim": 0, "entry": 3}[first]
    with pytest.raises(ConfigError, match=rf"^{first}:"):
        TrainConfig(**{**EXAMPLES[name], first: bad})
    # every kind's settings are checked whatever the kind: they are all in the trial's id
    other = next(k for k in EXAMPLES if k != name)
    with pytest.raises(ConfigError, match=rf"^{first}:"):
        TrainConfig(**{**EXAMPLES[other], first: bad})


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_problem_trains_and_models_answer(name: str) -> None:
    from trainer import train

    cfg = TrainConfig(**EXAMPLES[name])
    assert cfg.trial_kind is TRIAL_KINDS[name]
    r = train(cfg)
    assert r.status == "completed" and r.outer_steps_done == cfg.outer_steps
    est = cfg.trial_kind.memory(cfg, "cpu")
    assert est.params == r.n_params and est.total_bytes > 0
    flops = cfg.trial_kind.flops(cfg)
    if flops is not None:
        assert flops.params == r.n_params
        assert flops.tokens_per_round * cfg.outer_steps == r.tokens
    what, smaller = cfg.trial_kind.too_big(cfg)
    assert re.match(r"^\w+: ", what) and smaller


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_kind_says_whether_it_packs_as_its_stack_does(name: str) -> None:
    """``packs`` is what the spec reads without torch (a pack > 1 of a kind without a stack
    is refused there); it must agree with the stack the kind builds."""
    assert TRIAL_KINDS[name].packs == (TRIAL_KINDS[name].stack() is not None)


@pytest.mark.parametrize("name", sorted(k for k in EXAMPLES if TRIAL_KINDS[k].packs))
def test_stack_trains_a_pack_as_the_trials_alone(name: str) -> None:
    from trainer import train, train_packed

    stack = TRIAL_KINDS[name].stack()
    assert stack.name == name
    configs = [TrainConfig(**{**EXAMPLES[name], "alpha": a, "seed": s})
               for a, s in ((0.5, 0), (1.0, 1))]
    packed = train_packed(configs)
    for cfg, got in zip(configs, packed):
        alone = train(cfg)
        assert got.status == alone.status
        assert got.final_loss == pytest.approx(alone.final_loss, rel=1e-4)


def test_toy_linear_model_is_the_power_law_the_theory_uses() -> None:
    import numpy as np

    from analysis.theory import power_law_spectrum

    settings = {"kind": "toy", "toy_dim": 50, "toy_power": 1.5, "lr": 0.25}
    lams, eta = TRIAL_KINDS["toy"].linear_model(settings)
    assert eta == 0.25 and np.array_equal(lams, power_law_spectrum(50, 1.5))
    some, _ = TRIAL_KINDS["toy"].linear_model(settings, [0, 9, 49])
    assert np.array_equal(some, lams[[0, 9, 49]])
    assert TRIAL_KINDS["lm"].linear_model({"kind": "lm", "lr": 1e-3}) is None


# Pinned: a stored id is a user's GPU-hours. Computed before trial kinds were a registry
# (commit b20e806, one flat TrainConfig): regrouping the settings must not move them.
def test_field_types_come_from_annotations() -> None:
    from records.identity import _kind_of
    from sweeps.spec.validate import field_kind

    assert field_kind("toy_dim") == "int" and field_kind("toy_power") == "float"
    assert field_kind("model") == "model" and field_kind("corpus") == "str"
    # a setting whose default is None is still a number (a column of its type, a range axis)
    assert _kind_of("x", typing.Optional[float]) == "float"
    assert _kind_of("x", int | None) == "int"
    with pytest.raises(TypeError, match="x: type"):
        _kind_of("x", list)


def test_reading_the_kinds_imports_no_torch() -> None:
    code = ("import sys, trainer.kinds, trainer.config, analysis.theory_report, sweeps.estimate.cost, "
            "sweeps.estimate.preflight\n"
            "from trainer.config import TrainConfig\n"
            "for k in trainer.kinds.TRIAL_KINDS.values():\n"
            "    cfg = TrainConfig(kind=k.name)\n"
            "    k.memory(cfg, 'cpu'); k.flops(cfg); k.too_big(cfg)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


_KIND_NAMES = "|".join(re.escape(k) for k in TRIAL_KINDS)
_SWITCH = re.compile(
    r"""(?<!search)\.kind\s*(==|!=|\bin\b|\bnot\s+in\b)"""        # cfg.kind == ..., spec.base.kind in
    r"""|\[\s*["']kind["']\s*\]\s*(==|!=|\.isin\b)"""             # frame["kind"] == ...
    rf"""|(==|!=)\s*["']({_KIND_NAMES})["']"""                     # ... == "toy"
    rf"""|["']({_KIND_NAMES})["']\s*(==|!=)""")                    # "toy" == ...


def test_no_switch_on_the_trial_kind_outside_the_registry() -> None:
    found = []
    for pkg in ("sweeps", "analysis", "trainer", "benchmarks"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.relative_to(ROOT).parts[:2] == ("trainer", "kinds"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _SWITCH.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, found


@pytest.mark.parametrize("line", [
    'if cfg.kind == "toy":', "if c.kind not in STACKS:", 'if spec.base.kind == "lm" or x:',
    'trials_df[trials_df["kind"] == "toy"]', 'bool((trials["kind"] == "toy").all())',
    "if kind != 'lm':"])
def test_the_switch_pattern_finds_the_old_switches(line: str) -> None:
    assert _SWITCH.search(line)


@pytest.mark.parametrize("line", [
    'if spec.search.kind == "grid":', 'if kind == "lower_bound":', "kind: str = \"lm\"",
    "return cfg.trial_kind.problem(cfg)"])
def test_the_switch_pattern_leaves_other_kinds_alone(line: str) -> None:
    assert not _SWITCH.search(line)


def test_registry_modules_parse_without_a_torch_import_at_top() -> None:
    for path in (ROOT / "trainer" / "kinds").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: a builder imports its torch side lazily
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "torch" for n in names), path
