"""Search-space domains: what a searcher may try for each key of a (nested) config dict.

A space is a dict whose values are domains (``uniform(0, 1)``, ``choice([...])``, ...), nested dicts of
the same, or constants that pass through unchanged. Constructors only store their arguments;
``validate_space`` checks a whole space in one place and names the offending key path.

Every sampled domain maps a number ``u`` in [0, 1) to a value (``from_unit``), so random search
(``from_unit(rng.random())``) and quasi-random search (Sobol points) share one mapping. Each sampled
domain consumes exactly one ``rng.random()`` in order of appearance, so the same seed gives the same
configs.
"""

from __future__ import annotations

import json
import math
import numbers
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from statistics import NormalDist
from typing import Any, ClassVar, overload

from tunesmith import _flat
from tunesmith._errors import ConfigError

__all__ = [
    "Choice",
    "Domain",
    "Grid",
    "GridPoints",
    "KeyPath",
    "LogRandInt",
    "LogUniform",
    "Normal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "RandInt",
    "SampleFrom",
    "Uniform",
    "check_storable",
    "choice",
    "domains",
    "flatten",
    "grid",
    "grid_points",
    "lograndint",
    "loguniform",
    "normal",
    "plain",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "resolve",
    "sample_from",
    "space_from_json",
    "space_to_json",
    "unflatten",
    "uniform",
    "validate_space",
]

KeyPath = tuple[str, ...]

# The JSON key that marks an encoded domain (or an escaped constant dict / tuple).
_TAG = "__domain__"
_ESCAPED_DICT = "__dict__"
_TUPLE = "__tuple__"

# Joins nested config keys in flat views (results, ``show``, ``dataframe()``, the report): ``optim/lr``.
FLAT_SEP = "/"

# Keeps the normal's inverse CDF finite at u == 0 and u == 1.
_TINY = 2.0**-53


# --------------------------------------------------------------------------------------------- domains


class Domain:
    """Base class of all domains. Subclasses are frozen dataclasses, so equal arguments compare equal."""

    kind: ClassVar[str] = ""

    def from_unit(self, u: float) -> Any:
        """Map ``u`` in [0, 1] to a value of this domain.

        Args:
            u: a number in [0, 1], e.g. ``rng.random()`` or one coordinate of a Sobol point.

        Returns:
            A Python ``int`` for integer domains, a Python ``float`` for real ones, an option for
            ``choice`` / ``grid`` (unresolved: ``resolve`` samples domains nested in it).
        """
        raise NotImplementedError(f"{type(self).__name__} has no unit mapping")

    def sample(self, rng: random.Random) -> Any:
        """One random value: ``from_unit(rng.random())``."""
        return self.from_unit(rng.random())

    def _problem(self) -> str | None:
        """What is wrong with the arguments (the message after the key path), or None."""
        return None

    def _to_json(self, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {_TAG: self.kind}
        for f in fields(self):  # type: ignore[arg-type]  # every concrete Domain is a dataclass
            out[f.name] = _encode(getattr(self, f.name), f"{where}.{f.name}")
        return out


@dataclass(frozen=True)
class Uniform(Domain):
    """Floats uniformly distributed in [low, high]."""

    kind: ClassVar[str] = "uniform"
    low: float
    high: float

    def from_unit(self, u: float) -> float:
        return _lerp(self.low, self.high, _unit(u))

    def _problem(self) -> str | None:
        return _number_problem(self, ("low", "high")) or _order_problem(self)


@dataclass(frozen=True)
class QUniform(Domain):
    """Floats uniformly distributed in [low, high], rounded to a multiple of ``q`` inside the bounds."""

    kind: ClassVar[str] = "quniform"
    low: float
    high: float
    q: float

    def from_unit(self, u: float) -> float:
        return _quantize(_lerp(self.low, self.high, _unit(u)), self.q, self.low, self.high)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "q")) or _order_problem(self)
                or _q_problem(self.q) or _multiple_problem(self.low, self.high, self.q))


@dataclass(frozen=True)
class LogUniform(Domain):
    """Floats in [low, high] whose logarithm is uniformly distributed (``low > 0``)."""

    kind: ClassVar[str] = "loguniform"
    low: float
    high: float
    base: float = 10

    def from_unit(self, u: float) -> float:
        return _log_lerp(self.low, self.high, self.base, _unit(u))

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "base")) or _positive_problem(self)
                or _order_problem(self) or _base_problem(self.base))


