"""Experiment loggers through Ray Tune's own callbacks: ``loggers: [tensorboard, mlflow, wandb]``.

Each name turns on Ray's logger callback for that tool, which receives what every trial reports
to Tune: one result per outer step (the curve row: ``eval_loss``, ``train_loss``,
``pseudo_grad_norm``, ``momentum_norm``, ``momentum_cos``, ``tokens``, ``wall_s``, plus
``objective``), at step = the round number + 1, and the trial's Tune config (the swept point).
The results store stays the record (docs/design.md); a logger is a view for the tools people
already watch. Each is an optional extra (``pip install 'diloco-sweep[mlflow]'``); a spec that
names one whose package is missing is refused before anything runs.

- ``tensorboard``: ``ray.tune.logger.TBXLoggerCallback`` (tensorboardX), its event files in
  ``<output>/<name>/tensorboard/<trial_id>/`` (Tune's own trial folders are temporary here),
  one run per trial named by the store's ``trial_id``: ``tensorboard --logdir <that folder>``.
- ``mlflow``: ``ray.air.integrations.mlflow.MLflowLoggerCallback``, experiment = the sweep's
  name, at ``$MLFLOW_TRACKING_URI`` (a tracking server, or ``file:…`` with
  ``MLFLOW_ALLOW_FILE_STORE=true``), else a SQLite store ``<output>/<name>/mlflow.db`` for a
  local output (an ``s3://`` output needs the variable).
- ``wandb``: ``ray.air.integrations.wandb.WandbLoggerCallback``, project and group = the
  sweep's name; the usual W&B variables apply (``WANDB_API_KEY``, ``WANDB_MODE=offline``,
  ``WANDB_DIR``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from sweeps.spec.validate import SpecError

__all__ = ["LOGGERS", "parse_loggers", "check_loggers", "logger_callbacks"]

LOGGERS: dict[str, str] = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
"""Logger name -> the module its Ray callback needs (the extra of the same name installs it)."""


def parse_loggers(value: Any, line: str = "") -> tuple[str, ...]:
    """The spec's ``loggers`` list, validated; SpecError names what is wrong and what is
    allowed."""
    error = SpecError
    if value is None:
        return ()
    if not isinstance(value, list):
        raise error(f"loggers: expected a list of logger names ({', '.join(LOGGERS)}), "
                    f"got {type(value).__name__.replace('LineDict', 'mapping')}{line}")
    out: list[str] = []
    for i, name in enumerate(value):
        lines = getattr(value, "lines", None)
        at = f" (line {lines[i]})" if lines else line
        if name not in LOGGERS:
            raise error(f"loggers[{i}]: {name!r} is not a logger; use any of "
                        f"{', '.join(LOGGERS)}{at}")
        if name in out:
            raise error(f"loggers[{i}]: {name!r} appears twice{at}")
        if importlib.util.find_spec(LOGGERS[name]) is None:
            raise error(f"loggers[{i}]: {name} needs the {LOGGERS[name]} package, which is "
                        f"not installed: pip install 'diloco-sweep[{name}]'{at}")
        out.append(name)
    return tuple(out)


def _remote(out: str) -> bool:
    return "://" in out and not out.startswith("file://")


def _mlflow_uri(out: str, name: str) -> str | None:
    """None: MLflow reads $MLFLOW_TRACKING_URI itself; else a SQLite store beside the results
    (MLflow 3 keeps its file store only behind MLFLOW_ALLOW_FILE_STORE=true; SQLAlchemy and
    Alembic, which the SQLite store needs, come with Optuna)."""
    if os.environ.get("MLFLOW_TRACKING_URI") or _remote(out):
        return None
    return "sqlite:///" + os.path.join(out.removeprefix("file://"), name, "mlflow.db")


def check_loggers(spec: Any, out: str, error: type[Exception] = ValueError) -> None:
    """Refuse, before Ray starts, a logger that has nowhere to write for this output."""
    if "mlflow" in spec.loggers and _remote(out) and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise error(f"loggers: mlflow has no local store beside an {out.split('://')[0]}:// "
                    f"output; set MLFLOW_TRACKING_URI to a tracking server")


def logger_callbacks(spec: Any, out: str) -> list[Any]:
    """Ray Tune logger callbacks for ``spec.loggers``, writing beside the results in ``out``."""
    callbacks: list[Any] = []
    for name in spec.loggers:
        if name == "tensorboard":
            callbacks.append(_tensorboard(f"{out.rstrip('/')}/{spec.name}/tensorboard"))
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(MLflowLoggerCallback(tracking_uri=_mlflow_uri(out, spec.name),
                                                  experiment_name=spec.name,
                                                  tags={"sweep": spec.name}))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=spec.name, group=spec.name))
    return callbacks


def _tensorboard(logdir: str) -> Any:
    """Ray's TBXLoggerCallback, each trial's writer in ``logdir/<trial_id>`` instead of Tune's
    trial folder (which the runner deletes at the end). The store's trial_id comes with the
    first result (``sweep_trial_id``); a pack of trials is one run, named by Tune's trial id."""
    from ray.tune.logger import TBXLoggerCallback

    class StoreTBXLoggerCallback(TBXLoggerCallback):
        def log_trial_start(self, trial: Any) -> None:
            if trial in self._trial_writer:  # a retried trial: a new event file, same run
                self._trial_writer.pop(trial).close()
            self._trial_result[trial] = {}

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            if trial not in self._trial_writer:
                run = trial.trial_id if "pack" in trial.config \
                    else result.get("sweep_trial_id", trial.trial_id)
                self._trial_writer[trial] = self._summary_writer_cls(f"{logdir}/{run}",
                                                                     flush_secs=30)
                self._trial_result.setdefault(trial, {})
            super().log_trial_result(iteration, trial, result)

    return StoreTBXLoggerCallback()
