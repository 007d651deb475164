"""Grid points: every combination of a space's ``grid([...])`` values, computed from an index."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, overload

from tunesmith.space._domains import Grid, KeyPath, domains


class GridPoints(Sequence[dict[KeyPath, Any]]):
    """Every combination of a space's grid values, computed from its index when asked for: a grid of 3 keys
    of 1,000 values each is 10^9 points, which no list could hold.

    Point ``i`` is the cartesian product's ``i``-th in key order of appearance, first key slowest (as
    ``itertools.product``); each maps a key path to its value. A space without grid keys has one empty point.

    Args:
        space: a validated space.
        indices: map each key path to the index of its value in the grid's ``values`` instead (for a searcher
            that must know which value it took: ``QuasiRandom`` samples the domains a grid value holds).
    """

    def __init__(self, space: dict[str, Any], indices: bool = False) -> None:
        grids = [(path, d) for path, d in domains(space) if isinstance(d, Grid)]
        self._paths = [path for path, _ in grids]
        self._values = [d.values for _, d in grids]
        self._indices = indices
        self.size = math.prod(len(v) for v in self._values)
        """How many points (a Python int: unlike ``len()``, not limited to ``sys.maxsize``)."""

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> dict[KeyPath, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[KeyPath, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[KeyPath, Any] | list[dict[KeyPath, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"grid point indices must be integers; got {type(index).__name__}")
        i = int(index) + self.size if index < 0 else int(index)
        if not 0 <= i < self.size:
            raise IndexError(f"grid point {index} out of range: the grid has {self.size} points")
        point: dict[KeyPath, Any] = {}
        for path, values in zip(reversed(self._paths), reversed(self._values), strict=True):
            i, digit = divmod(i, len(values))
            point[path] = digit if self._indices else values[digit]
        return {path: point[path] for path in self._paths}  # in key order of appearance


def grid_points(space: dict[str, Any]) -> list[dict[KeyPath, Any]]:
    """Every combination of the space's grid values, as a list (``GridPoints`` computes them one at a time).

    Args:
        space: a validated space.

    Returns:
        The cartesian product in key order of appearance, first key slowest; each point maps a key
        path to its value. ``[{}]`` (one empty point) when the space has no grid.
    """
    return list(GridPoints(space))
