"""Tests for QuasiRandom (scrambled Sobol / Halton) and the unit-cube view of a space."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest

pytest.importorskip("scipy")

from searcher_helpers import drain  # noqa: E402

from tunesmith._errors import ConfigError  # noqa: E402
from tunesmith._optional import MissingDependency  # noqa: E402
from tunesmith.searchers._base import Searcher  # noqa: E402
from tunesmith.searchers._unit_cube import UnitCube  # noqa: E402
from tunesmith.searchers.sobol import QuasiRandom  # noqa: E402
from tunesmith.space import (  # noqa: E402
    choice,
    grid,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    quniform,
    randint,
    sample_from,
    uniform,
)

SPACE: dict[str, Any] = {
    "lr": loguniform(1e-4, 1e-1),
    "q": quniform(0.1, 1.0, 0.1),
    "ql": qloguniform(1, 100, 5),
    "layers": randint(1, 4),
    "width": lograndint(8, 512),
    "noise": normal(0, 1),
    "act": choice(["relu", "tanh"]),
    "nested": {"wd": uniform(0, 1), "name": "fixed"},
}

CONDITIONAL: dict[str, Any] = {
    "x": uniform(0, 1),
    "optim": choice([{"type": "sgd", "momentum": uniform(0, 0.99)}, {"type": "adam", "beta": randint(1, 5)},
                     "none"]),
    "seed": grid([0, 1]),
    "steps": sample_from(lambda c: 10 * (c["seed"] + 1)),
}


def _searcher(space: dict[str, Any], num_samples: int, seed: int | None = 0, **kwargs: Any) -> QuasiRandom:
    searcher = QuasiRandom(seed=seed, **kwargs)
    searcher.setup(space, None, None, num_samples)
    return searcher


def test_is_a_searcher_and_stores_constructor_args() -> None:
    searcher = QuasiRandom(seed=4, method="halton")
    assert isinstance(searcher, Searcher)
    assert searcher.to_spec() == {"type": "QuasiRandom", "seed": 4, "method": "halton",
                                  "points_to_evaluate": None}


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_configs_stay_inside_the_space(method: str) -> None:
    configs = drain(_searcher(SPACE, 64, method=method))
    assert len(configs) == 64
    for c in configs:
        assert 1e-4 <= c["lr"] <= 1e-1
        assert c["q"] in {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
        assert c["ql"] in {5.0 * k for k in range(1, 21)}
        assert type(c["layers"]) is int and 1 <= c["layers"] < 4
        assert type(c["width"]) is int and 8 <= c["width"] < 512
        assert math.isfinite(c["noise"])
        assert c["act"] in ("relu", "tanh")
        assert 0 <= c["nested"]["wd"] <= 1 and c["nested"]["name"] == "fixed"


def test_points_are_evenly_spread() -> None:
    """64 scrambled Sobol points in 2-D: every one of 64 strips of each axis holds exactly one."""
    configs = drain(_searcher({"a": uniform(0, 1), "b": uniform(0, 1)}, 64))
    for key in ("a", "b"):
        assert sorted(math.floor(c[key] * 64) for c in configs) == list(range(64))


def test_a_negative_seed_is_another_seed() -> None:
    # (same seed / other seed / unseeded: tests/conformance/test_searcher_conformance.py)
    assert drain(_searcher(SPACE, 8, seed=-3)) != drain(_searcher(SPACE, 8, seed=3))


def test_grid_is_crossed_and_each_grid_point_gets_a_balanced_prefix() -> None:
    space = {"g": grid(["a", "b", "c"]), "x": uniform(0, 1)}
    configs = drain(_searcher(space, 8))
    assert len(configs) == 24
    assert [c["g"] for c in configs[:6]] == ["a", "b", "c", "a", "b", "c"]
    for g in "abc":
        xs = [c["x"] for c in configs if c["g"] == g]
        assert sorted(math.floor(x * 8) for x in xs) == list(range(8))  # 8 points, 8 strips


def test_conditional_space_takes_every_branch_into_the_cube() -> None:
    searcher = _searcher(CONDITIONAL, 32)
    assert searcher._cube is not None
    dims = [(d.slot[0], type(d.domain).__name__) for d in searcher._cube.dims]
    # Top-level leaves first (space order), then the branches' domains.
    assert dims == [(("x",), "Uniform"), (("optim",), "Choice"), (("optim", "momentum"), "Uniform"),
                    (("optim", "beta"), "RandInt")]
    configs = drain(searcher)
    assert len(configs) == 64
    kinds = set()
    for c in configs:
        optim = c["optim"]
        assert c["steps"] == 10 * (c["seed"] + 1)
        if optim == "none":
            kinds.add("none")
        elif optim["type"] == "sgd":
            kinds.add("sgd")
            assert set(optim) == {"type", "momentum"} and 0 <= optim["momentum"] <= 0.99
        else:
            kinds.add("adam")
            assert set(optim) == {"type", "beta"} and optim["beta"] in (1, 2, 3, 4)
    assert kinds == {"none", "sgd", "adam"}


def test_no_sampled_domain_at_all() -> None:
    configs = drain(_searcher({"g": grid([1, 2]), "c": 3}, 2))
    assert configs == [{"g": 1, "c": 3}, {"g": 2, "c": 3}, {"g": 1, "c": 3}, {"g": 2, "c": 3}]


def test_unlimited() -> None:
    searcher = _searcher({"x": uniform(0, 1)}, -1)
    assert all(isinstance(searcher.suggest(i), dict) for i in range(300))


def test_points_to_evaluate_come_first() -> None:
    points = [{"x": 0.5, "optim": {"type": "sgd", "momentum": 0.9}}, {"optim": "none"}]
    searcher = _searcher(CONDITIONAL, 3, points_to_evaluate=points)
    plain = drain(_searcher(CONDITIONAL, 3))
    configs = drain(searcher)
    assert configs[0]["x"] == 0.5 and configs[0]["optim"] == {"type": "sgd", "momentum": 0.9}
    assert configs[0]["seed"] == 0  # the grid point of its slot
    assert configs[1]["optim"] == "none" and configs[1]["x"] == plain[1]["x"]  # the rest from the cube
    assert configs[2:] == plain[2:]


def test_unit_cube_encode_inverts_decode() -> None:
    cube = UnitCube(SPACE | {"o": choice([{"m": uniform(0, 1)}, [1, 2], 3])}, cross_grids=False)
    searcher = _searcher(SPACE | {"o": choice([{"m": uniform(0, 1)}, [1, 2], 3])}, 30)
    for config in drain(searcher):
        fixed, active = cube.fixed(cube.encode(config))
        again = cube.config(fixed)
        assert again.keys() == config.keys()
        for key in ("q", "ql", "layers", "width", "act", "o"):
            assert again[key] == config[key]
        assert again["lr"] == pytest.approx(config["lr"])
        encoded = cube.encode(config)
        assert list(~(encoded != encoded)) == list(active)  # NaN exactly where a branch was not taken


def test_bad_space_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r'^space\["a"\]\["b"\]: .*low < high'):
        QuasiRandom(seed=0).setup({"a": {"b": uniform(1, 0)}}, None, None, 2)


def test_missing_scipy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.stats.qmc", None)
    with pytest.raises(MissingDependency, match=r"^QuasiRandom: .*pip install 'tunesmith\[optuna\]'"):
        QuasiRandom(seed=0).setup({"x": uniform(0, 1)}, None, None, 2)


def test_grid_values_holding_domains_and_nested_grid_keys_are_crossed_in_order() -> None:
    """Grid points are taken by index (a grid value may hold domains, sampled from the cube as a choice option's)."""
    space = {"g": grid([{"m": uniform(0, 1)}, "plain"]), "n": {"h": grid([1, 2])}, "x": uniform(0, 1)}
    configs = drain(_searcher(space, 2))
    assert [(c["g"] if c["g"] == "plain" else "m", c["n"]["h"]) for c in configs] == \
        [("m", 1), ("m", 2), ("plain", 1), ("plain", 2)] * 2
    assert [c["x"] for c in configs] == [configs[0]["x"]] * 4 + [configs[4]["x"]] * 4  # one cube point per row
    assert configs[0]["g"] == configs[1]["g"] != configs[4]["g"] and 0 <= configs[4]["g"]["m"] <= 1
