"""The domains (``Uniform``, ``Choice``, ``SampleFrom``, ...), their constructors (``uniform(0, 1)``, ...),
the check of each one's own arguments (``Domain._problem``), and ``domains``: a space's leaf domains.

Constructors only store their arguments; ``validate_space`` (``_validate.py``) calls ``_problem`` so that a
whole space is checked in one place and the message names the key path.
"""

from __future__ import annotations

import math
import numbers
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from tunesmith._errors import ConfigError
from tunesmith._record import FrozenRecord
from tunesmith.space._plain import plain
from tunesmith.space._unit import (
    _int_offset,
    _lerp,
    _log_int,
    _log_lerp,
    _multipliers,
    _normal,
    _pick,
    _quantize,
    _unit,
)

KeyPath = tuple[str, ...]


# --------------------------------------------------------------------------------------------- domains


class Domain(FrozenRecord):
    """Base class of all domains. Domains are immutable, and equal arguments compare equal (``_record``)."""

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


class Uniform(Domain):
    """Floats uniformly distributed in [low, high]."""

    kind: ClassVar[str] = "uniform"
    low: float
    high: float
    _fields = ("low", "high")

    def __init__(self, low: float, high: float) -> None:
        self._set(low=low, high=high)

    def from_unit(self, u: float) -> float:
        return _lerp(self.low, self.high, _unit(u))

    def _problem(self) -> str | None:
        return _number_problem(self, ("low", "high")) or _order_problem(self)


class QUniform(Domain):
    """Floats uniformly distributed in [low, high], rounded to a multiple of ``q`` inside the bounds (a bound
    within float noise of a multiple counts as it: ``quniform(0.3, 1, 0.1)`` can give 0.3; ``quniform(1e-12, 1,
    0.1)`` gives 0.1 at the least, never 0 or 1e-12). Every searcher draws these same values."""

    kind: ClassVar[str] = "quniform"
    low: float
    high: float
    q: float
    _fields = ("low", "high", "q")

    def __init__(self, low: float, high: float, q: float) -> None:
        self._set(low=low, high=high, q=q)

    def from_unit(self, u: float) -> float:
        return _quantize(_lerp(self.low, self.high, _unit(u)), self.q, self.low, self.high)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "q")) or _order_problem(self)
                or _q_problem(self.q) or _multiple_problem(self.low, self.high, self.q))


class LogUniform(Domain):
    """Floats in [low, high] whose logarithm is uniformly distributed (``low > 0``)."""

    kind: ClassVar[str] = "loguniform"
    low: float
    high: float
    base: float
    _fields = ("low", "high", "base")

    def __init__(self, low: float, high: float, base: float = 10) -> None:
        self._set(low=low, high=high, base=base)

    def from_unit(self, u: float) -> float:
        return _log_lerp(self.low, self.high, self.base, _unit(u))

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "base")) or _positive_problem(self)
                or _order_problem(self) or _base_problem(self.base))


class QLogUniform(Domain):
    """Log-uniform floats in [low, high], rounded to a multiple of ``q`` inside the bounds."""

    kind: ClassVar[str] = "qloguniform"
    low: float
    high: float
    q: float
    base: float
    _fields = ("low", "high", "q", "base")

    def __init__(self, low: float, high: float, q: float, base: float = 10) -> None:
        self._set(low=low, high=high, q=q, base=base)

    def from_unit(self, u: float) -> float:
        value = _log_lerp(self.low, self.high, self.base, _unit(u))
        return _quantize(value, self.q, self.low, self.high)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high", "q", "base")) or _positive_problem(self)
                or _order_problem(self) or _q_problem(self.q) or _base_problem(self.base)
                or _multiple_problem(self.low, self.high, self.q))


class Normal(Domain):
    """Normally distributed floats, up to about 8.21 ``sd`` from the mean (the inverse CDF of a ``u`` in [2**-53,
    1 - 2**-53]); refused where those reach past the largest float."""

    kind: ClassVar[str] = "normal"
    mean: float
    sd: float
    _fields = ("mean", "sd")

    def __init__(self, mean: float = 0.0, sd: float = 1.0) -> None:
        self._set(mean=mean, sd=sd)

    def from_unit(self, u: float) -> float:
        return _normal(self.mean, self.sd, u)

    def _problem(self) -> str | None:
        return _number_problem(self, ("mean", "sd")) or _sd_problem(self.sd) or _reach_problem(self)


