"""quniform / qloguniform: every searcher gives multiples of q inside [low, high], the same ones."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.searchers._base import Searcher
from tunesmith.space import qloguniform, quniform, validate_space

pytest.importorskip("scipy")
pytest.importorskip("optuna")

SEARCHERS: dict[str, Callable[[], Searcher]] = {
    "Random": lambda: ts.Random(seed=0),
    "QuasiRandom": lambda: ts.QuasiRandom(seed=0),
    "BOHB": lambda: ts.BOHB(seed=0),
    "OptunaSearch": lambda: ts.OptunaSearch("random", seed=0),
}


def _values(make: Callable[[], Searcher], domain: Any, n: int = 40) -> set[float]:
    searcher = make()
    searcher.setup({"x": domain}, "loss", "min", n)
    out = set()
    for trial_id in range(n):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        out.add(config["x"])  # nothing observed: the model-based searchers draw over the whole range
    return out


@pytest.mark.parametrize("name", list(SEARCHERS))
@pytest.mark.parametrize("domain, expected", [
    # a low far smaller than q, but above 0: 0 is below it, 0.1 the smallest multiple inside
    (quniform(1e-12, 0.2, 0.1), {0.1, 0.2}),
    (qloguniform(1e-12, 0.1, 0.1), {0.1}),  # the one multiple inside
    (quniform(-0.2, -1e-12, 0.1), {-0.2, -0.1}),  # the same below 0: 0 is above high
    (quniform(0.1 + 1e-12, 0.3, 0.1), {0.2, 0.3}),  # just above a multiple: that multiple is outside
    # float noise in the bounds is still absorbed: 0.3 / 0.1 == 2.9999999999999996, 0.7 / 0.1 == 6.999999999999999
    (quniform(0.3, 0.4, 0.1), {0.3, 0.4}),
    (quniform(0.6, 0.7, 0.1), {0.6, 0.7}),
    (quniform(1.1, 1.2, 0.1), {1.1, 1.2}),  # 1.1 / 0.1 == 11.000000000000002
], ids=["tiny-low", "qlog-tiny-low", "tiny-high", "low-above-multiple", "noise-0.3", "noise-0.7", "noise-1.1"])
def test_every_searcher_draws_the_multiples_of_q_inside_the_bounds(name: str, domain: Any,
                                                                   expected: set[float]) -> None:
    values = _values(SEARCHERS[name], domain)
    assert values == expected
    assert all(domain.low <= v <= domain.high for v in values)
    assert all(Decimal(repr(v)) % Decimal(repr(domain.q)) == 0 for v in values)


@pytest.mark.parametrize("domain", [quniform(1e-12, 0.05, 0.1), quniform(0.1 + 1e-12, 0.15, 0.1),
                                    quniform(-0.05, -1e-12, 0.1)])
def test_bounds_that_hold_no_multiple_of_q_are_refused(domain: Any) -> None:
    with pytest.raises(ConfigError, match=r'space\["x"\]: expected a multiple of q'):
        validate_space({"x": domain})


@pytest.mark.parametrize("domain", [quniform(0, 1e300, 1e-10), quniform(-1e300, 1e300, 1e-300),
                                    quniform(0, 2.0**60, 1)])
def test_a_q_too_fine_for_its_bounds_is_refused_naming_it(domain: Any) -> None:
    # (0, 1e300, 1e-10) was an OverflowError at the first suggestion; past 2**53 multiples, floats cannot tell
    # neighbouring multiples apart (k * q rounds to a value that is not one)
    with pytest.raises(ConfigError, match=r'space\["x"\]: q=.* is too fine for \[.*\]'):
        validate_space({"x": domain})
