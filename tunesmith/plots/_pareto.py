"""The non-dominated (Pareto) set of points under per-objective min/max modes: a pure function."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from tunesmith._errors import ConfigError


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points that no other point dominates, in input order.

    ``a`` dominates ``b`` when ``a`` is at least as good in every objective and better in one ("good"
    per ``modes``: smaller for ``"min"``, larger for ``"max"``). Equal points do not dominate each other,
    so duplicates on the front are all kept. Two objectives take O(n log n), more take O(n²).

    Args:
        points: one sequence of objective values per point, all of ``len(modes)``; finite numbers.
        modes: ``"min"`` or ``"max"`` per objective.

    Returns:
        The indices of the non-dominated points, ascending.

    Raises:
        ConfigError: a bad mode, a point of the wrong length, or a value that is not a finite number.
    """
    signs = []
    for mode in modes:
        if mode not in ("min", "max"):
            raise ConfigError(f"modes: each must be 'min' or 'max', got {mode!r}")
        signs.append(1.0 if mode == "min" else -1.0)
    signed: list[tuple[float, ...]] = []
    for i, point in enumerate(points):
        if len(point) != len(signs):
            raise ConfigError(f"points[{i}] has {len(point)} values, expected {len(signs)} (one per mode)")
        for value in point:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"points[{i}]: expected finite numbers, got {value!r}")
        signed.append(tuple(s * float(v) for s, v in zip(signs, point)))
    if len(signs) == 2:
        return _two(signed)
    return _any(signed)


def _two(points: list[tuple[float, ...]]) -> list[int]:
    # Sweep by the first objective: a point survives when its second objective beats every point with a
    # strictly smaller first one and it is the smallest second value among equal first values.
    order = sorted(range(len(points)), key=lambda i: points[i])
    front: list[int] = []
    best = math.inf
    k = 0
    while k < len(order):
        x = points[order[k]][0]
        group = []
        while k < len(order) and points[order[k]][0] == x:
            group.append(order[k])
            k += 1
        low = points[group[0]][1]  # sorted, so the group's smallest second value comes first
        if low < best:
            front.extend(i for i in group if points[i][1] == low)
            best = low
    return sorted(front)


def _any(points: list[tuple[float, ...]]) -> list[int]:
    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and a != b

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
