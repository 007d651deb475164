"""``resolve``: a concrete config from a space (fixed grid values, sampled domains, chosen options resolved in
turn, ``sample_from`` keys last)."""

from __future__ import annotations

import random
from typing import Any

from tunesmith.space._domains import Choice, Domain, Grid, KeyPath, SampleFrom
from tunesmith.space._plain import plain
from tunesmith.space._validate import _where


class _Pending:
    """Placeholder for a ``sample_from`` key until it is evaluated."""


_PENDING = _Pending()


def resolve(space: dict[str, Any], rng: random.Random,
            fixed: dict[KeyPath, Any] | None = None) -> dict[str, Any]:
    """A concrete config from a space.

    Keys in ``fixed`` (typically one of ``grid_points``) take the given value; every other domain is
    sampled with ``from_unit(rng.random())`` in order of appearance; a chosen option (or fixed value)
    that holds domains is resolved in turn; ``sample_from`` keys are evaluated last, in order of
    appearance, each with a copy of the config resolved so far (pending ``sample_from`` keys left out).

    Args:
        space: a validated space.
        rng: the caller's random generator (searchers own theirs).
        fixed: values for key paths, e.g. ``{("seed",): 1}``.

    Returns:
        A new nested dict of plain values (numpy and torch numbers made Python numbers: see ``plain``);
        constant lists and dicts are copied, not shared.

    Raises:
        ConfigError: a ``sample_from`` function raised (chained), or was not stored (space read from JSON).
    """
    deferred: list[tuple[KeyPath, SampleFrom]] = []
    config = _resolve_dict(space, (), rng, fixed or {}, deferred)
    for path, domain in deferred:
        value = plain(domain.call(_view(config), _where(path)))
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return config


def _resolve_dict(mapping: dict[str, Any], path: KeyPath, rng: random.Random, fixed: dict[KeyPath, Any],
                  deferred: list[tuple[KeyPath, SampleFrom]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        sub = (*path, key)
        out[key] = _resolve_value(fixed.get(sub, value), sub, rng, fixed, deferred)
    return out


def _resolve_value(value: Any, path: KeyPath, rng: random.Random, fixed: dict[KeyPath, Any],
                   deferred: list[tuple[KeyPath, SampleFrom]]) -> Any:
    if isinstance(value, SampleFrom):
        deferred.append((path, value))
        return _PENDING
    if isinstance(value, (Choice, Grid)):
        return _resolve_value(value.sample(rng), path, rng, fixed, deferred)
    if isinstance(value, Domain):
        return value.sample(rng)
    if isinstance(value, dict):
        return _resolve_dict(value, path, rng, fixed, deferred)
    return plain(value)


def _view(config: dict[str, Any]) -> dict[str, Any]:
    return {k: _view(v) if isinstance(v, dict) else plain(v) for k, v in config.items() if v is not _PENDING}
