"""Cost before launch: parameters, tokens, FLOPs and GPU-hours of a spec's trials.

``diloco-sweep check`` prints it; each trial row carries the same estimate, for what the trial
actually ran, as ``flops`` (so measured MFU is ``flops / (wall_s * peak)``).

Each trial kind models its own FLOPs (``TrialKind.flops``, trainer/kinds/). The LM's model
(docs/sweeps.md, "Cost before launch"), per trial:

- training FLOPs per token = 6·N + 12·L·d·T, the "model FLOPs" of PaLM (Chowdhery et al. 2022,
  appendix B): 6·N for the weight matmuls forward and backward, 12·L·d·T for attention scores
  and values (L layers, width d, sequence length T; causal masking gets no discount);
- N counts the weights that multiply: every parameter but the input embedding lookup (a tied
  output head still multiplies, so it counts once);
- tokens D = workers · H · T · batch_size · seq_len (what the loop consumes), T = outer_steps,
  or ⌊inner_steps_budget / H⌋ with a budget (the config derives it; the table prints it);
- evaluation: forward only, (2·N + 4·L·d·T) per token, eval_batches · batch_size · seq_len
  tokens, once before the first round and once after every round;
- left out: the outer step and AdamW updates (O(N) per step, not per token), norms, softmax
  and the data pipeline;
- GPU-hours = FLOPs / (peak · MFU), at a named card's dense bf16 peak and a stated MFU.

A kind without a FLOP model, such as the toy (``kind: toy``, the linear-regression model,
seconds on a CPU), gets no estimate: its rows' ``flops`` is null.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from trainer.config import TRIAL_KINDS, ConfigError, TrainConfig
from trainer.kinds.python import PARAM_PREFIX

from sweeps.spec.space import numeric_ends
from sweeps.spec.parse import SweepSpec
from sweeps.spec.validate import SpecError, field_kind

__all__ = ["Card", "CARDS", "DEFAULT_CARD", "DEFAULT_MFU", "TrialCost", "SweepCost",
           "trial_cost", "row_flops", "sweep_cost", "format_cost", "COST_FIELDS"]


@dataclass(frozen=True)
class Card:
    """An accelerator, by its dense (no sparsity) bf16 tensor peak."""

    name: str
    """As printed: the card and the number format of the peak."""
    peak_flops: float
    """FLOP/s at 100% utilization."""


CARDS: dict[str, Card] = {
    "h100": Card("H100 SXM, bf16 dense peak 989 TFLOP/s", 989e12),
    "h200": Card("H200 SXM, bf16 dense peak 989 TFLOP/s", 989e12),
    "a100": Card("A100 SXM, bf16 dense peak 312 TFLOP/s", 312e12),
}
DEFAULT_CARD = "h100"
DEFAULT_MFU = 0.4
"""Model FLOPs utilization assumed for GPU-hours: a well-fed ~150M-parameter model at
sequence length 1024 on one card; `check --mfu` states another."""

COST_FIELDS = tuple(dict.fromkeys(["kind", *(k for kind in TRIAL_KINDS.values()
                                             for k in kind.cost_keys)]))
"""The TrainConfig fields the estimate depends on (the kind, and what each kind's FLOP model
reads); trials equal in these cost the same."""


@dataclass(frozen=True)
class TrialCost:
    """The estimate for one LM trial (the model of the module docstring)."""

    params: int
    """All parameters (a tied embedding counted once), as the trainer reports n_params."""
    flop_params: int
    """N: the parameters that multiply (all but the input embedding lookup)."""
    tokens: int
    """Training tokens over all workers."""
    train_flops_per_token: float
    """6·N + 12·L·d·T."""
    eval_flops: float
    """One evaluation of the global model: (2·N + 4·L·d·T) · its tokens."""
    evals: int
    """Evaluations: one before the first round, one after each round."""

    @property
    def train_flops(self) -> float:
        return self.train_flops_per_token * self.tokens

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops * self.evals


def trial_cost(cfg: TrainConfig, tokens: int | None = None,
               rounds: int | None = None) -> TrialCost | None:
    """The estimate for ``cfg`` (all its rounds, or ``tokens`` and ``rounds`` as run); None for
    a trial whose kind has no FLOP model (the toy)."""
    f = cfg.trial_kind.flops(cfg)
    if f is None:
        return None
    rounds = cfg.outer_steps if rounds is None else rounds
    if tokens is None:
        tokens = f.tokens_per_round * rounds
    return TrialCost(params=f.params, flop_params=f.flop_params, tokens=int(tokens),
                     train_flops_per_token=f.train_flops_per_token, eval_flops=f.eval_flops,
                     evals=rounds + 1)


def row_flops(cfg: TrainConfig, tokens: int, outer_steps_done: int) -> float | None:
    """The ``flops`` column of a trial row: the estimate for the tokens and rounds it ran (a
    diverged trial stopped early and costs less); None for a toy trial."""
    c = trial_cost(cfg, tokens=tokens, rounds=outer_steps_done)
    return None if c is None else c.flops


@dataclass
class SweepCost:
    """The estimate for a whole spec, grouped by what changes the cost."""

    groups: list[tuple[dict[str, Any], int, TrialCost | None]]
    """(the varying cost settings, trials with them, their cost) per distinct cost."""
    trials: int
    """Trials the spec runs (for an adaptive search: its most)."""
    counts: Literal["exact", "most", "corners"]
    """What a group's count is: its trials (a grid); the most trials it can get (the boundary
    search: its lines' most probes); or nothing (a sampler: the groups are the corners of the
    space, and the sweep's total lies between trials × the cheapest and trials × the dearest)."""
    kinds: tuple[str, ...] = ()
    """The trial kinds the spec runs."""

    def bounds(self) -> tuple[float | None, float] | None:
        """The sweep's FLOPs (low, high): equal for a grid; low unknown (None) when the counts
        are the most; trials × the cheapest and the dearest corner for a sampler."""
        costs = [c for _, _, c in self.groups if c is not None]
        if not costs:
            return None
        if self.counts == "corners":
            return (self.trials * min(c.flops for c in costs),
                    self.trials * max(c.flops for c in costs))
        total = sum(k * c.flops for _, k, c in self.groups if c is not None)
        return (total if self.counts == "exact" else None), total


