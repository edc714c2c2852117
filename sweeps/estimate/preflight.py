"""Checks a run makes before it starts Ray or writes anything: memory and corpus.

- Memory: the trainer's own estimate (``trainer.memory``: parameters, gradients, AdamW and outer
  state of all M workers, and activations) of the largest configuration the spec can produce,
  against the memory the trials will have. That is this machine's free memory (or free GPU
  memory times the spec's GPU share) when the run starts an embedded Ray, or the number in
  ``DILOCO_MEMORY_LIMIT_BYTES`` when it is set (per trial; it also lets a cluster user state
  the nodes' memory). On a cluster without it, each trial still refuses itself on its node.
- Corpus: every corpus file the spec names that exists on this machine is opened once, as the
  trial would open it, so an empty, binary or too short file is refused before any trial runs.
  On a local run a corpus that is missing or is a folder is refused too; on a cluster one that
  is not on this machine is left to the nodes (a cluster's data disks).
- Resources: on a local run a trial that asks for more CPUs (or GPUs) than this machine has
  would wait for ever; it is refused. On a cluster, trials left pending are reported while
  the run waits (sweeps.tune.progress).

Refusals are SpecErrors (exit code 2) naming the key and the numbers.
"""

from __future__ import annotations

import glob
import itertools
import os
from typing import Any

from trainer.config import TRIAL_KINDS, ConfigError, TrainConfig
from trainer.kinds.python import PARAM_PREFIX

from sweeps.spec.space import numeric_ends
from sweeps.spec.parse import SpecError, SweepSpec

__all__ = ["preflight", "check_resources", "cuda_gpus", "check_corpora", "local_cpus", "memory_limit",
           "largest_configs", "MEM_KEYS", "ENV_LIMIT"]

ENV_LIMIT = "DILOCO_MEMORY_LIMIT_BYTES"
MEM_KEYS = tuple(dict.fromkeys(["kind", *(k for kind in TRIAL_KINDS.values()
                                          for k in kind.memory_keys)]))
"""The settings the memory estimate depends on (the kind, and what each kind's model reads)."""


def _values(spec: SweepSpec, key: str) -> list[Any]:
    ax = spec.space.get(key)
    if ax is None:
        return []
    if ax.values is not None:
        return list(ax.values)
    return [int(ax.low), int(ax.high)] if ax.integer else [ax.low, ax.high]


def largest_configs(spec: SweepSpec) -> list[TrainConfig]:
    """One TrainConfig per combination of the memory-relevant axes (numeric axes: both ends,
    as the estimate grows with each; so the count stays small for any spec); every other
    axis at its first value."""
    base = {k: _values(spec, k)[0] for k in spec.space}
    keys = [k for k in MEM_KEYS if k in spec.space] + [  # a user's params may size the model
        k for k in spec.space if k.startswith(PARAM_PREFIX)]
    out = []
    for combo in itertools.product(*(numeric_ends(_values(spec, k)) for k in keys)):
        try:
            out.append(TrainConfig.from_dict({**spec.trial, **base, **dict(zip(keys, combo))}))
        except (ConfigError, TypeError):
            continue  # a combination the spec cannot produce (checked value by value already)
    return out


def memory_limit() -> int | None:
    text = os.environ.get(ENV_LIMIT)
    if not text:
        return None
    try:
        v = int(float(text))
    except ValueError:
        raise SpecError(f"{ENV_LIMIT}={text!r}: expected a number of bytes") from None
    if v <= 0:
        raise SpecError(f"{ENV_LIMIT}={text!r}: expected a number of bytes > 0")
    return v


def _device(cfg: TrainConfig, spec: SweepSpec) -> str:
    if cfg.device == "cuda" or (cfg.device == "auto" and spec.resources.gpu > 0):
        return "cuda"
    return "cpu"


