"""tunesmith: hyperparameter tuning and experiment execution, embedded by default.

    import tunesmith as ts

    def train(config):
        for step in range(20):
            ts.report({"loss": (config["lr"] - 0.01) ** 2 + 1 / (step + 1)})

    result = ts.run(train, space={"lr": ts.loguniform(1e-4, 1e-1)}, metric="loss", mode="min",
                    num_samples=16)
    print(result.best.config)

The names below are the public API (locked by a test). Heavy modules load on first use, so a worker
process that only needs ``report`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from tunesmith._errors import ConfigError, TrialError  # noqa: F401
from tunesmith.checkpoint import Checkpoint, CheckpointError  # noqa: F401
from tunesmith.session import (  # noqa: F401
    get_checkpoint,
    get_config,
    get_rank,
    get_resources,
    get_trial_dir,
    get_trial_id,
    get_world_size,
    report,
    should_stop,
)

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY = {
    "run": "tunesmith._run",
    "load": "tunesmith.results",
    "ResultSet": "tunesmith.results",
    "TrialResult": "tunesmith.results",
    "StoreError": "tunesmith.store.sqlite",
    "MissingDependency": "tunesmith._optional",
    "Random": "tunesmith.searchers.random",
    "QuasiRandom": "tunesmith.searchers.sobol",
    "OptunaSearch": "tunesmith.searchers.optuna",
    "BOHB": "tunesmith.searchers.bohb",
    "ConcurrencyLimiter": "tunesmith.searchers.limiter",
    "Repeat": "tunesmith.searchers.repeat",
    "Searcher": "tunesmith.searchers._base",
    "FIFO": "tunesmith.schedulers._base",
    "ASHA": "tunesmith.schedulers.asha",
    "HyperBand": "tunesmith.schedulers.hyperband",
    "MedianStopping": "tunesmith.schedulers.median",
    "PBT": "tunesmith.schedulers.pbt",
    "PB2": "tunesmith.schedulers.pb2",
    "PBTReplay": "tunesmith.schedulers.replay",
    "Deadline": "tunesmith.schedulers.deadline",
    "ResourceChanging": "tunesmith.schedulers.resource_changing",
    "Scheduler": "tunesmith.schedulers._base",
    "Stopper": "tunesmith._stop",
    "TrialPlateau": "tunesmith._stop",
    "ExperimentPlateau": "tunesmith._stop",
    "Trainable": "tunesmith.trainable",
    "Callback": "tunesmith.callbacks._base",
    "CSVLogger": "tunesmith.callbacks.csv_json",
    "JSONLLogger": "tunesmith.callbacks.csv_json",
    "TensorBoardLogger": "tunesmith.callbacks.tensorboard",
    "MLflowLogger": "tunesmith.callbacks.mlflow",
    "WandbLogger": "tunesmith.callbacks.wandb",
    "Progress": "tunesmith.callbacks.progress",
    "TrialStatus": "tunesmith.trial",
    "LocalBackend": "tunesmith.executors.local",
    "RayBackend": "tunesmith.executors.ray",
    "SimulatedBackend": "tunesmith.executors.simulated",
    "put": "tunesmith.data",
    "get": "tunesmith.data",
    "download_once": "tunesmith.data",
    "DataRef": "tunesmith.data",
    "uniform": "tunesmith.space",
    "quniform": "tunesmith.space",
    "loguniform": "tunesmith.space",
    "qloguniform": "tunesmith.space",
    "normal": "tunesmith.space",
    "qnormal": "tunesmith.space",
    "randint": "tunesmith.space",
    "lograndint": "tunesmith.space",
    "choice": "tunesmith.space",
    "grid": "tunesmith.space",
    "sample_from": "tunesmith.space",
}

__all__ = sorted([
    "Checkpoint", "CheckpointError", "ConfigError", "TrialError", "__version__",
    "get_checkpoint", "get_config", "get_rank", "get_resources", "get_trial_dir", "get_trial_id",
    "get_world_size", "report", "should_stop", *_LAZY,
])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