@dataclass(frozen=True)
class QLogUniform(Domain):
    """Log-uniform floats in [low, high], rounded to a multiple of ``q`` inside the bounds."""

    kind: ClassVar[str] = "qloguniform"
    low: float
    high: float
    q: float
    base: float = 10

    def from_unit(self, u: float) -> float:
        value = _log_lerp(self.low, self.high, self.base, _unit(u))
        return _quantize(value, self.q, self.low, self.high)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "q", "base")) or _positive_problem(self)
                or _order_problem(self) or _q_problem(self.q) or _base_problem(self.base)
                or _multiple_problem(self.low, self.high, self.q))


@dataclass(frozen=True)
class Normal(Domain):
    """Normally distributed floats (unbounded)."""

    kind: ClassVar[str] = "normal"
    mean: float = 0.0
    sd: float = 1.0

    def from_unit(self, u: float) -> float:
        return _normal(self.mean, self.sd, u)

    def _problem(self) -> str | None:
        return _number_problem(self, ("mean", "sd")) or _sd_problem(self.sd)


@dataclass(frozen=True)
class QNormal(Domain):
    """Normally distributed floats rounded to a multiple of ``q``."""

    kind: ClassVar[str] = "qnormal"
    mean: float
    sd: float
    q: float

    def from_unit(self, u: float) -> float:
        return _quantize(_normal(self.mean, self.sd, u), self.q)

    def _problem(self) -> str | None:
        return _number_problem(self, ("mean", "sd", "q")) or _sd_problem(self.sd) or _q_problem(self.q)


@dataclass(frozen=True)
class RandInt(Domain):
    """Integers uniformly distributed in [low, high) (``high`` excluded, as in Ray Tune)."""

    kind: ClassVar[str] = "randint"
    low: int
    high: int

    def from_unit(self, u: float) -> int:
        low, high = int(self.low), int(self.high)
        return min(low + math.floor(_unit(u) * (high - low)), high - 1)

    def _problem(self) -> str | None:
        return _number_problem(self, ("low", "high"), integer=True) or _order_problem(self)


@dataclass(frozen=True)
class LogRandInt(Domain):
    """Integers in [low, high) (``high`` excluded) whose logarithm is about uniformly distributed."""

    kind: ClassVar[str] = "lograndint"
    low: int
    high: int
    base: float = 10

    def from_unit(self, u: float) -> int:
        low, high = int(self.low), int(self.high)
        value = math.floor(_log_lerp(low, high, self.base, _unit(u)))
        return min(max(value, low), high - 1)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high"), integer=True) or _number_problem(self, ("base",))
                or _positive_problem(self) or _order_problem(self) or _base_problem(self.base))


@dataclass(frozen=True)
class Choice(Domain):
    """One of ``options``, each equally likely. An option may be a dict of domains (a conditional
    space: only the chosen option's domains are sampled) or a domain itself."""

    kind: ClassVar[str] = "choice"
    options: list[Any]

    def from_unit(self, u: float) -> Any:
        return _pick(self.options, u)

    def _problem(self) -> str | None:
        return _sequence_problem("choice", "options", self.options)


@dataclass(frozen=True)
class Grid(Domain):
    """Every one of ``values``, crossed with every other grid in the space (grid search).

    Searchers fix grid keys through ``grid_points``; ``resolve`` picks uniformly among ``values`` for
    a grid key that is not fixed.
    """

    kind: ClassVar[str] = "grid"
    values: list[Any]

    def from_unit(self, u: float) -> Any:
        return _pick(self.values, u)

    def _problem(self) -> str | None:
        return _sequence_problem("grid", "values", self.values)


