"""The mode-wise restart theory of docs/design.md, in numpy: which (α, β) a spectrum predicts stable.

One eigen-mode λ of a squared loss, H inner GD steps of size η: the outer optimizer sees
μ = 1 − (1−ηλ)^H and acts on the state (e, m) by the 2×2 matrix

    heavy_ball:  A = [[1 − αμ,       −αβ ], [μ, β]]
    nesterov:    A = [[1 − αμ(1+β),  −αβ²], [μ, β]]

(each rule's A lives beside its update in trainer.outer_rules, a numbers-only module).

Per-step contraction: ρ(A) without restarts (R = 0); |c_R|^(1/R) with c_R = (A^R)₁₁ when m is
zeroed every R steps. A configuration is predicted stable when every mode's rate is below 1.
The command line (`diloco-sweep theory`) is in ``analysis.theory_cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.outer_rules import OUTER_RULES, outer_rule

__all__ = ["OUTER_KINDS", "effective_mu", "has_theory", "outer_matrix", "block_contraction",
           "block_contraction_closed", "spectral_radius", "restart_rate", "mode_trajectory",
           "power_law_spectrum", "max_rate", "predicted_stable", "critical_alpha_mu",
           "parse_grid", "parse_spectrum"]

OUTER_KINDS = tuple(k for k in OUTER_RULES if OUTER_RULES[k].matrix is not None)
_CLOSE = 1e-3  # eigenvalues closer than this (relative) use the repeated-root form of s_R


def effective_mu(lam: Any, eta: float, H: int) -> np.ndarray:
    """μ = 1 − (1 − ηλ)^H, elementwise; accurate for tiny ηλ (expm1/log1p)."""
    x = eta * np.asarray(lam, dtype=float)
    safe = np.where(x < 1, x, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x < 1, -np.expm1(H * np.log1p(-safe)), 1.0 - (1.0 - x) ** H)


def has_theory(outer: str) -> bool:
    """True when the outer rule has a linear model (trainer.outer_rules); False for an unknown
    or model-less rule, which the report then draws no prediction for."""
    rule = OUTER_RULES.get(outer)
    return rule is not None and rule.matrix is not None


def outer_matrix(mu: Any, alpha: Any, beta: Any, outer: str = "nesterov") -> np.ndarray:
    """The outer step A on (e, m), broadcast over μ, α, β; shape (*broadcast, 2, 2)."""
    rule = outer_rule(outer)
    if rule.matrix is None:
        raise ValueError(f"outer: rule {outer!r} has no theory model; the rules with one are "
                         f"{', '.join(k for k in OUTER_RULES if has_theory(k))}")
    mu, alpha, beta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (mu, alpha, beta)))
    return rule.matrix(mu, alpha, beta)


def block_contraction(mu: Any, alpha: Any, beta: Any, R: int,
                      outer: str = "nesterov") -> np.ndarray:
    """c_R = (A^R)₁₁ by matrix power: e after R outer steps from the restarted state (e, 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.linalg.matrix_power(outer_matrix(mu, alpha, beta, outer), int(R))[..., 0, 0]


def _eig(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trace, determinant and the two (complex) eigenvalues of each 2×2 in the stack."""
    tr = A[..., 0, 0] + A[..., 1, 1]
    det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    root = np.sqrt((tr * tr - 4 * det).astype(complex))
    return tr, det, (tr + root) / 2, (tr - root) / 2


def _s(l1: np.ndarray, l2: np.ndarray, n: int) -> np.ndarray:
    """s_n = (λ1^n − λ2^n)/(λ1 − λ2), and Σ_j λ1^j λ2^(n−1−j) where the roots (nearly) coincide."""
    if n == 0:
        return np.zeros_like(l1)
    close = np.abs(l1 - l2) <= _CLOSE * np.maximum(np.abs(l1), np.abs(l2))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = (l1 ** n - l2 ** n) / np.where(close, 1.0, l1 - l2)
    if np.any(close):
        a, b = l1[close], l2[close]
        out[close] = sum(a ** j * b ** (n - 1 - j) for j in range(n))
    return out


def block_contraction_closed(mu: Any, alpha: Any, beta: Any, R: int,
                             outer: str = "nesterov") -> np.ndarray:
    """c_R through the eigenvalues: A^R = s_R·A − det(A)·s_(R−1)·I (Cayley–Hamilton)."""
    A = outer_matrix(mu, alpha, beta, outer)
    if R == 0:
        return np.ones(A.shape[:-2])
    _, det, l1, l2 = _eig(A)
    with np.errstate(over="ignore", invalid="ignore"):
        c = A[..., 0, 0] * _s(l1, l2, int(R)) - det * _s(l1, l2, int(R) - 1)
    return np.real(c)  # the imaginary part is rounding: c_R is real for a real A


def spectral_radius(mu: Any, alpha: Any, beta: Any, outer: str = "nesterov") -> np.ndarray:
    """ρ(A) = max |eigenvalue|, the per-step contraction without restarts."""
    _, _, l1, l2 = _eig(outer_matrix(mu, alpha, beta, outer))
    return np.maximum(np.abs(l1), np.abs(l2))


def restart_rate(mu: Any, alpha: Any, beta: Any, R: int, outer: str = "nesterov",
                 method: str = "power") -> np.ndarray:
    """Per-step contraction: ρ(A) for R = 0, |c_R|^(1/R) for R ≥ 1 (method: power | closed)."""
    if int(R) != R or R < 0:
        raise ValueError(f"R: expected an integer >= 0, got {R!r}")
    if R == 0:
        return spectral_radius(mu, alpha, beta, outer)
    fn = {"power": block_contraction, "closed": block_contraction_closed}[method]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.abs(fn(mu, alpha, beta, R, outer)) ** (1.0 / R)


def mode_trajectory(mu: Any, alpha: Any, beta: Any, R: int, T: int,
                    outer: str = "nesterov") -> np.ndarray:
    """e_t / e_0 after outer steps t = 1..T, m zeroed before step t when t % R == 0 (R > 0).

    Exactly the loop of docs/design.md on one mode; shape (*broadcast, T).
    """
    A = outer_matrix(mu, alpha, beta, outer)
    state = np.zeros(A.shape[:-1])                         # (..., 2): (e, m)
    state[..., 0] = 1.0
    out = np.empty(A.shape[:-2] + (T,))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            if R > 0 and t % R == 0:
                state[..., 1] = 0.0
            state = np.einsum("...ij,...j->...i", A, state)
            out[..., t] = state[..., 0]
    return out


def power_law_spectrum(dim: int, power: float) -> np.ndarray:
    """λ_k = k^−power for k = 1..dim (largest 1): the toy problem's spectrum."""
    return np.arange(1, dim + 1, dtype=float) ** -float(power)


def max_rate(alphas: Any, betas: Any, spectrum_lams: Any, eta: float, H: int, R: int,
             outer: str = "nesterov") -> np.ndarray:
    """Worst-mode per-step rate over the spectrum on the grid; shape (len(betas), len(alphas))."""
    mu = np.unique(effective_mu(np.asarray(spectrum_lams, dtype=float).ravel(), eta, H))
    alphas, betas = np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float)
    out = np.empty((betas.size, alphas.size))
    for i, b in enumerate(betas):                          # one β row at a time: (A, K) in memory
        rate = restart_rate(mu[None, :], alphas[:, None], b, R, outer)
        out[i] = np.where(np.isnan(rate), np.inf, rate).max(axis=1)
    return out


def predicted_stable(alphas: Any, betas: Any, spectrum_lams: Any, eta: float, H: int, R: int,
                     outer: str = "nesterov") -> np.ndarray:
    """Boolean (β, α) grid: True where every mode's per-step rate is below 1."""
    return max_rate(alphas, betas, spectrum_lams, eta, H, R, outer) < 1.0


def critical_alpha_mu(beta: float, R: int, outer: str = "nesterov", x_max: float = 8.0) -> float:
    """The smallest x = αμ at which the rate reaches 1 (inf if none below x_max).

    The rate depends on α and μ only through x for both outer kinds, so for a spectrum that
    reaches down to μ ≈ 0 the stable α are exactly α < x*/μ_max.
    """
    x = np.linspace(1e-9, x_max, 16001)
    bad = np.nonzero(restart_rate(x, 1.0, beta, R, outer) >= 1)[0]
    if bad.size == 0:
        return float("inf")
    lo, hi = (x[bad[0] - 1], x[bad[0]]) if bad[0] > 0 else (0.0, x[0])
    for _ in range(50):                                    # bisect the grid cell to rounding
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if restart_rate(mid, 1.0, beta, R, outer) < 1 else (lo, mid)
    return float(hi)


# ----------------------------------------------------------------------------- command line
def parse_grid(text: str) -> np.ndarray:
    """'0.5,1,2' (a list) or 'LOW:HIGH:N' (N evenly spaced values, ends included)."""
    if ":" in text:
        low, high, n = text.split(":")
        return np.linspace(float(low), float(high), int(n))
    return np.array([float(v) for v in text.split(",") if v.strip()])


def parse_spectrum(text: str) -> np.ndarray:
    """'powerlaw:DIM:POWER', or a file of eigenvalues (whitespace or newline separated)."""
    if text.startswith("powerlaw:"):
        _, dim, power = text.split(":")
        return power_law_spectrum(int(dim), float(power))
    lams = np.loadtxt(Path(text), dtype=float).ravel()
    if lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams < 0):
        raise ValueError(f"--spectrum {text}: expected finite eigenvalues >= 0")
    return lams
