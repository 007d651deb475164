"""``run(constraints=fn)``: the driver computes ``fn(result)`` for every result as it arrives, before the result is
stored, and keeps the values with it as the metrics ``constraint/0``, ``constraint/1``... (<= 0 feasible), which
constrained searchers (``OptunaSearch``), ``ResultSet.feasible`` and the report read."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP, TrialView


def add_constraints(constraints: Callable[[dict[str, Any]], Any], fail: Callable[[BaseException], None],
                    trial: TrialView, iteration: int, time_total: float, timestamp: float,
                    metrics: dict[str, Any]) -> str:
    """``constraints(result)`` as ``constraint/<i>`` metrics of the result; its stored text, re-encoded.
    A function that raises ends the experiment (``fail``: the controller's) with a ConfigError naming the result,
    and the result is stored as infeasible."""
    from tunesmith.session import encode_metrics

    result = {**metrics, ITERATION: iteration, TIME_TOTAL: time_total, TIMESTAMP: timestamp}
    try:
        values = constraints(result)
        values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    except Exception as e:  # noqa: BLE001 - the user's function: named in the error
        fail(ConfigError(f"constraints({trial.name}'s result {iteration}) raised {type(e).__name__}: {e}; "
                         f"expected a list of floats (<= 0 feasible)"))
        values = [math.inf]
    for i, value in enumerate(values):
        metrics[f"constraint/{i}"] = value
    return encode_metrics(metrics)
