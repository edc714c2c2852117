"""A user's own trial as a `Problem` for the DiLoCo loop (kind: python, trainer/kinds/python.py).

The user's entry returns a ``UserProblem``: what the user owns. The tool owns the rest, as for
the LM: every worker a deep copy of the model with its own AdamW (``trainer.lm.adamw_for``,
the LM's settings) and its own batch stream, the inner warmup+cosine schedule, the outer step,
restarts and divergence (``trainer.loop.run_diloco``). docs/user-kind.md has the contract.

    def make(trial, width: int = 16) -> UserProblem:      # trial: the TrainConfig
        ...
        return UserProblem(model, batches=lambda i: stream(trial.seed, i),
                           loss=lambda model, batch: ..., evaluate=lambda model: ...)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from .device import autocast_for, resolve_device
from .lm import adamw_for
from .user_entry import EntryError, load_entry

if TYPE_CHECKING:  # types only: trainer.config imports the kinds, which build this
    from .config import TrainConfig

__all__ = ["UserProblem", "UserAdapter", "UserWorker", "Shape", "build_user", "shape_of",
           "user_problem", "is_problem"]

_PROBLEM = ("params", "n_params", "tokens_per_step", "scheduled", "make_worker", "evaluate",
            "extra_row")
"""What a ``trainer.loop.Problem`` has: an entry may return one for full control (its own
workers and inner optimizer; the outer step, restarts and divergence stay the tool's)."""


def is_problem(out: Any) -> bool:
    """Whether ``out`` is a lower-level ``trainer.loop.Problem`` (it has every member)."""
    return not isinstance(out, UserProblem) and all(hasattr(out, a) for a in _PROBLEM)


@dataclass
class UserProblem:
    """What a user's entry returns: their model, data, loss and eval."""

    model: torch.nn.Module
    """The model at its initial parameters (the tool seeds torch with the trial's seed before
    calling the entry, so an init drawn there is the seed's); every parameter is trained."""
    batches: Callable[[int], Iterator[Any]]
    """``batches(i)``: worker i's stream of batches (i in 0..workers-1), drawn once per inner
    step for the whole trial; endless (a ``while True`` generator) or at least H·outer_steps
    long. A batch is anything ``loss`` takes; its tensors are moved to the trial's device."""
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    """``loss(model, batch)``: the scalar training loss the tool backpropagates."""
    evaluate: Callable[[torch.nn.Module], float]
    """``evaluate(model)``: the held-out loss of the global model, a number (the curves' and
    the divergence rule's eval_loss), called under ``torch.no_grad``."""
    tokens_per_batch: int = 1
    """What one batch counts for in the ``tokens`` column and the cost: its samples or tokens."""
    eval_tokens: int = 0
    """Samples (tokens) one evaluation reads, for the cost estimate; 0 leaves eval out."""


@dataclass(frozen=True)
class Shape:
    """What the cost and memory models read of a user's problem."""

    params: int
    tokens_per_batch: int
    eval_tokens: int


_SHAPES: dict[tuple[str, str], Shape] = {}


def _key(cfg: TrainConfig) -> tuple[str, str]:
    return cfg.entry, json.dumps(cfg.params or {}, sort_keys=True)


def build_user(cfg: TrainConfig) -> Any:
    """Call the entry with the trial's settings and parameters, torch seeded with its seed (the
    global RNG left as it was): a valid UserProblem, or a lower-level Problem (``is_problem``);
    EntryError for anything else."""
    if not cfg.entry:
        raise EntryError("entry: kind python needs an entry, 'module.path:function'")
    fn = load_entry(cfg.entry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        out = fn(cfg, **(cfg.params or {}))
    if is_problem(out):
        _SHAPES[_key(cfg)] = Shape(int(out.n_params), int(out.tokens_per_step), 0)
        return out
    _check(cfg.entry, out)
    _SHAPES[_key(cfg)] = Shape(sum(p.numel() for p in out.model.parameters()),
                               out.tokens_per_batch, out.eval_tokens)
    return out


def _check(entry: str, out: Any) -> None:
    what = f"entry {entry} returned"
    if not isinstance(out, UserProblem):
        raise EntryError(f"{what} a {type(out).__name__}; it must return trainer.user."
                         f"UserProblem(model=..., batches=..., loss=..., evaluate=...) (or, "
                         f"to own the workers too, a trainer.loop.Problem)")
    if not isinstance(out.model, torch.nn.Module) or not any(True for _ in out.model.parameters()):
        raise EntryError(f"{what} a UserProblem whose model is {type(out.model).__name__}; "
                         f"expected a torch.nn.Module with parameters")
    for name in ("batches", "loss", "evaluate"):
        if not callable(getattr(out, name)):
            raise EntryError(f"{what} a UserProblem whose {name} is not callable")
    for name, low in (("tokens_per_batch", 1), ("eval_tokens", 0)):
        v = getattr(out, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise EntryError(f"{what} a UserProblem whose {name} is {v!r}; expected an "
                             f"integer >= {low}")


def shape_of(cfg: TrainConfig) -> Shape:
    """The user's problem's shape, from the trial that built it in this process or by building
    it once: on the meta device (no memory, no init), else on the CPU."""
    key = _key(cfg)
    if key not in _SHAPES:
        try:
            with torch.device("meta"):
                build_user(cfg)
        except EntryError:
            raise
        except Exception:  # noqa: BLE001 - user code that needs real tensors: build for real
            try:
                build_user(cfg)
            except EntryError:
                raise
            except Exception as e:  # noqa: BLE001 - the user's error, said with its trial
                raise EntryError(f"entry {cfg.entry} with params {dict(cfg.params or {})} "
                                 f"raised {type(e).__name__}: {e} (building the model once, "
                                 f"on the CPU, to count its parameters)") from e
    return _SHAPES[key]


def _to(batch: Any, device: torch.device) -> Any:
    """A batch with its tensors (in tuples, lists and dicts too) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


class UserWorker:
    """One worker: its model copy θ_i, its AdamW state, its stream ``batches(i)``."""

    def __init__(self, model: torch.nn.Module, stream: Iterator[Any], problem: "UserAdapter"):
        self.model, self.problem = model, problem
        self.stream = iter(stream)
        self.params = list(model.parameters())
        self.opt = adamw_for(model, problem.cfg)
        self.steps = 0

    def inner_step(self, lr: float) -> float:
        p = self.problem
        for group in self.opt.param_groups:
            group["lr"] = lr
        try:
            batch = _to(next(self.stream), p.device)
        except StopIteration:
            raise EntryError(f"entry {p.cfg.entry}: a worker's batches ran out after "
                             f"{self.steps} batches; a stream must last H·outer_steps "
                             f"({p.cfg.H * p.cfg.outer_steps}) batches") from None
        with p.autocast:
            loss = p.user.loss(self.model, batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise EntryError(f"entry {p.cfg.entry}: loss(model, batch) returned "
                             f"{type(loss).__name__}; expected a scalar tensor")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if p.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, p.cfg.grad_clip, foreach=True)
        self.opt.step()
        self.steps += 1
        return loss.item()


class UserAdapter:
    """The user's problem as the loop's Problem: global θ, evaluation, a factory of workers."""

    scheduled = True

    def __init__(self, cfg: TrainConfig, user: UserProblem):
        self.cfg = cfg
        self.device = resolve_device(cfg)
        self.user = user
        self.model = self.user.model.to(self.device)
        self.params = list(self.model.parameters())
        self.n_params = sum(p.numel() for p in self.params)
        self.tokens_per_step = self.user.tokens_per_batch
        self.autocast = autocast_for(cfg, self.device)

    def make_worker(self, i: int) -> UserWorker:
        return UserWorker(copy.deepcopy(self.model), self.user.batches(i), self)

    @torch.no_grad()
    def evaluate(self) -> float:
        with self.autocast:
            v = self.user.evaluate(self.model)
        try:
            return float(v)
        except (TypeError, ValueError):
            raise EntryError(f"entry {self.cfg.entry}: evaluate(model) returned "
                             f"{type(v).__name__}; expected a number") from None

    def extra_row(self) -> dict:
        return {}


def user_problem(cfg: TrainConfig) -> Any:
    """The trial's Problem: the entry's UserProblem adapted (the tool's workers and AdamW), or
    the lower-level Problem it returned, as it is."""
    out = build_user(cfg)
    return UserAdapter(cfg, out) if isinstance(out, UserProblem) else out
