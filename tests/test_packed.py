"""Packed trials (trainer.packed) give each trial the result it gets alone, and diverge alone."""

import numpy as np
import pytest

import trainer.packed as packed
from trainer import tracker
from trainer import ConfigError, TrainConfig, train
from trainer.batched import StackedLM
from trainer.outer_rules import OUTER_RULES, effective_lr
from trainer.packed import train_packed
from trainer.toy_stack import ToyStack

SHAPE = dict(model="tiny", batch_size=4, seq_len=32, eval_batches=1, warmup_steps=2, threads=1,
             workers=2, H=3, outer_steps=4)


ALPHA_SCALE = {"adam": 0.01}
"""α of a rule whose step is per coordinate (Adam moves each weight by about α) is that much
smaller on the LM, so the three trials below train rather than blow up at once."""


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**SHAPE, **kw})


def assert_same(p, a):
    assert (p.status, p.outer_steps_done, p.tokens, p.n_params) == \
           (a.status, a.outer_steps_done, a.tokens, a.n_params)
    assert p.initial_loss == pytest.approx(a.initial_loss, rel=1e-5)
    assert p.final_loss == pytest.approx(a.final_loss, rel=1e-4)
    for rp, ra in zip(p.curve, a.curve):
        assert rp["outer_step"] == ra["outer_step"] and rp["tokens"] == ra["tokens"]
        for key in ("eval_loss", "train_loss", "pseudo_grad_norm", "momentum_norm"):
            assert rp[key] == pytest.approx(ra[key], rel=1e-4), key


@pytest.mark.parametrize("outer", list(OUTER_RULES))
def test_packed_equals_one_by_one(outer):
    a = ALPHA_SCALE.get(outer, 1.0)
    configs = [cfg(alpha=0.7 * a, beta=0.9, R=0, seed=0, outer=outer),
               cfg(alpha=1.0 * a, beta=0.5, R=2, seed=1, outer=outer),
               cfg(alpha=0.4 * a, beta=0.95, R=1, seed=0, outer=outer)]
    rows = []
    results = train_packed(configs, on_step=lambda k, row: rows.append((k, row["outer_step"])))
    for p, c in zip(results, configs):
        assert_same(p, train(c.replace(batched="off")))   # against the sequential reference
    assert rows == [(k, t) for t in range(4) for k in range(3)]
    assert results[0].curve[-1]["eval_loss"] != results[2].curve[-1]["eval_loss"]


def test_a_diverging_member_stops_alone_and_stops_costing(monkeypatch):
    slots = []
    step = StackedLM.step

    def counting(self, lr):
        slots.append(self.slots)
        return step(self, lr)

    monkeypatch.setattr(StackedLM, "step", counting)
    configs = [cfg(seed=0), cfg(alpha=50.0, seed=1), cfg(beta=0.8, R=2, seed=2)]
    results = train_packed(configs)
    # three trials' slots for round 0, two trials' from then on
    assert slots == [3 * 2] * 3 + [2 * 2] * 9
    alone = train(configs[1])
    assert results[1].status == alone.status == "diverged"
    assert results[1].outer_steps_done == alone.outer_steps_done == 1
    assert results[1].reason.split(" > ")[1] == alone.reason.split(" > ")[1]
    for k in (0, 2):
        assert results[k].status == "completed"
        assert_same(results[k], train(configs[k].replace(batched="off")))


def test_mid_round_divergence_drops_the_member_at_once(monkeypatch):
    # stub the train-loss rule: trial 1 blows up after inner step 1 of its second round
    calls = []

    def rule(c, steps, h, idx, initial, factor):
        calls.append(h)
        fire = (idx == 1) & (h == 1) & (calls.count(1) == 2)
        return np.where(fire, 99.0, np.nan)

    monkeypatch.setattr(tracker, "train_divergence", rule)
    configs = [cfg(seed=0), cfg(seed=7), cfg(seed=3, alpha=0.5)]
    results = train_packed(configs)
    gone = results[1]
    assert (gone.status, gone.final_loss, gone.outer_steps_done) == ("diverged", 99.0, 1)
    assert gone.reason.startswith("inner train loss 99 over the last 0 steps")
    assert gone.tokens == (3 + 2) * 2 * 4 * 32
    for k in (0, 2):
        assert_same(results[k], train(configs[k]))


