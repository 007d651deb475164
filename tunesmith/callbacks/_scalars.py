"""What the tracking loggers (TensorBoard, MLflow) plot of a result: each numeric metric as a float."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

from tunesmith._flat import flat_metrics
from tunesmith.trial import ITERATION, TIMESTAMP

# Not plotted: the step itself and the wall clock (the logged point's step and time already).
_SKIP = (ITERATION, TIMESTAMP)


def scalars(metrics: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(name, value) of every metric of a result to plot, nested ones as ``outer/inner``: numbers (numpy
    scalars included) and bools as 0/1; text, lists and the like are left out, and so are ``training_iteration``
    and ``timestamp``."""
    for key, value in flat_metrics(metrics).items():
        if isinstance(value, numbers.Real) and key not in _SKIP:
            yield key, float(value)