@dataclass(frozen=True, eq=False)
class SampleFrom(Domain):
    """A value computed by ``fn(config)`` from the rest of the config, after every other key.

    A space read back from JSON holds only ``fn_repr``: the function itself is not stored, so such a
    domain cannot be sampled until the user passes the space again.
    """

    kind: ClassVar[str] = "sample_from"
    fn: Callable[[dict[str, Any]], Any] | None
    fn_repr: str | None = None

    @property
    def description(self) -> str:
        """``repr(fn)``, or the stored one when read back from JSON; equality compares this."""
        return self.fn_repr if self.fn is None and self.fn_repr is not None else repr(self.fn)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleFrom):
            return NotImplemented
        return self.description == other.description

    def __hash__(self) -> int:
        return hash(self.description)

    def call(self, config: dict[str, Any], where: str) -> Any:
        """``fn(config)``; a ``ConfigError`` naming ``where`` if there is no function or it raises."""
        if self.fn is None:
            raise ConfigError(f"{where}: sample_from function {self.description} is not stored (the space "
                              "was read back from JSON); pass the space with its functions again")
        try:
            return self.fn(config)
        except Exception as exc:
            raise ConfigError(f"{where}: sample_from function {self.description} raised "
                              f"{type(exc).__name__}: {exc}") from exc

    def _problem(self) -> str | None:
        if self.fn is None and self.fn_repr is not None:
            return (f"sample_from function {self.fn_repr} is not stored (the space was read back from "
                    "JSON); pass the space with its functions again")
        if not callable(self.fn):
            return f"sample_from expected a callable fn(config); got {self.fn!r} ({type(self.fn).__name__})"
        return None

    def _to_json(self, where: str) -> dict[str, Any]:
        return {_TAG: self.kind, "repr": self.description}


# ---------------------------------------------------------------------------------------- constructors


def uniform(low: float, high: float) -> Uniform:
    """Floats uniformly distributed in [low, high]."""
    return Uniform(low, high)


def quniform(low: float, high: float, q: float) -> QUniform:
    """Uniform floats in [low, high] rounded to a multiple of ``q`` (kept inside the bounds)."""
    return QUniform(low, high, q)


def loguniform(low: float, high: float, base: float = 10) -> LogUniform:
    """Floats in [low, high] (``0 < low``) uniformly distributed in log space."""
    return LogUniform(low, high, base)


def qloguniform(low: float, high: float, q: float, base: float = 10) -> QLogUniform:
    """Log-uniform floats in [low, high] rounded to a multiple of ``q`` (kept inside the bounds)."""
    return QLogUniform(low, high, q, base)


def normal(mean: float = 0.0, sd: float = 1.0) -> Normal:
    """Normally distributed floats."""
    return Normal(mean, sd)


def qnormal(mean: float, sd: float, q: float) -> QNormal:
    """Normally distributed floats rounded to a multiple of ``q``."""
    return QNormal(mean, sd, q)


def randint(low: int, high: int) -> RandInt:
    """Integers uniformly distributed in [low, high); ``high`` is excluded."""
    return RandInt(low, high)


def lograndint(low: int, high: int, base: float = 10) -> LogRandInt:
    """Integers in [low, high) (``1 <= low``), log-distributed; ``high`` is excluded."""
    return LogRandInt(low, high, base)


def choice(options: list[Any]) -> Choice:
    """One of ``options`` (a non-empty list). Dict options make a conditional space: the chosen dict's
    domains are sampled, the others never are."""
    return Choice(options)


def grid(values: list[Any]) -> Grid:
    """Grid search over ``values`` (a non-empty list), crossed with every other grid in the space."""
    return Grid(values)


def sample_from(fn: Callable[[dict[str, Any]], Any]) -> SampleFrom:
    """A value ``fn(config)`` computed after all other keys, from the config resolved so far."""
    return SampleFrom(fn)


_CONSTRUCTORS = (uniform, quniform, loguniform, qloguniform, normal, qnormal, randint, lograndint,
                 choice, grid, sample_from)
_KINDS: dict[str, type[Domain]] = {cls.kind: cls for cls in (
    Uniform, QUniform, LogUniform, QLogUniform, Normal, QNormal, RandInt, LogRandInt, Choice, Grid)}

_ALLOWED = ("a domain (uniform(...), loguniform(...), randint(...), choice([...]), grid([...]), "
            "sample_from(fn), ...), a nested dict, or a constant (number, string, bool, None, list, "
            "tuple or other object)")


# ------------------------------------------------------------------------------------------ validation


