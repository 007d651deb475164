"""Tests for the Random searcher (random search crossed with grid search)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from searcher_helpers import drain

from tunesmith._errors import ConfigError
from tunesmith.searchers._base import FINISHED, Searcher
from tunesmith.searchers.random import Random, total_trials
from tunesmith.space import choice, grid, loguniform, normal, randint, sample_from, uniform

SPACE = {
    "lr": loguniform(1e-4, 1e-1),
    "width": choice([32, 64]),
    "seed": grid([0, 1, 2]),
}


def _searcher(space: dict[str, Any], num_samples: int, seed: int | None = 0) -> Random:
    searcher = Random(seed=seed)
    searcher.setup(space, "loss", "min", num_samples)
    return searcher


def test_is_a_searcher_and_stores_constructor_args() -> None:
    searcher = Random(seed=3)
    assert isinstance(searcher, Searcher)
    assert searcher.seed == 3
    assert searcher.to_spec() == {"type": "Random", "seed": 3}


def test_grid_times_num_samples_repeat_major() -> None:
    configs = drain(_searcher(SPACE, num_samples=2))
    assert [c["seed"] for c in configs] == [0, 1, 2, 0, 1, 2]
    assert len({c["lr"] for c in configs}) == 6  # random keys sampled afresh for every trial
    assert all(1e-4 <= c["lr"] <= 1e-1 and c["width"] in (32, 64) for c in configs)


def test_finished_stays_finished() -> None:
    searcher = _searcher({"x": uniform(0, 1)}, num_samples=1)
    assert isinstance(searcher.suggest(0), dict)
    assert searcher.suggest(1) is FINISHED
    assert searcher.suggest(2) is FINISHED


def test_two_grids_are_crossed() -> None:
    space = {"a": grid([1, 2]), "nested": {"b": grid(["x", "y", "z"])}, "c": uniform(0, 1)}
    configs = drain(_searcher(space, num_samples=1))
    assert [(c["a"], c["nested"]["b"]) for c in configs] == [
        (1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]


def test_no_grid_gives_num_samples_configs() -> None:
    configs = drain(_searcher({"x": randint(0, 1000), "y": normal()}, num_samples=5))
    assert len(configs) == 5
    assert all(type(c["x"]) is int and type(c["y"]) is float for c in configs)


def test_unlimited_never_finishes() -> None:
    searcher = _searcher(SPACE, num_samples=-1)
    configs = [searcher.suggest(i) for i in range(999)]
    assert all(isinstance(c, dict) for c in configs)
    assert [c["seed"] for c in configs[:6]] == [0, 1, 2, 0, 1, 2]  # type: ignore[index]


def test_setup_restarts_the_sequence() -> None:
    searcher = _searcher(SPACE, 2)
    first = drain(searcher)
    searcher.setup(SPACE, "loss", "min", 2)
    assert drain(searcher) == first


def test_observe_does_not_change_suggestions() -> None:
    plain, observed = _searcher(SPACE, 2), _searcher(SPACE, 2)
    for trial_id in range(6):
        observed.observe(trial_id, {"loss": 1.0}, final=True)
        assert observed.suggest(trial_id) == plain.suggest(trial_id)


def test_sample_from_and_conditional_spaces() -> None:
    space = {
        "model": choice([{"type": "mlp", "width": randint(8, 16)}, {"type": "linear"}]),
        "batch": grid([32, 64]),
        "steps": sample_from(lambda c: 1000 // c["batch"]),
    }
    configs = drain(_searcher(space, num_samples=20))
    assert len(configs) == 40
    assert all(c["steps"] == 1000 // c["batch"] for c in configs)
    assert {c["model"]["type"] for c in configs} == {"mlp", "linear"}
    assert all(("width" in c["model"]) == (c["model"]["type"] == "mlp") for c in configs)


@pytest.mark.parametrize("num_samples", [0, -2, 1.5, True, "3", None])
def test_total_trials_refuses_bad_num_samples(num_samples: Any) -> None:
    # (Random's setup refuses them too: tests/conformance/test_searcher_conformance.py)
    with pytest.raises(ConfigError, match=r"^num_samples"):
        total_trials(SPACE, num_samples)


def test_setup_validates_the_space() -> None:
    with pytest.raises(ConfigError, match=r'^space\["optim"\]\["lr"\]: .*positive'):
        Random(seed=0).setup({"optim": {"lr": loguniform(0, 1)}}, "loss", "min", 1)


def test_total_trials() -> None:
    assert total_trials(SPACE, 4) == 12
    assert total_trials({"a": grid([1, 2]), "b": {"c": grid(["x", "y", "z"])}}, 2) == 12
    assert total_trials({"x": uniform(0, 1)}, 5) == 5
    assert total_trials(SPACE, -1) is None
    with pytest.raises(ConfigError, match=r'^space\["g"\]'):
        total_trials({"g": grid([])}, 1)


@settings(database=None, max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 3), max_size=3), num_samples=st.integers(1, 4))
def test_total_trials_matches_suggestions(sizes: list[int], num_samples: int) -> None:
    space: dict[str, Any] = {f"g{i}": grid(list(range(n))) for i, n in enumerate(sizes)}
    space["x"] = uniform(0, 1)
    configs = drain(_searcher(space, num_samples))
    assert len(configs) == total_trials(space, num_samples)
    # Every grid point appears exactly num_samples times.
    keys = [tuple(c[f"g{i}"] for i in range(len(sizes))) for c in configs]
    assert all(keys.count(k) == num_samples for k in keys)


@pytest.mark.parametrize("module, name", [("random", "Random"), ("sobol", "QuasiRandom")])
def test_a_huge_grid_suggests_its_first_configs_in_bounded_memory(module: str, name: str) -> None:
    """3 grid keys of 1,000 values: 10^9 points, which used to be built as a list before the first suggestion
    (MemoryError / OOM; QuasiRandom: until it too took them by index). A subprocess with its address space capped
    at 1 GiB asks for the first few; a grid of 10^20 points (more than a len() can count) is set up as well."""
    import subprocess
    import sys

    if name == "QuasiRandom":
        pytest.importorskip("scipy")
    code = f"""if True:
        import resource
        from tunesmith.searchers.{module} import {name} as Searcher
        from tunesmith.space import grid, uniform
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
        values = list(range(1000))
        searcher = Searcher(seed=0)
        searcher.setup({{"a": grid(values), "b": grid(values), "c": grid(values), "lr": uniform(0, 1)}}, None, None, 2)
        configs = [searcher.suggest(i) for i in range(3)]
        assert [(c["a"], c["b"], c["c"]) for c in configs] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)], configs
        assert searcher._total == 2 * 10**9
        searcher.setup({{f"k{{i}}": grid(list(range(10))) for i in range(20)}}, None, None, 1)
        assert searcher._total == 10**20 and searcher.suggest(0) == {{f"k{{i}}": 0 for i in range(20)}}
        print("ok")
    """
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # thread stacks count against the cap
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_numpy_grid_and_choice_values_are_suggested_as_python_numbers() -> None:
    import numpy as np

    searcher = _searcher({"g": grid(list(np.arange(3))), "c": choice([np.float32(0.5)]),
                          "s": sample_from(lambda c: np.int64(c["g"]) * 2)}, 1)
    configs = drain(searcher)
    assert configs == [{"g": 0, "c": 0.5, "s": 0}, {"g": 1, "c": 0.5, "s": 2}, {"g": 2, "c": 0.5, "s": 4}]
    assert {type(v) for c in configs for v in c.values()} == {int, float}
