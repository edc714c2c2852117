"""``diloco-sweep status``: how many trials are completed, diverged, failed and missing."""

from __future__ import annotations

from collections import Counter

import pyarrow.fs as pafs

from .errors import StoreError
from .spec import SpecError, SweepSpec, load_spec, parse_spec
from .store import Store
from .uri import store_hint

__all__ = ["status", "counts", "require_sweep", "open_results"]


def counts(store: Store, spec: SweepSpec | None) -> dict[str, int]:
    """completed / diverged / failed among the spec's trials, missing, and other rows."""
    rows = store.read_trials().to_pylist()
    c = Counter(r["status"] for r in rows)
    out = {"completed": c.get("completed", 0), "diverged": c.get("diverged", 0),
           "failed": c.get("failed", 0)}
    if spec is None:
        return out
    from .space import plan

    p = plan(spec, rows)
    out["missing"] = max(p.total - p.done, 0)
    out["total"] = p.total
    if spec.search.kind == "grid":
        from .store import trial_id
        from .trainable import trial_config

        ids = {trial_id(trial_config(spec, pt)) for pt in spec.grid_points()}
        mine = [r for r in rows if r["trial_id"] in ids]
        c = Counter(r["status"] for r in mine)
        out.update(completed=c.get("completed", 0), diverged=c.get("diverged", 0),
                   failed=c.get("failed", 0))
        out["not_in_spec"] = len(rows) - len(mine)
    return out


def open_results(results: str) -> tuple[Store, dict | None]:
    """The store of a RESULTS argument and its sweep.json, with its trial rows read once (so
    ``store.skipped`` names every file left out); the one answer of status, show and report.

    SpecError (exit 2) when it is no sweep: not a sweep's folder, or a folder with neither a
    sweep.json nor one trustworthy trial row (the skipped files are named). StoreError when
    the store cannot be read."""
    require_sweep(results)
    try:
        store = Store.at(results)
    except ValueError as e:
        raise SpecError(str(e)) from None
    try:
        meta = store.read_meta()
        rows = store.read_trials(columns=["trial_id"]).num_rows
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read {results}: {e}{store_hint(results, e)}") from None
    if meta is None and not rows:
        bad = "; ".join(f"{f.rsplit('/', 1)[-1]}: {why}" for f, why in store.skipped.items())
        raise SpecError(f"{results}: no sweep here (no sweep.json and no trustworthy trial "
                        f"rows{'; skipped ' + bad if bad else ''})")
    return store, meta


def status(results: str, spec_path: str | None = None) -> str:
    store, meta = open_results(results)
    try:
        return _status(store, meta, spec_path)
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read {results}: {e}{store_hint(results, e)}") from None


def _status(store: Store, meta: dict | None, spec_path: str | None) -> str:
    if spec_path:
        spec = load_spec(spec_path)
    elif meta and meta.get("spec"):
        spec = parse_spec(meta["spec"], where=f"{store.uri}/sweep.json")
    else:
        spec = None
    c = counts(store, spec)
    lines = [f"sweep {store.name} at {store.uri}"]
    if spec is not None:
        lines.append(f"  spec: {spec.n_trials} trials ({spec.search.kind})")
    for k in ("completed", "diverged", "failed", "missing", "not_in_spec"):
        if k in c and (k != "not_in_spec" or c[k]):
            lines.append(f"  {k:<12}{c[k]:>6}")
    for f, why in store.skipped.items():
        lines.append(f"  skipped (not a trustworthy trial row, counted missing): {f}: {why}")
    runs = (meta or {}).get("runs") or []
    if runs:
        last = runs[-1]
        lines.append(f"  last run: started {last.get('started_at')}, "
                     f"ended {last.get('ended_at') or '(not recorded: running or killed)'}"
                     + (f" ({last['outcome']})" if last.get("outcome") not in (None, "finished")
                        else ""))
    return "\n".join(lines)


def require_sweep(results: str) -> None:
    """Refuse (SpecError, exit 2) a RESULTS argument that is not a sweep's folder
    ``<output>/<name>``, its ``trials/`` or ``curves/``, or a folder of Parquet files."""
    try:
        store = Store.at(results)
    except ValueError as e:
        raise SpecError(str(e)) from None
    try:
        info = store.fs.get_file_info(store.root)
        if info.type == pafs.FileType.Directory:
            names = {i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.root))}
    except OSError as e:
        raise StoreError(f"cannot read {results}: {e}{store_hint(results, e)}") from None
    if info.type == pafs.FileType.NotFound:
        raise SpecError(f"{results}: no sweep here (no such folder); expected a sweep's "
                        f"folder <output>/<name>")
    if info.type != pafs.FileType.Directory:
        raise SpecError(f"{results}: no sweep here (not a folder); expected a sweep's folder "
                        f"<output>/<name>")
    if names & {"sweep.json", "trials"} or store.name in ("trials", "curves") \
            or any(n.endswith(".parquet") for n in names):
        return
    raise SpecError(f"{results}: no sweep here (no sweep.json, no trials/); expected "
                    f"<output>/<name> as written by `diloco-sweep run`")