class QNormal(Domain):
    """Normally distributed floats rounded to a multiple of ``q``."""

    kind: ClassVar[str] = "qnormal"
    mean: float
    sd: float
    q: float
    _fields = ("mean", "sd", "q")

    def __init__(self, mean: float, sd: float, q: float) -> None:
        self._set(mean=mean, sd=sd, q=q)

    def from_unit(self, u: float) -> float:
        return _quantize(_normal(self.mean, self.sd, u), self.q)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("mean", "sd", "q")) or _sd_problem(self.sd) or _q_problem(self.q)
                or _reach_problem(self))


class RandInt(Domain):
    """Integers uniformly distributed in [low, high) (``high`` excluded, as in Ray Tune), at most 2**53 of them (a
    draw's ``u`` tells no more apart); each is drawn exactly, however large."""

    kind: ClassVar[str] = "randint"
    low: int
    high: int
    _fields = ("low", "high")

    def __init__(self, low: int, high: int) -> None:
        self._set(low=low, high=high)

    def from_unit(self, u: float) -> int:
        return int(self.low) + _int_offset(int(self.high) - int(self.low), u)

    def _problem(self) -> str | None:
        return _number_problem(self, ("low", "high"), integer=True) or _order_problem(self) or _share_problem(self)


class LogRandInt(Domain):
    """Integers in [low, high) (``high`` excluded) whose logarithm is about uniformly distributed; refused where
    the largest one's share of [0, 1] is below 2**-53, the finest a draw's ``u`` resolves. Drawn exactly, however
    large (the base does not change the distribution)."""

    kind: ClassVar[str] = "lograndint"
    low: int
    high: int
    base: float
    _fields = ("low", "high", "base")

    def __init__(self, low: int, high: int, base: float = 10) -> None:
        self._set(low=low, high=high, base=base)

    def from_unit(self, u: float) -> int:
        return _log_int(int(self.low), int(self.high), self.base, u)

    def _problem(self) -> str | None:
        return (_number_problem(self, ("low", "high"), integer=True) or _number_problem(self, ("base",))
                or _positive_problem(self) or _order_problem(self) or _base_problem(self.base)
                or _share_problem(self))


class Choice(Domain):
    """One of ``options``, each equally likely. An option may be a dict of domains (a conditional
    space: only the chosen option's domains are sampled) or a domain itself."""

    kind: ClassVar[str] = "choice"
    options: list[Any]
    _fields = ("options",)

    def __init__(self, options: list[Any]) -> None:
        self._set(options=_plain_items(options))

    def from_unit(self, u: float) -> Any:
        return _pick(self.options, u)

    def _problem(self) -> str | None:
        return _sequence_problem("choice", "options", self.options)


class Grid(Domain):
    """Every one of ``values``, crossed with every other grid in the space (grid search).

    Searchers fix grid keys through ``grid_points``; ``resolve`` picks uniformly among ``values`` for
    a grid key that is not fixed.
    """

    kind: ClassVar[str] = "grid"
    values: list[Any]
    _fields = ("values",)

    def __init__(self, values: list[Any]) -> None:
        self._set(values=_plain_items(values))

    def from_unit(self, u: float) -> Any:
        return _pick(self.values, u)

    def _problem(self) -> str | None:
        return _sequence_problem("grid", "values", self.values)


class SampleFrom(Domain):
    """A value computed by ``fn(config)`` from the rest of the config, after every other key.

    A space read back from JSON holds only ``fn_repr``: the function itself is not stored, so such a
    domain cannot be sampled until the user passes the space again.
    """

    kind: ClassVar[str] = "sample_from"
    fn: Callable[[dict[str, Any]], Any] | None
    fn_repr: str | None
    _fields = ("fn", "fn_repr")

    def __init__(self, fn: Callable[[dict[str, Any]], Any] | None, fn_repr: str | None = None) -> None:
        self._set(fn=fn, fn_repr=fn_repr)

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
            from tunesmith._secrets import mask_text, secret_strings

            # its message may quote a secret of the config being made (a trial never stored: nothing else holds it)
            said = mask_text(str(exc), secret_strings(config)) if isinstance(config, dict) else str(exc)
            raise ConfigError(f"{where}: sample_from function {self.description} raised "
                              f"{type(exc).__name__}: {said}") from exc

    def _problem(self) -> str | None:
        if self.fn is None and self.fn_repr is not None:
            return (f"sample_from function {self.fn_repr} is not stored (the space was read back from "
                    "JSON); pass the space with its functions again")
        if not callable(self.fn):
            return f"sample_from expected a callable fn(config); got {self.fn!r} ({type(self.fn).__name__})"
        return None


# ---------------------------------------------------------------------------------------- constructors


