"""`diloco-sweep theory`: print or plot the (α, β) region the mode-wise theory predicts stable."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .theory import (OUTER_KINDS, critical_alpha_mu, max_rate, parse_grid, parse_spectrum)
from .theory_plots import theory_figure

__all__ = ["add_parser", "main"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `theory` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("theory", help="print or plot the (α, β) region the mode-wise "
                              "theory predicts stable", description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--eta", type=float, default=0.5, help="inner GD step η (default 0.5)")
    p.add_argument("--H", type=int, nargs="+", default=[4], help="inner steps per outer step")
    p.add_argument("--R", type=int, nargs="+", default=[0, 1, 3, 8],
                   help="restart periods; 0 = never")
    p.add_argument("--outer", choices=OUTER_KINDS, default="nesterov")
    p.add_argument("--alphas", type=parse_grid, default=parse_grid("0.25:3:12"),
                   help="α grid: a,b,c or LOW:HIGH:N (default 0.25:3:12)")
    p.add_argument("--betas", type=parse_grid, default=parse_grid("0,0.3,0.5,0.7,0.8,0.9,0.95"),
                   help="β grid: a,b,c or LOW:HIGH:N")
    p.add_argument("--spectrum", default="powerlaw:2000:1.0",
                   help="powerlaw:DIM:POWER or a file of eigenvalues (default powerlaw:2000:1.0)")
    p.add_argument("--summary", action="store_true", help="print only the stable fractions")
    p.add_argument("--critical", action="store_true",
                   help="also print x* = the largest stable alpha*mu per beta and R")
    p.add_argument("--html", metavar="OUT",
                   help="also write a plotly figure of the worst-mode rate")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Print a map per (H, R) — '#' stable, '.' unstable, β rows, α columns — and the fraction."""
    lams = parse_spectrum(args.spectrum)
    alphas, betas = np.asarray(args.alphas), np.asarray(args.betas)
    print(f"theory: outer={args.outer} eta={args.eta:g} spectrum={args.spectrum} "
          f"({lams.size} modes, lambda_max={lams.max():.4g}); alpha {alphas[0]:g}..{alphas[-1]:g} "
          f"({alphas.size}), beta {betas[0]:g}..{betas[-1]:g} ({betas.size})")
    rates: dict[tuple[int, int], np.ndarray] = {}
    for H in args.H:
        for R in args.R:
            rates[H, R] = rate = max_rate(alphas, betas, lams, args.eta, H, R, args.outer)
            stable = rate < 1
            print(f"H={H:<3d} R={R:<3d} stable fraction {stable.mean():.3f} "
                  f"({stable.sum()}/{stable.size})")
            if not args.summary:
                for j in range(betas.size - 1, -1, -1):
                    row = "".join("#" if s else "." for s in stable[j])
                    print(f"  beta={betas[j]:<5.3g} {row}")
    if args.critical:
        print("critical alpha*mu_max x* (stable below it, for a spectrum reaching mu ~ 0):")
        print(" " * 13 + " ".join(f"{'R=' + str(R):>7s}" for R in args.R))
        for b in betas:
            print(f"  beta={b:<5.3g} " + " ".join(f"{critical_alpha_mu(b, R, args.outer):7.4f}"
                                                for R in args.R))
    if args.html:
        theory_figure(alphas, betas, rates, title=f"predicted worst-mode rate ({args.outer}, "
                      f"eta={args.eta:g}, {args.spectrum})").write_html(args.html)
        print(f"wrote {args.html}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m analysis.theory_cli")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args()
    raise SystemExit(_args.func(_args))
