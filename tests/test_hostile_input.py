"""Hostile input and integrity, no Ray: rows checked against their trial_id, secrets redacted,
integer bounds, YAML bombs, impossible resources, unsupported outputs, a bad corpus, `check`
making every check `run` makes, one answer on a folder of bad files.

Each case reproduces a fault a hostile user found (docs/reliability.md lists them) and checks
that nothing already stored is lost or duplicated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sweeps.tune.runner
from conftest import local_s3
from sweeps.cli import main
from sweeps.spec.parse import parse_spec
from sweeps.store.store import DONE_STATUSES, Store, trial_id
from sweeps.tune.trial import trial_config

TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1}


@pytest.fixture(autouse=True)
def _no_ray(no_ray):
    """Every test here: a refused run must never reach Ray (conftest.no_ray)."""


def _spec_file(tmp_path: Path, text: str | None = None, *, trial: dict | None = None,
               space: dict | None = None, resources: dict | None = None,
               output: str | None = None, name: str = "hostile") -> Path:
    p = tmp_path / "spec.yaml"
    if text is None:
        space = space or {"seed": [0, 1]}
        text = json.dumps({"name": name, "space": space, "resources": resources or {},
                           "trial": {k: v for k, v in {**TINY, **(trial or {})}.items()
                                     if k not in space},
                           "output": output or str(tmp_path / "out")})
    p.write_text(text)
    return p


def _refused(capsys, argv: list[str], code: int, *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


# ------------------------------------------------------------------------- integer bounds
@pytest.mark.parametrize("seed", [2**63, 10**23])
def test_a_seed_too_large_for_int64_is_refused_by_check_and_run(tmp_path, capsys, seed):
    spec = _spec_file(tmp_path, f"name: big\nspace:\n  seed: [{seed}]\noutput: "
                                f"{tmp_path / 'out'}\n")
    for cmd in ("check", "run"):
        _refused(capsys, [cmd, str(spec)], 2, "space.seed", "9223372036854775807", "(line 3)")
    assert not (tmp_path / "out").exists()


def test_every_integer_setting_is_bounded():
    from trainer.config import INT_MAX, ConfigError, TrainConfig

    ints = [n for n in TrainConfig.field_names()
            if isinstance(getattr(TrainConfig(), n), int)
            and not isinstance(getattr(TrainConfig(), n), bool)]
    assert "seed" in ints and "H" in ints
    for name in ints:
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**{name: 10**23})
    TrainConfig(seed=2**63 - 1)  # the largest seed is still a seed
    with pytest.raises(ConfigError, match="model.n_layer"):
        from trainer.model_config import resolve_model
        resolve_model({"n_layer": INT_MAX + 1}, 256)


def test_the_failed_row_path_survives_any_exception_and_records_the_end(tmp_path, capsys,
                                                                        monkeypatch):
    """A failed row that cannot be written for a reason that is not an OSError (the int64
    overflow of a huge seed was one) is named, and the run's end is still recorded."""
    spec = parse_spec({"name": "hostile", "trial": TINY, "space": {"seed": [1]}})
    cfg = trial_config(spec, {"seed": 1})
    monkeypatch.setattr(sweeps.tune.runner, "run_trials", lambda *a, **k: [(cfg, "RuntimeError: boom")])
    real = Store.write_trial

    def write(self, row, curve=()):
        if row["status"] == "failed":
            raise OverflowError("Python int too large to convert to C long")
        return real(self, row, curve)

    monkeypatch.setattr(Store, "write_trial", write)
    path = _spec_file(tmp_path, space={"seed": [1]})
    err = _refused(capsys, ["run", str(path), "--no-report"], 1, trial_id(cfg),
                   "OverflowError")
    assert "NOT STORED" in err
    meta = json.loads((tmp_path / "out" / "hostile" / "sweep.json").read_text())
    assert meta["runs"][-1]["ended_at"] is not None
    assert meta["runs"][-1]["unwritten"] == [trial_id(cfg)]


# ------------------------------------------------------------------------- model mapping
def test_a_misspelt_model_field_is_refused_by_check_with_its_key_and_line(tmp_path, capsys):
    spec = _spec_file(tmp_path, "name: typo\ntrial:\n  model: {preset: tiny, n_layr: 2}\n"
                                f"output: {tmp_path / 'out'}\n")
    for cmd in ("check", "run"):
        err = _refused(capsys, [cmd, str(spec)], 2, "trial.model.n_layr", "not a model field",
                       "n_layer", "(line 3)")
        assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- YAML alias bombs
