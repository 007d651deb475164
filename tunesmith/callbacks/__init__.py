"""Callbacks: progress display and loggers; ``Callback`` is the base class for your own.

The optional loggers import their packages (tensorboardX, mlflow, wandb) only when an experiment starts, so
importing them here costs nothing.
"""

from __future__ import annotations

from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger
from tunesmith.callbacks.mlflow import MLflowLogger
from tunesmith.callbacks.progress import Progress
from tunesmith.callbacks.tensorboard import TensorBoardLogger
from tunesmith.callbacks.wandb import WandbLogger

__all__ = ["CSVLogger", "Callback", "ExperimentInfo", "JSONLLogger", "MLflowLogger", "Progress",
           "TensorBoardLogger", "WandbLogger", "default_callbacks"]


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
        # params.json once per trial: by the user's own file logger if there is one, else by the first of ours
        writes_params = any(isinstance(cb, (CSVLogger, JSONLLogger)) and cb.params for cb in own)
        for cls in (CSVLogger, JSONLLogger):
            if not any(isinstance(cb, cls) for cb in own):
                out.append(cls(params=not writes_params))
                writes_params = True
    return out + own
