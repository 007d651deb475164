"""Stop rules: ``stop={"training_iteration": 100}``, ``stop={"loss": 0.01}``, a callable, or none."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP

log = logging.getLogger("tunesmith")

StopFn = Callable[[int, dict[str, Any]], bool]


class StopRules:
    """Checks one result against the user's stop rules.

    A dict rule ``{key: threshold}`` stops a trial once ``result[key]`` reaches the threshold: for the
    experiment's metric in the direction of ``mode`` (``<=`` for min, ``>=`` for max), for every other
    key ``>=``. A callable is called as ``fn(trial_id, result)`` and stops the trial when it returns True.
    """

    def __init__(self, stop: Any, objective: Objective, keep_by: str | None = None) -> None:
        self.fn: StopFn | None = None
        self.rules: list[tuple[str, float, bool]] = []  # key, threshold, stop when value <= threshold
        self.max_iteration: int | None = None
        # Result keys that run()'s arguments name, checked in the driver against the first results (check_keys)
        self._unchecked_stop_keys: set[str] = set()
        self._keep_by = keep_by
        self.watching = keep_by is not None
        if stop is None:
            return
        if callable(stop):
            self.fn = stop
            return
        if not isinstance(stop, dict):
            raise ConfigError(f"stop must be a dict like {{'training_iteration': 100}} or a callable "
                              f"fn(trial_id, result) -> bool, got {type(stop).__name__}")
        for key, threshold in stop.items():
            if not isinstance(key, str):
                raise ConfigError(f"stop: keys must be metric names (str), got {key!r}")
            if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                    or math.isnan(float(threshold))):
                raise ConfigError(f"stop[{key!r}] must be a number, got {threshold!r}")
            threshold = float(threshold) if not isinstance(threshold, numbers.Integral) else int(threshold)
            if key == ITERATION:
                if not math.isfinite(threshold) or threshold < 1:
                    raise ConfigError(f"stop[{key!r}] must be >= 1 and finite (a number of iterations), got "
                                      f"{threshold!r} (for no iteration limit, leave {key!r} out)")
                self.max_iteration = int(math.ceil(threshold))
                continue
            below = objective.mode_of(key) == "min"
            if threshold == (math.inf if below else -math.inf):
                raise ConfigError(f"stop[{key!r}] = {threshold!r} is met by every result ({key} "
                                  f"{'<=' if below else '>='} {threshold!r}): each trial would stop after its first "
                                  f"result; give a finite threshold")
            self.rules.append((key, float(threshold), below))
            self._unchecked_stop_keys.add(key)
        self.watching = self.watching or bool(self._unchecked_stop_keys)

    def check_keys(self, trial_name: str, metrics: dict[str, Any], has_checkpoint: bool,
                   strict: bool = True) -> ConfigError | None:
        """Check a result (in the driver, while ``watching``) for the keys that ``stop`` and ``keep_by`` name.

        A ``stop`` key missing from a result logs one warning per key (a rule on a key no trial reports never
        fires); a key once seen is not checked again. The first result that carries a checkpoint must hold
        ``keep_by`` (it ranks the checkpoints): without it, the returned ``ConfigError`` (``strict``) or a warning.

        Returns:
            The error that should end the experiment, or None.
        """
        for key in list(self._unchecked_stop_keys):  # checked once, against the first result
            self._unchecked_stop_keys.discard(key)
            if key not in metrics:
                log.warning("stop[%r]: %s reported a result without %r (it reported: %s); a stop rule on a key "
                            "that trials never report never stops them", key, trial_name, key, _reported(metrics))
        error = None
        if self._keep_by is not None and has_checkpoint:
            keep_by, self._keep_by = self._keep_by, None
            if keep_by not in metrics:
                message = (f"keep_by={keep_by!r} is not in the result of {trial_name} that carries a checkpoint (it "
                           f"reported: {_reported(metrics)}); report it with every checkpoint, or pass keep_by= one "
                           f"of those")
                if strict:
                    error = ConfigError(message)
                else:
                    log.warning("%s; checkpoints without it are the first to be deleted", message)
        self.watching = bool(self._unchecked_stop_keys) or self._keep_by is not None
        return error

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


def _reported(metrics: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in metrics if k not in (TIME_TOTAL, TIMESTAMP)))
