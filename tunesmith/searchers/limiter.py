"""``ConcurrencyLimiter``: at most ``max_concurrent`` of a searcher's trials unfinished at once."""

from __future__ import annotations

import numbers
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.searchers._base import Searcher, _Finished

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter(Searcher):
    """Wraps a searcher so that at most ``max_concurrent`` of its suggested trials are unfinished.

    While ``max_concurrent`` suggested trials have not had their final ``observe``, ``suggest`` returns
    ``None`` (ask again later) without asking the wrapped searcher. Model-based searchers learn more per
    trial when fewer run at once, at the price of less parallelism.

    Args:
        searcher: the searcher to wrap.
        max_concurrent: the most unfinished trials at once (an int >= 1).
    """

    def __init__(self, searcher: Searcher, max_concurrent: int) -> None:
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self._live: set[int] = set()

    @property
    def learns_from_results(self) -> bool:  # type: ignore[override]
        """As the wrapped searcher does."""
        return self.searcher.learns_from_results

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate ``searcher`` and ``max_concurrent``, then set up the wrapped searcher.

        Raises:
            ConfigError: naming ``searcher`` or ``max_concurrent``; or what the wrapped searcher raises.
        """
        super().setup(space, metric, mode, num_samples)
        if not isinstance(self.searcher, Searcher):
            raise ConfigError(f"searcher: expected a tunesmith searcher to wrap; got {self.searcher!r}")
        m = self.max_concurrent
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ConfigError(f"max_concurrent: expected an int >= 1; got {m!r}")
        self._live = set()
        self.searcher.setup(space, metric, mode, num_samples)

    def suggest(self, trial_id: int) -> dict[str, Any] | None | _Finished:
        """The wrapped searcher's next config, or ``None`` while ``max_concurrent`` trials are unfinished."""
        if len(self._live) >= self.max_concurrent:
            return None
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self._live.add(trial_id)
        return config

    def restore_suggestion(self, trial_id: int, config: dict[str, Any]) -> None:
        """Replay: the wrapped searcher replays the suggestion; the trial counts as unfinished."""
        self.searcher.restore_suggestion(trial_id, config)
        self._live.add(trial_id)

    def warm_start(self, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """The wrapped searcher observes the earlier trials."""
        return self.searcher.warm_start(trials)

    def use_constraints(self) -> bool:
        return self.searcher.use_constraints()

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Pass every observation on; a final one frees a slot."""
        self.searcher.observe(trial_id, result, final)
        if final:
            self._live.discard(trial_id)
