"""Security checks that need no Ray runtime: YAML loading, no unpickling of results, the
cluster launcher's open ports. (The embedded Ray's listening sockets are checked while a real
sweep runs in test_faults_driver.py; token auth of `ray job submit` in test_sweeps_job.py.)"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sweeps.cli import main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {mark}']",
    "!!python/object/new:os.system ['touch {mark}']",
    "!!python/name:os.system",
    "!!python/object:builtins.object {{}}",
])
def test_yaml_python_tags_are_refused_and_never_run(tmp_path, capsys, tag):
    mark = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: evil\ntrial:\n  model: {tag.format(mark=mark)}\n")
    for cmd in ("check", "run"):
        assert main([cmd, str(spec), *(["--output", str(tmp_path / "out")] * (cmd == "run"))]) == 2
        err = capsys.readouterr().err
        assert "not valid YAML" in err and "python/" in err, err
    assert not mark.exists() and not (tmp_path / "out").exists()


def test_the_spec_loader_is_a_safe_loader():
    from sweeps.spec import yamlmarks

    assert issubclass(yamlmarks._Loader, yaml.SafeLoader)


# ------------------------------------------------------------------------- no unpickling
PICKLE_USE = re.compile(r"\b(import (c?pickle|cloudpickle|dill|joblib|marshal|shelve)|"
                        r"from (c?pickle|cloudpickle|dill|joblib) import|read_pickle|"
                        r"torch\.load|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|"
                        r"yaml\.full_load|\beval\(|\bexec\()")


def test_no_unpickling_in_the_result_readers():
    # every module that reads what a user or a store hands it: the results layer, the
    # analysis and the sweep service
    readers = sorted((ROOT / "analysis").glob("*.py")) + sorted((ROOT / "records").glob("*.py")) \
        + sorted((ROOT / "sweeps").rglob("*.py"))
    for f in readers:
        hits = [line for line in f.read_text().splitlines()
                if PICKLE_USE.search(line) and "noqa: S506" not in line]
        assert not hits, (f, hits)


class _Evil:
    def __init__(self, mark: Path) -> None:
        self.mark = str(mark)

    def __reduce__(self):
        return (open, (self.mark, "w"))  # unpickling it creates the file: harmless, visible


class _Disguised(pa.ExtensionType):
    """Written under the name of Ray's pickled-object type, whose values Ray unpickles."""

    def __init__(self) -> None:
        super().__init__(pa.large_binary(), "ray.data.arrow_pickled_object")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


@pytest.mark.parametrize("protocol", [5, 0])
def test_crafted_pickle_parquet_is_never_unpickled(tmp_path, capsys, protocol):
    """A trial row whose trial_id column holds a pickle, typed as Ray's pickled-object
    extension type. Once Ray Tune is imported (drivers, trials), pyarrow hands that column to
    Ray's type, and converting it to Python unpickles: code execution for anyone who can
    write into the results folder. Every reader of results must refuse or skip it."""
    import ray.tune  # noqa: F401 - registers ray.data.arrow_pickled_object, as in a trial
    import analysis
    from sweeps.store.store import Store

    mark = tmp_path / "pwned"
    folder = tmp_path / "out" / "evil"
    (folder / "trials").mkdir(parents=True)
    (folder / "curves").mkdir()
    payload = pa.array([pickle.dumps(_Evil(mark), protocol=protocol)], pa.large_binary())
    evil = pa.table({"trial_id": pa.ExtensionArray.from_storage(_Disguised(), payload),
                     "status": ["completed"], "outer_step": [0]})
    for sub in ("trials", "curves"):
        pq.write_table(evil, folder / sub / "0123456789abcdef.parquet")
    (folder / "sweep.json").write_text(json.dumps({"name": "evil", "runs": []}))

    if protocol == 5:  # the file is armed: a naive reader in this process runs the payload
        pq.read_table(folder / "trials" / "0123456789abcdef.parquet").to_pylist()
        assert mark.exists()
        mark.unlink()

    store = Store(str(tmp_path / "out"), "evil")
    store.read_trials().to_pylist()
    store.read_curves().to_pylist()
    assert store.read_row("0123456789abcdef") is None
    with pytest.warns(UserWarning, match="extension type"):
        assert analysis.load_trials(folder).empty
    with pytest.warns(UserWarning, match="extension type"):
        assert analysis.load_curves(folder).empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["status", str(folder)]) == 0
        assert main(["show", str(folder)]) == 0
        main(["report", str(folder), "-o", str(tmp_path / "r.html")])  # nothing to report
    capsys.readouterr()
    assert not mark.exists()


