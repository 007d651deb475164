"""Quasi-random search (scrambled Sobol or Halton points) over the unit-cube view of the space
(``searchers/_unit_cube.py``)."""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.searchers._base import FINISHED, Searcher, _check_num_samples, _Finished
from tunesmith.searchers._seeding import check_seed, seed_sequence
from tunesmith.searchers._unit_cube import UnitCube
from tunesmith.searchers.points import GridSlots, check_points
from tunesmith.space import GridPoints, KeyPath, validate_space

__all__ = ["QuasiRandom"]

METHODS = ("sobol", "halton")


class QuasiRandom(Searcher):
    """Quasi-random search: scrambled Sobol (or Halton) points over the space's unit cube.

    Low-discrepancy points cover the space more evenly than random ones, which matters most for small
    budgets. Every sampled domain is one dimension, in a fixed order: the space's leaf domains first
    (in the order of ``space.domains``), then the domains inside choice options. A conditional choice
    (options that hold domains) takes every branch's domains into the cube, so the dimension count is
    that of all branches together; a config uses only the dimensions of the branches it took.

    Grid keys are crossed as with ``Random``: trial ``k`` takes grid point ``k % G`` and cube point
    ``k // G`` (with points to evaluate: below), so every grid point gets its own ``num_samples`` cube points,
    a balanced prefix of the sequence (the same points for every grid point). Grid points are computed from
    their number when a trial needs one (``GridPoints``), so a grid of any size costs nothing up front.
    ``sample_from`` keys are computed as usual.

    Needs SciPy (``pip install 'tunesmith[optuna]'``, which installs it).

    Args:
        seed: seed of the scrambling; ``None`` draws one at construction (``self._seed``), as ``Random``.
        method: ``"sobol"`` or ``"halton"``.
        points_to_evaluate: (partial) configs to suggest first (see ``tunesmith.searchers.points``). As with
            ``Random``, a point is one of the tries of the grid point whose values it gives, and every grid point
            is still tried ``num_samples`` times (``points.GridSlots``); the keys a point leaves out come from
            the cube point of that try, and the trials after the points are those of the tries left, each with
            the cube point it has without points.
    """

    learns_from_results = False

    def __init__(self, seed: int | None = None, method: str = "sobol",
                 points_to_evaluate: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.method = method
        self.points_to_evaluate = points_to_evaluate
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._cube: UnitCube | None = None
        self._engine: Any = None
        self._grids = GridPoints({}, indices=True)  # computed one at a time: a grid can have 10^9 points
        self._given: list[dict[KeyPath, Any]] = []
        self._slots = GridSlots({}, [], 1)
        self._total: int | None = None
        self._count = 0
        self._row = -1  # index of the cube point in self._u
        self._u: np.ndarray = np.zeros(0)

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate the space and the arguments; build the cube and the sequence.

        Raises:
            ConfigError: naming the offending key or argument (``method``, ``seed``, ``num_samples``,
                ``points_to_evaluate``); ``MissingDependency`` (a ``ConfigError``) without SciPy.
        """
        super().setup(space, metric, mode, num_samples)
        validate_space(space)
        _check_num_samples(num_samples)
        check_seed(self._seed)
        if self.method not in METHODS:
            raise ConfigError(f"method: expected one of {list(METHODS)}; got {self.method!r}")
        qmc = require("scipy.stats.qmc", "optuna", what="QuasiRandom")
        self._cube = UnitCube(space, cross_grids=True)
        self._grids = self._cube.grid_points()
        self._given = check_points(self.points_to_evaluate, space)
        self._slots = GridSlots(space, self._given, num_samples)
        self._total = self._slots.total
        dim = len(self._cube.dims)
        rng = np.random.default_rng(seed_sequence(self._seed))
        engine = qmc.Sobol if self.method == "sobol" else qmc.Halton
        self._engine = engine(dim, scramble=True, rng=rng) if dim else None
        self._count, self._row, self._u = 0, -1, np.zeros(0)

    def suggest(self, trial_id: int) -> dict[str, Any] | _Finished:
        """The next config (it depends only on the seed and on how many came before)."""
        assert self._cube is not None, "setup() first"
        if self._total is not None and self._count >= self._total:
            return FINISHED
        k = self._count
        self._count += 1
        slot = self._slots.slot(k)
        row = slot // self._grids.size
        if row < self._row:  # a point's try lies before the last cube point drawn: draw the sequence again
            self._restart()
        while self._row < row:
            self._u = self._next_point()
            self._row += 1
        point = self._given[k] if k < len(self._given) else None
        fixed, _ = self._cube.fixed(self._u, self._grids[slot % self._grids.size], point)
        return self._cube.config(fixed)

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Quasi-random search ignores results."""

    def _restart(self) -> None:
        if self._engine is not None:
            self._engine.reset()
        self._row, self._u = -1, np.zeros(0)

    def _next_point(self) -> np.ndarray:
        if self._engine is None:
            return np.zeros(0)
        with warnings.catch_warnings():
            # Balance properties hold for powers of two; one point at a time is still a prefix of the
            # sequence, which is what a sequential search can use.
            warnings.simplefilter("ignore", UserWarning)
            point: np.ndarray = self._engine.random(1)[0]
        return point
