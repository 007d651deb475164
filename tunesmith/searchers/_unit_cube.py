"""The unit-cube view of a space, for the searchers that search a cube (``QuasiRandom``, ``BOHB``) or read
stored configs back (``OptunaSearch``).

``UnitCube`` gives every sampled domain of a space one coordinate of [0, 1]^d and maps a point of the
cube to a config through each domain's ``from_unit``, so a low-discrepancy sequence or a density model
over the cube turns into configs the same way random search does; ``encode``/``to_unit`` go back from a
config, ``fits`` tells which option of a choice a stored config took.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, cast

import numpy as np

from tunesmith.space import (
    Choice,
    Domain,
    Grid,
    GridPoints,
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
)
from tunesmith.space._plain import same_value

__all__ = ["Dim", "Slot", "UnitCube", "fits", "options", "resolve_fixed", "to_unit"]

# (config key path, the branch taken to reach it: ((choice path, option index), ...))
Slot = tuple[KeyPath, tuple[tuple[KeyPath, int], ...]]


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


@dataclass(frozen=True)
class _Walk:
    """What ``UnitCube.fixed`` reads and fills as it walks the space."""

    u: Sequence[float] | np.ndarray
    grid: dict[KeyPath, int]
    point: dict[KeyPath, Any]
    fixed: dict[KeyPath, Any]
    active: np.ndarray

    def given(self, path: KeyPath) -> Any:
        """The point's value at ``path``, or ``_MISSING``."""
        return self.point.get(path, _MISSING)


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
            items = options(value)
            if not (isinstance(value, Grid) and self.cross_grids):  # crossed grid keys: grid_points()
                out.append(Dim((path, branch), value, depth))
            for i, item in enumerate(items):
                self._walk_value(item, path, (*branch, (path, i)), depth + 1, out)
        elif isinstance(value, Domain):
            out.append(Dim((path, branch), value, depth))
        elif isinstance(value, dict):
            self._walk_dict(value, path, branch, depth, out)

    def grid_points(self) -> GridPoints:
        """Every combination of the crossed grid keys' value indices, first key slowest (one empty point if
        none), computed from its number when asked for: a grid can have more points than a list could hold."""
        return GridPoints(self.space, indices=True)

    # -- cube -> config -------------------------------------------------------------------------------
    def fixed(self, u: Sequence[float] | np.ndarray, grid: dict[KeyPath, int] | None = None,
              point: dict[KeyPath, Any] | None = None) -> tuple[dict[KeyPath, Any], np.ndarray]:
        """The values a cube point gives, as ``resolve``'s ``fixed=``, and which coordinates it used.

        Args:
            u: one number in [0, 1] per coordinate.
            grid: option indices of the crossed grid keys (from ``grid_points()``).
            point: a point to evaluate (``points.check_points``): the values it gives are used as given, and
                nothing below them comes from the cube, but for an option it picked (its object from the space),
                which is taken as if the cube had chosen it: its keys the point leaves out come from the cube.

        Returns:
            ``(fixed, active)``: ``active[i]`` is whether coordinate ``i`` lies on the branches taken.
        """
        active = np.zeros(len(self.dims), dtype=bool)
        fixed: dict[KeyPath, Any] = {}
        walk = _Walk(u, grid or {}, point or {}, fixed, active)
        for key, value in self.space.items():
            fixed[(key,)] = self._value(value, (key,), (), walk.given((key,)), walk)
        return fixed, active

    def config(self, fixed: dict[KeyPath, Any]) -> dict[str, Any]:
        """The config for ``fixed`` (``sample_from`` keys computed last, as ``resolve`` does)."""
        return resolve_fixed(self.space, fixed)

    def _value(self, value: Any, path: KeyPath, branch: tuple[tuple[KeyPath, int], ...], given: Any,
               walk: _Walk) -> Any:
        items = options(value) if isinstance(value, (Choice, Grid)) else []
        picked = next((i for i, item in enumerate(items) if item is given), None)  # an option a point picked
        if given is not _MISSING and picked is None:
            return given  # a point's value: nothing below it comes from the cube
        if isinstance(value, SampleFrom):
            return value  # resolve defers it
        if isinstance(value, (Choice, Grid)):
            if picked is not None:
                idx = picked
            elif isinstance(value, Grid) and self.cross_grids:
                idx = walk.grid[path]
            else:
                i = self.index[(path, branch)]
                walk.active[i] = True
                idx = min(math.floor(_unit(walk.u[i]) * len(items)), len(items) - 1)
            return self._value(items[idx], path, (*branch, (path, idx)), _MISSING, walk)
        if isinstance(value, Domain):
            i = self.index[(path, branch)]
            walk.active[i] = True
            return value.from_unit(_unit(walk.u[i]))
        if isinstance(value, dict):
            for key, item in value.items():
                sub = (*path, key)
                walk.fixed[sub] = self._value(item, sub, branch, walk.given(sub), walk)
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
            items = options(value)
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


