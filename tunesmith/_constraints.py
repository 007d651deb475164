"""``run(constraints=fn)``: the driver computes ``fn(result)`` for every result as it arrives, before the result is
stored, and keeps the values with it as the metrics ``constraint/0``, ``constraint/1``... (<= 0 feasible), which
constrained searchers (``OptunaSearch``), ``ResultSet.feasible`` and the report read."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP, TrialView

PREFIX = "constraint/"


class Constraints:
    """The user's ``constraints`` function in the driver, with the number of values its first result gave: every
    result must give as many (a constrained sampler compares the same constraints across trials)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        self.fn = fn
        self.count: int | None = None

    def add(self, fail: Callable[[BaseException], None], trial: TrialView, iteration: int, time_total: float,
            timestamp: float, metrics: dict[str, Any]) -> str:
        """``fn(result)`` as ``constraint/<i>`` metrics of the result; its stored text, re-encoded.
        A function that raises, returns something other than real numbers (a number, a list or tuple of them, a
        0- or 1-dimensional array) or a number of values other than the earlier results' ends the experiment
        (``fail``: the controller's) with a ConfigError naming the result; the result is stored as infeasible
        (+inf for each value), or, for a changed number of values, with the values it returned."""
        from tunesmith.session import encode_metrics

        where = f"constraints({trial.name}'s result {iteration})"
        result = {**metrics, ITERATION: iteration, TIME_TOTAL: time_total, TIMESTAMP: timestamp}
        try:
            returned = self.fn(result)
        except Exception as e:  # noqa: BLE001 - the user's function: named in the error
            fail(ConfigError(f"{where} raised {type(e).__name__}: {e}; expected a list of floats (<= 0 feasible)"))
            values = None
        else:
            values, problem = _floats(returned)
            if problem is not None:
                fail(ConfigError(f"{where} returned {_shown(returned)}: {problem}; expected a number or a list "
                                 f"of numbers (each <= 0 when feasible)"))
            elif self.count is not None and len(values) != self.count:
                fail(ConfigError(f"{where} returned {len(values)} value{'s' * (len(values) != 1)}; the earlier "
                                 f"results had {self.count}: a constraints function must return as many values "
                                 f"for every result"))
        if not values:
            values = [math.inf] * (self.count or 1)
        if self.count is None:
            self.count = len(values)
        for key in [k for k in metrics if k.startswith(PREFIX)]:  # reserved: a trial's own are replaced
            del metrics[key]
        for i, value in enumerate(values):
            metrics[f"{PREFIX}{i}"] = value
        return encode_metrics(metrics)


def _floats(returned: Any) -> tuple[list[float], str | None]:
    """The values a constraints function returned as floats, and what is wrong with them (None: nothing).
    numpy (and torch) arrays and scalars are read through ``tolist()``; NaN is kept (not feasible)."""
    if hasattr(returned, "tolist") and hasattr(returned, "ndim"):  # an array (or a numpy/torch scalar)
        if returned.ndim > 1:
            return [], f"a {returned.ndim}-dimensional array (give a 1-dimensional one)"
        returned = returned.tolist()
    items = returned if isinstance(returned, (list, tuple)) else [returned]
    if not items:
        return [], "no value; a constraints function must return at least one"
    items = [item.tolist() if getattr(item, "ndim", None) == 0 and hasattr(item, "tolist") else item
             for item in items]  # [np.float32(1.0)], [torch.tensor(1.0)]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            return [], f"{item!r} ({type(item).__name__}) is not a number"
    return [float(item) for item in items], None


def _shown(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
