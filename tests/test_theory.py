"""analysis.theory: the restart contraction against a direct simulation, closed forms, the CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from analysis.theory import (block_contraction, block_contraction_closed,
                             critical_alpha_mu, effective_mu, max_rate, mode_trajectory,
                             outer_matrix, parse_grid, power_law_spectrum, predicted_stable,
                             restart_rate, spectral_radius)

from analysis.theory_cli import add_parser, main

OUTERS = ("nesterov", "heavy_ball")


def simulate(mu: float, alpha: float, beta: float, steps: int, outer: str) -> list[float]:
    """docs/design.md's outer loop on one mode, written out: e after each of `steps` outer steps."""
    e, m, out = 1.0, 0.0, []
    for _ in range(steps):
        delta = mu * e                                  # H GD steps shrink e by (1 − μ)
        m = beta * m + delta
        e = e - alpha * (delta + beta * m) if outer == "nesterov" else e - alpha * m
        out.append(e)
    return out


def random_cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 2, n), rng.uniform(0.05, 3, n), rng.uniform(0, 0.99, n),
            rng.integers(1, 25, n))


@pytest.mark.parametrize("outer", OUTERS)
def test_restart_rate_matches_direct_simulation(outer):
    mu, alpha, beta, R = random_cases(300, 1)
    for i in range(mu.size):
        traj = simulate(mu[i], alpha[i], beta[i], int(R[i]), outer)
        scale = max(1.0, max(abs(v) for v in traj))          # c_R may be a cancellation
        c = block_contraction(mu[i], alpha[i], beta[i], int(R[i]), outer)
        assert abs(c - traj[-1]) <= 1e-10 * scale
        if abs(traj[-1]) > 1e-6 * scale:
            rate = restart_rate(mu[i], alpha[i], beta[i], int(R[i]), outer)
            assert rate == pytest.approx(abs(traj[-1]) ** (1 / R[i]), rel=1e-10)


@pytest.mark.parametrize("outer", OUTERS)
def test_restart_rate_is_vectorized_and_r0_is_spectral_radius(outer):
    mu, alpha, beta, _ = random_cases(200, 2)
    for R in (0, 1, 3, 8):
        vec = restart_rate(mu, alpha, beta, R, outer)
        one = [restart_rate(mu[i], alpha[i], beta[i], R, outer) for i in range(mu.size)]
        np.testing.assert_allclose(vec, one, rtol=1e-12)
    eig = np.abs(np.linalg.eigvals(outer_matrix(mu, alpha, beta, outer))).max(axis=-1)
    np.testing.assert_allclose(restart_rate(mu, alpha, beta, 0, outer), eig, rtol=1e-8)
    # the grid broadcast: (β, α, μ) axes
    grid = restart_rate(mu[:5], alpha[:3, None], beta[:2, None, None], 3, outer)
    assert grid.shape == (2, 3, 5)


def test_r1_is_one_gd_step_on_mu():
    mu, alpha, beta, _ = random_cases(100, 3)
    np.testing.assert_allclose(restart_rate(mu, alpha, beta, 1, "heavy_ball"),
                               np.abs(1 - alpha * mu), rtol=1e-13)
    np.testing.assert_allclose(restart_rate(mu, alpha, beta, 1, "nesterov"),
                               np.abs(1 - alpha * mu * (1 + beta)), rtol=1e-13)


@pytest.mark.parametrize("outer", OUTERS)
def test_beta_zero_makes_r_irrelevant(outer):
    mu, alpha, _, _ = random_cases(100, 4)
    for R in (0, 2, 5):
        np.testing.assert_allclose(restart_rate(mu, alpha, 0.0, R, outer), np.abs(1 - alpha * mu),
                                   rtol=1e-12)


@pytest.mark.parametrize("outer", OUTERS)
def test_closed_form_agrees_with_matrix_power(outer):
    mu, alpha, beta, Rs = random_cases(2000, 5)
    for R in (1, 2, 3, 8, 30):
        p = block_contraction(mu, alpha, beta, R, outer)
        c = block_contraction_closed(mu, alpha, beta, R, outer)
        scale = np.maximum(1.0, spectral_radius(mu, alpha, beta, outer) ** R) * R
        assert np.max(np.abs(p - c) / scale) < 1e-12
    np.testing.assert_allclose(restart_rate(mu, alpha, beta, 8, outer, method="closed"),
                               restart_rate(mu, alpha, beta, 8, outer), rtol=1e-9, atol=1e-12)


def test_closed_form_at_repeated_and_zero_eigenvalues():
    beta = np.array([0.3, 0.5, 0.9])
    x_double = 1 - 4 * beta / (1 + beta) ** 2              # nesterov: discriminant exactly 0
    # a double root, A nilpotent, roots 1e-7 apart (the plain quotient loses 1e-9 there)
    for x in (x_double, np.ones(3), x_double * (1 + 1e-14), x_double * (1 - 1e-14)):
        for R in (1, 2, 5, 12):
            p = block_contraction(x, 1.0, beta, R, "nesterov")
            c = block_contraction_closed(x, 1.0, beta, R, "nesterov")
            np.testing.assert_allclose(c, p, rtol=1e-12, atol=1e-14)
            assert np.all(np.isfinite(c))


