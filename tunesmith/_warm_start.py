"""``run(warm_start=...)``: earlier experiments' finished trials handed to the searcher as data. The folders are
checked when ``run`` checks its arguments; their (config, last result) pairs are read here, so the searcher stays
pure, and read as data only: nothing in those folders is imported or unpickled."""

from __future__ import annotations

import logging
import os
from typing import Any

from tunesmith import _layout
from tunesmith._errors import ConfigError
from tunesmith._layout import STORE_FILE
from tunesmith.results import ResultSet
from tunesmith.searchers._base import Searcher
from tunesmith.trial import TrialStatus

log = logging.getLogger("tunesmith")


def warm_start_dirs(warm_start: Any, storage_path: str | None) -> list[str]:
    """The experiment folders ``warm_start`` names (names under the storage path, or folders), checked."""
    if warm_start is None:
        return []
    items = [warm_start] if isinstance(warm_start, (str, os.PathLike)) else warm_start
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, os.PathLike)) for i in items):
        raise ConfigError(f"warm_start must be an experiment name or folder, or a list of them, got {warm_start!r}")
    root = _layout.storage_root(storage_path)
    dirs = []
    for item in items:
        item = os.fspath(item)
        path = os.path.abspath(item) if (os.sep in item or item.startswith(".")) else os.path.join(root, item)
        if not os.path.isfile(_layout.store_path(path)):
            raise ConfigError(f"warm_start: {item!r} is no experiment (no {STORE_FILE} in {path})")
        dirs.append(path)
    return dirs


def warm_start_searcher(searcher: Searcher, dirs: list[str]) -> None:
    """Hand the earlier experiments' finished trials to the searcher as data: (config, last result) pairs read
    here (the searcher stays pure). Read as data only: nothing in those folders is imported or unpickled."""
    trials: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for path in dirs:
        earlier = ResultSet(path)
        trials += [(t.config, t.last_result) for t in earlier.trials
                   if t.status is TrialStatus.TERMINATED and t.last_result]
    used = searcher.warm_start(trials)
    if used:
        log.info("warm start: %s observed %d of %d finished earlier trials (%d skipped: outside this space or "
                 "without the metric)", type(searcher).__name__, used, len(trials), len(trials) - used)
    elif trials:
        log.warning("warm start: %s took in none of the %d finished earlier trials (Random and QuasiRandom learn "
                    "nothing from results and ignore warm_start; a model-based searcher skips configs outside "
                    "its space)", type(searcher).__name__, len(trials))
