"""`diloco-sweep check`: every check `run` makes before Ray starts, the plan and its cost."""

from __future__ import annotations

import os
import sys

from sweeps.cli_errors import UsageError

__all__ = ["check"]


def check(path: str, address: str | None = None, card: str = "h100", mfu: float = 0.4,
           output: str | None = None, allow_other_settings: bool = False) -> int:
    """Every check `run` makes before Ray starts (the same functions), and nothing written."""
    import yaml

    from sweeps.estimate.cost import format_cost, sweep_cost
    from sweeps.estimate.cpu_time import cpu_time
    from sweeps.tune.loggers import check_loggers
    from sweeps.estimate.preflight import preflight
    from sweeps.tune.runner import resolve_output, runs_locally
    from sweeps.spec.parse import SpecError, load_spec

    spec = load_spec(path)
    spec.search_kind.check(spec)
    out = resolve_output(output or spec.output)
    check_loggers(spec, out, SpecError)
    from sweeps.spec.history import check_stored  # run's refusal of another experiment under this name

    for note in check_stored(spec, out, allow_other_settings):
        print(f"# note: {note}", file=sys.stderr)
    local = runs_locally(address)
    try:
        preflight(spec, local=local)
    except SpecError as e:
        # a spec for GPUs this machine does not have is a cluster's: check it as `run
        # --address` would, and say that a local run refuses it
        if not (local and spec.resources.gpu and str(e).startswith("resources.gpu:")):
            raise
        preflight(spec, local=False)
        print(f"# note: checked as for a cluster; a local run refuses it ({e})", file=sys.stderr)
    print(yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=False,
                         allow_unicode=True).rstrip())
    print(f"# {spec.describe()}")
    if not 0 < mfu <= 1:
        raise UsageError(f"--mfu: expected a fraction in (0, 1] such as 0.4, got {mfu}")
    sc = sweep_cost(spec)
    print(format_cost(sc, card, mfu, gpu=spec.resources.gpu))
    est = cpu_time(spec, sc, max_concurrent=spec.search.max_concurrent) if local else None
    if est is not None:
        print(est.line())
        if est.long:
            print(f"# WARNING: {est.warning()}", file=sys.stderr)
    corpus = spec.base.corpus
    if isinstance(corpus, str) and corpus != "stdlib" and "://" not in corpus \
            and not os.path.exists(corpus):
        print(f"# note: corpus {corpus!r} is not on this machine; the trials' nodes need it",
              file=sys.stderr)
    return 0