def _bomb_lists() -> str:
    """Nine levels of nine aliases each under a valid key: 9^9 (387M) strings, ~580 bytes."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "name: bomb\ntrial:\n  model:\n" + "".join(f"    {x}\n" for x in levels)


def _bomb_mappings() -> str:
    """Mappings of aliases, eight keys a level: 8^8 (16M) values in ~470 bytes; copying them
    into plain dicts used to take 2 GB before any check ran."""
    keys = "pqrstuvw"
    levels = ["a: &a {" + ", ".join(f"{k}: lol" for k in keys) + "}"]
    for prev, cur in zip("abcdefg", "bcdefgh"):
        levels.append(f"{cur}: &{cur} {{" + ", ".join(f"{k}: *{prev}" for k in keys) + "}")
    return "name: bomb\ntrial:\n  model:\n" + "".join(f"    {x}\n" for x in levels)


@pytest.mark.parametrize("make", [_bomb_lists, _bomb_mappings], ids=["lists", "mappings"])
def test_a_yaml_alias_bomb_is_refused_in_under_a_second(tmp_path, capsys, make):
    text = make()
    assert 300 < len(text.encode()) < 1200
    spec = _spec_file(tmp_path, text + f"output: {tmp_path / 'out'}\n")
    for cmd in ("check", "run"):
        t0 = time.perf_counter()
        _refused(capsys, [cmd, str(spec)], 2, "not valid YAML", "alias")
        assert time.perf_counter() - t0 < 1.0
    assert not (tmp_path / "out").exists()


def test_yaml_anchors_of_a_normal_size_still_work(tmp_path, capsys):
    spec = _spec_file(tmp_path, "name: anchors\ntrial: &t {workers: 2, H: 2}\n"
                                "space:\n  seed: &s [0, 1]\n  R: *s\n")
    assert main(["check", str(spec)]) == 0
    assert "# 4 trials" in capsys.readouterr().out


# ------------------------------------------------------------------------- output schemes
@pytest.mark.parametrize("output,needle", [
    ("gs://bucket/x", "gs:// is not a supported results store"),
    ("ftp://host/x", "ftp:// is not a supported results store"),
    ("s3://", "needs a bucket"),
    ("s3:///prefix", "needs a bucket"),
    ("s3://bucket/x?endpoint=1", "unknown S3 option 'endpoint'"),
])
def test_an_unsupported_output_is_refused_with_exit_2(tmp_path, capsys, output, needle):
    spec = _spec_file(tmp_path)
    t0 = time.perf_counter()
    for argv in (["run", str(spec), "--output", output], ["status", f"{output}/hostile"]):
        _refused(capsys, argv, 2, needle, "s3://bucket/prefix" if "bucket" not in needle
                 and "option" not in needle else "")
    spec = _spec_file(tmp_path, output=output)
    _refused(capsys, ["check", str(spec)], 2, needle)
    assert time.perf_counter() - t0 < 5  # refused, not tried


@pytest.mark.slow
def test_an_unreachable_object_store_fails_within_the_connect_timeout(tmp_path, capsys,
                                                                     monkeypatch):
    """A blackholed endpoint (a listening socket that never accepts: connects hang) used to
    wait about 100 s in the SDK's retries; now the connect timeout ends it in about 10 s, and
    the message says which endpoint did not answer and how to name another."""
    import socket

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    # a backlog of 0, filled by one connection nobody accepts: further connects hang
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    port = hole.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    try:
        uri = f"s3://bucket/p?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        t0 = time.perf_counter()
        _refused(capsys, ["run", str(_spec_file(tmp_path)), "--output", uri], 1,
                 "cannot use the results store", f"no answer from 127.0.0.1:{port}",
                 "connect timeout")
        assert time.perf_counter() - t0 < 40
    finally:
        for s in fillers + [hole]:
            s.close()


# ------------------------------------------------------------------------- secrets
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"


@pytest.fixture()
def moto_s3():
    with local_s3() as port:
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                          access_key="AKIDEXAMPLE", secret_key=SECRET, region="us-east-1",
                          allow_bucket_creation=True).create_dir("bucket")
        yield port


def _fake_tune(spec, p, out, *a, **k):
    """Ray's place taken by a loop that stores every planned trial as completed."""
    store = Store(out, spec.name)
    for point in p.todo:
        cfg = trial_config(spec, point)
        store.write_trial({"sweep": spec.name, "trial_id": trial_id(cfg), **cfg.flat(),
                           "status": "completed", "initial_loss": 5.5, "final_loss": 3.0,
                           "best_loss": 3.0, "peak_loss": 5.0, "rise": 0.0},
                          [{"outer_step": t, "tokens": 10 * t, "eval_loss": 5.0 - t}
                           for t in range(3)])
    return []


