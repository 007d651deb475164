"""Checkpoint retention: keep each trial's latest N checkpoints, or its best N by a metric.

A trial's latest checkpoint is always kept (it restarts from it): with ``keep_by`` beside the best N when it is
not one of them. Per trial and by rank only: what other
trials still need (a PBT exploit's source) is :mod:`tunesmith._ledger`'s, which wraps this.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from tunesmith._errors import ConfigError


class Retention:
    """Which checkpoints to delete as new ones arrive.

    Args:
        keep: checkpoints kept per trial (None keeps all).
        keep_by: metric ranking them (None: the latest are kept).
        mode: "min" or "max" for ``keep_by``.
    """

    def __init__(self, keep: numbers.Integral | int | None, keep_by: str | None, mode: str | None) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1):
            raise ConfigError(f"keep must be a positive integer (checkpoints kept per trial), got {keep!r}")
        if keep_by is not None and not isinstance(keep_by, str):
            raise ConfigError(f"keep_by must be a metric name, got {keep_by!r}")
        if keep_by is not None and keep is None:
            raise ConfigError("keep_by needs keep=N (how many of the best checkpoints to keep)")
        if keep_by is not None and mode not in ("min", "max"):
            raise ConfigError(f"keep_by={keep_by!r} needs mode 'min' or 'max' to rank checkpoints")
        self.keep = None if keep is None else int(keep)  # a numpy integer as well
        self.keep_by = keep_by
        self.sign = -1.0 if mode == "max" else 1.0
        self._by_trial: dict[int, list[tuple[float, int, str]]] = {}

    @property
    def active(self) -> bool:
        return self.keep is not None

    def add(self, trial_id: int, iteration: int, path: str, metrics: dict[str, Any]) -> list[tuple[int, str]]:
        """Record a new checkpoint; return (iteration, path) of those that may now go."""
        if self.keep is None:
            return []
        entries = self._by_trial.setdefault(trial_id, [])
        entries.append((self._score(metrics, iteration), iteration, path))
        if len(entries) <= self.keep:
            return []
        latest = max(entries, key=lambda e: e[1])
        # the best N (lower score first; by newest without keep_by), and the latest beside them if it is not
        # one of them: the trial restarts from it
        kept = sorted(entries, key=lambda e: (e[0], -e[1]))[: self.keep]
        if latest not in kept:
            kept.append(latest)
        victims = [e for e in entries if e not in kept]
        self._by_trial[trial_id] = kept
        return [(it, p) for _, it, p in victims]

    def forget_after(self, trial_id: int, iteration: int) -> list[tuple[int, str]]:
        """A trial restarted from ``iteration``: later checkpoints are gone from the index; return them
        (iteration, path) as :meth:`add` returns those that may go."""
        entries = self._by_trial.get(trial_id)
        if not entries:
            return []
        self._by_trial[trial_id] = [e for e in entries if e[1] <= iteration]
        return [(it, p) for _, it, p in entries if it > iteration]

    def _score(self, metrics: dict[str, Any], iteration: int) -> float:
        if self.keep_by is None:
            return -float(iteration)  # newest first
        value = metrics.get(self.keep_by)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return math.inf  # unranked: first to go
        return self.sign * float(value)