def validate_space(space: dict[str, Any]) -> None:
    """Check a whole space before any trial starts.

    Args:
        space: a dict of parameter names to domains, nested dicts or constants.

    Raises:
        ConfigError: for the first problem found, naming its key path (``space["optim"]["lr"]``) and
            what was expected.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"space: expected a dict of parameter names to domains or constants; got "
                          f"{type(space).__name__}")
    _check_dict(space, "space", in_option=False)


def _check_dict(mapping: dict[Any, Any], where: str, in_option: bool) -> None:
    for key, value in mapping.items():
        _check_key(key, where)
        _check_value(value, _key(where, key), in_option)


def _check_key(key: Any, where: str) -> None:
    """A config key is a string without ``/``: results, ``show``, ``dataframe()`` and the report name a nested
    key by its path joined with ``/`` (``optim/lr``), so a ``/`` inside a key would read as two keys."""
    if not isinstance(key, str):
        raise ConfigError(f"{where}[{key!r}]: keys must be strings; got {type(key).__name__}")
    if FLAT_SEP in key:
        raise ConfigError(f"{_key(where, key)}: a key may not contain {FLAT_SEP!r} (flattened config keys join "
                          f"nested keys with it, e.g. 'optim{FLAT_SEP}lr'); nest a dict instead, or use another "
                          "character such as '.' or '_'")


def _check_value(value: Any, where: str, in_option: bool) -> None:
    if isinstance(value, Domain):
        problem = value._problem()
        if problem:
            raise ConfigError(f"{where}: {problem}")
        if isinstance(value, Grid) and in_option:
            raise ConfigError(f"{where}: grid([...]) is not allowed inside a choice or grid option; "
                              "expected it at a top-level or nested dict key (use choice([...]) here)")
        if isinstance(value, (Choice, Grid)):
            items = value.options if isinstance(value, Choice) else value.values
            for i, item in enumerate(items):
                _check_value(item, f"{where}.{_items_name(value)}[{i}]", in_option=True)
    elif isinstance(value, dict):
        _check_dict(value, where, in_option)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_constant(item, f"{where}[{i}]")
    else:
        _check_constant(value, where)


def _check_constant(value: Any, where: str) -> None:
    """Constants inside lists are not sampled, so a domain there is a mistake, not a constant."""
    if isinstance(value, Domain):
        raise ConfigError(f"{where}: domains inside a list or tuple are not sampled; expected them as "
                          "dict values (e.g. {\"layer0\": ..., \"layer1\": ...})")
    if isinstance(value, (set, frozenset)):
        raise ConfigError(f"{where}: a set is not allowed (its order is not defined); expected {_ALLOWED}. "
                          "For one of several values use choice([...])")
    if (isinstance(value, type) and issubclass(value, Domain)) or any(value is c for c in _CONSTRUCTORS):
        name = getattr(value, "__name__", repr(value))
        raise ConfigError(f"{where}: got the domain type {name} itself, not a domain; expected {_ALLOWED}. "
                          "Call it with its arguments, e.g. uniform(0.0, 1.0)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_constant(item, _key(where, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_constant(item, f"{where}[{i}]")


def check_storable(config: dict[str, Any], where: str = "config") -> None:
    """Check that the store can hold ``config`` as it is: JSON (dicts with string keys, lists, tuples,
    None/bool/int/float/str), with keys that flatten (no ``/`` in a key of a nested dict).

    ``resolve`` makes numpy and torch numbers plain, so this fails only for values that no conversion could
    store (an object, a set, bytes...), typically returned by a ``sample_from`` function.

    Raises:
        ConfigError: naming the key path of the first value or key that cannot be stored.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a dict; got {type(config).__name__}")
    _check_storable(config, where, True)


def _check_storable(value: Any, where: str, flattened: bool) -> None:
    """``flattened``: ``value`` is reached through dicts only, so a dict's keys become flat names."""
    if type(value) in _PLAIN_TYPES:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if flattened:
                _check_key(key, where)
            elif not isinstance(key, str):
                raise ConfigError(f"{where}[{key!r}]: keys must be strings to be stored; got {type(key).__name__}")
            _check_storable(item, _key(where, key), flattened)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_storable(item, f"{where}[{i}]", False)
    elif not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: {type(value).__name__} {value!r:.80} cannot be stored (the store keeps "
                          "configs as JSON); expected a dict, a list, a tuple, or a None/bool/int/float/str value")


def _number_problem(domain: Domain, names: tuple[str, ...], integer: bool = False) -> str | None:
    for name in names:
        value = getattr(domain, name)
        wanted = numbers.Integral if integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            what = "an int" if integer else "a number"
            return f"{domain.kind} expected {name} to be {what}; got {value!r} ({type(value).__name__})"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            return f"{domain.kind} expected {name} to be a finite number; got {value!r}"
    return None


def _order_problem(domain: Any) -> str | None:
    if domain.low >= domain.high:
        return f"{domain.kind} expected low < high; got low={domain.low!r}, high={domain.high!r}"
    return None


def _positive_problem(domain: Any) -> str | None:
    if domain.low <= 0 or domain.high <= 0:
        return (f"{domain.kind} is on a log scale and expected positive bounds (low > 0, high > 0); got "
                f"low={domain.low!r}, high={domain.high!r}")
    return None


