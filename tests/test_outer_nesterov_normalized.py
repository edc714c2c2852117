"""The nesterov_normalized outer rule (trainer/outer_rules/nesterov_normalized.py): its update
against a hand-written reference and against torch's Nesterov SGD at α·(1 − β), a restart
resets its state, its theory matrix against the update and against the trained toy, and the
effective learning rate that puts it and the torch convention on one axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.theory import (OUTER_KINDS, block_contraction, effective_mu, mode_trajectory,
                             outer_matrix, restart_rate, spectral_radius)
from trainer import OuterOptimizer, TrainConfig, train
from trainer.outer_rules import OUTER_RULES, effective_lr
from trainer.toy import ToyProblem

RULE = "nesterov_normalized"
DELTAS = [[0.2, -0.4, 0.0], [0.1, 0.3, -0.05], [-0.3, 0.2, 0.01], [0.05, -0.1, 0.02]]


def by_hand(theta, deltas, alpha, beta, restart_every=0):
    """The rule as docs/design.md writes it, element by element in plain Python: θ after each
    step; m zeroed before step t when t % R == 0 (R > 0)."""
    theta, m, out = list(theta), [0.0] * len(theta), []
    for t, d in enumerate(deltas):
        if restart_every and t % restart_every == 0:
            m = [0.0] * len(theta)
        for i, g in enumerate(d):
            m_new = beta * m[i] + (1 - beta) * g
            theta[i] -= alpha * ((1 + beta) * m_new - beta * m[i])
            m[i] = m_new
        out.append(list(theta))
    return out


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_update_matches_the_hand_written_reference_and_torch_nesterov_at_alpha_one_minus_beta(beta):
    alpha = 0.7
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, alpha, beta, RULE)
    for d, want in zip(DELTAS, by_hand([1.0, 2.0, -1.0], DELTAS, alpha, beta)):
        opt.step([torch.tensor(d, dtype=torch.float64)])
        np.testing.assert_allclose(theta[0].numpy(), want, rtol=1e-13, atol=1e-15)
    # torch has no normalized Nesterov (it forbids dampening with nesterov=True), but the rule
    # at α is exactly torch.optim.SGD(nesterov=True) at α·(1 − β): its m is (1 − β) times torch's
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    ref = torch.optim.SGD([p], lr=alpha * (1 - beta), momentum=beta, nesterov=beta > 0)
    for d in DELTAS:
        p.grad = torch.tensor(d, dtype=torch.float64)
        ref.step()
    np.testing.assert_allclose(p.detach().numpy(), theta[0].numpy(), rtol=1e-12, atol=1e-14)


def test_golden_value():
    """Four steps at α = 0.7, β = 0.9, written out (float64): a change to the rule shows here."""
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, 0.7, 0.9, RULE)
    for d in DELTAS:
        opt.step([torch.tensor(d, dtype=torch.float64)])
    golden = by_hand([1.0, 2.0, -1.0], DELTAS, 0.7, 0.9)[-1]
    assert golden == pytest.approx([0.9688556, 2.0178038, -0.9925205], abs=1e-12)  # by pencil
    assert theta[0].tolist() == pytest.approx(golden, rel=1e-13)


def test_a_restart_zeroes_the_momentum_and_the_next_step_is_a_first_step():
    theta = [torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)]
    opt = OuterOptimizer(theta, 0.7, 0.9, RULE, restart_every=2)
    assert set(opt.state) == {"m"} and OUTER_RULES[RULE].restart == ("m",)
    for t, d in enumerate(DELTAS):
        did = opt.maybe_restart(t)
        assert did == (t % 2 == 0)
        if t == 2:
            assert float(opt.state["m"][0].abs().sum()) == 0
        opt.step([torch.tensor(d, dtype=torch.float64)])
    want = by_hand([1.0, 2.0, -1.0], DELTAS, 0.7, 0.9, restart_every=2)[-1]
    np.testing.assert_allclose(theta[0].numpy(), want, rtol=1e-13, atol=1e-15)
    assert not np.allclose(want, by_hand([1.0, 2.0, -1.0], DELTAS, 0.7, 0.9)[-1])


def test_per_trial_betas_in_a_stack_equal_each_trial_alone():
    gen = torch.Generator().manual_seed(1)
    deltas = [torch.randn(3, 4, 5, generator=gen) for _ in range(5)]
    trials = [(0.3, 0.9, 0), (0.1, 0.5, 2), (0.7, 0.0, 3)]
    theta0 = torch.randn(3, 4, 5, generator=gen)
    stacked = [theta0.clone()]
    pack = OuterOptimizer.stacked(stacked, [a for a, _, _ in trials], [b for _, b, _ in trials],
                                  RULE, [r for _, _, r in trials])
    alone = [([theta0[k].clone()], a, b, r) for k, (a, b, r) in enumerate(trials)]
    alone = [(th, OuterOptimizer(th, a, b, RULE, r)) for th, a, b, r in alone]
    for t, d in enumerate(deltas):
        pack.maybe_restart(t)
        pack.step([d])
        for k, (th, opt) in enumerate(alone):
            opt.maybe_restart(t)
            opt.step([d[k]])
            assert torch.equal(stacked[0][k], th[0]), (t, k)


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.9), (2.0, 0.5), (7.0, 0.95), (1.0, 0.0)])
def test_the_matrix_is_one_step_of_the_update_on_a_mode(alpha, beta):
    """A on (e, m), derived in the module docstring, against the rule's own update fed Δ = μe
    (the state e = θ − θ*, θ* = 0)."""
    assert RULE in OUTER_KINDS
    mu = np.array([0.05, 0.4, 1.0])
    A = outer_matrix(mu, alpha, beta, RULE)
    e0, m0 = np.array([1.0, -0.5, 2.0]), np.array([0.3, 0.2, -0.7])
    theta = [torch.tensor(e0)]
    opt = OuterOptimizer(theta, alpha, beta, RULE)
    opt.state["m"][0].copy_(torch.tensor(m0).unsqueeze(0))
    opt.step([torch.tensor(mu * e0)])
    want = np.einsum("kij,kj->ki", A, np.stack([e0, m0], axis=1))
    np.testing.assert_allclose(theta[0].numpy(), want[:, 0], rtol=1e-13)
    np.testing.assert_allclose(opt.state["m"][0][0].numpy(), want[:, 1], rtol=1e-13)


def test_its_rates_are_nesterovs_at_alpha_one_minus_beta():
    """The similarity diag(1, 1 − β): ρ(A) and every c_R equal torch-nesterov's at α·(1 − β)."""
    mu = np.linspace(0.01, 1.0, 50)
    for beta in (0.1, 0.5, 0.9, 0.99):
        for alpha in (0.3, 1.0, 4.0, 20.0):
            np.testing.assert_allclose(spectral_radius(mu, alpha, beta, RULE),
                                       spectral_radius(mu, alpha * (1 - beta), beta), rtol=1e-9)
            for R in (1, 3, 8):
                np.testing.assert_allclose(restart_rate(mu, alpha, beta, R, RULE),
                                           restart_rate(mu, alpha * (1 - beta), beta, R),
                                           rtol=1e-9, atol=1e-12)


