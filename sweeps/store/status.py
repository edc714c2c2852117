"""``diloco-sweep status``: how many trials are completed, diverged, failed and missing."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.fs as pafs

from sweeps.store.compact import JOURNAL, finish_interrupted
from sweeps.store.errors import StoreError
from sweeps.store.lock import SweepLock
from sweeps.spec.parse import SpecError, SweepSpec, load_spec, parse_spec
from sweeps.store.store import Store
from sweeps.store.uri import store_hint

__all__ = ["status", "counts", "require_sweep", "open_results"]


def counts(store: Store, spec: SweepSpec | None,
           table: pa.Table | None = None) -> dict[str, int]:
    """completed / diverged / failed among the spec's trials, missing, and other rows
    (``table``: the store's trial rows when already read)."""
    rows = (store.read_trials() if table is None else table).to_pylist()
    c = Counter(r["status"] for r in rows)
    out = {"completed": c.get("completed", 0), "diverged": c.get("diverged", 0),
           "failed": c.get("failed", 0)}
    if spec is None:
        return out
    p = spec.search_kind.plan(spec, rows, False)
    out["missing"] = p.to_sample
    out["total"] = p.total
    ids = spec.search_kind.members(spec)
    if ids is not None:
        mine = [r for r in rows if r["trial_id"] in ids]
        c = Counter(r["status"] for r in mine)
        out.update(completed=c.get("completed", 0), diverged=c.get("diverged", 0),
                   failed=c.get("failed", 0))
        out["not_in_spec"] = len(rows) - len(mine)
    return out


def open_results(results: str) -> tuple[Store, dict | None]:
    """The store of a RESULTS argument and its sweep.json, with its trial rows read once (so
    ``store.skipped`` names every file left out); the one answer of status, show and report.
    ``store.rows`` holds what was read.

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
        store.rows = store.read_trials()
        rows = store.rows.num_rows
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
        note = _finish_compaction(store)
        return _status(store, meta, spec_path) + note
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read {results}: {e}{store_hint(results, e)}") from None


def _finish_compaction(store: Store) -> str:
    """Finish a compaction killed among its deletes (sweeps.store.compact.finish_interrupted), under
    the sweep's lock; a line saying so, or why it was left (a run or compact holds the lock,
    or the store is read-only: readers are right meanwhile, a raw reader sees copies)."""
    if store.fs.get_file_info(f"{store.root}/{JOURNAL}").type == pafs.FileType.NotFound:
        return ""
    try:
        with SweepLock(store):
            n = finish_interrupted(store)
    except StoreError as e:  # busy, or not writable
        return (f"\n  an interrupted compaction is not finished ({e}); until it is, a raw "
                f"reader of trials/ sees some rows twice")
    return f"\n  finished an interrupted compaction: the own files of {n} trial(s) removed"


def _status(store: Store, meta: dict | None, spec_path: str | None) -> str:
    if spec_path:
        spec = load_spec(spec_path)
    elif meta and meta.get("spec"):
        # as run: a user's entry (kind: python) is not imported, its values are typed already
        spec = parse_spec(meta["spec"], where=f"{store.uri}/sweep.json", user_code=False)
    else:
        spec = None
    c = counts(store, spec, store.rows)
    lines = [f"sweep {store.name} at {store.uri}"]
    if spec is not None:
        lines.append(f"  spec: {spec.describe()}")
    adaptive = spec is not None and spec.search_kind.adaptive
    for k in ("completed", "diverged", "failed", "missing", "not_in_spec"):
        if k in c and (k != "not_in_spec" or c[k]):
            label = "to run, ≤" if k == "missing" and adaptive else k
            lines.append(f"  {label:<12}{c[k]:>6}")
    for f, why in store.skipped.items():
        lines.append(f"  skipped (not a trustworthy trial row, counted missing): {f}: {why}")
    lines += _runs_lines((meta or {}).get("runs") or [])
    return "\n".join(lines)


def _runs_lines(runs: list[dict]) -> list[str]:
    """The last run that ran trials, and any later reruns that found nothing to run (a rerun
    of a finished sweep is a no-op in milliseconds: it is not what a user means by last run)."""
    worked = [i for i, r in enumerate(runs) if (r.get("planned") or 0) > 0]
    out = []
    if worked:
        r = runs[worked[-1]]
        out.append(f"  last run with trials: {r.get('planned')} planned, started "
                   f"{r.get('started_at')}, ended "
                   f"{r.get('ended_at') or '(not recorded: running or killed)'}")
    idle = runs[worked[-1] + 1:] if worked else runs
    if idle:
        out.append(f"  {'since then' if worked else 'runs'}: {len(idle)} with nothing to run, "
                   f"the last started {idle[-1].get('started_at')}")
    return out


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
    inside = _sweeps_inside(store, results, sorted(names))
    hint = (f"; the sweeps in it: {', '.join(inside[:8])}{' …' if len(inside) > 8 else ''}"
            if inside else "")
    raise SpecError(f"{results}: no sweep here (no sweep.json, no trials/); expected "
                    f"<output>/<name> as written by `diloco-sweep run`{hint}")


def _sweeps_inside(store: Store, results: str, names: list[str]) -> list[str]:
    """The sweep folders one level down (an output root such as results/), written as the
    user wrote ``results`` (relative stays relative; an S3 query stays at the end)."""
    base, _, query = results.partition("?")
    found = []
    for n in names:
        try:
            inner = store.fs.get_file_info(pafs.FileSelector(f"{store.root}/{n}"))
        except OSError:  # a file, or unreadable: not a sweep folder
            continue
        if {i.base_name for i in inner} & {"sweep.json", "trials"}:
            found.append(f"{base.rstrip('/')}/{n}" + (f"?{query}" if query else ""))
    return found
