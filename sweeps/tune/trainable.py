"""The Tune trainable: one Tune config → one TrainConfig → one trainer run → one stored row.

The config is translated by ``trial.trial_config``, the one place where a Tune config becomes a
trial configuration. Ray is imported inside the trial, so this module is cheap to import.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from trainer.config import TrainConfig

from sweeps.tune import faults
from sweeps.estimate.cost import row_flops
from sweeps.store.store import Store, curve_table, now, trial_id
from sweeps.tune.trial import MEMBER_FIELDS, OBJECTIVE, finite, objective, trial_config

if TYPE_CHECKING:  # types only: the spec imports the search kinds, which import this
    from sweeps.spec.parse import SweepSpec

__all__ = ["make_trainable", "result_row", "failed_row"]

_REPORTED = ("initial_loss", "final_loss", "best_loss", "peak_loss", "end_rise",
             "outer_steps_done", "wall_s")
"""What a trial's last report carries beside its status: what the progress line, the loggers
and the boundary search's judgement of the probe (trainer.result.outcome) read."""

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
        tid = config.get("trial_id") or trial_id(cfg)  # the planner's, where it named it
        store = Store(output, spec.name)
        node = ray.get_runtime_context().get_node_id()
        base = {"sweep_trial_id": tid, "node_id": node}

        if not force:  # a sampler may propose a trial that is already stored: reuse its row
            row = store.done_row(tid)
            if row is not None:
                tune.report({**base, "status": row["status"], "skipped": True,
                             **{k: row[k] for k in _REPORTED if finite(row.get(k))},
                             OBJECTIVE: objective(row["status"], row[metric],
                                                  row["initial_loss"], cfg.diverge_factor)})
                return

        started = now()
        running = {"best": math.inf, "peak": -math.inf, "initial": None}

        def on_step(r: dict[str, Any]) -> None:
            if fault is not None:
                fault.at_step(tid, r["outer_step"])
            if not spec.loggers:  # the searcher and the progress line need the last report only
                return
            loss = r.get("eval_loss")
            if finite(loss):
                running["best"] = min(running["best"], loss)
                running["peak"] = max(running["peak"], loss)
            value = {"final_loss": loss, "best_loss": running["best"],
                     "peak_loss": running["peak"]}[metric]
            # the initial loss is not in the curve row; until the end, clamp by a large bound
            tune.report({**base, **{k: v for k, v in r.items() if finite(v)},
                         OBJECTIVE: objective(None, value, None, cfg.diverge_factor)})

        result = train(cfg, on_step=on_step if spec.loggers or fault is not None else None)
        s = result.summary()
        row = result_row(spec, cfg, tid, s, node, started)
        if fault is not None:
            fault.arm(tid, store)
        if not _stored(store, row, result.curve, base):
            return
        tune.report({**base, "status": result.status, "skipped": False,
                     **{k: s[k] for k in _REPORTED if finite(s.get(k))},
                     OBJECTIVE: objective(result.status, s.get(metric), s.get("initial_loss"),
                                          cfg.diverge_factor)})

    return diloco_trial


def _stored(store: Store, row: dict[str, Any], curve: Any, base: dict[str, Any]) -> bool:
    """Write a trial's row; when the store refuses it, tell the driver (``store_error``, which
    stops the run: sweeps.tune.progress.make_store_guard) instead of raising, so that Tune does not
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
    """K trials of one shape as one batched computation; their rows (and curves) are written
    together as one file, whole or not at all, each row still keyed by its trial_id."""
    import ray
    from ray import tune

    from trainer.packed import run_packed

    store = Store(output, spec.name)
    node = ray.get_runtime_context().get_node_id()
    base = {"sweep_trial_id": f"pack of {len(points)}", "node_id": node}
    configs, ids, seen = [], [], set()
    for p in points:  # points the id does not tell apart (runtime settings) are one trial
        c = trial_config(spec, p)
        tid = trial_id(c)
        if tid not in seen:
            seen.add(tid)
            configs.append(c)
            ids.append(tid)
    if not force:  # a retried pack skips the members an earlier attempt already stored
        done = store.done_among(ids)
        configs = [c for c, tid in zip(configs, ids) if tid not in done]
        ids = [tid for tid in ids if tid not in done]
    started = now()

    def on_round(t: int, idx: Any, track: Any) -> None:  # for the loggers: the pack's round
        ev = track.last[idx]
        ev = ev[np.isfinite(ev)]
        tune.report({**base, "outer_step": t, "running": len(idx),
                     **({"eval_loss_mean": float(ev.mean())} if len(ev) else {})})

    statuses: list[str] = []
    members: list[list[Any]] = []
    if configs:
        rows, curves = [], []
        for start, track in run_packed(configs, on_round if spec.loggers else None):
            mine = ids[start:start + track.K]
            summaries = track.summaries()
            rows += [result_row(spec, c, tid, s, node, started)
                     for c, tid, s in zip(configs[start:start + track.K], mine, summaries)]
            curves.append(curve_table(mine, *track.curve_columns()))
            statuses += [s["status"] for s in summaries]
            members += [[tid, s["status"], *(s.get(k) for k in MEMBER_FIELDS)]
                        for tid, s in zip(mine, summaries)]
        try:
            store.write_pack(rows, pa.concat_tables(curves, promote_options="permissive"))
        except Exception as e:  # noqa: BLE001 - as _stored: the driver names it, no retry
            tune.report({**base, "status": "not stored", "skipped": False,
                         "store_error": f"cannot write a pack of {len(rows)} rows to "
                                        f"{store.uri}/trials: {type(e).__name__}: {e}",
                         OBJECTIVE: 1e6})
            return
    tune.report({**base, "status": "diverged" if statuses and all(x == "diverged" for x in statuses)
                 else "completed", "packed": len(points), "skipped": not configs,
                 "diverged_members": statuses.count("diverged"),
                 "members": json.dumps(members),  # text: Tune's loggers skip it quietly
                 OBJECTIVE: 0.0})


def result_row(spec: "SweepSpec", cfg: TrainConfig, tid: str, summary: dict[str, Any], node: str,
               started: str) -> dict[str, Any]:
    """The trial row of a finished run (completed or diverged): config, result (its
    ``TrainResult.summary()``), provenance."""
    return {"sweep": spec.name, "trial_id": tid, **cfg.flat(), **summary, "error": None,
            "flops": row_flops(cfg, summary["tokens"], summary["outer_steps_done"]),
            "node_id": node, "started_at": started, "finished_at": now(),
            "code_hash": cfg.trial_kind.code_version(cfg)}


def failed_row(spec: "SweepSpec", cfg: TrainConfig, error: str) -> dict[str, Any]:
    """The row of a trial that still crashed after Tune's retries."""
    return {"sweep": spec.name, "trial_id": trial_id(cfg), **cfg.flat(), "status": "failed",
            "error": error, "finished_at": now(), "code_hash": _code(cfg)}


def _code(cfg: TrainConfig) -> str | None:
    """The user's code hash for a failed row; None when the entry itself cannot be read."""
    try:
        return cfg.trial_kind.code_version(cfg)
    except Exception:  # noqa: BLE001 - the row records the failure, not a second one
        return None
