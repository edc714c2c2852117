"""sweeps: the sweep service. A YAML spec → Ray Tune (grid or Optuna) → Parquet rows per trial.

Importing this package is cheap: Ray, Optuna and torch load only in the functions that use them.
"""

__all__ = ["load_spec", "parse_spec", "SpecError", "SweepSpec", "Store", "trial_id", "run_sweep"]


def __getattr__(name: str):
    if name in ("load_spec", "parse_spec", "SpecError", "SweepSpec"):
        from sweeps.spec import parse as spec

        return getattr(spec, name)
    if name in ("Store", "trial_id"):
        from sweeps.store import store

        return getattr(store, name)
    if name == "run_sweep":
        from sweeps.tune.runner import run_sweep

        return run_sweep
    raise AttributeError(name)
