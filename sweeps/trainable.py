"""The Tune trainable: one Tune config → one TrainConfig → one trainer run → one stored row.

The config is translated by ``trial.trial_config``, the one place where a Tune config becomes a
trial configuration. Ray is imported inside the trial, so this module is cheap to import.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from trainer.config import TrainConfig

from . import faults
from .cost import row_flops
from .store import Store, now, trial_id
from .trial import OBJECTIVE, finite, objective, trial_config

if TYPE_CHECKING:  # types only: the spec imports the search kinds, which import this
    from .spec import SweepSpec

__all__ = ["make_trainable", "result_row", "failed_row"]

def make_trainable(spec: "SweepSpec", output: str, force: bool = False) -> Callable[[dict], None]:
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
            if finite(loss):
                running["best"] = min(running["best"], loss)
                running["peak"] = max(running["peak"], loss)
            value = {"final_loss": loss, "best_loss": running["best"],
                     "peak_loss": running["peak"]}[metric]
            # the initial loss is not in the curve row; until the end, clamp by a large bound
            tune.report({**base, **{k: v for k, v in r.items() if finite(v)},
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
                                          "outer_steps_done", "wall_s") if finite(s.get(k))},
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


def _packed_trial(spec: "SweepSpec", output: str, force: bool, points: list[dict]) -> None:
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
                     **{key: v for key, v in r.items() if finite(v)}})

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


def result_row(spec: "SweepSpec", cfg: TrainConfig, tid: str, result: Any, node: str,
               started: str) -> dict[str, Any]:
    """The trial row of a finished run (completed or diverged): config, result, provenance."""
    return {"sweep": spec.name, "trial_id": tid, **cfg.flat(), **result.summary(), "error": None,
            "flops": row_flops(cfg, result.tokens, result.outer_steps_done),
            "node_id": node, "started_at": started, "finished_at": now()}


def failed_row(spec: "SweepSpec", cfg: TrainConfig, error: str) -> dict[str, Any]:
    """The row of a trial that still crashed after Tune's retries."""
    return {"sweep": spec.name, "trial_id": trial_id(cfg), **cfg.flat(), "status": "failed",
            "error": error, "finished_at": now()}