def _q_problem(q: float) -> str | None:
    return None if q > 0 else f"expected a positive q (q > 0); got q={q!r}"


def _sd_problem(sd: float) -> str | None:
    return None if sd > 0 else f"expected a positive sd (sd > 0); got sd={sd!r}"


def _base_problem(base: float) -> str | None:
    if base <= 0 or base == 1:
        return f"expected a log base > 0 and != 1; got base={base!r}"
    return None


def _multiple_problem(low: float, high: float, q: float) -> str | None:
    if _k_low(low, q) > _k_high(high, q):
        return f"expected a multiple of q={q!r} in [low, high]; [{low!r}, {high!r}] holds none"
    return None


def _sequence_problem(kind: str, name: str, items: Any) -> str | None:
    if not isinstance(items, (list, tuple)):
        return f"{kind} expected {name} to be a list; got {items!r} ({type(items).__name__})"
    if not items:
        return f"{kind} expected a non-empty list of {name}; got an empty one"
    return None


def _items_name(domain: Choice | Grid) -> str:
    return "options" if isinstance(domain, Choice) else "values"


def _key(where: str, key: Any) -> str:
    return f"{where}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"


def _where(path: KeyPath) -> str:
    where = "space"
    for key in path:
        where = _key(where, key)
    return where


# ------------------------------------------------------------------------------------------- mappings


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
    result = float(Decimal(k) * Decimal(repr(float(q))))
    if low is not None and high is not None:
        result = _clip(result, low, high)
    return result


def _pick(items: Any, u: float) -> Any:
    return items[min(math.floor(_unit(u) * len(items)), len(items) - 1)]


# ------------------------------------------------------------------------------------------ resolving


class _Pending:
    """Placeholder for a ``sample_from`` key until it is evaluated."""


_PENDING = _Pending()


def domains(space: dict[str, Any]) -> list[tuple[KeyPath, Domain]]:
    """Leaf domains of a space in order of appearance (not those inside choice or grid options).

    Args:
        space: a validated space.

    Returns:
        ``(key path, domain)`` pairs, e.g. ``(("optim", "lr"), LogUniform(...))``.
    """
    return list(_walk(space, ()))


def _walk(mapping: dict[str, Any], path: KeyPath) -> Iterator[tuple[KeyPath, Domain]]:
    for key, value in mapping.items():
        if isinstance(value, Domain):
            yield (*path, key), value
        elif isinstance(value, dict):
            yield from _walk(value, (*path, key))


class GridPoints(Sequence[dict[KeyPath, Any]]):
    """Every combination of a space's grid values, computed from its index when asked for: a grid of 3 keys
    of 1,000 values each is 10^9 points, which no list could hold.

    Point ``i`` is the cartesian product's ``i``-th in key order of appearance, first key slowest (as
    ``itertools.product``); each maps a key path to its value. A space without grid keys has one empty point.
    """

    def __init__(self, space: dict[str, Any]) -> None:
        grids = [(path, d) for path, d in domains(space) if isinstance(d, Grid)]
        self._paths = [path for path, _ in grids]
        self._values = [d.values for _, d in grids]
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
            point[path] = values[digit]
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


