"""The adam outer rule (trainer/outer_rules/adam.py) against a hand-written Adam, and the
promises every stateful rule keeps: a restart resets its state, per-trial settings in a pack
give each trial what it gets alone, the curve's momentum columns read its first moment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer import OuterOptimizer, TrainConfig, train
from trainer.outer_rules import OUTER_RULES
from trainer.packed import PACKABLE, train_packed

DELTAS = [[0.2, -0.4, 0.0], [0.1, 0.3, -0.05], [-0.3, 0.2, 0.01], [0.05, -0.1, 0.02]]


def adam_by_hand(theta, deltas, alpha, b1, b2, eps):
    """Adam on Δ in plain Python, element by element, bias-corrected, ε outside the root (as
    torch.optim.Adam): θ after each step."""
    theta, m, v, out = list(theta), [0.0] * len(theta), [0.0] * len(theta), []
    for t, d in enumerate(deltas, start=1):
        for i, g in enumerate(d):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            theta[i] -= alpha * m_hat / (math.sqrt(v_hat) + eps)
        out.append(list(theta))
    return out


@pytest.mark.parametrize("b1,b2,eps", [(0.9, 0.999, 1e-8), (0.5, 0.9, 0.05), (0.0, 0.0, 1e-8)])
def test_adam_matches_the_hand_written_reference_and_torch(b1, b2, eps):
    alpha = 0.3
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, alpha, b1, "adam", outer_beta2=b2, outer_eps=eps)
    want = adam_by_hand([1.0, 2.0, -1.0], DELTAS, alpha, b1, b2, eps)
    for d, w in zip(DELTAS, want):
        opt.step([torch.tensor(d, dtype=torch.float64)])
        np.testing.assert_allclose(theta[0].numpy(), w, rtol=1e-13, atol=1e-15)
    # and torch's own Adam, the convention the rule names
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    ref = torch.optim.Adam([p], lr=alpha, betas=(b1, b2), eps=eps)
    for d in DELTAS:
        p.grad = torch.tensor(d, dtype=torch.float64)
        ref.step()
    np.testing.assert_allclose(p.detach().numpy(), theta[0].numpy(), rtol=1e-13, atol=1e-15)


def test_adam_golden_value():
    """Four steps at the defaults, written out (float64): a change to the rule shows here."""
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, 0.3, 0.9, "adam")        # outer_beta2, outer_eps: defaults
    for d in DELTAS:
        opt.step([torch.tensor(d, dtype=torch.float64)])
    golden = [0.44179617223487305, 2.264796920336261, -0.6085147425072132]
    assert theta[0].tolist() == pytest.approx(golden, rel=1e-14)
    assert golden == pytest.approx(adam_by_hand([1.0, 2.0, -1.0], DELTAS, 0.3, 0.9, 0.999,
                                                1e-8)[-1], rel=1e-14)


def test_a_restart_zeroes_the_moments_and_the_step_count():
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, 0.3, 0.9, "adam", restart_every=2, outer_beta2=0.99)
    assert set(opt.state) == {"m", "v", "step"} and OUTER_RULES["adam"].restart == ("m", "v", "step")
    for t, d in enumerate(DELTAS[:2]):
        opt.maybe_restart(t)
        opt.step([torch.tensor(d, dtype=torch.float64)])
    assert float(opt.state["step"][0]) == 2 and float(opt.state["v"][0].abs().sum()) > 0
    assert opt.maybe_restart(2)
    assert all(float(x.abs().sum()) == 0 for entry in opt.state.values() for x in entry)
    # the step after a restart is Adam's first step again, from where θ stands
    start = theta[0].tolist()
    opt.step([torch.tensor(DELTAS[2], dtype=torch.float64)])
    want = adam_by_hand(start, DELTAS[2:3], 0.3, 0.9, 0.99, 1e-8)[0]
    np.testing.assert_allclose(theta[0].numpy(), want, rtol=1e-13, atol=1e-15)
    assert not opt.maybe_restart(3)


def test_per_trial_settings_in_a_stack_equal_each_trial_alone():
    """K = 3 trials with their own α, β, β₂, ε and R, one of them dropped midway: each trial's
    θ and statistics are bit for bit those it gets alone."""
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(3, 4, 5, generator=gen) for _ in range(6)]
    trials = [dict(alpha=0.3, beta=0.9, R=0, outer_beta2=0.999, outer_eps=1e-8),
              dict(alpha=0.1, beta=0.5, R=2, outer_beta2=0.9, outer_eps=1e-3),
              dict(alpha=0.7, beta=0.0, R=3, outer_beta2=0.5, outer_eps=1e-6)]
    theta0 = torch.randn(3, 4, 5, generator=gen)
    stacked_theta = [theta0.clone()]
    pack = OuterOptimizer.stacked(
        stacked_theta, [c["alpha"] for c in trials], [c["beta"] for c in trials], "adam",
        [c["R"] for c in trials], outer_beta2=[c["outer_beta2"] for c in trials],
        outer_eps=[c["outer_eps"] for c in trials])
    alone = []
    for k, c in enumerate(trials):
        th = [theta0[k].clone()]
        alone.append((th, OuterOptimizer(th, c["alpha"], c["beta"], "adam", c["R"],
                                         outer_beta2=c["outer_beta2"], outer_eps=c["outer_eps"])))
    rows = [0, 1, 2]
    for t, d in enumerate(deltas):
        if t == 4:                                        # trial 1 leaves the pack
            rows = [0, 2]
            index = torch.tensor([0, 2])
            stacked_theta = [stacked_theta[0].index_select(0, index)]
            pack.keep(index, stacked_theta)
        mask = pack.maybe_restart(t)
        stats = pack.step([d[rows]])
        for j, k in enumerate(rows):
            th, opt = alone[k]
            assert opt.maybe_restart(t) == bool(mask[j])
            one = opt.step([d[k]])
            assert torch.equal(stacked_theta[0][j], th[0]), (t, k)
            for key, v in one.items():
                np.testing.assert_array_equal(stats[key][j], v)


def test_a_pack_of_toy_trials_with_their_own_betas_is_each_trial_alone():
    assert {"beta", "outer_beta2", "outer_eps"} <= set(PACKABLE)
    base = dict(kind="toy", outer="adam", toy_dim=200, lr=0.5, workers=2, H=3, outer_steps=8,
                threads=1)
    configs = [TrainConfig(**base, alpha=a, beta=b, outer_beta2=b2, outer_eps=e, R=r, seed=s)
               for a, b, b2, e, r, s in [(0.05, 0.9, 0.999, 1e-8, 0, 0),
                                         (0.02, 0.5, 0.9, 1e-4, 3, 1),
                                         (0.1, 0.0, 0.5, 1e-8, 2, 2)]]
    for p, c in zip(train_packed(configs), configs):
        a = train(c)
        assert (p.status, p.outer_steps_done) == (a.status, a.outer_steps_done)
        assert [r["mode_err"] for r in p.curve] == [r["mode_err"] for r in a.curve]
        for key in ("eval_loss", "pseudo_grad_norm", "momentum_norm", "momentum_cos"):
            assert [r[key] for r in p.curve] == pytest.approx([r[key] for r in a.curve],
                                                              rel=1e-12, nan_ok=True), key


def test_the_momentum_columns_report_the_first_moment():
    b1 = 0.8
    theta = [torch.zeros(3, dtype=torch.float64)]
    opt = OuterOptimizer(theta, 0.1, b1, "adam")
    d1, d2 = np.array(DELTAS[0]), np.array(DELTAS[1])
    s1 = opt.step([torch.tensor(d1)])
    m1 = (1 - b1) * d1                                    # Adam's m, not SGD's β·m + Δ
    assert s1["momentum_norm"] == pytest.approx(np.linalg.norm(m1), rel=1e-14)
    assert math.isnan(s1["momentum_cos"])                 # m was zero before the step
    s2 = opt.step([torch.tensor(d2)])
    m2 = b1 * m1 + (1 - b1) * d2
    assert s2["momentum_norm"] == pytest.approx(np.linalg.norm(m2), rel=1e-14)
    cos = m1 @ d2 / (np.linalg.norm(m1) * np.linalg.norm(d2))
    assert s2["momentum_cos"] == pytest.approx(cos, rel=1e-12)
    # in a trial, restarts show where they zero it
    r = train(TrainConfig(kind="toy", outer="adam", alpha=0.05, toy_dim=50, H=2, R=3,
                          outer_steps=7))
    assert r.status == "completed" and r.final_loss < r.initial_loss
    assert [row["outer_step"] for row in r.curve if math.isnan(row["momentum_cos"])] == [0, 3, 6]


def test_adam_has_no_theory_model():
    """Adam divides by √v: not linear on (e, m), so no matrix; it trains, the theory and the
    report leave it out."""
    from analysis.theory import OUTER_KINDS, has_theory

    assert OUTER_RULES["adam"].matrix is None
    assert not has_theory("adam") and "adam" not in OUTER_KINDS


@pytest.mark.parametrize("settings,expected", [
    (dict(), "dc3aa0ff00bba19c"),
    (dict(kind="toy", outer="heavy_ball", alpha=0.5, beta=0.8, R=3, seed=2), "e5a51d696bc44b7e"),
])
def test_adams_settings_leave_every_earlier_trial_id_alone(settings, expected):
    """The hex of sweeps.store.store.trial_id before outer_beta2 and outer_eps existed (written out,
    never regenerated): a setting added at its default keeps a stored trial's id."""
    from records.identity import row_trial_id, trial_id

    cfg = TrainConfig(**settings)
    assert trial_id(cfg) == row_trial_id(cfg.flat()) == expected
    assert trial_id(cfg.replace(outer_beta2=0.999, outer_eps=1e-8)) == expected
    adam = cfg.replace(outer="adam")
    assert len({trial_id(adam), trial_id(adam.replace(outer_beta2=0.99)),
                trial_id(adam.replace(outer_eps=1e-6)), expected}) == 4
