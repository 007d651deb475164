"""Quasi-random search (scrambled Sobol or Halton points), and the unit-cube view of a space it rests on.

``UnitCube`` gives every sampled domain of a space one coordinate of [0, 1]^d and maps a point of the
cube to a config through each domain's ``from_unit``, so a low-discrepancy sequence (here) or a density
model over the cube (``BOHB``) turns into configs the same way random search does.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, cast

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.searchers._base import FINISHED, UNLIMITED, Searcher, _check_num_samples, _Finished
from tunesmith.searchers.points import check_points, check_points_fit, merge_fixed
from tunesmith.space import (
    Choice,
    Domain,
    Grid,
    KeyPath,
    LogRandInt,
    LogUniform,
    Normal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    SampleFrom,
    Uniform,
    resolve,
    validate_space,
)

__all__ = ["QuasiRandom", "UnitCube", "check_seed", "fits", "resolve_fixed", "seed_sequence", "to_unit"]

METHODS = ("sobol", "halton")

# (config key path, the branch taken to reach it: ((choice path, option index), ...))
Slot = tuple[KeyPath, tuple[tuple[KeyPath, int], ...]]


class QuasiRandom(Searcher):
    """Quasi-random search: scrambled Sobol (or Halton) points over the space's unit cube.

    Low-discrepancy points cover the space more evenly than random ones, which matters most for small
    budgets. Every sampled domain is one dimension, in a fixed order: the space's leaf domains first
    (in the order of ``space.domains``), then the domains inside choice options. A conditional choice
    (options that hold domains) takes every branch's domains into the cube, so the dimension count is
    that of all branches together; a config uses only the dimensions of the branches it took.

    Grid keys are crossed as with ``Random``: trial ``k`` takes grid point ``k % G`` and cube point
    ``k // G``, so every grid point gets its own ``num_samples`` cube points, a balanced prefix of the
    sequence (the same points for every grid point). ``sample_from`` keys are computed as usual.

    Needs SciPy (``pip install 'tunesmith[optuna]'``, which installs it).

    Args:
        seed: seed of the scrambling; ``None`` draws one at construction (``self._seed``), as ``Random``.
        method: ``"sobol"`` or ``"halton"``.
        points_to_evaluate: (partial) configs to suggest first (see ``tunesmith.searchers.points``); the
            keys they leave out come from the cube point the trial would have had.
    """

    def __init__(self, seed: int | None = None, method: str = "sobol",
                 points_to_evaluate: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.method = method
        self.points_to_evaluate = points_to_evaluate
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._cube: UnitCube | None = None
        self._engine: Any = None
        self._grids: list[dict[KeyPath, int]] = [{}]
        self._given: list[dict[KeyPath, Any]] = []
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
        self._total = None if num_samples == UNLIMITED else len(self._grids) * num_samples
        self._given = check_points(self.points_to_evaluate, space)
        check_points_fit(self._given, self._total)
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
        row = k // len(self._grids)
        while self._row < row:
            self._u = self._next_point()
            self._row += 1
        fixed, _ = self._cube.fixed(self._u, self._grids[k % len(self._grids)])
        if k < len(self._given):
            fixed = merge_fixed(fixed, self._given[k])
        return self._cube.config(fixed)

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Quasi-random search ignores results."""

    def _next_point(self) -> np.ndarray:
        if self._engine is None:
            return np.zeros(0)
        with warnings.catch_warnings():
            # Balance properties hold for powers of two; one point at a time is still a prefix of the
            # sequence, which is what a sequential search can use.
            warnings.simplefilter("ignore", UserWarning)
            point: np.ndarray = self._engine.random(1)[0]
        return point


# ------------------------------------------------------------------------------------------ unit cube


@dataclass(frozen=True)
class Dim:
    """One coordinate of the cube: the domain sampled at ``slot`` (a selector for choice/grid)."""

    slot: Slot
    domain: Domain
    depth: int  # how many choice options lie above it (0: a leaf of the space itself)

    @property
    def categories(self) -> int:
        """The number of options of a choice/grid coordinate; 0 for a numeric one."""
        if isinstance(self.domain, Choice):
            return len(self.domain.options)
        if isinstance(self.domain, Grid):
            return len(self.domain.values)
        return 0


class _NoRandom:
    """Given to ``resolve`` when every domain is fixed: a draw would be a bug."""

    def random(self) -> float:
        raise AssertionError("a domain of the space was not fixed from the unit cube")


_MISSING = object()


