"""Every use of Ray's private API, in one place, for what has no public way.

- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``: an embedded Ray swaps a loopback address
  for the machine's outward one unless its single-node mode is forced; an embedded run here
  must listen on 127.0.0.1 only (docs/reliability.md).
- ``ray._private.utils.write_ray_address``: a test cluster must not write
  /tmp/ray/ray_current_cluster, which other Ray users on the machine read.

``missing()`` lists the names a Ray upgrade has moved; ``tests/test_ray_private.py`` fails
loudly on any, and checks that no other module reaches into ``ray._private``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Iterator

__all__ = ["PRIVATE", "AUTH_LOGGER", "missing", "loopback_only", "no_address_file"]

PRIVATE = {"ray._private.ray_constants": ("ENABLE_RAY_CLUSTER",),
           "ray._private.utils": ("write_ray_address",)}

AUTH_LOGGER = "ray._private.authentication"
"""The logger of Ray 2.60's "Token authentication is enabled" note on every local cluster."""


def missing() -> list[str]:
    """The private names this project uses that the installed Ray no longer has."""
    out = []
    for module, names in PRIVATE.items():
        try:
            m = importlib.import_module(module)
        except ImportError:
            out += [f"{module}.{n}" for n in names]
            continue
        out += [f"{module}.{n}" for n in names if not hasattr(m, n)]
    return out


def loopback_only() -> None:
    """Keep an embedded Ray started in this process on 127.0.0.1 (its single-node mode)."""
    import ray._private.ray_constants as rc

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    rc.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def no_address_file() -> Iterator[None]:
    """Single-node mode and no /tmp/ray/ray_current_cluster while the block runs."""
    import ray._private.ray_constants as rc
    import ray._private.utils as ru

    saved = (rc.ENABLE_RAY_CLUSTER, ru.write_ray_address, os.environ.get(
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
    loopback_only()
    ru.write_ray_address = lambda *a, **k: None
    try:
        yield
    finally:
        rc.ENABLE_RAY_CLUSTER, ru.write_ray_address = saved[:2]
        if saved[2] is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved[2]
