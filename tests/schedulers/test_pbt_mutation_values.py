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
