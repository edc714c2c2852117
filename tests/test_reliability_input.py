"""Bad input at every door, and storage that fails before a sweep starts; no Ray needed.

Each case goes through the command line (``main()`` in this process, and ``python -m sweeps``
in a subprocess for the real exit code) and checks: one clear line on stderr, the documented
exit code (2 bad input, 1 storage), Ray never started, and nothing written or damaged.
Storage faults are real: a read-only bind mount (or chmod when not root), a full tmpfs, a file
where a folder should be, an S3 endpoint on a closed port, a lock held by a live process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import mount_tmpfs

import sweeps.tune.runner
from sweeps.spec.space import grid_points
from sweeps.cli import main
from sweeps.store.store import Store, trial_id
from sweeps.tune.trial import trial_config
from sweeps.spec.parse import parse_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "tiny", "workers": 2, "H": 2, "outer_steps": 3, "batch_size": 4, "seq_len": 32,
        "eval_batches": 1}


@pytest.fixture(autouse=True)
def _no_ray(no_ray):
    """Every test here: a refused run must never reach Ray (conftest.no_ray)."""


def _spec(tmp_path: Path, trial: dict | None = None, space: dict | None = None,
          name: str = "rel", output: Path | str | None = None, text: str | None = None) -> Path:
    space = space or {"seed": [0, 1]}
    trial = {k: v for k, v in {**TINY, **(trial or {})}.items() if k not in space}
    p = tmp_path / "spec.yaml"
    p.write_text(text if text is not None else json.dumps(
        {"name": name, "trial": trial, "space": space, "output": str(output or tmp_path / "out")}))
    return p


def _refused(capsys, argv: list[str], code: int, *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diloco-sweep: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


# ------------------------------------------------------------------------- the spec door
SPECS = [
    ("malformed-yaml", "name: [unclosed\ntrial: {\n", "not valid YAML"),
    ("yaml-not-a-mapping", "- just\n- a list\n", "a spec is a mapping"),
    ("wrong-type", "name: s\ntrial: {workers: two}\n", "trial.workers"),
    ("wrong-type-axis", "name: s\nspace: {H: [2, 2.5]}\n", "space.H"),
    ("nan-axis", "name: s\nspace: {alpha: [0.5, .nan]}\n", "NaN"),
    ("inf-trial", "name: s\ntrial: {lr: .inf}\n", "NaN and infinity"),
    ("nan-range", "name: s\nspace: {alpha: {low: .nan, high: 1}}\nsearch: {kind: optuna}\n",
     "NaN and infinity"),
    ("inf-range", "name: s\nspace: {beta: {low: 0, high: -.inf}}\nsearch: {kind: optuna}\n",
     "NaN and infinity"),
    ("name-dotdot", "name: ../escape\n", "not a safe folder name"),
    ("name-slash", "name: a/b\n", "not a safe folder name"),
    ("name-dots", "name: ..\n", "not a safe folder name"),
    ("name-absolute", "name: /etc\n", "not a safe folder name"),
    ("unknown-preset", "name: s\ntrial: {model: huge}\n", "unknown model preset"),
]


@pytest.mark.parametrize("case,text,needle", SPECS, ids=[c[0] for c in SPECS])
def test_bad_spec_is_refused_before_anything(tmp_path, capsys, case, text, needle):
    spec = _spec(tmp_path, text=text + f"output: {tmp_path / 'out'}\n"
                 if text.startswith("name") else text)
    _refused(capsys, ["run", str(spec)], 2, needle)
    assert not (tmp_path / "out").exists()


def test_exit_codes_of_the_real_command(tmp_path):
    """The same refusals through `python -m sweeps` as a user (or `ray job submit`) runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for text, code in (("name: ../x\n", 2), ("name: [\n", 2)):
        spec = _spec(tmp_path, text=text)
        r = subprocess.run([sys.executable, "-m", "sweeps", "run", str(spec)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == code and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "sweeps", "status", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no sweep here" in r.stderr, r.stderr


# ------------------------------------------------------------------------- memory
def test_model_too_big_for_the_memory_limit_is_refused_with_numbers(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("DILOCO_MEMORY_LIMIT_BYTES", str(4 * 1024 ** 3))
    spec = _spec(tmp_path, trial={"model": "medium"}, space={"workers": [1, 8]})
    err = _refused(capsys, ["run", str(spec)], 2, "trial memory:", "'medium'", "workers=8",
                   "GiB", "DILOCO_MEMORY_LIMIT_BYTES=4294967296", "before starting Ray")
    assert "parameters; state" in err  # the parts of the estimate are named
    assert not (tmp_path / "out").exists()
    # the same spec with room for it passes the check (and would go on to Ray)
    monkeypatch.setenv("DILOCO_MEMORY_LIMIT_BYTES", str(64 * 1024 ** 3))
    assert main(["run", str(spec)]) == 1
    assert "Ray Tune was started" in capsys.readouterr().err


def test_model_too_big_for_this_machine_is_refused(tmp_path, capsys):
    """No override: the check reads this machine's free memory (the trials run here)."""
    spec = _spec(tmp_path, trial={"model": "paper150m", "workers": 64, "batch_size": 64,
                                  "seq_len": 2048})
    _refused(capsys, ["run", str(spec)], 2, "'paper150m'", "this machine's free memory")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- corpus
@pytest.mark.parametrize("name,data,needle", [
    ("empty.txt", b"", "is empty"),
    ("binary.txt", b"\x7fELF\x00\x00\x01" * 1000, "looks binary"),
    ("odd.bin", b"\x01\x00\x02", "odd byte count"),
    ("short.txt", b"only a few bytes", "too small"),
])
def test_bad_corpus_is_refused_before_ray(tmp_path, capsys, name, data, needle):
    corpus = tmp_path / name
    corpus.write_bytes(data)
    spec = _spec(tmp_path, trial={"corpus": str(corpus)})
    _refused(capsys, ["run", str(spec)], 2, "trial.corpus", needle, "before starting Ray")
    # also as an axis value next to a good one
    spec = _spec(tmp_path, space={"corpus": ["stdlib", str(corpus)]})
    _refused(capsys, ["run", str(spec)], 2, "space.corpus", needle)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- results folders
def test_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello")
    (tmp_path / "afile").write_text("x")
    for cmd in ("status", "show", "report"):
        for target in ("random", "afile", "missing"):
            extra = ["-o", str(tmp_path / "r.html")] if cmd == "report" else []
            err = _refused(capsys, [cmd, str(tmp_path / target), *extra], 2)
            assert "sweep" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------------- storage at start
def _stored(tmp_path: Path, output: Path) -> tuple[Path, dict[str, bytes]]:
    """A sweep folder with two rows and a sweep.json, as a finished run leaves it."""
    spec = parse_spec({"name": "rel", "trial": TINY, "space": {"seed": [0, 1]}})
    store = Store(str(output), "rel")
    for p in grid_points(spec.space):
        cfg = trial_config(spec, p)
        store.write_trial({"sweep": "rel", "trial_id": trial_id(cfg), **cfg.flat(),
                           "status": "completed", "final_loss": 3.0},
                          [{"outer_step": 0, "tokens": 1, "eval_loss": 3.0}])
    store.write_meta({"name": "rel", "spec": spec.to_dict(), "runs": []})
    return output / "rel", _snapshot(output / "rel")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _read_only(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o555)
        return
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot make a read-only bind mount for this storage-fault test (run the "
                    f"suite as root, as CI does): {r.stderr.strip()}")


def _undo(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.chmod(0o755)


def test_output_not_writable(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    folder, before = _stored(tmp_path, out)
    _read_only(out)
    try:
        spec = _spec(tmp_path, space={"seed": [0, 1, 2]}, output=out)
        _refused(capsys, ["run", str(spec)], 1, f"cannot write to {folder}",
                 "Read-only file system" if os.geteuid() == 0 else "Permission denied")
        assert _snapshot(folder) == before  # nothing already written is touched
        assert main(["status", str(folder)]) == 0  # still readable
        assert "completed        2" in capsys.readouterr().out
    finally:
        _undo(out)


def test_output_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("not a folder")
    spec = _spec(tmp_path)
    _refused(capsys, ["run", str(spec)], 1, "cannot")
    assert (tmp_path / "out").read_text() == "not a folder"


def test_disk_already_full(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount_tmpfs(disk, "256k")
    try:
        folder, before = _stored(tmp_path, disk)
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            os.close(fd)
        spec = _spec(tmp_path, space={"seed": [0, 1, 2]}, output=disk)
        _refused(capsys, ["run", str(spec)], 1, f"cannot write to {folder}",
                 "No space left on device")
        assert _snapshot(folder) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


@pytest.mark.slow  # waits out the S3 SDK's retries, twice: ~12 s
def test_s3_unreachable(tmp_path, capsys, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    uri = f"s3://bucket/prefix?endpoint_override=127.0.0.1:{_closed_port()}&scheme=http"
    spec = _spec(tmp_path, output=uri)
    t0 = time.time()
    _refused(capsys, ["run", str(spec)], 1, "cannot use the results store s3://bucket/prefix/rel",
             "Could not connect")
    _refused(capsys, ["status", uri.replace("prefix?", "prefix/rel?")], 1, "cannot read",
             "Could not connect")
    assert time.time() - t0 < 60  # the SDK's retries, then a clear error; no hang


BAD_META = [
    ("cut-short", '{"name": "rel", "runs": [', "Expecting value"),
    ("a-list", "[]", "a JSON list where an object is expected"),
    ("null", "null", "a JSON null where an object is expected"),
    ("runs-a-string", '{"runs": "oops"}', "'runs' is a JSON string where a list is expected"),
    ("run-not-an-object", '{"runs": [1]}', "runs[0] is a JSON number"),
    ("spec-a-list", '{"spec": []}', "'spec' is a JSON list where an object is expected"),
    ("recursion", "[" * 100_000 + "]" * 100_000, "nested too deep to read"),
    ("deep", '{"x": ' + "[" * 100 + "]" * 100 + "}", "nested more than 64 deep"),
]


@pytest.mark.parametrize("text,why", [b[1:] for b in BAD_META], ids=[b[0] for b in BAD_META])
def test_damaged_sweep_json_gets_one_answer_from_every_command(tmp_path, capsys, text, why):
    """A sweep.json of any wrong shape (it raised AttributeError or RecursionError, and `run`
    overwrote `[]` and `null` as a new sweep): every command that reads it refuses it with the
    same line, exit 2, and nothing in the folder changes."""
    out = tmp_path / "out"
    folder, _ = _stored(tmp_path, out)
    (folder / "sweep.json").write_text(text)
    (folder / "trials" / ".x.parquet.tmp-0").write_bytes(b"left by a killed writer")
    before = _snapshot(folder)
    line = f"{folder}: damaged sweep.json ({why}"
    spec = _spec(tmp_path, output=out)
    for argv in (["run", str(spec)], ["run", str(spec), "--force"], ["status", str(folder)],
                 ["show", str(folder)], ["report", str(folder), "-o", str(tmp_path / "r.html")],
                 ["compact", str(folder)]):
        err = _refused(capsys, argv, 2, line, "move it aside")
        assert _snapshot(folder) == before, argv
    assert not (tmp_path / "r.html").exists()
    assert "move it aside" in err


def test_damaged_sweep_json_exit_code_of_the_real_command(tmp_path):
    out = tmp_path / "out"
    folder, before = _stored(tmp_path, out)
    (folder / "sweep.json").write_text("[]")
    r = subprocess.run([sys.executable, "-m", "sweeps", "status", str(folder)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"diloco-sweep: error: {folder}: damaged sweep.json (a JSON "
                                f"list where an object is expected); move it aside to go on "
                                f"(the trial rows do not depend on it)")


def test_damaged_row_is_skipped_named_and_counted_missing(tmp_path, capsys):
    out = tmp_path / "out"
    folder, _ = _stored(tmp_path, out)
    victim = sorted((folder / "trials").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # a disk error, or someone's editor
    store = Store(str(out), "rel")
    assert store.read_trials().num_rows == 1
    assert list(store.skipped) == [str(victim)]
    assert main(["status", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "completed        1" in text and "missing          1" in text
    assert "skipped" in text and victim.name in text


# ------------------------------------------------------------------------- links out of a sweep
def _linked_out(tmp_path: Path, out: Path, entry: str) -> tuple[Path, Path, str]:
    """A stored sweep where ``entry`` (trials, curves, or ``a row``: a file of trials/) is a
    symbolic link to a folder (or file) outside it; that folder holds a temporary-looking file
    of its own. Returns the folder, the outside one, and the entry's path in the sweep."""
    folder, _ = _stored(tmp_path, out)
    if entry == "a row":
        entry = "trials/" + sorted((folder / "trials").iterdir())[0].name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".notes.tmp-1").write_text("someone else's file")
    target = folder / entry
    if target.is_dir():
        target.rename(elsewhere / entry)
        target.symlink_to(elsewhere / entry)
    else:
        (elsewhere / "row.parquet").write_bytes(target.read_bytes())
        target.unlink()
        target.symlink_to(elsewhere / "row.parquet")
    return folder, elsewhere, entry


@pytest.mark.parametrize("entry", ["trials", "curves", "a row"])
def test_a_link_out_of_the_sweep_folder_is_refused_before_anything_runs(tmp_path, capsys,
                                                                        entry):
    """`trials/` a link to another folder: `run` wrote its files there and deleted that
    folder's `.notes.tmp-1`. A link out of the sweep is refused by `run` and `compact`, exit 2,
    naming it; nothing changes on either side."""
    out = tmp_path / "out"
    folder, elsewhere, entry = _linked_out(tmp_path, out, entry)
    before, theirs = _snapshot(folder), _snapshot(elsewhere)
    spec = _spec(tmp_path, space={"seed": [0, 1, 2]}, output=out)
    for argv in (["run", str(spec)], ["compact", str(folder)]):
        _refused(capsys, argv, 2, f"{folder / entry}: a symbolic link to ",
                 f"outside the sweep folder {folder}", "writes and deletes only inside")
        assert _snapshot(folder) == before and _snapshot(elsewhere) == theirs, argv
    assert not (folder / ".lock").exists()


def test_a_linked_output_and_sweep_folder_are_fine_and_only_our_temporaries_go(tmp_path,
                                                                               capsys):
    """A scratch disk: `--output` a link, the sweep folder a link. A run there works, removes
    the temporaries its own writers leave (`.<file>.tmp-diloco-<uuid>`, and the older
    `.<file>.tmp-<uuid>`), and leaves every other hidden file alone."""
    scratch = tmp_path / "scratch"
    folder, _ = _stored(tmp_path, scratch / "out")
    (tmp_path / "out").symlink_to(scratch / "out")
    mine = [folder / "trials" / f".{'ab' * 8}.parquet.tmp-diloco-{'0' * 32}",
            folder / "curves" / f".compacted-pack-{'cd' * 8}.parquet.tmp-{'1' * 32}",
            folder / f".sweep.json.tmp-diloco-{'2' * 32}"]
    theirs = [folder / "trials" / ".notes.tmp-1", folder / ".sweep.json.tmp-mine",
              folder / "trials" / f".{'ab' * 8}.parquet.tmp-diloco-{'0' * 31}"]
    for f in mine + theirs:
        f.write_text("x")
    spec = _spec(tmp_path, output=tmp_path / "out")
    assert main(["run", str(spec), "--no-report"]) == 0, capsys.readouterr().err
    assert "removed 3 temporary file(s)" in capsys.readouterr().err
    assert [f.exists() for f in mine + theirs] == [False] * 3 + [True] * 3
    (tmp_path / "linked").symlink_to(folder)
    assert main(["compact", str(tmp_path / "linked")]) == 0, capsys.readouterr().err
    assert "2 trials compacted" in capsys.readouterr().out


# ------------------------------------------------------------------------- the sweep lock
_HOLDER = """
import sys, time
from sweeps.store.lock import SweepLock
from sweeps.store.store import Store
lock = SweepLock(Store(sys.argv[1], "rel")).__enter__()
print("held", flush=True)
time.sleep(600)
"""


def test_lock_held_by_a_live_run_refuses_then_a_killed_holder_is_taken_over(tmp_path, capsys,
                                                                          monkeypatch):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        spec = _spec(tmp_path, output=out)
        _refused(capsys, ["run", str(spec)], 1, "already being run by pid",
                 f"pid {holder.pid} on host {socket.gethostname()}")
        assert [p.name for p in (out / "rel").iterdir()] == [".lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    monkeypatch.setattr(sweeps.tune.runner, "run_trials", lambda *a, **k: [])  # no Ray: plan only
    assert main(["run", str(spec), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"taken over (pid {holder.pid}" in err
    assert not (out / "rel" / ".lock").exists()
