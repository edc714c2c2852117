"""Gradient accumulation (``micro_batches``): an inner step's batch run a micro-batch at a time
is the same step up to float rounding, sequential and stacked, and a runtime setting that never
enters a trial id; the memory model holds one micro-batch's activations."""

from __future__ import annotations

import numpy as np
import pytest

from records.identity import trial_id
from trainer import TrainConfig, train
from trainer.checks import ConfigError

BASE = dict(workers=2, H=2, outer_steps=3, batch_size=4, seq_len=16, eval_batches=1,
            threads=1, alpha=0.7, beta=0.9, R=2)


@pytest.mark.parametrize("batched", ["off", "on"])
def test_micro_batches_give_the_same_trial(batched):
    runs = {n: train(TrainConfig(**BASE, batched=batched, micro_batches=n)) for n in (1, 2, 4)}
    ref = runs[1]
    for n in (2, 4):
        r = runs[n]
        assert (r.status, r.outer_steps_done, r.tokens) == (ref.status, ref.outer_steps_done,
                                                            ref.tokens)
        for key in ("eval_loss", "train_loss", "pseudo_grad_norm"):
            np.testing.assert_allclose([row[key] for row in r.curve],
                                       [row[key] for row in ref.curve], rtol=2e-5, err_msg=key)


def test_micro_batches_must_divide_the_batch_and_never_enter_an_id():
    with pytest.raises(ConfigError, match=r"^micro_batches: 3 does not divide batch_size 4"):
        TrainConfig(batch_size=4, micro_batches=3)
    with pytest.raises(ConfigError, match=r"^micro_batches: expected an integer >= 1"):
        TrainConfig(micro_batches=0)
    cfg = TrainConfig(batch_size=8)
    assert trial_id(cfg) == trial_id(cfg.replace(micro_batches=4)) == "dc3aa0ff00bba19c"


def test_the_memory_model_holds_one_micro_batch():
    cfg = TrainConfig(model="paper150m", vocab_size=50304, workers=2, seq_len=2048,
                      batch_size=64, batched="off")
    one = cfg.trial_kind.memory(cfg, "cuda")
    eight = cfg.trial_kind.memory(cfg.replace(micro_batches=8), "cuda")
    assert eight.state_bytes == one.state_bytes
    assert eight.activation_bytes * 8 == one.activation_bytes
    assert eight.total_bytes < 40 * 1024 ** 3 < one.total_bytes        # fits an 80 GiB card
