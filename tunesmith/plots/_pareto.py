"""The non-dominated (Pareto) set for plots: finite values only, computed by the one shared implementation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from tunesmith._errors import ConfigError
from tunesmith.searchers._pareto import pareto_front


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points that no other point dominates, ascending.

    ``a`` dominates ``b`` when ``a`` is at least as good in every objective and better in one ("good"
    per ``modes``: smaller for ``"min"``, larger for ``"max"``). Equal points do not dominate each other,
    so duplicates on the front are all kept. The front is ``tunesmith.searchers._pareto.pareto_front``'s
    (the one ``ResultSet.pareto_front`` uses); a plot takes only finite values, so anything else is refused
    here rather than left out.

    Args:
        points: one sequence of objective values per point, all of ``len(modes)``; finite numbers.
        modes: ``"min"`` or ``"max"`` per objective.

    Raises:
        ConfigError: a bad mode, a point of the wrong length, or a value that is not a finite number.
    """
    for mode in modes:
        if mode not in ("min", "max"):
            raise ConfigError(f"modes: each must be 'min' or 'max', got {mode!r}")
    for i, point in enumerate(points):
        if len(point) != len(modes):
            raise ConfigError(f"points[{i}] has {len(point)} values, expected {len(modes)} (one per mode)")
        for value in point:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"points[{i}]: expected finite numbers, got {value!r}")
    if not points:
        return []
    return pareto_front(points, modes)
