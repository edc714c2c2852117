"""Tune ``Searcher`` subclasses of the search kinds; this module imports Ray at its top, so the
kinds import it only when a run starts (``check`` and ``status`` never need Ray)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ray.tune.search import Searcher

__all__ = ["PointSearcher", "CallbackSearcher", "StoreCheckpointed"]


class StoreCheckpointed(Searcher):
    """The results store is the checkpoint: a rerun plans from the stored rows, so Tune's own
    searcher checkpoints are not needed (and not written)."""

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class PointSearcher(StoreCheckpointed):
    """Hands Tune a planned list of configs one at a time, then says it is finished.

    Tune's own ``grid_search`` deep-copies its whole list for each point it creates, which is
    quadratic in the grid; this keeps one list and gives out references.
    """

    def __init__(self, configs: Iterable[dict[str, Any]]) -> None:
        super().__init__()
        self._configs = iter(configs)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        return next(self._configs, Searcher.FINISHED)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass


class CallbackSearcher(StoreCheckpointed):
    """A searcher whose decisions live outside Ray: ``propose()`` gives the next config, None to
    wait for a running trial, or FINISHED; ``landed(config, result, error)`` is told each end."""

    def __init__(self, propose: Callable[[], dict[str, Any] | None | str],
                 landed: Callable[[dict[str, Any], dict | None, bool], None]) -> None:
        super().__init__()
        self._propose, self._landed = propose, landed
        self._configs: dict[str, dict[str, Any]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = self._propose()
        if config is None:
            return None
        if config == "finished":
            return Searcher.FINISHED
        self._configs[trial_id] = config
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        config = self._configs.pop(trial_id, None)
        if config is not None:
            self._landed(config, result, error)