@pytest.mark.slow
def test_credentials_in_the_output_uri_are_redacted_everywhere(tmp_path, capsys, monkeypatch,
                                                               moto_s3):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(sweeps.tune.runner, "run_trials", _fake_tune)
    monkeypatch.chdir(tmp_path)
    uri = (f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix?endpoint_override=127.0.0.1:{moto_s3}"
           f"&scheme=http&region=us-east-1")
    spec = _spec_file(tmp_path, output=uri)
    assert main(["check", str(spec)]) == 0
    assert main(["run", str(spec)]) == 0
    folder = uri.replace("/prefix?", "/prefix/hostile?")
    assert main(["status", folder]) == 0
    assert main(["show", folder]) == 0
    assert main(["report", folder, "-o", str(tmp_path / "r.html")]) == 0
    monkeypatch.setattr(sweeps.tune.runner, "run_trials", lambda *a, **k: 1 / 0)  # an error message too
    assert main(["run", str(spec), "--force", "--no-report"]) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "AKIDEXAMPLE" not in out + err
    assert "s3://***@bucket/prefix" in out + err  # the place is still named
    store = Store.at(folder)
    with store.fs.open_input_stream(f"{store.root}/sweep.json") as f:
        meta = f.read().decode()
    assert SECRET not in meta and "s3://***@bucket" in meta  # runs[].argv and spec.output
    assert len(json.loads(meta)["runs"]) == 2
    for html in (tmp_path / "r.html", tmp_path / "hostile-report.html"):
        text = html.read_text()
        assert SECRET not in text and "s3://***@bucket/prefix/hostile" in text


def test_redact_leaves_other_text_alone():
    from sweeps.store.redact import redact

    assert redact("s3://bucket/a@b?x=1") == "s3://bucket/a@b?x=1"
    assert redact("see s3://K:S@b/p and http://u@h/") == "see s3://***@b/p and http://***@h/"
    assert redact("x?secret_key=abc&region=r") == "x?secret_key=***&region=r"


# ------------------------------------------------------------------------- before Ray
def test_more_cpus_per_trial_than_this_machine_has_is_refused_on_a_local_run(tmp_path, capsys):
    from sweeps.estimate.preflight import local_cpus

    spec = _spec_file(tmp_path, resources={"cpu": 64 * local_cpus()})
    for cmd in ("check", "run"):
        _refused(capsys, [cmd, str(spec)], 2, "resources.cpu", f"this machine has "
                 f"{local_cpus()}", "wait for ever")
    assert not (tmp_path / "out").exists()
    ok = _spec_file(tmp_path, resources={"cpu": local_cpus()})
    assert main(["check", str(ok)]) == 0


@pytest.mark.parametrize("what", ["folder", "missing"])
def test_a_corpus_that_is_a_folder_or_missing_is_refused_on_a_local_run(tmp_path, capsys, what):
    corpus = tmp_path / "corpus"
    if what == "folder":
        corpus.mkdir()
        (corpus / "a.txt").write_text("text " * 1000)
    needle = "is a folder" if what == "folder" else "no such file"
    for space in (None, {"corpus": ["stdlib", str(corpus)]}):
        trial = {"corpus": str(corpus)} if space is None else {}
        spec = _spec_file(tmp_path, trial=trial, space=space)
        for cmd in ("check", "run"):
            _refused(capsys, [cmd, str(spec)], 2, "space.corpus" if space else "trial.corpus",
                     needle, "before starting Ray")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,data,needle", [
    ("empty.txt", b"", "is empty"),
    ("binary.txt", b"\x7fELF\x00\x00\x01" * 1000, "looks binary"),
])
def test_check_refuses_the_corpus_run_refuses(tmp_path, capsys, name, data, needle):
    (tmp_path / name).write_bytes(data)
    spec = _spec_file(tmp_path, trial={"corpus": str(tmp_path / name)})
    _refused(capsys, ["check", str(spec)], 2, "trial.corpus", needle)


