"""Corpora: the stdlib cache, concurrent builds, shards, text and token files."""

import json
import multiprocessing as mp
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import ConfigError
from trainer.data import Sampler, eval_batches, load_corpus, stdlib_files


def test_stdlib_files_leave_out_tests_and_site_packages():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    rel = [f.relative_to(root).parts for f in files]
    assert len(files) > 200
    assert not any({"site-packages", "test", "tests", "idle_test"} & set(parts[:-1]) for parts in rel)
    assert ("os.py",) in rel and ("json", "decoder.py") in rel
    assert files == sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _build(cache: str, q) -> None:
    import os

    os.environ["DILOCO_CACHE"] = cache
    c = load_corpus("stdlib")
    q.put((len(c.train), len(c.val), int(c.train[:4096].astype(np.int64).sum())))


@pytest.mark.slow  # several processes build the stdlib cache at once: ~15 s
def test_concurrent_builds_of_the_cache_agree_and_leave_no_temporaries(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [q.get(timeout=5) for _ in procs]
    assert all(p.exitcode == 0 for p in procs)
    assert len(set(results)) == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".u8")
    info = json.loads((tmp_path / names[0]).read_text())
    assert info["n_train"] + info["n_val"] == (tmp_path / names[1]).stat().st_size


def test_by_file_shards_partition_the_training_set_at_file_starts():
    c = load_corpus("stdlib")
    bounds = [c.shard(i, 4, "by_file") for i in range(4)]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(c.train)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    starts = set(c.file_starts.tolist())
    assert all(lo in starts for lo, _ in bounds)
    sizes = [hi - lo for lo, hi in bounds]
    assert min(sizes) > 0.5 * len(c.train) / 4
    assert c.shard(2, 4, "iid") == (0, len(c.train))


def test_worker_streams_are_seeded_and_distinct():
    c = load_corpus("stdlib")
    s = lambda w, seed: Sampler(c, w, 2, "iid", seed, 4, 16, torch.device("cpu")).next()[0]
    assert torch.equal(s(0, 0), s(0, 0))
    assert not torch.equal(s(0, 0), s(1, 0)) and not torch.equal(s(0, 0), s(0, 1))
    a, b = eval_batches(c, 2, 4, 16, torch.device("cpu")), eval_batches(c, 2, 4, 16, torch.device("cpu"))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    x, y = a[0]
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_text_file_corpus_and_its_refusals(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("hello world, " * 1000)
    c = load_corpus(str(text))
    assert len(c.val) == int(13000 * 0.05) and len(c.train) + len(c.val) == 13000
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="is empty"):
        load_corpus(str(empty))
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\x00\x00" * 100)
    with pytest.raises(ConfigError, match="looks binary"):
        load_corpus(str(binary))
    with pytest.raises(ConfigError, match="too small"):
        load_corpus(str(text), min_tokens=5000)


def test_token_file_with_sibling_val_and_vocab(tmp_path):
    np.arange(3000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.full(500, 7, dtype=np.uint16).tofile(tmp_path / "val.bin")
    c = load_corpus(str(tmp_path / "train.bin"), vocab_size=4096)
    assert len(c.train) == 3000 and int(c.val.max()) == 7 and c.train.dtype == np.uint16
    with pytest.raises(ConfigError, match=r"token id 2999.*at least 3000"):
        load_corpus(str(tmp_path / "train.bin"), vocab_size=2048)
