"""The Pareto front of multi-objective results: the points no other point beats in every objective."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tunesmith._errors import ConfigError

__all__ = ["dominates", "pareto_front"]


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points.

    A point dominates another when it is at least as good in every objective and better in one.
    Equal points do not dominate each other, so duplicates on the front are all kept. Points with a
    NaN objective are left out (they are neither on the front nor dominate anything); infinities
    compare as numbers.

    Args:
        points: one tuple of objective values per point (e.g. per trial).
        modes: ``"min"`` or ``"max"`` per objective, in the same order.

    Returns:
        The indices into ``points`` of the front, ascending.

    Raises:
        ConfigError: ``modes`` is empty or holds something other than ``"min"``/``"max"``, or a point
            has a different number of values than ``modes`` (named by its index).
    """
    if isinstance(modes, str) or not modes or any(m not in ("min", "max") for m in modes):
        raise ConfigError(f"modes: expected a non-empty list of 'min'/'max', one per objective; got {modes!r}")
    signs = [1.0 if m == "min" else -1.0 for m in modes]
    keyed: list[tuple[tuple[float, ...], int]] = []
    for i, point in enumerate(points):
        if len(point) != len(signs):
            raise ConfigError(f"points[{i}]: expected {len(signs)} objective values (one per mode); "
                              f"got {len(point)}")
        values = tuple(s * float(v) for s, v in zip(signs, point, strict=True))
        if not any(math.isnan(v) for v in values):
            keyed.append((values, i))
    # Sorted lexicographically (all objectives minimised now), a point's dominators all come before it,
    # and whoever dominates a dominated point dominates what it dominates: checking each point against
    # the front so far is enough.
    keyed.sort()
    front: list[tuple[tuple[float, ...], int]] = []
    for values, i in keyed:
        if not any(dominates(f, values) for f, _ in front):
            front.append((values, i))
    return sorted(i for _, i in front)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` when every objective is minimised."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))
