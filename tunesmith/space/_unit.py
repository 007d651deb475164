"""The unit mappings: how a domain turns a number ``u`` in [0, 1] into a value.

Random search (``from_unit(rng.random())``) and quasi-random search (Sobol points) share these, so the same
``u`` gives the same value whichever searcher drew it.
"""

from __future__ import annotations

import math
from typing import Any

# Keeps the normal's inverse CDF finite at u == 0 and u == 1.
_TINY = 2.0**-53


def _unit(u: float) -> float:
    if not 0.0 <= u <= 1.0:  # also rejects NaN
        raise ValueError(f"u must be in [0, 1]; got {u!r}")
    return float(u)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def _lerp(low: float, high: float, u: float) -> float:
    # (1 - u) * low + u * high never overflows for finite bounds, unlike low + u * (high - low).
    return _clip((1.0 - u) * float(low) + u * float(high), low, high)


def _log_lerp(low: float, high: float, base: float, u: float) -> float:
    log_low, log_high = math.log(low, base), math.log(high, base)
    return _clip(float(base) ** ((1.0 - u) * log_low + u * log_high), low, high)


def _int_offset(count: int, u: float) -> int:
    """``floor(u * count)`` in exact integer arithmetic (``u``'s float is a fraction ``n / d``), at most ``count - 1``:
    every one of ``count <= 2**53`` integers gets its share of [0, 1], however far from 0 they lie."""
    n, d = _unit(u).as_integer_ratio()
    return min(n * count // d, count - 1)


def _log_int(low: int, high: int, base: float, u: float) -> int:
    """The integer part of ``low * (high / low) ** u`` (log-uniform in [low, high)): in floats up to 2**32 (the values
    of earlier versions, ten times faster; their error there is below 1e-4 of an integer), past it in decimal with
    more digits than ``high`` has: floats' error grows with the values (at 3e15 neighbouring integers merge) and
    they hold integers only up to 2**53."""
    if high <= 2**32:
        return min(max(math.floor(_log_lerp(low, high, base, _unit(u))), low), high - 1)
    from decimal import Context, Decimal, localcontext  # here, as in _times: decimal weighs on every start

    with localcontext(Context(prec=high.bit_length() // 3 + 20)):  # a bit is less than a third of a digit
        value = Decimal(low) * (Decimal(_unit(u)) * (Decimal(high) / Decimal(low)).ln()).exp()
    return min(max(int(value), low), high - 1)


def _normal(mean: float, sd: float, u: float) -> float:
    p = min(max(_unit(u), _TINY), 1.0 - _TINY)
    from statistics import NormalDist  # here: its import (with decimal, fractions) would weigh on every start

    return float(NormalDist(float(mean), float(sd)).inv_cdf(p))


# How far ``bound / q`` may lie from a whole number and still count as that multiple of ``q``, relative to its size:
# float noise is relative (0.3 / 0.1 == 2.9999999999999996, 1.1 / 0.1 == 11.000000000000002, a few ulps), so
# a bound 1e-12 above 0 (or above 0.1) is not taken for 0 (or 0.1) when q is 0.1, as an absolute tolerance would.
_Q_NOISE = 1e-12


def _multipliers(low: float, high: float, q: float) -> tuple[int, int]:
    """``(k_low, k_high)``: the smallest and the largest ``k`` whose ``k * q`` lies in [low, high] (``k_low >
    k_high`` when none does). A bound within float noise of a multiple of ``q`` counts as that multiple.

    Every searcher takes a ``quniform``/``qloguniform``'s values from here: ``Random``, ``QuasiRandom`` and ``BOHB``
    through ``_quantize``, ``OptunaSearch`` for its distribution's bounds.
    """
    k_low, k_high = low / q, high / q
    return (math.ceil(k_low - abs(k_low) * _Q_NOISE), math.floor(k_high + abs(k_high) * _Q_NOISE))


def _times(k: int, q: float) -> float:
    """``k * q`` without float noise: Decimal arithmetic on q's shortest repr gives 0.3 rather than
    0.30000000000000004 for 3 * 0.1."""
    from decimal import Decimal

    return float(Decimal(k) * Decimal(repr(float(q))))


def _quantize(value: float, q: float, low: float | None = None, high: float | None = None) -> float:
    """``value`` rounded to the nearest multiple of ``q``; with bounds, to the nearest one inside [low, high]
    (``_multipliers``), then clipped to them (a bound within float noise of that multiple)."""
    k = round(value / q)
    if low is not None and high is not None:
        k_low, k_high = _multipliers(low, high, q)
        k = min(max(k, k_low), k_high)
    result = _times(k, q)
    if low is not None and high is not None:
        result = _clip(result, low, high)
    return result


def _pick(items: Any, u: float) -> Any:
    return items[min(math.floor(_unit(u) * len(items)), len(items) - 1)]
