"""What a diverged trial costs, as a fraction of a completed trial of the same shape.

- an outer blow-up (α = 50): caught by the eval after the first round, so it costs about
  one round of T plus set-up;
- an inner blow-up (inner lr 0.3): the per-round eval lets it run until an eval shows it;
  with `diverge_check_every=1` the trial's own train losses stop it within the first round;
- in a packed set, a diverged member's slots leave the stack: the set costs what its
  survivors cost (packed K with one α = 50 member, against packed K−1 stable ones).
"""

from __future__ import annotations

import argparse
import time

from trainer import train
from trainer.packed import train_packed

from .batched import add_common_args, base_config, line, median_runs
from .packed import grid

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p, outer_steps=10, repeats=1)
    p.add_argument("--K", type=int, default=4, help="trials in the packed comparison")
    args = p.parse_args(argv)
    cfg = base_config(args)
    blow = cfg.replace(lr=0.3, warmup_steps=0)
    trials = {"completed": cfg, "outer": cfg.replace(alpha=50.0),
              "inner": blow, "inner_checked": blow.replace(diverge_check_every=1)}
    status: dict[str, str] = {}

    def trial(name: str):
        def run() -> tuple[float, int]:
            r = train(trials[name])
            status[name] = r.status
            return r.wall_s, r.tokens
        return run

    def pack(configs):
        def run() -> tuple[float, int]:
            t0 = time.perf_counter()
            results = train_packed(configs)
            return time.perf_counter() - t0, sum(r.tokens for r in results)
        return run

    stable = grid(cfg, args.K - 1)
    paths = {name: trial(name) for name in trials}
    paths["pack_stable"] = pack(stable)
    paths["pack_one_diverged"] = pack(stable + [cfg.replace(alpha=50.0, seed=args.K)])
    res = median_runs(paths, args.repeats)
    full = res["completed"][0]
    T = cfg.outer_steps
    assert status["completed"] == "completed", status
    rows = [("outer", f"alpha=50 ({status['outer']})"),
            ("inner", f"inner lr 0.3, per-round eval ({status['inner']})"),
            ("inner_checked", f"inner lr 0.3, diverge_check_every=1 ({status['inner_checked']})")]
    out = {}
    for key, label in rows:
        secs, tokens = res[key]
        out[key] = secs / full
        line("diverged", f"{label}, T={T}", f"{secs:.2f}s of {full:.2f}s", secs / full)
    t_stable, t_mixed = res["pack_stable"][0], res["pack_one_diverged"][0]
    out["packed"] = t_mixed / t_stable
    line("diverged", f"packed {args.K - 1} stable + 1 diverging vs {args.K - 1} stable",
         f"{t_mixed:.2f}s vs {t_stable:.2f}s", t_mixed / t_stable)
    return out


if __name__ == "__main__":
    main()
