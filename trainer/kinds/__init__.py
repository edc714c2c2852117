"""The trial kinds: ``TRIAL_KINDS[name]`` is a ``TrialKind`` (``base.py``), one module each.

``TrainConfig.kind`` names an entry; ``TrainConfig`` takes every entry's settings flat;
the trainer, the memory check, the cost estimate, the preflight and the report ask the entry
(``cfg.trial_kind``) and switch on the name nowhere else (tests/test_trial_kinds.py). A new
kind: a module here with its settings dataclass and a ``TrialKind`` subclass, its line below,
and its Problem (a torch module, imported by the entry's ``problem``).
"""

from __future__ import annotations

from ..checks import ConfigError
from ..registry import Registry
from .base import FlopModel, TrialKind
from .lm import LM
from .python import PYTHON
from .toy import TOY

__all__ = ["TRIAL_KINDS", "TrialKind", "FlopModel"]

TRIAL_KINDS: Registry[TrialKind] = Registry(
    "trial kind", lambda name, known: ConfigError(
        f"kind: expected one of {', '.join(known)}, got {name!r}"))
TRIAL_KINDS.register(LM)
TRIAL_KINDS.register(TOY)
TRIAL_KINDS.register(PYTHON)
