"""What a trial kind is: the protocol every entry of ``trainer.kinds.TRIAL_KINDS`` keeps.

A kind owns its settings (a dataclass whose fields ``TrainConfig`` takes flat, types from the
annotations), how its trial trains (the ``Problem`` of ``trainer.loop``, built from a config),
how K of its trials pack (a ``trainer.packed.Stack``, optional), and what a trial of it needs
before it runs: memory (``trainer.memory``) and FLOPs (``sweeps.estimate.cost``). The report asks it
for the linear theory's inputs. Nothing here imports torch: ``check``, the cost estimate and
the analysis read these entries; ``problem`` and ``stack`` import the torch side when called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:  # types only: the torch side imports nothing of this
    import numpy as np

    from ..config import TrainConfig
    from ..loop import Problem
    from ..memory import MemoryEstimate
    from ..packed import Stack

__all__ = ["TrialKind", "FlopModel"]


@dataclass(frozen=True)
class FlopModel:
    """A trial's FLOPs as its kind models them (sweeps.estimate.cost turns them into a TrialCost)."""

    params: int
    """All parameters (a tied embedding counted once), as the trainer reports n_params."""
    flop_params: int
    """N: the parameters that multiply."""
    train_flops_per_token: float
    """FLOPs per training token, forward and backward."""
    eval_flops: float
    """One evaluation of the global model."""
    tokens_per_round: int
    """Training tokens of one round over all workers."""


class TrialKind:
    """One trial kind. Subclass it, fill the class attributes, and register an instance in
    ``trainer/kinds/__init__.py``; ``problem`` and ``memory`` are required, the rest optional."""

    name: ClassVar[str]
    """The value of ``TrainConfig.kind`` (``kind: toy`` in a spec)."""
    settings: ClassVar[type]
    """Its settings dataclass: documented fields, types from annotations, a ``check(cfg)``
    that raises ConfigError. TrainConfig takes the fields flat (a spec writes ``seq_len: 64``),
    every trial carries every kind's settings, and a trial's id hashes them all."""
    memory_keys: ClassVar[tuple[str, ...]] = ()
    """The settings ``memory`` reads (the memory preflight tries the extremes of these)."""
    cost_keys: ClassVar[tuple[str, ...]] = ()
    """The settings ``flops`` reads (trials equal in these cost the same)."""
    reads: ClassVar[tuple[str, ...]] = ()
    """Settings of another kind's section that this kind also reads (a user's trial runs the
    tool's inner AdamW and schedule, whose settings the LM section declares): a report of a
    sweep of this kind lists them."""
    flop_formula: ClassVar[str] = ""
    """What ``flops`` models, as ``check`` prints it above its cost table."""
    packs: ClassVar[bool] = True
    """Its trials pack (``stack()`` gives a class, read without importing torch); False: a
    spec with ``resources.pack`` above 1 is refused."""
    takes_entry: ClassVar[bool] = False
    """Its trials run a user's function (``entry``, ``params``): the spec imports and checks
    it, and each row records the user's code as ``code_hash`` (kinds/python.py)."""
    theory_keys: ClassVar[tuple[str, ...]] = ()
    """The settings ``linear_model`` reads; none: the kind has no linear model (the report
    draws a prediction for its sweeps only under a spectrum the user assumes)."""

    def fields(self) -> tuple[str, ...]:
        """The names of its own settings (which only this kind reads)."""
        return tuple(f.name for f in dataclasses.fields(self.settings))

    def problem(self, cfg: "TrainConfig") -> "Problem":
        """The trial as a Problem for ``trainer.loop.run_diloco`` (imports torch)."""
        raise NotImplementedError

    def stack(self) -> "type[Stack] | None":
        """The class that trains K trials of this kind at once (``trainer.packed``), or None:
        its trials do not pack."""
        return None

    def memory(self, cfg: "TrainConfig", device: str) -> "MemoryEstimate":
        """Bytes the trial needs on a device of this type ('cpu', 'cuda'), before it runs."""
        raise NotImplementedError

    def too_big(self, cfg: "TrainConfig") -> tuple[str, str]:
        """For a memory refusal: the settings that size the trial, as the message names them
        (the first word is the key it is refused on), and what to make smaller."""
        return f"workers: {cfg.workers}", "fewer workers"

    def flops(self, cfg: "TrainConfig") -> FlopModel | None:
        """Its FLOP model, or None: no estimate (its rows' ``flops`` is null)."""
        return None

    def code_version(self, cfg: "TrainConfig") -> str | None:
        """The user's code a trial runs, as a content hash (the ``code_hash`` column), or
        None: the tool's own code, whose commit sweep.json records."""
        return None

    def linear_model(self, settings: Mapping[str, Any], modes: Any = None
                     ) -> "tuple[np.ndarray, float] | None":
        """The linearized theory's inputs for a trial of these settings (a stored row will do):
        the eigenvalues λ of its inner loss at the given 0-based ``modes`` (all, largest first,
        when None) and its constant inner step η; None when the kind has no known spectrum."""
        return None
