"""``points_to_evaluate``: configs a searcher suggests first, before it samples or models anything.

Every built-in searcher takes ``points_to_evaluate=[{...}, ...]``. A point is a (possibly partial)
config: the keys it gives are used as given, the rest are sampled from the space as usual. A point
follows the space's nesting (``{"optim": {"lr": 0.1}}``); a value given for a ``choice`` key fixes the
whole choice (give the chosen option, e.g. a whole dict for a conditional choice). Values are not
checked against their domains, so a point may lie outside the space on purpose (a known baseline).

Points count towards the experiment's trials: with ``num_samples=8`` and 3 points, 5 more configs
are sampled.
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._secrets import mask
from tunesmith.space import Domain, KeyPath

__all__ = ["check_points", "check_points_fit", "merge_fixed", "point_paths"]


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
        if isinstance(sub, dict) and not isinstance(sub, Domain) and isinstance(value, dict):
            _collect(value, sub, (*path, key), name, fixed)
        else:
            fixed[(*path, key)] = value


def merge_fixed(base: dict[KeyPath, Any], given: dict[KeyPath, Any]) -> dict[KeyPath, Any]:
    """``base`` updated with ``given``, dropping ``base``'s entries below a path that ``given`` sets
    (a point's whole value for a choice key must not be overwritten by sampled values inside it).

    Args:
        base: fixed values, e.g. decoded from a Sobol point.
        given: a point's fixed values (from ``check_points``).
    """
    out = {path: value for path, value in base.items()
           if not any(len(path) > len(g) and path[:len(g)] == g for g in given)}
    out.update(given)
    return out
