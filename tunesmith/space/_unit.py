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


def _normal(mean: float, sd: float, u: float) -> float:
    p = min(max(_unit(u), _TINY), 1.0 - _TINY)
    from statistics import NormalDist  # here: its import (with decimal, fractions) would weigh on every start

    return float(NormalDist(float(mean), float(sd)).inv_cdf(p))


def _k_low(low: float, q: float) -> int:
    # The tolerance absorbs float noise such as 0.3 / 0.1 == 2.9999999999999996.
    return math.ceil(low / q - 1e-9)


def _k_high(high: float, q: float) -> int:
    return math.floor(high / q + 1e-9)


def _quantize(value: float, q: float, low: float | None = None, high: float | None = None) -> float:
    k = round(value / q)
    if low is not None and high is not None:
        k = min(max(k, _k_low(low, q)), _k_high(high, q))
    # Decimal arithmetic on q's shortest repr gives 0.3 rather than 0.30000000000000004 for 3 * 0.1.
    from decimal import Decimal

    result = float(Decimal(k) * Decimal(repr(float(q))))
    if low is not None and high is not None:
        result = _clip(result, low, high)
    return result


def _pick(items: Any, u: float) -> Any:
    return items[min(math.floor(_unit(u) * len(items)), len(items) - 1)]
