"""Domains at the edges of float range: integer domains with bounds past 2**53 draw every integer exactly, and
normal domains whose draws would leave float range are refused before any trial starts."""

from __future__ import annotations

import math
import random
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith.space import Domain, lograndint, normal, qnormal, randint, validate_space

BIG = 2**53  # the first integer past which floats skip integers

# ------------------------------------------------------------------------------- integers past 2**53


def _draws(domain: Domain, n: int = 300, seed: int = 0) -> list[Any]:
    validate_space({"x": domain})
    rng = random.Random(seed)
    return [domain.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("domain", [
    lograndint(BIG, BIG + 3), lograndint(10**300, 10**300 + 5), lograndint(3 * 10**15, 3 * 10**15 + 7),
    randint(BIG, BIG + 3), randint(10**300, 10**300 + 5), randint(-(10**300) - 4, -(10**300)),
])
def test_integer_domains_past_2_53_draw_every_integer_as_an_int(domain: Any) -> None:
    values = _draws(domain)
    assert all(type(v) is int for v in values)
    assert set(values) == set(range(domain.low, domain.high))


@pytest.mark.parametrize("make", [randint, lograndint])
def test_the_unit_mapping_of_big_integers_is_exact(make: Any) -> None:
    """Sobol and Optuna paths go through from_unit: equal slices of [0, 1] give each integer in turn."""
    domain = make(BIG + 1, BIG + 6)
    assert [domain.from_unit(u) for u in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 2**-53, 1.0)] == [
        BIG + 1, BIG + 1, BIG + 2, BIG + 3, BIG + 4, BIG + 5, BIG + 5, BIG + 5]


def test_quasirandom_draws_every_big_integer() -> None:
    pytest.importorskip("scipy")
    from tunesmith.searchers.sobol import QuasiRandom

    searcher = QuasiRandom(seed=0)
    searcher.setup({"a": lograndint(BIG, BIG + 3), "b": randint(BIG, BIG + 3)}, None, None, 16)
    configs = [searcher.suggest(i) for i in range(16)]
    assert {c["a"] for c in configs} == {c["b"] for c in configs} == {BIG, BIG + 1, BIG + 2}  # type: ignore[index]


def test_randint_up_to_2_53_integers_reaches_both_ends() -> None:
    domain = randint(-BIG, 0)
    validate_space({"x": domain})
    assert domain.from_unit(0.0) == -BIG
    assert domain.from_unit(2**-53) == -BIG + 1
    assert domain.from_unit(1 - 2**-53) == -1
    assert randint(0, 3).from_unit(1 / 3) == 0  # 1/3 as a float is just below a third: exact, not rounded up


@pytest.mark.parametrize(("domain", "expected"), [
    (randint(0, BIG + 1), "randint expected high - low <= 2**53"),
    (randint(-(2**63), 2**63), f"got low={-(2**63)}, high={2**63}, which hold more"),
    (lograndint(1, 10**16), "lograndint expected (high - 1) * ln(high / low) below about 2**53"),
    (lograndint(10**300, 2 * 10**300), "share of [0, 1] must be at least 2**-53"),
])
def test_integer_domains_a_draw_cannot_cover_are_refused(domain: Domain, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_space({"n": domain})
    assert str(info.value).startswith('space["n"]: ')
    assert expected in str(info.value)


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 10**300), width=st.integers(1, 50), u=st.floats(0, 1))
def test_lograndint_gives_ints_in_the_half_open_range(low: int, width: int, u: float) -> None:
    domain = lograndint(low, low + width)
    value = domain.from_unit(u)
    assert type(value) is int and low <= value < low + width


# -------------------------------------------------------------------------------- finite normal draws

MAX = sys.float_info.max


@pytest.mark.parametrize(("domain", "expected"), [
    (normal(0, 1e308), "normal expected abs(mean) + 8.21 * sd to be at most 1.798e+308"),
    (normal(-1.7e308, 1e307), "got mean=-1.7e+308, sd=1e+307"),
    (qnormal(0, 1e308, 1.0), "qnormal expected abs(mean) + 8.21 * sd"),
    (qnormal(0, 2e307, 1e308), "(rounded to a multiple of q)"),
    (qnormal(0, 1e307, 0.01), "q=0.01 is too fine for qnormal's values, mean ± 8.21 * sd"),
])
def test_normal_domains_beyond_float_range_are_refused(domain: Domain, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_space({"noise": domain})
    message = str(info.value)
    assert message.startswith('space["noise"]: ')
    assert expected in message, message


@settings(max_examples=300, deadline=None)
@given(mean=st.floats(-MAX, MAX), sd=st.floats(1e-300, MAX), q=st.none() | st.floats(1e-300, MAX),
       u=st.floats(0, 1))
def test_a_normal_domain_that_validates_draws_finite_values(mean: float, sd: float, q: float | None,
                                                             u: float) -> None:
    domain = normal(mean, sd) if q is None else qnormal(mean, sd, q)
    try:
        validate_space({"x": domain})
    except ConfigError:
        return
    for v in (domain.from_unit(0.0), domain.from_unit(u), domain.from_unit(1.0)):
        assert type(v) is float and math.isfinite(v)


def test_the_widest_normal_accepted_still_gives_finite_edges() -> None:
    sd = MAX / 8.21
    validate_space({"x": normal(0, sd)})
    assert math.isfinite(normal(0, sd).from_unit(0.0)) and math.isfinite(normal(0, sd).from_unit(1.0))
    with pytest.raises(ConfigError):
        validate_space({"x": normal(0, MAX / 8.2)})
