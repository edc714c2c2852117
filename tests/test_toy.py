"""trainer.toy: the linear-regression trial, end to end through trainer.train, vs the theory."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.theory import block_contraction, effective_mu, mode_trajectory, outer_matrix
from trainer import TrainConfig, train
from trainer.toy import ToyProblem, tracked_modes

SPEC = Path(__file__).resolve().parents[1] / "sweeps" / "specs" / "restart_toy.yaml"
ETA, H, T, DIM = 0.5, 4, 24, 2000


def toy(**kw) -> TrainConfig:
    base = dict(kind="toy", toy_dim=DIM, toy_power=1.0, lr=ETA, H=H, outer_steps=T, alpha=1.0,
                beta=0.9, workers=1, diverge_factor=1e300, threads=1)
    return TrainConfig(**{**base, **kw})


def mode_errors(result) -> tuple[np.ndarray, np.ndarray]:
    """(mode_idx, errors after each outer step: (steps, modes))."""
    return (np.asarray(result.curve[0]["mode_idx"]),
            np.array([row["mode_err"] for row in result.curve]))


@pytest.mark.parametrize("outer,alpha,beta", [("nesterov", 1.0, 0.9), ("heavy_ball", 1.2, 0.8)])
@pytest.mark.parametrize("R", [0, 1, 3, 8])
def test_deterministic_toy_decays_each_mode_at_the_predicted_rate(outer, alpha, beta, R):
    cfg = toy(R=R, outer=outer, alpha=alpha, beta=beta)
    e0 = ToyProblem(cfg).theta.numpy().copy()                  # the seed's initial error −w*
    runs = {M: train(cfg.replace(workers=M)) for M in (1, 4)}
    idx, err = mode_errors(runs[1])
    assert runs[1].status == "completed" and err.shape == (T, len(idx))
    mu = effective_mu((idx + 1.0) ** -1.0, ETA, H)
    # every step: e_t = (restarted 2×2 recursion)_t · e_0, for each tracked mode
    want = mode_trajectory(mu, alpha, beta, R, T, outer).T * e0[idx]
    np.testing.assert_allclose(err, want, rtol=1e-6)
    if R == 0:                                                 # e_t / e_0 = (A^t)₁₁, no restarts
        At = np.linalg.matrix_power(outer_matrix(mu, alpha, beta, outer), T)[:, 0, 0]
        np.testing.assert_allclose(err[-1] / e0[idx], At, rtol=1e-6)
    else:                                                      # each block contracts by c_R
        ends = np.arange(R - 1, T, R)
        ratios = err[ends[1:]] / err[ends[:-1]]
        np.testing.assert_allclose(ratios, np.broadcast_to(
            block_contraction(mu, alpha, beta, R, outer), ratios.shape), rtol=1e-6)
    # full-batch GD: every worker computes the same thing, so M=4 is M=1 exactly
    assert np.array_equal(mode_errors(runs[4])[1], err)
    assert [r["eval_loss"] for r in runs[4].curve] == [r["eval_loss"] for r in runs[1].curve]


def test_beta_zero_makes_restarts_irrelevant():
    a, b = (train(toy(beta=0.0, alpha=1.5, R=R)) for R in (0, 3))
    assert np.array_equal(mode_errors(a)[1], mode_errors(b)[1])


def test_alpha1_beta0_single_worker_is_plain_gd_whatever_h():
    a = train(toy(alpha=1.0, beta=0.0, H=4, outer_steps=5))
    b = train(toy(alpha=1.0, beta=0.0, H=2, outer_steps=10))
    assert a.final_loss == pytest.approx(b.final_loss, rel=1e-12)
    idx, err = mode_errors(a)
    e0 = ToyProblem(toy()).theta.numpy()[idx]
    np.testing.assert_allclose(err[-1], (1 - ETA * (idx + 1.0) ** -1) ** 20 * e0, rtol=1e-10)
    assert a.final_loss < a.initial_loss                       # the outer step goes downhill


def test_population_loss_and_noise_floor():
    clean, noisy = ToyProblem(toy()), ToyProblem(toy(toy_noise=0.3))
    lam = (np.arange(DIM) + 1.0) ** -1
    want = 0.5 * np.sum(lam * clean.theta.numpy() ** 2)
    assert clean.evaluate() == pytest.approx(want, rel=1e-12)
    assert noisy.evaluate() - clean.evaluate() == pytest.approx(0.5 * 0.3 ** 2, rel=1e-9)
    assert clean.scheduled is False and clean.n_params == DIM


def test_diverges_when_the_theory_says_so():
    r = train(toy(alpha=3.0, beta=0.95, H=16, outer_steps=30, diverge_factor=10.0))
    assert r.status == "diverged" and r.outer_steps_done < 30 and "diverge_factor" in r.reason


def test_sgd_is_seeded_per_worker_and_tracks_gd_with_a_large_batch():
    cfg = toy(toy_dim=50, toy_batch=8, toy_noise=0.1, H=3, outer_steps=4, workers=2)
    a, b = train(cfg), train(cfg)
    assert np.array_equal(mode_errors(a)[1], mode_errors(b)[1])          # reproducible
    assert not np.array_equal(mode_errors(train(cfg.replace(seed=1)))[1], mode_errors(a)[1])
    problem = ToyProblem(cfg)
    w0, w1 = problem.make_worker(0), problem.make_worker(1)
    for w in (w0, w1):
        w.params[0].copy_(problem.theta)
        w.inner_step(0.1)
    assert not np.array_equal(w0.params[0].numpy(), w1.params[0].numpy())  # own streams
    big, exact = (train(toy(toy_dim=50, toy_batch=B, H=2, outer_steps=2)) for B in (20000, 0))
    assert big.final_loss == pytest.approx(exact.final_loss, rel=0.05)
    assert big.tokens == 20000 * 2 * 2 and exact.tokens == 2 * 2


def test_curve_rows_are_parquet_friendly(tmp_path):
    r = train(toy(outer_steps=3))
    idx, err = mode_errors(r)
    assert idx.tolist() == tracked_modes(DIM) and idx[0] == 0 and idx[-1] == DIM - 1
    assert 6 <= len(idx) <= 8 and np.all(np.diff(idx) > 0)
    pd.DataFrame(r.curve).to_parquet(tmp_path / "c.parquet")
    back = pd.read_parquet(tmp_path / "c.parquet")
    assert np.array_equal(np.stack(back["mode_err"].to_list()), err)


def test_a_large_trial_runs_well_under_a_second():
    cfg = toy(H=16, workers=4, outer_steps=30, R=3)
    train(cfg.replace(outer_steps=1))                            # warm torch up
    t0 = time.perf_counter()
    train(cfg)
    assert time.perf_counter() - t0 < 1.0


def test_shipped_spec_follows_design_and_builds_valid_trials():
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["name"] == "restart-toy" and spec["search"] == {"kind": "grid"}
    assert set(spec) <= {"name", "description", "trial", "space", "search", "resources", "output"}
    assert spec["trial"]["kind"] == "toy" and spec["trial"]["lr"] <= 1.0
    space = spec["space"]
    assert space["R"] == [0, 1, 3, 8] and space["H"] == [1, 4, 16] and space["seed"] == [0]
    for alpha in space["alpha"]:
        for beta in space["beta"]:
            TrainConfig.from_dict({**spec["trial"], "alpha": alpha, "beta": beta, "H": 16, "R": 8})
