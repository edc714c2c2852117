"""How long a CPU spec will take, before it runs (docs/sweeps.md, "CPU time").

The FLOPs are ``check``'s cost estimate (``sweeps.estimate.cost``), the one cost model; time is FLOPs
over a rate. The rate is measured where it can be: a sweep that already has rows carries each
trial's ``flops`` and ``wall_s``, and their median ratio is what this machine and this model
actually did (as the progress ETA trusts the trials' measured times). Before any row it is
``CPU_FLOPS`` per CPU thread a trial uses, calibrated on the shipped CPU sweeps.

A local run holds ``local CPUs // resources.cpu`` trials at once (or ``max_concurrent``), so
its wall time is the sweep's CPU time over that. ``check`` prints the estimate for every CPU
spec; ``check`` and ``run`` warn when it is over ``LONG_S`` or one trial is: a spec with
``H: 1000000000`` on a CPU used to say only "0.142 GPU-h", and run a months-long trial without
a word. Toy trials get no FLOP estimate (their ``flops`` is null) and so no time either.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from sweeps.estimate.cost import SweepCost
from sweeps.estimate.preflight import local_cpus
from sweeps.tune.progress import hms
from sweeps.spec.parse import SweepSpec

__all__ = ["CPU_FLOPS", "LONG_S", "CpuTime", "cpu_time", "measured_rate", "duration",
           "long_run_warning"]

CPU_FLOPS = 2e10
"""FLOP/s of one trial per CPU thread it uses: the median flops / wall_s of the shipped CPU
sweeps' trials, one thread each on a 2-core VM (docs/results: restart-cpu 1.8e10 under load
4 to 5, restart-boundary 2.7e10), rounded. The tiny LM is overhead-bound; larger models do
better per thread, so the estimate errs long."""

LONG_S = 2 * 3600.0
"""A sweep, or one trial, estimated to take longer than this on this machine is warned of."""


def duration(s: float) -> str:
    """Seconds as h:mm:ss up to two days, then days (a months-long trial reads as days)."""
    if s < 1:
        return "a second"
    return hms(s) if s < 2 * 86400 else f"{s / 86400:,.0f} days"


@dataclass(frozen=True)
class CpuTime:
    """The time estimate of a CPU spec's trials on this machine."""

    flops: float
    """FLOPs of the trials to run (the cost estimate; for an adaptive search, its most)."""
    trial_flops: float
    """FLOPs of its dearest trial."""
    rate: float
    """FLOP/s of one trial."""
    measured: bool
    """Whether ``rate`` comes from this sweep's stored rows (else CPU_FLOPS)."""
    slots: int
    """Trials at once."""
    most: bool = False
    """Whether ``flops`` is a most (an adaptive search or a sampler may spend less)."""

    @property
    def wall_s(self) -> float:
        return self.flops / (self.rate * self.slots)

    @property
    def trial_s(self) -> float:
        return self.trial_flops / self.rate

    @property
    def long(self) -> bool:
        return max(self.wall_s, self.trial_s) > LONG_S

    def _about(self) -> str:
        return "at most about" if self.most else "about"

    def source(self) -> str:
        if self.measured:
            return f"{self.rate:.3g} FLOP/s a trial, measured on this sweep's stored trials"
        return f"{self.rate:.3g} FLOP/s a trial ({CPU_FLOPS:.3g} per CPU thread, docs/sweeps.md)"

    def line(self) -> str:
        """What `check` prints: a comment."""
        return (f"# CPU time: {self._about()} {duration(self.wall_s)} on this machine "
                f"({self.slots} trial(s) at once, the longest trial {duration(self.trial_s)}), at "
                f"{self.source()}")

    def warning(self) -> str:
        """The warning of a long estimate (`check` and `run` print it on stderr)."""
        return (f"this CPU sweep would take {self._about()} {duration(self.wall_s)} on this "
                f"machine ({self.slots} trial(s) at once; the longest trial about "
                f"{duration(self.trial_s)}), more than {LONG_S / 3600:g} hours: {self.flops:.3g} "
                f"FLOP at {self.source()}. Lower H, outer_steps, batch_size or the model, or "
                f"give the trials GPUs (resources.gpu)")


def measured_rate(rows: Iterable[dict[str, Any]]) -> float | None:
    """The median flops / wall_s of stored trials that carry both, or None."""
    rates = [r["flops"] / r["wall_s"] for r in rows
             if (r.get("flops") or 0) > 0 and (r.get("wall_s") or 0) > 0]
    return statistics.median(rates) if rates else None


def cpu_time(spec: SweepSpec, sc: SweepCost, trials: int | None = None,
             rows: Iterable[dict[str, Any]] = (), max_concurrent: int | None = None
             ) -> CpuTime | None:
    """The estimate for ``trials`` of the spec (default all) on this machine; None for a spec
    that gives its trials GPUs, or whose trials have no FLOP estimate (toy)."""
    bounds = sc.bounds()
    if spec.resources.gpu or bounds is None or not sc.trials:
        return None
    dearest = max(c.flops for _, _, c in sc.groups if c is not None)
    share = 1.0 if trials is None else min(trials, sc.trials) / sc.trials
    rate = measured_rate(rows)
    threads = spec.base.threads or spec.resources.cpu
    slots = max(1, int(local_cpus() // spec.resources.cpu))
    if max_concurrent:
        slots = min(slots, max_concurrent)
    n = sc.trials if trials is None else trials
    return CpuTime(flops=bounds[1] * share, trial_flops=dearest,
                   rate=rate if rate is not None else CPU_FLOPS * threads,
                   measured=rate is not None, slots=max(1, min(slots, n or 1)),
                   most=sc.counts != "exact")


def long_run_warning(spec: SweepSpec, trials: int, rows: Iterable[dict[str, Any]] = (),
                     max_concurrent: int | None = None) -> str | None:
    """`run`'s warning before it starts ``trials`` trials of a long CPU spec, or None. Never
    raises: an estimate must not stop a run."""
    from sweeps.estimate.cost import sweep_cost

    try:
        est = cpu_time(spec, sweep_cost(spec), trials, rows, max_concurrent)
    except Exception:  # noqa: BLE001
        return None
    return f"WARNING: {est.warning()}" if est is not None and est.long and trials else None