def uniform(low: float, high: float) -> Uniform:
    """Floats uniformly distributed in [low, high]."""
    return Uniform(low, high)


def quniform(low: float, high: float, q: float) -> QUniform:
    """Uniform floats in [low, high] rounded to a multiple of ``q`` inside the bounds (``QUniform``)."""
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


# ------------------------------------------------------------------------------------ argument checks


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


def _fine_q_problem(most: float, q: float, span: str, which: str, remedy: str) -> str | None:
    """``most`` (the largest value's size) is past 2**53 times ``q``, where floats cannot tell neighbouring multiples
    of ``q`` apart."""
    if math.isfinite(most / q) and most / q <= 2.0**53:
        return None
    return (f"q={q!r} is too fine for {span}: {which} is more than 2**53 times q, where floats no longer hold every "
            f"multiple of q; give a larger q or {remedy}")


def _multiple_problem(low: float, high: float, q: float) -> str | None:
    fine = _fine_q_problem(max(abs(low), abs(high)), q, f"[{low!r}, {high!r}]", "a bound", "narrower bounds")
    if fine:
        return fine
    k_low, k_high = _multipliers(low, high, q)
    if k_low > k_high:
        return f"expected a multiple of q={q!r} in [low, high]; [{low!r}, {high!r}] holds none"
    return None


def _share_problem(domain: RandInt | LogRandInt) -> str | None:
    """A draw is a float ``u`` in [0, 1], which tells at most 2**53 values apart: an integer whose share of [0, 1] is
    smaller could never be drawn."""
    low, high = int(domain.low), int(domain.high)
    got = f"got low={domain.low!r}, high={domain.high!r}"
    if isinstance(domain, RandInt):
        if high - low <= 2**53:
            return None
        return (f"randint expected high - low <= 2**53, the most integers that a draw (a float u in [0, 1]) tells "
                f"apart; {got}, which hold more, so some could never be drawn")
    share = math.log1p(1 / (high - 1)) / math.log1p((high - low) / low)  # the largest integer's, the smallest
    if share >= 2.0**-53:
        return None
    return (f"lograndint expected (high - 1) * ln(high / low) below about 2**53 (9.007e15): its largest integer's "
            f"share of [0, 1] must be at least 2**-53, the finest that a draw (a float u in [0, 1]) resolves; {got}, "
            "which give it less, so it and others could never be drawn; raise low or lower high")


def _reach_problem(domain: Normal | QNormal) -> str | None:
    """A normal's draws reach ``_normal(..., 0)`` and ``_normal(..., 1)``, about 8.21 sd from the mean: refused
    where that (or, for ``qnormal``, the multiple of q it rounds to) is past the largest float."""
    z = _normal(0.0, 1.0, 1.0)
    most = max(abs(_normal(domain.mean, domain.sd, u)) for u in (0.0, 1.0))
    rounded = ""
    if isinstance(domain, QNormal) and math.isfinite(most):
        fine = _fine_q_problem(most, domain.q, f"qnormal's values, mean ± {z:.2f} * sd", "one",
                               "a smaller mean or sd")
        if fine:
            return fine
        most = max(abs(domain.from_unit(u)) for u in (0.0, 1.0))
        rounded = " (rounded to a multiple of q)"
    if math.isfinite(most):
        return None
    return (f"{domain.kind} expected abs(mean) + {z:.2f} * sd{rounded} to be at most {sys.float_info.max:.4g}, the "
            f"largest float: it draws up to {z:.2f} sd from the mean, and config values must be finite; got "
            f"mean={domain.mean!r}, sd={domain.sd!r}")


def _sequence_problem(kind: str, name: str, items: Any) -> str | None:
    if not isinstance(items, (list, tuple)):
        return f"{kind} expected {name} to be a list; got {items!r} ({type(items).__name__})"
    if not items:
        return f"{kind} expected a non-empty list of {name}; got an empty one"
    return None


def _plain_items(items: Any) -> Any:
    """A choice's options (a grid's values) as the Python values a config holds (``np.True_`` is ``True``, a
    ``(str, Enum)`` member its str value): every searcher compares them with stored configs. Tuples stay tuples
    (the space's JSON keeps them; ``resolve`` gives lists); anything but a list or tuple is left for
    ``_problem`` to refuse."""
    if not isinstance(items, (list, tuple)):
        return items
    try:
        return plain(items, keep_tuples=True)
    except RecursionError:  # nested too deep, or holding itself: validate_space says so, naming the key
        return items


def _items_name(domain: Choice | Grid) -> str:
    return "options" if isinstance(domain, Choice) else "values"


# ------------------------------------------------------------------------------------------ leaf walk


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
