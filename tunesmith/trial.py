"""Values that describe trials and their results: frozen, JSON-friendly, cheap to copy."""

from __future__ import annotations

import enum
from typing import Any

from tunesmith._record import FrozenRecord, Record

# Keys tunesmith adds to every reported result.
ITERATION = "training_iteration"
TIME_TOTAL = "time_total_s"
TIMESTAMP = "timestamp"
AUTO_KEYS = (ITERATION, TIME_TOTAL, TIMESTAMP)
# the integers a float holds (one this large or larger rounds to inf: float() raises OverflowError); report()
# refuses a metric beyond them, and a store an older tunesmith wrote reads one as the infinity of its sign
FLOAT_LIMIT = 2 ** 1024 - 2 ** 970


class TrialStatus(str, enum.Enum):
    """Where a trial is in its life. Stored in the store as the string value."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    @property
    def is_finished(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


class Result(FrozenRecord):
    """One reported result of one trial.

    Attributes:
        trial_id: the trial that reported it.
        iteration: 1-based count of ``report()`` calls in this trial (``training_iteration``).
        metrics: what the trial reported plus ``training_iteration``, ``time_total_s``, ``timestamp``.
        checkpoint_path: folder of the checkpoint reported with this result, if any.
    """

    trial_id: int
    iteration: int
    metrics: dict[str, Any]
    checkpoint_path: str | None
    # the reported metrics as the trial's JSON text (without the keys above), when it came from a trial:
    # the JSONL logger writes it as it is instead of encoding the numbers again (not shown, not compared)
    _json: str | None
    _fields = ("trial_id", "iteration", "metrics", "checkpoint_path")

    def __init__(self, trial_id: int, iteration: int, metrics: dict[str, Any], checkpoint_path: str | None = None,
                 _json: str | None = None) -> None:
        self._set(trial_id=trial_id, iteration=iteration, metrics=metrics, checkpoint_path=checkpoint_path,
                  _json=_json)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.metrics.get(key, default)


class TrialView(Record):
    """What schedulers and callbacks may read about a trial (the controller owns and mutates it).

    Schedulers must treat it as read-only.
    """

    id: int
    config: dict[str, Any]
    status: TrialStatus
    resources: dict[str, float]
    last_result: Result | None
    iteration: int
    checkpoint_path: str | None
    checkpoint_iteration: int
    parent_id: int | None
    parent_iteration: int | None
    generation: int  # PBT exploits so far (each starts a new generation of its results)
    num_failures: int
    error: str | None
    start_time: float | None
    end_time: float | None
    _fields = ("id", "config", "status", "resources", "last_result", "iteration", "checkpoint_path",
               "checkpoint_iteration", "parent_id", "parent_iteration", "generation", "num_failures", "error",
               "start_time", "end_time")

    def __init__(self, id: int, config: dict[str, Any], status: TrialStatus = TrialStatus.PENDING,
                 resources: dict[str, float] | None = None, last_result: Result | None = None, iteration: int = 0,
                 checkpoint_path: str | None = None, checkpoint_iteration: int = 0, parent_id: int | None = None,
                 parent_iteration: int | None = None, generation: int = 0, num_failures: int = 0,
                 error: str | None = None, start_time: float | None = None, end_time: float | None = None) -> None:
        self._set(id=id, config=config, status=status, resources={} if resources is None else resources,
                  last_result=last_result, iteration=iteration, checkpoint_path=checkpoint_path,
                  checkpoint_iteration=checkpoint_iteration, parent_id=parent_id, parent_iteration=parent_iteration,
                  generation=generation, num_failures=num_failures, error=error, start_time=start_time,
                  end_time=end_time)

    @property
    def name(self) -> str:
        return trial_name(self.id)


def trial_name(trial_id: int) -> str:
    """The folder and display name of a trial: derived from its integer id only, so it is always safe."""
    return f"trial_{int(trial_id):05d}"
