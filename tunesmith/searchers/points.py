"""``points_to_evaluate``: configs a searcher suggests first, before it samples or models anything.

Every built-in searcher takes ``points_to_evaluate=[{...}, ...]``. A point is a (possibly partial)
config: the keys it gives are used as given, the rest are sampled from the space as usual. A point
follows the space's nesting (``{"optim": {"lr": 0.1}}``). A dict given for a ``choice`` (or ``grid``) of
dicts picks the first option it fits (``fits_partial``: it gives some of that option's keys, with the
option's constants and values of its domains), else the first whose keys and constants it agrees with; the
option's keys it leaves out are sampled as for any partial point, so ``{"optim": {"type": "sgd"}}`` gets the
sgd option's momentum. Any other value for a choice key (a dict that fits no option, a scalar) is the whole
value. Values are not checked against their domains, so a point may lie outside the space on purpose (a
known baseline).

Points count towards the experiment's trials: with ``num_samples=8`` and 3 points, 5 more configs are
sampled. ``Random`` and ``QuasiRandom``, which cross ``grid`` keys, run every grid point ``num_samples``
times with or without points: a point is one of those tries, of the grid point whose values it gives
(``GridSlots``).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._secrets import mask
from tunesmith.searchers._base import UNLIMITED
from tunesmith.space import FLAT_SEP, Choice, Domain, Grid, KeyPath, domains

__all__ = ["GridSlots", "check_points", "check_points_fit", "fits_partial", "picked_option", "point_paths"]


def check_points(points: Any, space: dict[str, Any]) -> list[dict[KeyPath, Any]]:
    """Validate ``points_to_evaluate`` against a (validated) space.

    Args:
        points: ``None`` or a list of dicts.
        space: the experiment's space.

    Returns:
        One ``{key path: value}`` dict per point (``fixed=`` for ``space.resolve``); ``[]`` for ``None``.

    Raises:
        ConfigError: naming ``points_to_evaluate[i]`` and the key that is not in the space.
    """
    if points is None:
        return []
    if not isinstance(points, (list, tuple)):
        raise ConfigError(f"points_to_evaluate: expected a list of config dicts; got {mask(points)!r} "
                          f"({type(points).__name__})")
    out = []
    for i, point in enumerate(points):
        where = f"points_to_evaluate[{i}]"
        if not isinstance(point, dict):
            raise ConfigError(f"{where}: expected a config dict; got {mask(point)!r} ({type(point).__name__})")
        out.append(point_paths(point, space, where))
    return out


def check_points_fit(points: list[Any], total: int | None) -> None:
    """``ConfigError`` naming ``points_to_evaluate`` when there are more points than trials.

    Args:
        points: the checked points.
        total: how many trials the searcher suggests (``None``: unlimited).
    """
    if total is not None and len(points) > total:
        raise ConfigError(f"points_to_evaluate: {len(points)} points, but the searcher suggests only "
                          f"{total} trials; raise num_samples or pass fewer points")


def point_paths(point: dict[str, Any], space: dict[str, Any], where: str = "point") -> dict[KeyPath, Any]:
    """A nested (partial) config as ``{key path: value}``, following the space's nested dicts.

    A dict given for a choice (or grid) of dicts that picks an option (see the module docstring) is that option
    itself (the space's own object, with its domains) at the choice's path, and the dict's values at the paths
    below it: ``space.resolve`` then draws the option's other keys, and ``UnitCube.fixed`` takes them from the
    cube as for that option.

    Args:
        point: a (partial) config.
        space: the space it belongs to.
        where: the name used in error messages.

    Raises:
        ConfigError: a key that is not in the space, or a dict given where the space has a constant.
    """
    fixed: dict[KeyPath, Any] = {}
    _collect(point, space, (), where, fixed)
    return fixed


def _collect(point: dict[Any, Any], space: dict[str, Any], path: KeyPath, where: str,
             fixed: dict[KeyPath, Any]) -> None:
    for key, value in point.items():
        name = f"{where}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"
        if key not in space:
            raise ConfigError(f"{name}: not a key of the space; expected one of {sorted(map(str, space))}")
        sub = space[key]
        option = picked_option(sub, value) if isinstance(sub, (Choice, Grid)) else None
        if option is not None:
            fixed[(*path, key)] = option
            _collect(value, option, (*path, key), name, fixed)
        elif isinstance(sub, dict) and not isinstance(sub, Domain) and isinstance(value, dict):
            _collect(value, sub, (*path, key), name, fixed)
        else:
            fixed[(*path, key)] = value


def picked_option(domain: Choice | Grid, value: Any) -> dict[str, Any] | None:
    """The option (a dict) of a choice or grid that a dict given for it picks; ``None`` if it picks none."""
    if not isinstance(value, dict):
        return None
    from tunesmith.searchers._unit_cube import options  # here: it imports NumPy, which a plain run never needs

    dicts = [item for item in options(domain) if isinstance(item, dict) and not isinstance(item, Domain)]
    for loose in (False, True):  # one whose domains hold the values first; else one they lie outside of
        for option in dicts:
            if fits_partial(option, value, loose):
                return option
    return None


def fits_partial(spec: Any, value: Any, loose: bool = False) -> bool:
    """``fits`` (whether ``value`` could have been drawn from ``spec``), but a dict may give only some of a
    dict's keys (a partial point), in nested options too.

    Args:
        spec: a domain, a nested dict of the space, a constant.
        value: a (partial) value.
        loose: a value given for a numeric domain need not lie in it (constants and option choices still
            must agree).
    """
    if isinstance(spec, dict) and not isinstance(spec, Domain):
        return (isinstance(value, dict) and set(value) <= set(spec)
                and all(fits_partial(spec[k], value[k], loose) for k in value))
    if isinstance(spec, (Choice, Grid)):
        items = spec.options if isinstance(spec, Choice) else spec.values
        return any(fits_partial(item, value, loose) for item in items)
    from tunesmith.searchers._unit_cube import fits  # here: it imports NumPy, which a plain run never needs

    return (loose and isinstance(spec, Domain)) or fits(spec, value)


class GridSlots:
    """Which try of the grid each trial takes, for the searchers that cross ``grid`` keys (``Random``,
    ``QuasiRandom``), with ``points_to_evaluate`` first.

    The grid's ``size`` points are each tried ``num_samples`` times: slot ``s`` is repeat ``s // size`` of grid
    point ``s % size``, and without points trial ``k`` takes slot ``k`` (repeat-major). Each point takes the
    first free slot (lowest repeat, then lowest grid point) of a grid point whose values agree with those the
    point gives for grid keys (any grid point when it gives none); the trials after the points take the slots
    left, in order. So a point is one of its grid point's ``num_samples`` tries, and every grid point is still
    tried ``num_samples`` times. A point that gives a grid key a value not in the grid takes no slot: it is one
    trial more (``total`` counts it), and it gets the values it leaves out as slot ``k`` (its own number).

    Args:
        space: a validated space.
        points: the checked points (``check_points``).
        num_samples: tries of each grid point (checked), or -1 for unlimited.

    Raises:
        ConfigError: more points than trials, or more points for some grid point(s) than ``num_samples``.
    """

    def __init__(self, space: dict[str, Any], points: list[dict[KeyPath, Any]], num_samples: int) -> None:
        grids = [(path, d.values) for path, d in domains(space) if isinstance(d, Grid)]
        self.size = math.prod(len(values) for _, values in grids)
        """How many grid points (1 without grid keys)."""
        repeats = None if num_samples == UNLIMITED else num_samples
        wanted = [_grid_indices(point, grids) for point in points]
        self.total = None if repeats is None else self.size * repeats + sum(w is None for w in wanted)
        """How many trials in all (``None``: unlimited)."""
        check_points_fit(points, self.total)
        self._points: list[int] = []  # the slot of each point
        taken: set[int] = set()
        for i, indices in enumerate(wanted):
            if indices is None:
                self._points.append(i)
                continue
            slot = self._first_free(indices, [len(values) for _, values in grids], taken, repeats)
            if slot is None:
                given = {FLAT_SEP.join(grids[j][0]): grids[j][1][idx] for j, idx in indices.items()}
                raise ConfigError(f"points_to_evaluate[{i}]: every grid point with "
                                  f"{json.dumps(mask(given), default=repr)} is already tried num_samples={repeats} "
                                  f"times by the points before it; raise num_samples or pass fewer points for it")
            taken.add(slot)
            self._points.append(slot)
        self._taken = sorted(taken)

    def slot(self, k: int) -> int:
        """The slot of trial ``k`` (``k`` >= 0, below ``total``)."""
        if k < len(self._points):
            return self._points[k]
        slot = k - len(self._points)  # the slot-th of the slots no point took
        for taken in self._taken:
            if taken > slot:
                break
            slot += 1
        return slot

    def _first_free(self, indices: dict[int, int], sizes: list[int], taken: set[int], repeats: int | None
                    ) -> int | None:
        # Grid points agreeing with ``indices`` in increasing order, lazily (a grid may have 10^9 points): at most
        # one step per slot taken before a free one is found.
        digits = [(indices[j],) if j in indices else range(n) for j, n in enumerate(sizes)]
        repeat = 0
        while repeats is None or repeat < repeats:
            for combination in itertools.product(*digits):
                point = 0
                for digit, n in zip(combination, sizes, strict=True):
                    point = point * n + digit
                if repeat * self.size + point not in taken:
                    return repeat * self.size + point
            repeat += 1
        return None


def _grid_indices(point: dict[KeyPath, Any], grids: list[tuple[KeyPath, list[Any]]]) -> dict[int, int] | None:
    """For each grid key (by its position in ``grids``) the point gives, the index of its value; ``None`` when
    one is no value of its grid."""
    out = {}
    for j, (path, values) in enumerate(grids):
        if path in point:
            given = point[path]
            from tunesmith.searchers._unit_cube import fits  # here: it imports NumPy (a run with points only)

            idx = next((i for i, item in enumerate(values) if item is given or fits(item, given)), None)
            if idx is None:
                return None
            out[j] = idx
    return out
