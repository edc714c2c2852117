"""Packed trials (trainer.packed) give each trial the result it gets alone, and diverge alone."""

import pytest

import trainer.packed as packed
from trainer import tracker
from trainer import ConfigError, TrainConfig, train
from trainer.batched import StackedLM
from trainer.packed import train_packed

SHAPE = dict(model="tiny", batch_size=4, seq_len=32, eval_batches=1, warmup_steps=2, threads=1,
             workers=2, H=3, outer_steps=4)


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


def test_packed_equals_one_by_one():
    configs = [cfg(alpha=0.7, beta=0.9, R=0, seed=0),
               cfg(alpha=1.0, beta=0.5, R=2, seed=1, outer="heavy_ball"),
               cfg(alpha=0.4, beta=0.95, R=1, seed=0)]
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
    # stub the train-loss rule: trial seed=7 blows up after inner step 1 of round 1
    def rule(c, losses, h, per_step, initial, t):
        return (99.0, "stub blow-up") if c.seed == 7 and t == 1 and h == 1 else None

    monkeypatch.setattr(tracker, "train_divergence", rule)
    configs = [cfg(seed=0), cfg(seed=7), cfg(seed=3, alpha=0.5)]
    results = train_packed(configs)
    gone = results[1]
    assert (gone.status, gone.reason, gone.final_loss, gone.outer_steps_done) == \
           ("diverged", "stub blow-up", 99.0, 1)
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
    with pytest.raises(ConfigError, match=r"^kind: "):
        train_packed([cfg(kind="toy")])
    with pytest.raises(ConfigError, match="at least one"):
        train_packed([])
