"""What the searcher tests share."""

from __future__ import annotations

from typing import Any

from tunesmith.searchers._base import FINISHED, Searcher


def drain(searcher: Searcher, limit: int = 10_000) -> list[dict[str, Any]]:
    """Every config a set-up searcher suggests until it says FINISHED (which it must within ``limit``)."""
    configs: list[dict[str, Any]] = []
    for trial_id in range(limit):
        config = searcher.suggest(trial_id)
        if config is FINISHED:
            return configs
        assert isinstance(config, dict)
        configs.append(config)
    raise AssertionError("the searcher never finished")
