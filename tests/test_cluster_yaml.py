"""cluster.yaml passes Ray's own launcher schema and keeps the promises of its comments."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _validate(cfg: dict) -> dict:
    # private API (pinned Ray 2.60): prepare_config fills defaults validate_config requires
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


def test_cluster_yaml_passes_the_launcher_schema(raw):
    cfg = _validate(raw)
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    gpu = types["gpu"]
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= cfg["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))


def test_setup_pins_ray_and_installs_this_project(raw):
    setup = " ".join(raw["setup_commands"])
    assert "ray[default,tune]==2.60.0" in setup and "~/diloco-sweep" in setup
    assert raw["file_mounts"]["~/diloco-sweep"] == "."


def test_only_ssh_is_open_and_not_to_the_world(raw):
    perms = raw["provider"]["security_group"]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"]) for p in perms] == [(22, 22)]
    cidrs = [r["CidrIp"] for p in perms for r in p["IpRanges"]]
    assert "0.0.0.0/0" not in cidrs
    head = " ".join(raw["head_start_ray_commands"])
    assert "--num-cpus=0" in head and "--dashboard-host=127.0.0.1" in head


@pytest.mark.parametrize("break_it,needle", [
    (lambda c: c.__setitem__("head_node_typ", c.pop("head_node_type")), "head_node_typ"),
    (lambda c: c.__setitem__("head_node_type", "nope"), "head_node_type"),
    (lambda c: c["available_node_types"]["gpu"].__setitem__("min_workers", 9), None),
])
def test_the_validator_catches_mistakes(raw, break_it, needle):
    bad = copy.deepcopy(raw)
    break_it(bad)
    with pytest.raises(Exception, match=needle):
        _validate(bad)