def _corners(spec: SweepSpec) -> Iterable[tuple[dict[str, Any], int]]:
    """Every combination of the cost axes' values or range ends (the estimate grows with each
    numeric cost setting, so the ends bound it), for a kind that cannot say where its trials
    fall."""
    axes = {k: (numeric_ends(a.values) if a.values is not None else [a.low, a.high])
            for k, a in spec.space.items() if _costs(k)}
    return ((dict(zip(axes, combo)), 1) for combo in itertools.product(*axes.values()))


def sweep_cost(spec: SweepSpec) -> SweepCost:
    varying = [k for k in spec.space if _costs(k)]
    points = spec.search_kind.cost_points(spec, COST_FIELDS + tuple(  # grouped: bounded time
        k for k in varying if k not in COST_FIELDS))
    counts: Literal["exact", "most", "corners"] = (
        "corners" if points is None else "most" if spec.search_kind.adaptive else "exact")
    seen: dict[str, tuple[dict[str, Any], int, TrialCost | None]] = {}
    kinds: dict[str, None] = {}
    for point, n in (_corners(spec) if points is None else points):
        key_d = {k: point[k] for k in varying if k in point}
        key = repr(sorted(key_d.items(), key=lambda kv: kv[0]))
        if key in seen:
            d, k, c = seen[key]
            seen[key] = (d, k + n, c)
            continue
        cfg = TrainConfig.from_dict({**spec.trial, **{k: _int_if_whole(k, v)
                                                      for k, v in point.items()}})
        try:
            seen[key] = (key_d, n, trial_cost(cfg))
        except ConfigError as e:  # a user's entry that cannot build its model: bad input
            raise SpecError(f"trial: {e}") from None
        kinds[cfg.kind] = None
    return SweepCost(groups=list(seen.values()), trials=spec.n_trials, counts=counts,
                     kinds=tuple(kinds))


