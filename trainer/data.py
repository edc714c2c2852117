"""Corpora of byte (or uint16) tokens, memory-mapped, with a fixed held-out split.

- ``stdlib``: the Python standard library's own source (no site-packages, no test suites),
  files in sorted order, built once into a cache file and memory-mapped after that. Every
  20th file is held out, so the held-out set spans the library like the training set does.
- a text file: its bytes are the tokens; the last 5% is held out.
- a ``*.bin`` file: nanoGPT-style uint16 tokens; a sibling ``val.bin`` of a ``train.bin`` is
  the held-out set, otherwise the last 5%.

Workers draw sequences from their own shard with their own RNG: ``iid`` shards all cover the
whole training set; ``by_file`` shards are contiguous runs of files (non-i.i.d. workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import ConfigError

__all__ = ["Corpus", "load_corpus", "stdlib_files", "cache_dir", "Sampler", "eval_batches"]

HOLDOUT_EVERY = 20      # stdlib: file k is held out when k % 20 == 19
HOLDOUT_FRACTION = 0.05  # single files: the tail is held out


@dataclass
class Corpus:
    """Tokens of one corpus: train and held-out views of a memory map, and file starts."""

    train: np.ndarray
    """1-D token array (uint8 or uint16 memmap) for training."""
    val: np.ndarray
    """1-D held-out tokens for eval."""
    file_starts: np.ndarray
    """Offsets in `train` where each source file starts (for by_file shards)."""
    name: str
    """What the corpus is, for logs."""

    def shard(self, worker: int, workers: int, split: str) -> tuple[int, int]:
        """[lo, hi) of `train` that worker draws from."""
        n = len(self.train)
        if split == "iid" or workers == 1:
            return 0, n
        # by_file: cut at the file start nearest to each equal-token boundary
        cuts = [0]
        for j in range(1, workers):
            target = j * n // workers
            i = int(np.searchsorted(self.file_starts, target))
            cands = [int(self.file_starts[k]) for k in (i - 1, i) if 0 <= k < len(self.file_starts)]
            best = min(cands, key=lambda c: abs(c - target)) if cands else target
            cuts.append(max(best, cuts[-1]))
        cuts.append(n)
        return cuts[worker], cuts[worker + 1]


def cache_dir() -> Path:
    root = os.environ.get("DILOCO_CACHE") or Path.home() / ".cache" / "diloco-sweep"
    return Path(root)


def stdlib_files() -> list[Path]:
    """The standard library's .py files in a deterministic order, tests and site-packages left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    files = [p for p in root.rglob("*.py")
             if not skip.intersection(p.relative_to(root).parts[:-1]) and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


_STDLIB_META: dict[str, Path] = {}  # per process: hashing the stdlib walk costs ~0.5 s a trial


def _build_stdlib() -> Path:
    key = str(cache_dir())
    if key in _STDLIB_META and _STDLIB_META[key].exists():
        return _STDLIB_META[key]
    _STDLIB_META[key] = meta = _build_stdlib_uncached()
    return meta


def _build_stdlib_uncached() -> Path:
    files = stdlib_files()
    if not files:
        raise ConfigError("corpus: stdlib has no .py files on this Python; pass a text file")
    root = Path(sysconfig.get_paths()["stdlib"])
    h = hashlib.sha256(sys.version.encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}\n".encode())
    stem = cache_dir() / f"stdlib-{h.hexdigest()[:16]}"
    meta = stem.with_suffix(".json")
    if meta.exists():
        return meta
    stem.parent.mkdir(parents=True, exist_ok=True)
    train_parts, val_parts = [], []
    for k, p in enumerate(files):
        (val_parts if k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else train_parts).append(p.read_bytes())
    starts = np.cumsum([0] + [len(b) for b in train_parts[:-1]]).tolist()
    blob = b"".join(train_parts) + b"".join(val_parts)
    # Several trials may build at once: each writes its own temporary, then an atomic rename;
    # the JSON is written last, so its presence means the token file is whole.
    _atomic_write(stem.with_suffix(".u8"), blob)
    info = {"tokens": stem.with_suffix(".u8").name, "n_train": sum(map(len, train_parts)),
            "n_val": sum(map(len, val_parts)), "files": len(files), "file_starts": starts}
    _atomic_write(meta, json.dumps(info).encode())
    return meta


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared by every user's trials
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_corpus(corpus: str, vocab_size: int = 256, min_tokens: int = 0) -> Corpus:
    """Open a corpus by name or path; refuse what cannot be trained on, naming why."""
    if corpus == "stdlib":
        meta_path = _build_stdlib()
        info = json.loads(meta_path.read_text())
        data = np.memmap(meta_path.parent / info["tokens"], dtype=np.uint8, mode="r")
        n = info["n_train"]
        out = Corpus(data[:n], data[n:], np.asarray(info["file_starts"], dtype=np.int64), "stdlib")
    else:
        path = Path(corpus).expanduser()
        if not path.is_file():
            raise ConfigError(f"corpus: {corpus!r} does not exist; expected 'stdlib', a text file "
                              f"or a .bin token file")
        if path.stat().st_size == 0:
            raise ConfigError(f"corpus: {corpus!r} is empty")
        out = _load_bin(path, vocab_size) if path.suffix == ".bin" else _load_text(path, vocab_size)
    if min_tokens and (len(out.train) < min_tokens or len(out.val) < min_tokens):
        raise ConfigError(f"corpus: {out.name!r} is too small: {len(out.train)} training and "
                          f"{len(out.val)} held-out tokens, need at least {min_tokens} each")
    return out


