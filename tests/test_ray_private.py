"""Ray's private API is used in one module only, and a Ray upgrade that moves it fails here."""

from __future__ import annotations

import re
from pathlib import Path

from sweeps.tune.ray_private import PRIVATE, missing

ROOT = Path(__file__).resolve().parents[1]


def test_every_private_name_still_exists() -> None:
    gone = missing()
    assert not gone, f"Ray upgrade: these private names moved or went away: {gone}; see " \
                     f"sweeps/tune/ray_private.py for what each is for"


def test_no_other_module_reaches_into_ray_private() -> None:
    pattern = re.compile(r"\bray\._private\b")
    users = sorted(str(p.relative_to(ROOT)) for pkg in ("sweeps", "analysis", "trainer",
                                                         "benchmarks", "tests")
                   for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["sweeps/tune/ray_private.py", "tests/test_ray_private.py"], users
    assert set(PRIVATE) == {"ray._private.ray_constants", "ray._private.utils"}
