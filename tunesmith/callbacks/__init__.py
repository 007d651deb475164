"""Callbacks: progress display and loggers; ``Callback`` is the base class for your own.

The loggers' modules are imported on first use (``from tunesmith.callbacks import CSVLogger`` works as
always), and the optional loggers import their packages (tensorboardX, mlflow, wandb) only when an
experiment starts: a run that uses none of them does not pay for their imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks.progress import Progress

if TYPE_CHECKING:
    from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger
    from tunesmith.callbacks.mlflow import MLflowLogger
    from tunesmith.callbacks.tensorboard import TensorBoardLogger
    from tunesmith.callbacks.wandb import WandbLogger

__all__ = ["CSVLogger", "Callback", "ExperimentInfo", "JSONLLogger", "MLflowLogger", "Progress",
           "TensorBoardLogger", "WandbLogger", "default_callbacks"]

_LOGGERS = {"CSVLogger": "csv_json", "JSONLLogger": "csv_json", "MLflowLogger": "mlflow",
            "TensorBoardLogger": "tensorboard", "WandbLogger": "wandb"}


def __getattr__(name: str) -> Any:
    module = _LOGGERS.get(name)
    if module is None:
        raise AttributeError(f"module 'tunesmith.callbacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tunesmith.callbacks.{module}"), name)
    globals()[name] = value
    return value


def default_callbacks(verbose: int, callbacks: list[Callback] | None = None,
                      file_loggers: bool = False) -> list[Callback]:
    """The callbacks of a run: progress, the per-trial CSV and JSON-lines files if asked for, then the user's own.

    Args:
        verbose: the progress level (0 silent); a ``Progress`` among ``callbacks`` replaces the default one.
        callbacks: the user's callbacks, called after the default ones, in their order.
        file_loggers: add ``CSVLogger`` and ``JSONLLogger`` (unless ``callbacks`` has one of that class).

    Returns:
        The list to hand to the controller.
    """
    own = list(callbacks or [])
    out: list[Callback] = []
    if not any(isinstance(cb, Progress) for cb in own):
        out.append(Progress(verbose=verbose))
    if file_loggers:
        from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger

        # params.json once per trial: by the user's own file logger if there is one, else by the first of ours
        writes_params = any(isinstance(cb, (CSVLogger, JSONLLogger)) and cb.params for cb in own)
        for cls in (CSVLogger, JSONLLogger):
            if not any(isinstance(cb, cls) for cb in own):
                out.append(cls(params=not writes_params))
                writes_params = True
    return out + own