class UnitCube:
    """The unit-cube view of a space: one coordinate per sampled domain, every branch included.

    Args:
        space: a validated space.
        cross_grids: ``True``: grid keys are not coordinates (the caller crosses them, passing
            ``grid_points()``); ``False``: a grid is one more categorical coordinate, searched like a
            choice.
    """

    def __init__(self, space: dict[str, Any], cross_grids: bool) -> None:
        self.space = space
        self.cross_grids = cross_grids
        found: list[Dim] = []
        self._grid_keys: list[tuple[KeyPath, Grid]] = []
        self._walk_dict(space, (), (), 0, found)
        self.dims: list[Dim] = sorted(found, key=lambda d: d.depth)  # stable: top-level leaves first
        self.index: dict[Slot, int] = {d.slot: i for i, d in enumerate(self.dims)}

    # -- structure ------------------------------------------------------------------------------------
    def _walk_dict(self, mapping: dict[str, Any], path: KeyPath, branch: tuple[tuple[KeyPath, int], ...],
                   depth: int, out: list[Dim]) -> None:
        for key, value in mapping.items():
            self._walk_value(value, (*path, key), branch, depth, out)

    def _walk_value(self, value: Any, path: KeyPath, branch: tuple[tuple[KeyPath, int], ...], depth: int,
                    out: list[Dim]) -> None:
        if isinstance(value, SampleFrom):
            return
        if isinstance(value, (Choice, Grid)):
            items = value.options if isinstance(value, Choice) else value.values
            if isinstance(value, Grid) and self.cross_grids:
                self._grid_keys.append((path, value))
            else:
                out.append(Dim((path, branch), value, depth))
            for i, item in enumerate(items):
                self._walk_value(item, path, (*branch, (path, i)), depth + 1, out)
        elif isinstance(value, Domain):
            out.append(Dim((path, branch), value, depth))
        elif isinstance(value, dict):
            self._walk_dict(value, path, branch, depth, out)

    def grid_points(self) -> list[dict[KeyPath, int]]:
        """Every combination of the crossed grid keys' value indices, first key slowest (``[{}]`` if none)."""
        paths = [path for path, _ in self._grid_keys]
        combos = itertools.product(*(range(len(g.values)) for _, g in self._grid_keys))
        return [dict(zip(paths, combo, strict=True)) for combo in combos]

    # -- cube -> config -------------------------------------------------------------------------------
    def fixed(self, u: Sequence[float], grid: dict[KeyPath, int] | None = None
              ) -> tuple[dict[KeyPath, Any], np.ndarray]:
        """The values a cube point gives, as ``resolve``'s ``fixed=``, and which coordinates it used.

        Args:
            u: one number in [0, 1] per coordinate.
            grid: option indices of the crossed grid keys (from ``grid_points()``).

        Returns:
            ``(fixed, active)``: ``active[i]`` is whether coordinate ``i`` lies on the branches taken.
        """
        active = np.zeros(len(self.dims), dtype=bool)
        fixed: dict[KeyPath, Any] = {}
        for key, value in self.space.items():
            fixed[(key,)] = self._value(value, (key,), (), u, grid or {}, fixed, active)
        return fixed, active

    def config(self, fixed: dict[KeyPath, Any]) -> dict[str, Any]:
        """The config for ``fixed`` (``sample_from`` keys computed last, as ``resolve`` does)."""
        return resolve_fixed(self.space, fixed)

    def _value(self, value: Any, path: KeyPath, branch: tuple[tuple[KeyPath, int], ...], u: Sequence[float],
               grid: dict[KeyPath, int], fixed: dict[KeyPath, Any], active: np.ndarray) -> Any:
        if isinstance(value, SampleFrom):
            return value  # resolve defers it
        if isinstance(value, (Choice, Grid)):
            items = value.options if isinstance(value, Choice) else value.values
            if isinstance(value, Grid) and self.cross_grids:
                idx = grid[path]
            else:
                i = self.index[(path, branch)]
                active[i] = True
                idx = min(math.floor(_unit(u[i]) * len(items)), len(items) - 1)
            return self._value(items[idx], path, (*branch, (path, idx)), u, grid, fixed, active)
        if isinstance(value, Domain):
            i = self.index[(path, branch)]
            active[i] = True
            return value.from_unit(_unit(u[i]))
        if isinstance(value, dict):
            for key, item in value.items():
                fixed[(*path, key)] = self._value(item, (*path, key), branch, u, grid, fixed, active)
        return value

    # -- config -> cube -------------------------------------------------------------------------------
    def encode(self, config: dict[str, Any]) -> np.ndarray:
        """A cube point for a config: coordinates of untaken branches (and values that fit no option
        or domain) are NaN; integers and options map to the middle of their interval.

        Args:
            config: a config of this space (e.g. as stored).
        """
        out = np.full(len(self.dims), np.nan)
        for key, value in self.space.items():
            self._encode(value, (key,), (), config.get(key, _MISSING), out)
        return out

    def _encode(self, value: Any, path: KeyPath, branch: tuple[tuple[KeyPath, int], ...], got: Any,
                out: np.ndarray) -> None:
        if got is _MISSING or isinstance(value, SampleFrom):
            return
        if isinstance(value, (Choice, Grid)):
            items = value.options if isinstance(value, Choice) else value.values
            idx = next((i for i, item in enumerate(items) if fits(item, got)), None)
            if idx is None:
                return
            if not (isinstance(value, Grid) and self.cross_grids):
                out[self.index[(path, branch)]] = (idx + 0.5) / len(items)
            self._encode(items[idx], path, (*branch, (path, idx)), got, out)
        elif isinstance(value, Domain):
            u = to_unit(value, got)
            if u is not None:
                out[self.index[(path, branch)]] = u
        elif isinstance(value, dict) and isinstance(got, dict):
            for key, item in value.items():
                self._encode(item, (*path, key), branch, got.get(key, _MISSING), out)


