"""Stop rules: ``stop={"training_iteration": 100}``, ``stop={"loss": 0.01}``, a callable, or none."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.trial import ITERATION

StopFn = Callable[[int, dict[str, Any]], bool]


class StopRules:
    """Checks one result against the user's stop rules.

    A dict rule ``{key: threshold}`` stops a trial once ``result[key]`` reaches the threshold: for the
    experiment's metric in the direction of ``mode`` (``<=`` for min, ``>=`` for max), for every other
    key ``>=``. A callable is called as ``fn(trial_id, result)`` and stops the trial when it returns True.
    """

    def __init__(self, stop: Any, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        self.fn: StopFn | None = None
        self.rules: list[tuple[str, float, bool]] = []  # key, threshold, stop when value <= threshold
        self.max_iteration: int | None = None
        if stop is None:
            return
        if callable(stop):
            self.fn = stop
            return
        if not isinstance(stop, dict):
            raise ConfigError(f"stop must be a dict like {{'training_iteration': 100}} or a callable "
                              f"fn(trial_id, result) -> bool, got {type(stop).__name__}")
        metrics = metric if isinstance(metric, list) else [metric]
        modes = mode if isinstance(mode, list) else [mode]
        for key, threshold in stop.items():
            if not isinstance(key, str):
                raise ConfigError(f"stop: keys must be metric names (str), got {key!r}")
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
                raise ConfigError(f"stop[{key!r}] must be a number, got {threshold!r}")
            if key == ITERATION:
                if threshold < 1:
                    raise ConfigError(f"stop[{key!r}] must be >= 1, got {threshold!r}")
                self.max_iteration = int(math.ceil(threshold))
                continue
            below = key in metrics and modes[metrics.index(key)] == "min"
            self.rules.append((key, float(threshold), below))

    def should_stop(self, trial_id: int, iteration: int, metrics: dict[str, Any]) -> bool:
        if self.max_iteration is not None and iteration >= self.max_iteration:
            return True
        for key, threshold, below in self.rules:
            value = metrics.get(key)
            if value is None or isinstance(value, str):
                continue
            if (value <= threshold) if below else (value >= threshold):
                return True
        if self.fn is not None:
            return bool(self.fn(trial_id, metrics))
        return False

    def for_trials(self) -> bytes | None:
        """These rules cloudpickled for the trial's own process, which evaluates them on each result it makes
        and stops at exactly the one that met them (the driver sees results in batches, thousands late in a
        tight loop). None when there is nothing to ship: no rule, or only ``training_iteration``, which the
        trial already waits for at its report; or a callable that cannot be pickled (the driver alone
        evaluates it then, as before)."""
        if not self.rules and self.fn is None:
            return None
        import cloudpickle

        try:
            return cloudpickle.dumps(self)
        except Exception:  # noqa: BLE001 - e.g. a callable holding a lock: evaluated in the driver only
            return None

    def to_spec(self) -> Any:
        if self.fn is not None:
            return {"callable": getattr(self.fn, "__qualname__", repr(self.fn))}
        spec: dict[str, Any] = {k: t for k, t, _ in self.rules}
        if self.max_iteration is not None:
            spec[ITERATION] = self.max_iteration
        return spec