# ------------------------------------------------------------------------- cluster.yaml
def test_cluster_yaml_opens_only_ssh_and_not_to_the_world():
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    perms = cfg["provider"]["security_group"]["IpPermissions"]
    for p in perms:
        assert (p["FromPort"], p["ToPort"], p["IpProtocol"]) == (22, 22, "tcp"), p
        v4 = [r["CidrIp"] for r in p.get("IpRanges", [])]
        v6 = [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
        assert v4 and "0.0.0.0/0" not in v4 and "::/0" not in v6, p
        assert not p.get("UserIdGroupPairs") and not p.get("PrefixListIds")
    text = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in text  # dashboard and job API on loopback only
    assert "0.0.0.0" not in text and "--ray-client-server-port" not in text
    for node in cfg["available_node_types"].values():  # no public-IP override of the launcher
        assert "NetworkInterfaces" not in node["node_config"]


# ------------------------------------------------------------------------- Parquet footers
def _crafted_footers(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A sweep with two good rows, and three files whose Parquet footers lie about their
    metadata's length: a valid file whose length field says 4 GB (longer than the file), as a
    trial's file and as a compacted one, and a 2 GB sparse file (no disk) claiming 2 GB."""
    from sweeps.spec.parse import parse_spec
    from sweeps.spec.space import grid_points
    from sweeps.store.store import Store, trial_id
    from sweeps.tune.trial import trial_config

    spec = parse_spec({"name": "foot", "trial": {"model": "tiny", "workers": 2},
                       "space": {"seed": [0, 1]}})
    store = Store(str(tmp_path / "out"), "foot")
    for p in grid_points(spec.space):
        cfg = trial_config(spec, p)
        store.write_trial({"sweep": "foot", "trial_id": trial_id(cfg), **cfg.flat(),
                           "status": "completed", "final_loss": 3.0},
                          [{"outer_step": 0, "tokens": 1, "eval_loss": 3.0}])
    folder = tmp_path / "out" / "foot"
    good = sorted((folder / "trials").glob("*.parquet"))[0].read_bytes()
    lying = good[:-8] + (0xFFFFFFF0).to_bytes(4, "little") + b"PAR1"
    bad = [folder / "trials" / "0123456789abcdef.parquet",
           folder / "trials" / "compacted-0123456789abcdef.parquet",
           folder / "curves" / "compacted-0123456789abcdef.parquet",
           folder / "trials" / "fedcba9876543210.parquet"]
    for f in bad[:3]:
        f.write_bytes(lying)
    size = 2 << 30
    with open(bad[3], "wb") as f:  # sparse: 2 GB long, 8 bytes on disk
        f.truncate(size - 8)
        f.seek(size - 8)
        f.write((size - 100).to_bytes(4, "little") + b"PAR1")
    return folder, bad


def test_a_parquet_footer_claiming_gigabytes_is_refused_before_it_is_read(tmp_path, capsys):
    """A footer's length field decides what pyarrow allocates and reads: a 2 GB sparse file
    claiming 2 GB of metadata cost every reader 2.4 GB. Every reader refuses it from its last
    8 bytes, skips the file naming it, and keeps the good rows."""
    import resource
    import time

    import analysis
    from sweeps.store.store import Store

    folder, bad = _crafted_footers(tmp_path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    t0 = time.time()
    store = Store(str(tmp_path / "out"), "foot")
    assert store.read_trials().num_rows == 2
    assert store.read_curves().num_rows == 2
    assert sorted(store.skipped) == sorted(str(f) for f in bad)
    assert "more than the file's" in store.skipped[str(bad[0])]
    assert "more than the 64 MiB" in store.skipped[str(bad[3])]
    assert store.read_row("fedcba9876543210") is None
    assert store.compacted_ids()[str(bad[1])] == set()
    with pytest.warns(UserWarning) as seen:
        assert len(analysis.load_trials(folder)) == 2
        assert len(analysis.load_curves(folder)) == 2
    text = "\n".join(str(w.message) for w in seen)
    for f in bad:
        assert f"skipped {f}: its Parquet footer claims" in text, text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "completed        2" in out and bad[3].name in out
    assert time.time() - t0 < 30
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 512 * 1024, f"the readers' peak memory grew by {grown} KiB"