def check_memory_fits(spec: SweepSpec, local: bool) -> None:
    limit = memory_limit()
    if limit is None and not local:
        return
    from trainer.memory import GiB, available_memory, check_memory, estimate_memory

    configs = largest_configs(spec)
    if not configs:
        return
    try:
        sized = [(estimate_memory(c, _device(c, spec)).total_bytes, c) for c in configs]
    except ConfigError as e:  # a user's entry that cannot build its model: bad input
        raise SpecError(f"trial: {e}") from None
    _, cfg = max(sized, key=lambda x: x[0])
    device = _device(cfg, spec)
    free = limit
    if free is None:
        if device == "cuda" and not cuda_gpus():
            return  # the trials' GPUs are elsewhere
        free = available_memory(device)
        if free is None:
            return
        if device == "cuda" and 0 < spec.resources.gpu < 1:
            free = int(free * spec.resources.gpu)  # trials share the card
    try:
        check_memory(cfg, device, available=free)
    except ConfigError as e:
        where = f"{ENV_LIMIT}={limit}" if limit is not None else "this machine's free memory"
        swept = {k: getattr(cfg, k) for k in MEM_KEYS if k in spec.space}
        largest = f" (the largest configuration of the spec: {swept})" if swept else ""
        raise SpecError(f"trial memory: {e}{largest}; checked against {where} "
                        f"({free / GiB:.2f} GiB) before starting Ray") from None


def cuda_gpus() -> int:
    """CUDA devices torch sees here; 0 without importing torch (seconds) where no NVIDIA driver
    is loaded, as on a CPU machine, so `check` of a GPU spec stays fast there."""
    if not glob.glob("/dev/nvidia[0-9]*") and not os.path.isdir("/proc/driver/nvidia/gpus"):
        return 0
    import torch

    return torch.cuda.device_count()


def local_cpus() -> int:
    """CPUs this process may use (its affinity mask, as an embedded Ray counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_resources(spec: SweepSpec) -> None:
    """A local run: every trial must fit on this machine, or it never starts."""
    cpus = local_cpus()
    if spec.resources.cpu > cpus:
        raise SpecError(f"resources.cpu: each trial asks for {spec.resources.cpu:g} CPUs but this "
                        f"machine has {cpus}; a local run would wait for ever. Use cpu <= {cpus}, "
                        f"or run against a cluster (--address) that has nodes that big")
    if spec.resources.gpu > 0:
        gpus = cuda_gpus()
        if spec.resources.gpu > gpus:
            raise SpecError(f"resources.gpu: each trial asks for {spec.resources.gpu:g} GPUs but "
                            f"this machine has {gpus}; a local run would wait for ever")


def check_corpora(spec: SweepSpec, local: bool = False) -> None:
    if "corpus" in spec.space:
        key, corpora = "space.corpus", _values(spec, "corpus")
    else:
        key, corpora = "trial.corpus", [spec.base.corpus]
    vocabs = _values(spec, "vocab_size") or [spec.base.vocab_size]
    seq = max(_values(spec, "seq_len") or [spec.base.seq_len])
    files = []
    for corpus in corpora:
        path = os.path.expanduser(corpus) if isinstance(corpus, str) else ""
        if corpus == "stdlib" or "://" in corpus:
            continue
        if local and os.path.isdir(path):
            raise SpecError(f"{key}: {corpus!r} is a folder; expected 'stdlib', a text file or a "
                            f"uint16 .bin token file (checked before starting Ray)")
        if local and not os.path.exists(path):
            raise SpecError(f"{key}: {corpus!r}: no such file on this machine, where a local run "
                            f"trains (checked before starting Ray; relative paths are from "
                            f"{os.getcwd()})")
        if os.path.isfile(path):
            files.append(corpus)
    if not files:
        return
    from trainer.data import load_corpus  # imports torch: only when there is a file to open

    for corpus in files:
        for vocab in vocabs:
            try:
                load_corpus(corpus, vocab, min_tokens=seq + 2)
            except ConfigError as e:
                msg = str(e).removeprefix("corpus:").strip()
                raise SpecError(f"{key}: {msg} (checked before starting Ray)") from None


def preflight(spec: SweepSpec, local: bool) -> None:
    """Refuse, before Ray starts, a spec whose trials cannot fit or cannot read their corpus."""
    if local:
        check_resources(spec)
    kinds = _values(spec, "kind") or [spec.base.kind]
    if any("corpus" in TRIAL_KINDS[k].fields() for k in kinds if k in TRIAL_KINDS):
        check_corpora(spec, local)  # a kind the spec runs reads a corpus
    check_memory_fits(spec, local)
