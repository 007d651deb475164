"""The public surface and the checks that happen before any trial starts."""

from __future__ import annotations

import pytest

import tunesmith as ts

PUBLIC = [
    "ASHA", "Deadline", "HyperBand", "MedianStopping", "PB2", "PBT", "PBTReplay", "ResourceChanging",
    "BOHB", "ConcurrencyLimiter", "OptunaSearch", "QuasiRandom", "Repeat",
    "CSVLogger", "JSONLLogger", "MLflowLogger", "Progress", "TensorBoardLogger", "WandbLogger",
    "DataRef", "LocalBackend", "RayBackend", "SimulatedBackend", "download_once", "get", "put", "StoreError",
    "Callback", "Checkpoint", "CheckpointError", "ConfigError", "FIFO", "Random", "ResultSet", "Scheduler", "Searcher",
    "TrialError", "TrialResult", "TrialStatus", "__version__", "choice", "get_checkpoint", "get_config",
    "get_rank", "get_resources", "get_trial_dir", "get_trial_id", "get_world_size", "grid", "lograndint",
    "loguniform", "load", "normal",
    "qloguniform", "qnormal", "quniform", "randint", "report", "run", "sample_from", "uniform",
    "should_stop", "Stopper", "TrialPlateau", "ExperimentPlateau", "Trainable", "MissingDependency",
]


def test_public_api_is_locked():
    """Changing the public API must be deliberate: update this list with the README."""
    assert ts.__all__ == sorted(PUBLIC)
    for name in ts.__all__:
        assert getattr(ts, name) is not None
    with pytest.raises(AttributeError):
        ts.not_a_name  # noqa: B018


def train(config):
    ts.report({"loss": 1.0})


@pytest.mark.parametrize("kwargs, match", [
    ({"metric": "loss"}, "mode must be 'min' or 'max'"),
    ({"metric": "loss", "mode": "minimize"}, "mode must be 'min' or 'max'"),
    ({"mode": "min"}, "without a metric"),
    ({"metric": 3, "mode": "min"}, "metric must be the name"),
    ({"num_samples": 0}, "num_samples must be a positive integer or -1"),
    ({"num_samples": 2.5}, "num_samples must be a positive integer or -1"),
    ({"num_samples": -1}, "give time_budget_s"),
    ({"time_budget_s": -1}, "time_budget_s must be a positive number"),
    ({"max_concurrent": 0}, "max_concurrent must be a positive integer"),
    ({"verbose": 5}, "verbose must be 0, 1 or 2"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"name": "../escape"}, "name must be a folder name"),
    ({"name": "a/b"}, "name must be a folder name"),
    ({"name": ".hidden"}, "name must be a folder name"),
    ({"resources": {"cpu": -1}}, r"resources\['cpu'\] must be a non-negative number"),
    ({"resources": {"cpu": 10_000}}, r"resources\['cpu'\] = 10000 is more than this machine has"),
    ({"resources": {"gpu": 1.5}}, r"resources\['gpu'\] must be a fraction"),
    ({"resources": "1cpu"}, "resources must be a dict"),
    ({"stop": {"loss": "low"}}, r"stop\['loss'\] must be a number"),
    ({"stop": 5}, "stop must be a dict"),
    ({"stop": [{"loss": 0.1}, 5]}, r"stop\[1\] must be a dict"),
    ({"fail_fast": "yes"}, "fail_fast must be True, False or 'raise'"),
    ({"stop": {"training_iteration": 0}}, r"stop\['training_iteration'\] must be >= 1"),
    ({"backend": "slurm"}, "backend must be 'local'"),
    ({"searcher": "tpe"}, "searcher must be a tunesmith searcher"),
    ({"scheduler": "asha"}, "scheduler must be a tunesmith scheduler"),
    ({"space": {"lr": ts.uniform(1, 0)}}, r'space\["lr"\]'),
])
def test_bad_input_is_one_clear_error_before_any_trial(kwargs, match, results_dir):
    with pytest.raises(ts.ConfigError, match=match):
        ts.run(train, **{"verbose": 0, **kwargs})
    assert not results_dir.exists() or not any(results_dir.iterdir())  # nothing was started


def test_fn_must_be_callable():
    with pytest.raises(ts.ConfigError, match="fn must be the training function"):
        ts.run("train.py")


def test_gpu_request_without_gpus_names_the_problem(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ts.ConfigError, match="no GPU was found"):
        ts.run(train, resources={"gpu": 0.5}, verbose=0)


@pytest.mark.parametrize("fn", [ts.report, ts.get_checkpoint, ts.get_config, ts.get_trial_dir])
def test_session_calls_outside_a_trial_say_so(fn):
    with pytest.raises(RuntimeError, match="outside a trial"):
        fn({"x": 1}) if fn is ts.report else fn()
