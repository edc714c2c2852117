"""A private embedded Ray for one block of code, with the resources it declares.

``run_sweep`` starts its own embedded Ray when none is running; this is for a caller that runs
several sweeps against one Ray (so that Ray's start-up is paid once and not inside either
sweep's wall time), or that needs Ray to declare resources the machine does not have: a
rehearsal of fractional-GPU trials on a CPU-only machine declares ``num_gpus=1`` (the trials
then train on the CPU, as in tests/test_sweeps_ray.py). ``run_sweep`` finds Ray initialized and
uses it (and so skips its local-machine checks of CPUs and GPUs: the declared ones count).

Like the runner's own embedded Ray it listens on 127.0.0.1 only, has no dashboard, writes no
/tmp/ray/ray_current_cluster (other Ray users on the machine read it) and keeps its session
files in a private temporary folder, removed at the end.

    with local_ray(num_cpus=2, num_gpus=1):
        run_sweep(spec_a, output=...)
        run_sweep(spec_b, output=...)
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from typing import Iterator

from sweeps.tune.ray_private import AUTH_LOGGER, no_address_file

__all__ = ["local_ray"]


@contextlib.contextmanager
def local_ray(num_cpus: int | None = None,
              num_gpus: int | None = None) -> Iterator[dict[str, float]]:
    """Start a private local Ray for the block; yields its cluster resources ({"CPU": 2.0, ...}).

    ``None`` leaves a count to Ray's detection (the machine's cores, its CUDA devices). Refuses
    (RuntimeError) when this process already has Ray initialized: that runtime is someone's.
    """
    import ray

    if ray.is_initialized():
        raise RuntimeError("local_ray: this process already has Ray initialized; use that one")
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths are limited
    auth = logging.getLogger(AUTH_LOGGER)  # "Token authentication is enabled": on, as we want
    level = auth.level
    with no_address_file():
        try:
            auth.setLevel(logging.ERROR)
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                     logging_level="WARNING", num_cpus=num_cpus, num_gpus=num_gpus,
                     _temp_dir=tmp)
            auth.setLevel(level)
            yield dict(ray.cluster_resources())
        finally:
            auth.setLevel(level)
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