def _costs(key: str) -> bool:
    """Whether an axis changes a trial's cost: a cost setting, or a user's parameter (it may
    size the user's model: trainer/kinds/python.py)."""
    return key in COST_FIELDS or key.startswith(PARAM_PREFIX)


def _int_if_whole(name: str, v: Any) -> Any:
    return int(v) if field_kind(name) == "int" and isinstance(v, float) else v


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _hours(flops: float, card: Card, mfu: float) -> float:
    return flops / (card.peak_flops * mfu) / 3600.0


def _span(low: float, high: float) -> str:
    """'1.2e+13 to 3.4e+13', or one number when the two ends print alike."""
    a, b = f"{low:.3g}", f"{high:.3g}"
    return a if a == b else f"{a} to {b}"


def _trials_cell(sc: SweepCost, k: int) -> str:
    return {"exact": str(k), "most": f"≤{k}", "corners": "-"}[sc.counts]


def format_cost(sc: SweepCost, card: str = DEFAULT_CARD, mfu: float = DEFAULT_MFU,
                gpu: float = 1.0) -> str:
    """The lines `check` prints, every one a comment (``# ...``); ``gpu``: the spec's GPUs
    per trial (0 adds a note that the GPU-hours are hypothetical)."""
    c_card = CARDS[card]
    bounds = sc.bounds()
    if bounds is None:
        return (f"# cost: trials of kind {', '.join(sc.kinds) or '?'} get no FLOP estimate "
                "(their flops column is null)")
    lines = ["# cost before launch (docs/sweeps.md):"]
    for formula in dict.fromkeys(TRIAL_KINDS.lookup(k).flop_formula for k in sc.kinds):
        lines += ["#   " + line for line in textwrap.wrap(formula, 90)]
    lines.append(f"#   GPU-hours at {mfu:.0%} MFU of {c_card.name}")
    names = list(sc.groups[0][0])
    head = [*names, "T", "params", "N", "tokens", "FLOP", "GPU-h", "trials"]
    rows = [head]
    for d, k, c in sc.groups:
        cells = [str(d[n]) for n in names]
        if c is None:
            rows.append(cells + ["-", "toy", "-", "-", "-", "-", str(k)])
            continue
        rows.append(cells + [str(c.evals - 1), _si(c.params), _si(c.flop_params), _si(c.tokens), f"{c.flops:.3g}",
                             f"{_hours(c.flops, c_card, mfu):.3g}", _trials_cell(sc, k)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["#   " + "  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    low, high = bounds
    if sc.counts == "corners":
        lines.append("#   (a row per corner of the space's cost settings: the sampler picks "
                     "how many trials fall where)")
        lines.append(f"# sweep: {sc.trials} trials at most (points chosen as it runs), "
                     f"{_span(low, high)} FLOP, "
                     f"{_span(_hours(low, c_card, mfu), _hours(high, c_card, mfu))} GPU-hours")
    elif sc.counts == "most":
        lines.append(f"# sweep: at most {sc.trials} trials, {high:.3g} FLOP, "
                     f"{_hours(high, c_card, mfu):.3g} GPU-hours (every trial it can spend)")
    else:
        lines.append(f"# sweep: {sc.trials} trials, {high:.3g} FLOP, "
                     f"{_hours(high, c_card, mfu):.3g} GPU-hours")
    if not gpu:
        lines.append("#   (the spec asks for no GPU: GPU-hours are what its FLOPs would take on one)")
    return "\n".join(lines)
