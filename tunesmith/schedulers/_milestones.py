"""Progress and milestones, shared by the schedulers of this package (ASHA, HyperBand, MedianStopping,
PBT, Deadline): a result's progress counter (``time_attr``), when a milestone counts as reached (with a
tolerance for milestones computed in floating point), the first whole iteration that reaches one, the rank
order of scores (best first, NaN last, ties by trial id), and the checks of the arguments that define them.
Private: each scheduler's public arguments and errors are its own.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.trial import ITERATION, Result, trial_name

# Relative tolerance when comparing a reported time to a milestone computed in floating point
# (0.1 * 3 ** 2 is 0.9000000000000001, and a trial reporting 0.9 has reached it).
_EPS = 1e-9
# More rungs than this means a reduction_factor so close to 1 that it is surely a mistake.
_MAX_RUNGS = 1000


def _check_number(owner: str, name: str, value: Any, *, low: float | None = None, low_open: bool = False,
                  high: float | None = None, high_open: bool = False, integer: bool = False) -> float:
    """Check that ``value`` is a finite real number within the bounds; raise ``ConfigError`` naming it."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name}: {owner} expects {kind}; got {value!r}")
    if integer and not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}: {owner} expects {kind}; got {value!r}")
    number = float(value)
    if low is not None and (number < low or (low_open and number == low)):
        raise ConfigError(f"{name}: {owner} expects a value {'>' if low_open else '>='} {low:g}; got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ConfigError(f"{name}: {owner} expects a value {'<' if high_open else '<='} {high:g}; got {value!r}")
    return number


def _check_time_attr(owner: str, time_attr: Any) -> None:
    if not isinstance(time_attr, str) or not time_attr:
        raise ConfigError(f"time_attr: {owner} expects the name of a reported counter, e.g. "
                          f"'training_iteration'; got {time_attr!r}")


def _number(result: Result, key: str, what: str) -> float:
    try:
        value = result.metrics[key]
    except KeyError:
        raise ConfigError(
            f"{what} {key!r} is missing from the result of {trial_name(result.trial_id)} at iteration "
            f"{result.iteration} (reported keys: {sorted(result.metrics)})") from None
    if not isinstance(value, numbers.Real):
        raise ConfigError(f"{what} {key!r} of {trial_name(result.trial_id)} must be a number; got {value!r}")
    return float(value)


def _time(result: Result, time_attr: str) -> float:
    """The result's progress counter (``training_iteration`` comes from ``Result.iteration``)."""
    if time_attr == ITERATION:
        return float(result.iteration)
    return _number(result, time_attr, "time_attr")


def _reached(t: float, milestone: float) -> bool:
    return t >= milestone - _EPS * max(1.0, abs(milestone))


def _as_iteration(milestone: float) -> int:
    """The first whole iteration at which ``milestone`` is reached."""
    return max(1, math.ceil(milestone - _EPS * max(1.0, abs(milestone))))


def _rank_key(score: float, trial_id: int) -> tuple[int, float, int]:
    """Sort key, best first: real numbers by score (descending), then NaN, ties by lower trial id."""
    if math.isnan(score):
        return (1, 0.0, trial_id)
    return (0, -score, trial_id)
