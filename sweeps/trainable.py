"""The Tune trainable: one Tune config → one TrainConfig → one trainer run → one stored row.

``trial_config(spec, tune_config)`` is the only place where a Tune config becomes a trial
configuration; the runner uses it too, to name and filter trials before Ray starts any.
Ray is imported inside the trial, so this module is cheap to import.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from trainer.config import TrainConfig

from . import faults
from .spec import SweepSpec, field_kind
from .store import Store, now, trial_id

__all__ = ["trial_config", "pack_configs", "objective", "make_trainable", "OBJECTIVE"]

OBJECTIVE = "objective"
"""The name of the value every report carries for the searcher: the spec's metric, finite."""


def _native(name: str, v: Any) -> Any:
    """numpy scalars and sampler floats → the Python type the TrainConfig field takes."""
    if hasattr(v, "item") and not isinstance(v, (str, dict, list)):
        v = v.item()
    kind = field_kind(name)
    if kind == "float" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if kind == "int" and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def trial_config(spec: SweepSpec, tune_config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of one trial: the spec's trial settings, then the Tune config's axes.

    A grid nests its point under ``params``; a sampler gives the axes flat. Keys that are not
    axes of the spec (Tune may add its own) are refused, so a typo cannot slip through.
    """
    params = tune_config["params"] if "params" in tune_config else tune_config
    d = dict(spec.trial)
    for k, v in params.items():
        if k not in spec.space:
            raise KeyError(f"{k}: not an axis of sweep {spec.name!r}")
        d[k] = _native(k, v)
    return TrainConfig.from_dict(d)


def objective(status: str | None, value: float | None, initial_loss: float | None,
              diverge_factor: float) -> float:
    """A finite number for the sampler (always minimized): a diverged trial, or a non-finite
    loss, scores initial_loss * diverge_factor, the worst loss a non-diverged trial can have."""
    penalty = initial_loss * diverge_factor if _finite(initial_loss) else 1e6
    if status == "diverged" or not _finite(value):
        return float(penalty)
    return float(min(value, penalty))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def make_trainable(spec: SweepSpec, output: str, force: bool = False) -> Callable[[dict], None]:
    """A Tune function trainable for ``spec`` writing to ``output`` (an absolute path or URI)."""
    metric = spec.search.metric
    fault = faults.from_env()  # a test hook; None unless DILOCO_FAULT_KILL_AT is set

    def diloco_trial(config: dict[str, Any]) -> None:
        import ray
        from ray import tune

        from trainer import train

        if "pack" in config:
            return _packed_trial(spec, output, force, config["pack"])
        cfg = trial_config(spec, config)
        tid = trial_id(cfg)
        store = Store(output, spec.name)
        node = ray.get_runtime_context().get_node_id()
        base = {"sweep_trial_id": tid, "node_id": node}

        if not force:  # a sampler may propose a trial that is already stored: reuse its row
            row = store.done_row(tid)
            if row is not None:
                tune.report({**base, "status": row["status"], "skipped": True,
                             OBJECTIVE: objective(row["status"], row[metric],
                                                  row["initial_loss"], cfg.diverge_factor)})
                return

        started = now()
        running = {"best": math.inf, "peak": -math.inf, "initial": None}

        def on_step(r: dict[str, Any]) -> None:
            if fault is not None:
                fault.at_step(tid, r["outer_step"])
            loss = r.get("eval_loss")
            if _finite(loss):
                running["best"] = min(running["best"], loss)
                running["peak"] = max(running["peak"], loss)
            value = {"final_loss": loss, "best_loss": running["best"],
                     "peak_loss": running["peak"]}[metric]
            # the initial loss is not in the curve row; until the end, clamp by a large bound
            tune.report({**base, **{k: v for k, v in r.items() if _finite(v)},
                         OBJECTIVE: objective(None, value, None, cfg.diverge_factor)})

        result = train(cfg, on_step=on_step)
        s = result.summary()
        row = result_row(spec, cfg, tid, result, node, started)
        if fault is not None:
            fault.arm(tid, store)
        if not _stored(store, row, result.curve, base):
            return
        tune.report({**base, "status": result.status, "skipped": False,
                     **{k: s[k] for k in ("initial_loss", "final_loss", "best_loss", "peak_loss",
                                          "outer_steps_done", "wall_s") if _finite(s.get(k))},
                     OBJECTIVE: objective(result.status, s.get(metric), s.get("initial_loss"),
                                          cfg.diverge_factor)})

    return diloco_trial


def _stored(store: Store, row: dict[str, Any], curve: Any, base: dict[str, Any]) -> bool:
    """Write a trial's row; when the store refuses it, tell the driver (``store_error``, which
    stops the run: sweeps.progress.make_store_guard) instead of raising, so that Tune does not
    train the trial again only to fail to store it again."""
    from ray import tune

    try:
        store.write_trial(row, curve)
        return True
    except Exception as e:  # noqa: BLE001 - the driver names it; the trial is not retried
        tune.report({**base, "status": "not stored", "skipped": False,
                     "store_error": f"cannot write {store.uri}/trials/{row['trial_id']}"
                                    f".parquet: {type(e).__name__}: {e}", OBJECTIVE: 1e6})
        return False


def pack_configs(spec: SweepSpec, tune_config: dict[str, Any]) -> list[TrainConfig]:
    """Every TrainConfig of one Tune trial: one, or the members of a pack."""
    if "pack" in tune_config:
        return [trial_config(spec, point) for point in tune_config["pack"]]
    return [trial_config(spec, tune_config)]


def _packed_trial(spec: SweepSpec, output: str, force: bool, points: list[dict]) -> None:
    """K trials of one shape as one batched computation; each member still writes its own row."""
    import ray
    from ray import tune

    from trainer.packed import train_packed

    store = Store(output, spec.name)
    node = ray.get_runtime_context().get_node_id()
    configs = [trial_config(spec, p) for p in points]
    if not force:  # a retried pack skips the members an earlier attempt already stored
        configs = [c for c in configs if store.done_row(trial_id(c)) is None]
    ids = [trial_id(c) for c in configs]
    started = now()

    def on_step(k: int, r: dict[str, Any]) -> None:
        tune.report({"sweep_trial_id": ids[k], "member": k, "node_id": node,
                     **{key: v for key, v in r.items() if _finite(v)}})

    results = train_packed(configs, on_step=on_step) if configs else []
    statuses = []
    for cfg, tid, result in zip(configs, ids, results):
        row = result_row(spec, cfg, tid, result, node, started)
        if not _stored(store, row, result.curve, {"sweep_trial_id": tid, "node_id": node}):
            return
        statuses.append(result.status)
    tune.report({"sweep_trial_id": f"pack of {len(points)}", "node_id": node,
                 "status": "diverged" if statuses and all(s == "diverged" for s in statuses)
                 else "completed", "packed": len(points), "skipped": not configs,
                 "diverged_members": statuses.count("diverged"), OBJECTIVE: 0.0})


def result_row(spec: SweepSpec, cfg: TrainConfig, tid: str, result: Any, node: str,
               started: str) -> dict[str, Any]:
    """The trial row of a finished run (completed or diverged): config, result, provenance."""
    return {"sweep": spec.name, "trial_id": tid, **cfg.flat(), **result.summary(), "error": None,
            "node_id": node, "started_at": started, "finished_at": now()}


def failed_row(spec: SweepSpec, cfg: TrainConfig, error: str) -> dict[str, Any]:
    """The row of a trial that still crashed after Tune's retries."""
    return {"sweep": spec.name, "trial_id": trial_id(cfg), **cfg.flat(), "status": "failed",
            "error": error, "finished_at": now()}