_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def plain(value: Any) -> Any:
    """``value`` as the store gives it back: numpy and torch scalars (``np.int64``, ``np.float32``, ``np.bool_``,
    0-d arrays, ``torch.tensor(1.0)``) and other numbers (``np.float64``, an ``IntEnum``) become Python
    ``int``/``float``/``bool``, arrays and tensors lists; dicts, lists and tuples are copied (so that a trial
    mutating its config cannot change the space) with their items made plain. Anything else is returned as it
    is: ``check_storable`` says whether the store can hold it.

    A trial so sees the same values on its first run as after a resume, which reads its config from the store.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is dict:
        return {k: plain(v) for k, v in value.items()}
    if kind is list:
        return [plain(v) for v in value]
    if kind is tuple:
        return tuple(plain(v) for v in value)
    return _plain_other(value)


def _plain_other(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)  # np.str_
    if isinstance(value, numbers.Integral):  # np.int64, IntEnum (bool's subclasses cannot exist)
        return int(value)
    if isinstance(value, numbers.Real):  # np.float32, np.float64
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):  # numpy arrays and scalars (np.bool_), torch tensors (torch.Size is a tuple)
        item, tolist = getattr(value, "item", None), getattr(value, "tolist", None)
        if shape == () and callable(item):
            scalar = item()
            if type(scalar) in _PLAIN_TYPES:
                return scalar
        elif callable(tolist):
            return plain(tolist())
    return value


def _view(config: dict[str, Any]) -> dict[str, Any]:
    return {k: _view(v) if isinstance(v, dict) else plain(v) for k, v in config.items() if v is not _PENDING}


# -------------------------------------------------------------------------------------------- flatten


def flatten(config: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """Nested dicts to one level: ``{"optim": {"lr": 0.1}}`` -> ``{"optim/lr": 0.1}``.

    An empty nested dict is kept as a value so that ``unflatten`` gives it back.

    Raises:
        ConfigError: a key is not a string or contains ``sep``.
    """
    return _flat.flatten(config, sep, strict=True)


def unflatten(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """The inverse of ``flatten``: ``{"optim/lr": 0.1}`` -> ``{"optim": {"lr": 0.1}}``.

    Raises:
        ConfigError: two keys disagree, e.g. ``"a"`` holds a value and ``"a/b"`` needs it to be a dict.
    """
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, last = name.split(sep)
        target = out
        for i, key in enumerate(parents):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"config key {name!r}: {sep.join(parents[:i + 1])!r} is a value, "
                                  "expected a dict")
        if last in target:
            raise ConfigError(f"config key {name!r}: given twice (as a value and as a dict)")
        target[last] = value
    return out


# ----------------------------------------------------------------------------------------------- JSON


def space_to_json(space: dict[str, Any]) -> dict[str, Any]:
    """Encode a space as JSON-compatible data (for the store's experiment spec).

    Domains become ``{"__domain__": "loguniform", "low": ..., "high": ..., "base": ...}``; constants stay
    as they are, except tuples (``{"__domain__": "__tuple__", "items": [...]}``) and constant dicts that
    hold a ``"__domain__"`` key (``{"__domain__": "__dict__", "value": {...}}``). ``sample_from`` keeps
    only ``repr(fn)``.

    Raises:
        ConfigError: naming the key path of a value that JSON cannot hold.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"space: expected a dict; got {type(space).__name__}")
    encoded: dict[str, Any] = _encode(space, "space")
    return encoded


def space_from_json(obj: dict[str, Any]) -> dict[str, Any]:
    """Decode what ``space_to_json`` wrote; the result compares equal to the original space.

    ``sample_from`` comes back without its function: sampling it raises ``ConfigError``.

    Raises:
        ConfigError: an unknown ``"__domain__"`` kind or missing/extra fields, naming the key path.
    """
    if not isinstance(obj, dict):
        raise ConfigError(f"space: expected a JSON object; got {type(obj).__name__}")
    decoded: dict[str, Any] = _decode(obj, "space")
    return decoded


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, Domain):
        return value._to_json(where)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}[{key!r}]: keys must be strings to store as JSON; got "
                                  f"{type(key).__name__}")
            out[key] = _encode(item, _key(where, key))
        return {_TAG: _ESCAPED_DICT, "value": out} if _TAG in value else out
    if isinstance(value, list):
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return {_TAG: _TUPLE, "items": [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    converted = plain(value)  # numpy arrays and scalars, torch tensors
    if converted is not value:
        return _encode(converted, where)
    raise ConfigError(f"{where}: {type(value).__name__} cannot be stored as JSON; expected a domain, a dict, "
                      "a list, a tuple, or a None/bool/int/float/str constant")


def _decode(obj: Any, where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(item, f"{where}[{i}]") for i, item in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if _TAG not in obj:
        return {key: _decode(item, _key(where, key)) for key, item in obj.items()}
    kind = obj[_TAG]
    body = {key: item for key, item in obj.items() if key != _TAG}
    try:
        if kind == _ESCAPED_DICT:
            return {key: _decode(item, _key(where, key)) for key, item in body.pop("value").items()}
        if kind == _TUPLE:
            return tuple(_decode(item, f"{where}[{i}]") for i, item in enumerate(body.pop("items")))
        if kind == SampleFrom.kind:
            return SampleFrom(None, fn_repr=str(body.pop("repr")))
        if kind not in _KINDS:
            raise ConfigError(f"{where}: unknown domain kind {kind!r}; expected one of "
                              f"{sorted([*_KINDS, SampleFrom.kind])}")
        return _KINDS[kind](**{key: _decode(item, f"{where}.{key}") for key, item in body.items()})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: malformed encoded {kind!r}: {obj!r}") from exc