def options(domain: Choice | Grid) -> list[Any]:
    """A choice's options, a grid's values."""
    return domain.options if isinstance(domain, Choice) else domain.values


def resolve_fixed(space: dict[str, Any], fixed: dict[KeyPath, Any]) -> dict[str, Any]:
    """``resolve`` for a ``fixed`` that gives every sampled domain on the branches taken (no draws)."""
    return resolve(space, cast(random.Random, _NoRandom()), fixed=fixed)


def _unit(u: float) -> float:
    return min(max(float(u), 0.0), 1.0)


def to_unit(domain: Domain, value: Any) -> float | None:
    """The inverse of ``domain.from_unit``: a ``u`` that maps to ``value`` (the middle of its interval
    for integers and options), or ``None`` when ``value`` is not a value of the domain's kind."""
    if isinstance(domain, (Choice, Grid)):
        items = options(domain)
        idx = next((i for i, item in enumerate(items) if fits(item, value)), None)
        return None if idx is None else (idx + 0.5) / len(items)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    if isinstance(domain, (RandInt, LogRandInt)):
        return _int_to_unit(domain, value)
    v = float(value)
    u: float
    if isinstance(domain, (Uniform, QUniform)):
        u = (v - domain.low) / (domain.high - domain.low)
    elif isinstance(domain, (LogUniform, QLogUniform)):
        if v <= 0:
            return None
        u = math.log(v / domain.low) / math.log(domain.high / domain.low)
    elif isinstance(domain, (Normal, QNormal)):
        u = NormalDist(float(domain.mean), float(domain.sd)).cdf(v)
    else:
        return None
    return _unit(u)


def _int_to_unit(domain: RandInt | LogRandInt, value: numbers.Real) -> float | None:
    """``to_unit`` of an integer domain, in integer terms (past 2**53 floats no longer hold every integer, and
    ``high / low`` rounds to 1.0 for ``lograndint(10**300, 10**300 + 5)``): the middle of the value's interval."""
    low, high = int(domain.low), int(domain.high)
    k = min(max(int(math.floor(value)), low), high - 1)
    if isinstance(domain, RandInt):
        return _unit((2 * (k - low) + 1) / (2 * (high - low)))
    if value <= 0:
        return None
    span = math.log1p((high - low) / low)  # ln(x / low) as log1p((x - low) / low): exact for x near low
    lo, hi = math.log1p((k - low) / low) / span, math.log1p((k + 1 - low) / low) / span
    return _unit((lo + hi) / 2)


def fits(spec: Any, value: Any) -> bool:
    """Whether ``value`` could have been drawn from ``spec`` (a domain, a nested dict, a constant).

    Used to tell which option of a choice a stored config took. Lists and tuples compare alike (a
    config read back from JSON has lists); ``True`` is not ``1``; a NaN is a NaN option.
    """
    if isinstance(spec, SampleFrom):
        return True
    if isinstance(spec, (Choice, Grid)):
        items = options(spec)
        return any(fits(item, value) for item in items)
    if isinstance(spec, Domain):
        return _in_domain(spec, value)
    if isinstance(spec, dict):
        return (isinstance(value, dict) and set(value) == set(spec)
                and all(fits(spec[k], value[k]) for k in spec))
    return same_value(spec, value)


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