# ------------------------------------------------------------------------- row integrity
def _sweep(tmp_path: Path, capsys, monkeypatch, seeds=(0, 1, 2)) -> tuple[Path, Path, list]:
    """A finished 3-trial sweep (no Ray: the fake Tune stores each planned trial)."""
    ran: list[list[str]] = []

    def tune(spec, p, out, *a, **k):
        ran.append([trial_id(trial_config(spec, pt)) for pt in p.todo])
        return _fake_tune(spec, p, out)

    monkeypatch.setattr(sweeps.tune.runner, "run_trials", tune)
    spec = _spec_file(tmp_path, space={"seed": list(seeds)})
    assert main(["run", str(spec), "--no-report"]) == 0
    capsys.readouterr()
    return spec, tmp_path / "out" / "hostile", ran


def test_an_edited_row_is_skipped_named_and_rerun(tmp_path, capsys, monkeypatch):
    spec, folder, ran = _sweep(tmp_path, capsys, monkeypatch)
    victim = sorted((folder / "trials").glob("*.parquet"))[0]
    df = pd.read_parquet(victim)  # another α and a better loss, the trial_id kept
    df["alpha"], df["final_loss"] = 2.0, 0.01
    df.to_parquet(victim)
    for cmd in ("status", "show"):
        assert main([cmd, str(folder)]) == 0
        out = capsys.readouterr().out
        assert victim.name in out and "hash to" in out
        assert "0.01" not in out
    assert "missing          1" in (main(["status", str(folder)]), capsys.readouterr().out)[1]
    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "2 already stored, 1 to run" in err and victim.name in err
    assert ran[-1] == [victim.stem]  # the edited trial, and only it, ran again
    back = pq.read_table(victim).to_pylist()[0]
    assert back["alpha"] == 0.7 and back["final_loss"] == 3.0  # its own row again


def test_a_row_copied_under_another_trials_name_is_rerun_not_duplicated(tmp_path, capsys,
                                                                       monkeypatch):
    spec, folder, ran = _sweep(tmp_path, capsys, monkeypatch)
    a, b = sorted((folder / "trials").glob("*.parquet"))[:2]
    a.write_bytes(b.read_bytes())  # a.parquet now holds b's row
    store = Store(str(folder.parent), "hostile")
    assert store.read_row(a.stem) is None  # the trial's own check and the plan agree
    assert sorted(k for k, v in store.statuses().items() if v in DONE_STATUSES) == sorted(p.stem for p in folder.glob("trials/*")
                                              if p != a)
    assert main(["run", str(spec), "--no-report"]) == 0
    assert ran[-1] == [a.stem]
    t = pd.read_parquet(folder / "trials")
    assert len(t) == 3 and t.trial_id.nunique() == 3  # repaired: no duplicate left


def test_a_foreign_parquet_file_is_skipped_and_named_everywhere(tmp_path, capsys, monkeypatch):
    spec, folder, _ = _sweep(tmp_path, capsys, monkeypatch, seeds=(0, 1))
    foreign = folder / "trials" / "foreign.parquet"
    pq.write_table(pa.table({"trial_id": ["zz"], "status": ["completed"],
                             "final_loss": [0.5]}), foreign)
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "completed        2" in out and "foreign.parquet" in out
    assert main(["show", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 trials" in out and "foreign.parquet" in out and "3 trials" not in out
    html = tmp_path / "r.html"
    assert main(["report", str(folder), "-o", str(html)]) == 0
    assert "foreign.parquet" in capsys.readouterr().err
    assert "foreign.parquet" in html.read_text()
    assert main(["run", str(spec), "--no-report"]) == 0
    assert "foreign.parquet" in capsys.readouterr().err


def test_a_folder_of_only_a_bad_file_gets_one_answer(tmp_path, capsys):
    folder = tmp_path / "only-bad"
    (folder / "trials").mkdir(parents=True)
    pq.write_table(pa.table({"trial_id": ["zz"], "status": ["completed"]}),
                   folder / "trials" / "bad.parquet")
    answers = set()
    for cmd in ("status", "show", "report"):
        extra = ["-o", str(tmp_path / "r.html")] if cmd == "report" else []
        err = _refused(capsys, [cmd, str(folder), *extra], 2, "no sweep here", "bad.parquet")
        answers.add(err.strip().splitlines()[-1])
    assert len(answers) == 1, answers
    assert not (tmp_path / "r.html").exists()