ETA, H, T, DIM = 0.5, 4, 24, 500


@pytest.mark.parametrize("R", [0, 3])
@pytest.mark.parametrize("alpha,beta", [(4.0, 0.8), (9.0, 0.9)])
def test_the_trained_toy_follows_the_theory_matrix(alpha, beta, R):
    """Full-batch toy, one worker: every tracked mode's error after each round is the 2×2
    recursion's, restarts included, as tests/test_toy.py holds nesterov and heavy_ball."""
    cfg = TrainConfig(kind="toy", toy_dim=DIM, toy_power=1.0, lr=ETA, H=H, outer_steps=T,
                      alpha=alpha, beta=beta, R=R, outer=RULE, workers=1, diverge_factor=1e300,
                      threads=1)
    e0 = ToyProblem(cfg).theta.numpy().copy()
    run = train(cfg)
    idx = np.asarray(run.curve[0]["mode_idx"])
    err = np.array([row["mode_err"] for row in run.curve])
    mu = effective_mu((idx + 1.0) ** -1.0, ETA, H)
    want = mode_trajectory(mu, alpha, beta, R, T, RULE).T * e0[idx]
    np.testing.assert_allclose(err, want, rtol=1e-6, atol=1e-12)
    if R:
        ends = np.arange(R - 1, T, R)
        np.testing.assert_allclose(err[ends[1:]] / err[ends[:-1]], np.broadcast_to(
            block_contraction(mu, alpha, beta, R, RULE), (len(ends) - 1, len(idx))), rtol=1e-6)
    # and the same trial in the torch convention at α·(1 − β) follows the same curve
    twin = train(cfg.replace(outer="nesterov", alpha=alpha * (1 - beta)))
    np.testing.assert_allclose([r["eval_loss"] for r in twin.curve],
                               [r["eval_loss"] for r in run.curve], rtol=1e-9)


def test_effective_learning_rates_put_the_conventions_on_one_axis():
    a, b = np.array([0.5, 1.0, 2.0]), np.array([0.0, 0.5, 0.9])
    np.testing.assert_allclose(effective_lr("nesterov", a, b), a / (1 - b))
    np.testing.assert_allclose(effective_lr("heavy_ball", a, b), a / (1 - b))
    np.testing.assert_allclose(effective_lr(RULE, a, b), a)
    np.testing.assert_allclose(effective_lr("nesterov", a * (1 - b), b), effective_lr(RULE, a, b))
    assert np.isnan(effective_lr("adam", a, b)).all()
    with pytest.raises(ValueError, match="outer: expected one of"):
        effective_lr("nope", a, b)


def test_its_analytic_edges_are_nesterovs_stretched_by_one_over_one_minus_beta():
    """docs/theory.md's table: x(1−β) < 2(1+β)/(1+2β) without restarts, x(1−β²) < 2 at R = 1."""
    from analysis.theory import critical_alpha_mu

    for b in (0.1, 0.5, 0.9):
        assert critical_alpha_mu(b, 0, RULE, x_max=20) == pytest.approx(
            2 * (1 + b) / (1 + 2 * b) / (1 - b), rel=1e-9)
        assert critical_alpha_mu(b, 1, RULE, x_max=20) == pytest.approx(2 / (1 - b * b), rel=1e-9)
