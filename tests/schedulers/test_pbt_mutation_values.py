"""What a PBT mutation gives, on real worker processes: numpy values (a list built from ``np.arange``, a function that
returns ``np.float32``) reach the trial and the store as the Python numbers they stand for, as the space's do; a
mutation function that raises ends the run with a ``ConfigError`` naming its key."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.trial import TrialStatus


def _climb(config: dict[str, Any]) -> None:
    """Six iterations, a checkpoint at each; it reports the type its config's values reached it as."""
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint else 0
    for i in range(start, 6):
        ts.report({"score": float(config["a"]) * (i + 1), "a_type": type(config["a"]).__name__,
                   "b_type": type(config["b"]).__name__}, checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


def _np_float() -> Any:
    return np.float32(0.5)


def _boom() -> float:
    raise ValueError("no value today")


def test_numpy_values_of_a_mutation_reach_the_trial_and_the_store_as_python_numbers(results_dir: Any) -> None:
    """``hyperparam_mutations={"a": list(np.arange(1, 4))}`` holds ``np.int64`` values. Before, the first exploit
    ended the run: "PBT's Exploit of trial_00002 gives a config the store cannot hold: config["a"]: int64 np.int64(1)
    cannot be stored", while the same values in the space are taken as Python numbers."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"a": list(np.arange(0, 4)), "b": _np_float},
                 resample_probability=1.0, seed=0)
    # one slot: trial 1 (a=1) pauses at iteration 2 for trial 2 (a=0), which is then the bottom and exploits trial 1
    result = ts.run(_climb, space={"a": ts.grid([np.int64(1), np.int64(0)]), "b": np.float32(0.25)}, metric="score",
                    mode="max", max_concurrent=1, verbose=0, name="numpy-mutations", scheduler=pbt)
    assert result.lineage(), "no exploit happened: the test tests nothing"
    for event in result.lineage():
        assert type(event["config"]["a"]) is int and type(event["config"]["b"]) is float, event["config"]
    for t in result.trials:
        assert t.status is TrialStatus.TERMINATED, (t.id, t.status, t.error)
        assert {(h["a_type"], h["b_type"]) for h in result.history(t.id, all_generations=True)} == {("int", "float")}


def test_a_mutation_function_that_raises_ends_the_run_with_a_config_error_naming_its_key(results_dir: Any) -> None:
    """Before, the function's own ``ValueError: no value today`` ended the experiment, naming neither PBT nor the
    key it was called for."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"opt": {"a": _boom}}, resample_probability=1.0,
                 seed=0)
    with pytest.raises(ConfigError, match=r"hyperparam_mutations\['opt/a'\]: the mutation function .*_boom raised "
                                          r"ValueError: no value today") as raised:
        ts.run(_climb, space={"opt": {"a": ts.grid([1, 0])}, "a": 1, "b": 0.5}, metric="score", mode="max",
               max_concurrent=1, verbose=0, name="raising-mutation", scheduler=pbt)
    assert isinstance(raised.value.__cause__, ValueError)
    stored = ts.load("raising-mutation")
    assert stored.meta["status"] == "failed"
    assert all(t.status is not TrialStatus.RUNNING for t in stored.trials), [t.status for t in stored.trials]


def _b_text() -> str:
    return "z"


@pytest.mark.parametrize(("space", "make", "match"), [
    ({"a": 1, "b": ts.choice(["adam", "sgd"])},
     lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"b": ts.uniform(0, 1)}),
     r"hyperparam_mutations\['b'\]: Uniform\(low=0, high=1\) gives numbers, but the space's 'b' is "
     r"Choice\(options=\['adam', 'sgd'\]\) \(text\)"),
    ({"a": 1, "b": ts.uniform(0, 1)},
     lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"b": ["low", "high"]}),
     r"hyperparam_mutations\['b'\]: \['low', 'high'\] gives text, but the space's 'b' is Uniform\(low=0, high=1\) "
     r"\(numbers\)"),
    ({"a": 1, "b": True},
     lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"b": ts.choice([0.1, 0.5])}),
     r"hyperparam_mutations\['b'\]: .* gives numbers, but the space's 'b' is True \(booleans\)"),
    ({"a": 1, "m": ts.choice([{"b": "adam"}, {"b": "sgd", "c": 2}])},
     lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"m/b": ts.randint(0, 3)}),
     r"hyperparam_mutations\['m/b'\]: RandInt\(low=0, high=3\) gives numbers, but the space's 'm/b' is 'adam', "
     r"'sgd' \(text\)"),
    ({"a": 1, "b": ts.choice(["adam", "sgd"])},
     lambda: ts.PB2(perturbation_interval=2, hyperparam_bounds={"b": [0, 1]}),
     r"hyperparam_bounds\['b'\]: \[0.0, 1.0\] gives numbers, but the space's 'b' is Choice\(options=\['adam', "
     r"'sgd'\]\) \(text\): an exploit would replace its value with numbers; give text there, or leave the key out"),
])
def test_a_mutation_of_another_kind_than_its_space_entry_is_refused_before_anything_runs(
        results_dir: Any, space: dict[str, Any], make: Any, match: str) -> None:
    """``hyperparam_mutations={"b": ts.uniform(0, 1)}`` for a space's ``ts.choice(["adam", "sgd"])``: an exploit
    silently gave the trial ``b=0.37``, which its function then took as an optimizer's name. Refused now, naming
    the key, the space's entry and the mutation, before any trial is created."""
    if make().__class__.__name__ == "PB2":
        pytest.importorskip("scipy")
    with pytest.raises(ConfigError, match=match):
        ts.run(_climb, space=space, metric="score", mode="max", max_concurrent=1, verbose=0, name="kinds",
               scheduler=make())
    assert not (results_dir / "kinds").exists()


def test_mutations_of_the_same_kind_or_unknown_up_front_are_kept(results_dir: Any) -> None:
    """What the docs allow stays accepted: other values of the space's kind (a list or a domain other than the space's
    own), ints for floats, and a function (its values are known only when it is called)."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"a": [2.5, 3], "b": _b_text, "c": ts.uniform(1, 4)},
                 resample_probability=1.0, seed=0)
    result = ts.run(_climb, space={"a": ts.grid([1, 0]), "b": ts.choice(["x", "y"]), "c": ts.randint(1, 4)},
                    metric="score", mode="max", max_concurrent=1, verbose=0, name="same-kinds", scheduler=pbt)
    assert result.lineage(), "no exploit happened: the test tests nothing"
    assert all(event["config"]["b"] == "z" for event in result.lineage())