def test_refuses_trials_of_different_shapes():
    with pytest.raises(ConfigError, match=r"^H: .*trial 1 has 5"):
        train_packed([cfg(), cfg(H=5)])
    with pytest.raises(ConfigError, match=r"^workers: "):
        train_packed([cfg(), cfg(alpha=0.3), cfg(workers=3)])
    with pytest.raises(ConfigError, match=r"^lr: "):
        train_packed([cfg(), cfg(lr=1e-3)])
    with pytest.raises(ConfigError, match=r"^outer: .*trial 1 has 'heavy_ball'"):
        train_packed([cfg(), cfg(outer="heavy_ball")])   # one stacked outer step per pack
    with pytest.raises(ConfigError, match=r"^kind: "):
        train_packed([cfg(kind="toy"), cfg()])
    with pytest.raises(ConfigError, match="at least one"):
        train_packed([])


TOY = dict(kind="toy", toy_dim=300, lr=0.5, workers=3, H=4, outer_steps=12, threads=1)


def toy(**kw) -> TrainConfig:
    return TrainConfig(**{**TOY, **kw})


@pytest.mark.parametrize("outer", list(OUTER_RULES))
@pytest.mark.parametrize("batch", [0, 8])
def test_toy_pack_is_each_trial_alone(outer, batch):
    """A toy stack follows each trial's θ exactly (its mode errors are bit for bit the ones the
    trial has alone); its losses are row sums where alone they are dot products (last bits)."""
    # α=9 at β=0.95 blows up in torch's convention; a rule with another one (the normalized
    # Nesterov) gets the α of the same effective LR (docs/design.md, "Outer rules ...")
    scale = 1 / (1 - 0.95) / float(effective_lr(outer, 1.0, 0.95))
    big = 9.0 * (scale if np.isfinite(scale) else 1.0)
    configs = [toy(alpha=a, beta=b, R=r, seed=s, toy_batch=batch, outer=outer)
               for a, b, r, s in [(0.5, 0.9, 0, 0), (1.2, 0.5, 3, 1), (big, 0.95, 0, 2),
                                  (0.9, 0.0, 1, 3)]]
    results = train_packed(configs)
    assert {r.status for r in results} == {"completed", "diverged"}  # one blows up, alone too
    for p, c in zip(results, configs):
        a = train(c)
        assert (p.status, p.outer_steps_done, p.tokens) == (a.status, a.outer_steps_done, a.tokens)
        assert [r["mode_err"] for r in p.curve] == [r["mode_err"] for r in a.curve]
        assert [r["mode_idx"] for r in p.curve] == [r["mode_idx"] for r in a.curve]
        for key in ("eval_loss", "train_loss", "pseudo_grad_norm", "momentum_norm"):
            assert [r[key] for r in p.curve] == pytest.approx([r[key] for r in a.curve],
                                                              rel=1e-12, nan_ok=True), key
        assert p.rise == pytest.approx(a.rise, rel=1e-9, abs=1e-15)
        assert (p.reason is None) == (a.reason is None)


def test_toy_pack_columns_hold_every_row_in_trial_order():
    configs = [toy(alpha=a, seed=s) for a, s in [(0.5, 0), (4.0, 1), (1.0, 2)]]
    [(start, track)] = list(packed.run_packed(configs))
    assert start == 0
    trial, cols = track.curve_columns()
    s = track.summary()
    assert list(trial) == sorted(trial) and len(trial) == sum(s["outer_steps_done"])
    assert cols["mode_err"].shape == (len(trial), len(cols["mode_idx"][0]))
    assert s["status"] == [r.status for r in track.results()] == ["completed", "diverged",
                                                                 "completed"]


def test_a_pack_past_the_stack_size_runs_as_several_stacks_with_the_same_results(monkeypatch):
    configs = [toy(alpha=a, beta=b) for a in (0.5, 1.5, 4.0) for b in (0.0, 0.9)]
    alone = train_packed(configs)
    monkeypatch.setattr(ToyStack, "CHUNK_BYTES", 8 * TOY["toy_dim"] * 4)   # 4 trials a stack
    stacks = list(packed.run_packed(configs))
    assert [(start, t.K) for start, t in stacks] == [(0, 4), (4, 2)]
    split = train_packed(configs)
    for a, b in zip(split, alone):   # each trial's θ is its own, whichever stack it was in
        assert [x["mode_err"] for x in a.curve] == [x["mode_err"] for x in b.curve]
    assert [r.status for r in split] == [r.status for r in alone]