def _split_tail(data: np.ndarray, name: str) -> Corpus:
    n_val = max(1, int(len(data) * HOLDOUT_FRACTION))
    return Corpus(data[:-n_val], data[-n_val:], np.zeros(1, dtype=np.int64), name)


def _load_text(path: Path, vocab_size: int) -> Corpus:
    if vocab_size < 256:
        raise ConfigError(f"vocab_size: byte tokens of a text corpus need vocab_size >= 256, "
                          f"got {vocab_size}")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if b"\x00" in head:
        raise ConfigError(f"corpus: {str(path)!r} looks binary (NUL bytes); a token file must end "
                          f"in .bin (uint16 tokens), a text corpus must be text")
    return _split_tail(np.memmap(path, dtype=np.uint8, mode="r"), str(path))


def _load_bin(path: Path, vocab_size: int) -> Corpus:
    if path.stat().st_size % 2:
        raise ConfigError(f"corpus: {str(path)!r} has an odd byte count; a .bin file holds uint16 tokens")
    data = np.memmap(path, dtype=np.uint16, mode="r")
    val_path = path.with_name("val.bin")
    if path.name == "train.bin" and val_path.is_file():
        out = Corpus(data, np.memmap(val_path, dtype=np.uint16, mode="r"), np.zeros(1, np.int64), str(path))
    else:
        out = _split_tail(data, str(path))
    top = max(int(part[i:i + (1 << 24)].max())
              for part in (out.train, out.val) for i in range(0, len(part), 1 << 24))
    if top >= vocab_size:
        raise ConfigError(f"corpus: {str(path)!r} holds token id {top}, which is outside "
                          f"vocab_size={vocab_size}; set vocab_size to at least {top + 1}")
    return out


class Sampler:
    """One worker's stream of (x, y) batches: random windows of its shard, its own RNG.

    The stream depends only on (seed, worker), not on H, so that an M=1, α=1, β=0 trial sees
    exactly the batches of plain AdamW training whatever the communication period.
    """

    def __init__(self, corpus: Corpus, worker: int, workers: int, split: str, seed: int,
                 batch_size: int, seq_len: int, device: torch.device):
        self.data = corpus.train
        self.lo, hi = corpus.shard(worker, workers, split)
        self.high = hi - seq_len - 1
        if self.high <= self.lo:
            raise ConfigError(f"corpus: worker {worker}'s shard of {corpus.name!r} has "
                              f"{hi - self.lo} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.rng = np.random.default_rng([seed, worker])
        self.B, self.T, self.device = batch_size, seq_len, device

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(self.lo, self.high, size=self.B)
        return _windows(self.data, starts, self.T, self.device)


def eval_batches(corpus: Corpus, n_batches: int, batch_size: int, seq_len: int,
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed held-out batches, evenly spaced over the held-out set, the same for every seed."""
    high = len(corpus.val) - seq_len - 1
    if high < 1:
        raise ConfigError(f"corpus: held-out part of {corpus.name!r} has {len(corpus.val)} tokens, "
                          f"fewer than seq_len + 2 = {seq_len + 2}")
    starts = np.linspace(0, high, n_batches * batch_size).astype(np.int64)
    return [_windows(corpus.val, starts[i * batch_size:(i + 1) * batch_size], seq_len, device)
            for i in range(n_batches)]


def _windows(data: np.ndarray, starts: np.ndarray, T: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    # (B, T+1) int64 windows; inputs are the first T tokens, targets the last T
    buf = torch.from_numpy(np.stack([np.asarray(data[s:s + T + 1], dtype=np.int64) for s in starts]))
    buf = buf.to(device, non_blocking=True)
    return buf[:, :-1], buf[:, 1:]