def test_effective_mu():
    lam = np.array([1.0, 0.5, 1e-6, 3.0])
    for eta, H in ((0.5, 1), (0.5, 16), (1.0, 4)):
        np.testing.assert_allclose(effective_mu(lam, eta, H), 1 - (1 - eta * lam) ** H, rtol=1e-9)
    assert effective_mu(1e-12, 0.1, 10) == pytest.approx(1e-12, rel=1e-9)  # no cancellation


@pytest.mark.parametrize("outer", OUTERS)
@pytest.mark.parametrize("R", [0, 1, 3])
def test_mode_trajectory_is_the_restarted_loop(outer, R):
    mu, alpha, beta = 0.7, 1.3, 0.8
    T = 20
    e, m, want = 1.0, 0.0, []
    for t in range(T):
        if R > 0 and t % R == 0:
            m = 0.0
        delta = mu * e
        m = beta * m + delta
        e -= alpha * (delta + beta * m) if outer == "nesterov" else alpha * m
        want.append(e)
    np.testing.assert_allclose(mode_trajectory(mu, alpha, beta, R, T, outer), want, rtol=1e-12)


def test_power_law_spectrum():
    lam = power_law_spectrum(2000, 1.0)
    assert lam.shape == (2000,) and lam[0] == 1.0 and lam[-1] == pytest.approx(1 / 2000)
    assert np.all(np.diff(lam) < 0)


def test_predicted_stable_matches_the_analytic_boundary():
    # nesterov R=0 is stable iff α μ < 2(1+β)/(1+2β); R=1 iff α μ (1+β) < 2; the top mode decides
    lams, eta, H = power_law_spectrum(500, 1.0), 0.5, 4
    mu_max = effective_mu(1.0, eta, H)
    alphas, betas = np.linspace(0.1, 3, 117), np.array([0.0, 0.4, 0.8, 0.95])
    for R, edge in ((0, 2 * (1 + betas) / (1 + 2 * betas)), (1, 2 / (1 + betas))):
        grid = predicted_stable(alphas, betas, lams, eta, H, R, "nesterov")
        assert grid.shape == (betas.size, alphas.size)
        want = alphas[None, :] * mu_max < edge[:, None]
        assert np.array_equal(grid, want)
    rate = max_rate(alphas, betas, lams, eta, H, 0, "nesterov")
    assert np.all((rate < 1) == predicted_stable(alphas, betas, lams, eta, H, 0))


def test_critical_alpha_mu_matches_the_analytic_edges_and_restarts_never_raise_it():
    for b in (0.0, 0.3, 0.8, 0.95):
        assert critical_alpha_mu(b, 0, "nesterov") == pytest.approx(2 * (1 + b) / (1 + 2 * b),
                                                                    rel=1e-9)
        assert critical_alpha_mu(b, 1, "nesterov") == pytest.approx(2 / (1 + b), rel=1e-9)
        assert critical_alpha_mu(b, 0, "heavy_ball") == pytest.approx(2 * (1 + b), rel=1e-9)
        assert critical_alpha_mu(b, 1, "heavy_ball") == pytest.approx(2.0, rel=1e-9)
        # docs/theory.md: in this model a restart never moves the edge outwards
        for outer in OUTERS:
            edge = critical_alpha_mu(b, 0, outer)
            assert all(critical_alpha_mu(b, R, outer) <= edge * (1 + 1e-9) for R in (2, 3, 8, 16))


def test_parse_grid():
    assert parse_grid("0.5,1,2").tolist() == [0.5, 1.0, 2.0]
    assert parse_grid("0:1:5").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["theory", *argv])


def test_cli_prints_a_map_per_r(capsys, tmp_path):
    spec = tmp_path / "lams.txt"
    spec.write_text("1.0\n0.5\n0.25\n")
    args = _args(["--eta", "1", "--H", "1", "--R", "0", "1", "--alphas", "0.5,1.5,2.5",
                  "--betas", "0,0.9", "--spectrum", str(spec), "--outer", "heavy_ball"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # heavy_ball, μ_max = 1: R=1 needs α < 2; R=0 needs α < 2(1+β)
    assert "H=1   R=0   stable fraction 0.833 (5/6)" in out
    assert "beta=0.9   ###" in out and "beta=0     ##." in out
    assert "H=1   R=1   stable fraction 0.667 (4/6)" in out


def test_cli_html(tmp_path, capsys):
    out = tmp_path / "theory.html"
    args = _args(["--H", "4", "--R", "0", "3", "--alphas", "0.5:3:6", "--betas", "0,0.9",
                  "--spectrum", "powerlaw:100:1", "--summary", "--html", str(out)])
    assert main(args) == 0
    assert out.stat().st_size > 1000 and "beta=" not in capsys.readouterr().out