# ------------------------------------------------------------------------------------------- helpers


def resolve_fixed(space: dict[str, Any], fixed: dict[KeyPath, Any]) -> dict[str, Any]:
    """``resolve`` for a ``fixed`` that gives every sampled domain on the branches taken (no draws)."""
    return resolve(space, cast(random.Random, _NoRandom()), fixed=fixed)


def check_seed(seed: Any) -> None:
    """``ConfigError`` naming ``seed`` unless it is an int."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed: expected an int or None; got {seed!r} ({type(seed).__name__})")


def seed_sequence(seed: int, *more: int) -> np.random.SeedSequence:
    """A NumPy seed sequence for any int seed (negative ones too) and further stream indices."""
    return np.random.SeedSequence([abs(int(seed)), int(seed < 0), *(int(m) for m in more)])


def _unit(u: float) -> float:
    return min(max(float(u), 0.0), 1.0)


def to_unit(domain: Domain, value: Any) -> float | None:
    """The inverse of ``domain.from_unit``: a ``u`` that maps to ``value`` (the middle of its interval
    for integers and options), or ``None`` when ``value`` is not a value of the domain's kind."""
    if isinstance(domain, (Choice, Grid)):
        items = domain.options if isinstance(domain, Choice) else domain.values
        idx = next((i for i, item in enumerate(items) if fits(item, value)), None)
        return None if idx is None else (idx + 0.5) / len(items)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    v = float(value)
    u: float
    if isinstance(domain, (Uniform, QUniform)):
        u = (v - domain.low) / (domain.high - domain.low)
    elif isinstance(domain, (LogUniform, QLogUniform)):
        if v <= 0:
            return None
        u = math.log(v / domain.low) / math.log(domain.high / domain.low)
    elif isinstance(domain, RandInt):
        u = (math.floor(v) - domain.low + 0.5) / (domain.high - domain.low)
    elif isinstance(domain, LogRandInt):
        if v <= 0:
            return None
        span = math.log(domain.high / domain.low)
        lo = math.log(max(math.floor(v), domain.low) / domain.low) / span
        hi = math.log(min(math.floor(v) + 1, domain.high) / domain.low) / span
        u = (lo + hi) / 2
    elif isinstance(domain, (Normal, QNormal)):
        u = NormalDist(float(domain.mean), float(domain.sd)).cdf(v)
    else:
        return None
    return _unit(u)


def fits(spec: Any, value: Any) -> bool:
    """Whether ``value`` could have been drawn from ``spec`` (a domain, a nested dict, a constant).

    Used to tell which option of a choice a stored config took. Lists and tuples compare alike (a
    config read back from JSON has lists); ``True`` is not ``1``.
    """
    if isinstance(spec, SampleFrom):
        return True
    if isinstance(spec, (Choice, Grid)):
        items = spec.options if isinstance(spec, Choice) else spec.values
        return any(fits(item, value) for item in items)
    if isinstance(spec, Domain):
        return _in_domain(spec, value)
    if isinstance(spec, dict):
        return (isinstance(value, dict) and set(value) == set(spec)
                and all(fits(spec[k], value[k]) for k in spec))
    return _same(spec, value)


def _in_domain(domain: Domain, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(domain, (Normal, QNormal)):
        return not math.isnan(value)
    low, high = getattr(domain, "low", None), getattr(domain, "high", None)
    if low is None or high is None:
        return False
    if isinstance(domain, (RandInt, LogRandInt)):
        return float(value).is_integer() and low <= value < high
    return bool(low <= value <= high)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # an object whose == misbehaves is simply not the same
        return False
