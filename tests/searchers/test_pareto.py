"""The Pareto front shared by ResultSet.pareto_front and the report's plot."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith.searchers._pareto import dominates, pareto_front


def brute(points: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    signs = [1.0 if m == "min" else -1.0 for m in modes]
    signed = {i: tuple(s * v for s, v in zip(signs, p)) for i, p in enumerate(points)
              if not any(math.isnan(v) for v in p)}
    return sorted(i for i, p in signed.items()
                  if not any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                             for q in signed.values()))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_matches_the_definition(data: st.DataObject) -> None:
    dims = data.draw(st.integers(1, 4))
    value = st.one_of(st.integers(-4, 4).map(float), st.sampled_from([math.inf, -math.inf, math.nan]))
    points = data.draw(st.lists(st.tuples(*[value] * dims), max_size=25))
    modes = data.draw(st.lists(st.sampled_from(["min", "max"]), min_size=dims, max_size=dims))
    assert pareto_front(points, modes) == brute(points, modes)


def test_a_hand_made_front() -> None:
    points = [(1, 9), (2, 5), (3, 5), (4, 1), (2, 5), (math.nan, 0), (0, math.inf)]
    assert pareto_front(points, ["min", "min"]) == [0, 1, 3, 4, 6]  # duplicates kept, NaN left out
    assert pareto_front(points, ["max", "max"]) == [0, 2, 3, 6]  # (2, 5) is beaten by (3, 5)
    assert pareto_front([], ["min"]) == []
    assert dominates((1, 2), (1, 3)) and not dominates((1, 3), (1, 3)) and not dominates((0, 4), (1, 3))


@pytest.mark.parametrize(("points", "modes", "match"), [
    ([(1, 2)], [], "modes: expected a non-empty list"),
    ([(1, 2)], "min", "modes: expected a non-empty list"),
    ([(1, 2)], ["min", "up"], "modes: expected a non-empty list"),
    ([(1, 2), (1,)], ["min", "min"], r"points\[1\]: expected 2 objective values"),
])
def test_bad_input(points: list[tuple[float, ...]], modes: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        pareto_front(points, modes)
