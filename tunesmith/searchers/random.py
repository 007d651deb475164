"""Random search, crossed with grid search when the space holds ``grid([...])`` keys."""

from __future__ import annotations

import math
import random
from typing import Any

from tunesmith.searchers._base import FINISHED, UNLIMITED, Searcher, _check_num_samples, _Finished
from tunesmith.searchers._seeding import check_seed
from tunesmith.searchers.points import GridSlots, check_points
from tunesmith.space import Grid, GridPoints, KeyPath, domains, resolve, validate_space

__all__ = ["Random", "total_trials"]

class Random(Searcher):
    """Samples every domain at random; every grid point is tried ``num_samples`` times.

    With grid keys of 3 values and ``num_samples=2`` the experiment has 6 trials: repeat 0 tries every
    grid point, then repeat 1 does; the random keys are sampled afresh for every trial.
    ``num_samples=-1`` never finishes.

    Args:
        seed: seed of this searcher's own ``random.Random``. ``None`` draws one at construction from
            ``random.SystemRandom``; the seed used is ``self._seed`` either way (the spec records it), so
            it can be reported and the same configs drawn again.
        points_to_evaluate: (partial) configs to suggest first (see ``tunesmith.searchers.points``).
            Trial ``k < len(points_to_evaluate)`` takes point ``k``. A point is one of the ``grid points x
            num_samples`` trials: one of the tries of the grid point whose values it gives (the first with a try
            left; for the grid keys it does not give, that grid point's values), so every grid point is still
            tried ``num_samples`` times (``points.GridSlots``). With grid keys of 3 values, ``num_samples=2``
            and the point ``{"g": "c"}``, the 6 trials are ``c`` (the point), then ``a, b, a, b, c``. A point
            whose grid value is not in the grid is one trial more. Its other missing keys are sampled.
    """

    learns_from_results = False

    def __init__(self, seed: int | None = None, points_to_evaluate: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.points_to_evaluate = points_to_evaluate
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._rng = random.Random()
        self._points = GridPoints({})  # computed one at a time: a grid can have 10^9 points
        self._given: list[dict[KeyPath, Any]] = []
        self._slots = GridSlots({}, [], 1)
        self._total: int | None = None
        self._count = 0

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate the space, ``num_samples``, ``seed`` and ``points_to_evaluate``; start drawing from
        the seed.

        Raises:
            ConfigError: naming the offending key path or argument.
        """
        super().setup(space, metric, mode, num_samples)
        validate_space(space)
        _check_num_samples(num_samples)
        check_seed(self._seed)
        self._rng = random.Random(int(self._seed))
        self._points = GridPoints(space)
        self._given = check_points(self.points_to_evaluate, space)
        self._slots = GridSlots(space, self._given, num_samples)
        self._total = self._slots.total
        self._count = 0

    def suggest(self, trial_id: int) -> dict[str, Any] | _Finished | None:
        """The next config (``trial_id`` is not used: configs depend only on the seed and their order)."""
        if self._total is not None and self._count >= self._total:
            return FINISHED
        point = self._points[self._slots.slot(self._count) % self._points.size]
        if self._count < len(self._given):
            point = {**point, **self._given[self._count]}
        config = resolve(self.space, self._rng, fixed=point)
        self._count += 1
        return config

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Random search ignores results."""

    def to_spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON; ``points_to_evaluate`` only when given (older specs lack it)."""
        spec = super().to_spec()
        if self.points_to_evaluate is None:
            spec.pop("points_to_evaluate", None)
        return spec


def total_trials(space: dict[str, Any], num_samples: int) -> int | None:
    """How many trials ``Random`` suggests for this space: grid points x ``num_samples``.

    Args:
        space: a space (validated here).
        num_samples: repeats of the grid, or -1 for unlimited.

    Returns:
        The count, or ``None`` when ``num_samples`` is -1.

    Raises:
        ConfigError: a bad space or ``num_samples``.
    """
    validate_space(space)
    _check_num_samples(num_samples)
    if num_samples == UNLIMITED:
        return None
    return math.prod(len(d.values) for _, d in domains(space) if isinstance(d, Grid)) * num_samples

