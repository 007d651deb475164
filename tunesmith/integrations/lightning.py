"""PyTorch Lightning bridge: report logged metrics at each validation end, save the trainer's checkpoint
with them, and end ``trainer.fit`` gracefully when the driver stops the trial.

    from tunesmith.integrations.lightning import ReportCallback, resume_path

    def train(config):
        trainer = lightning.Trainer(max_epochs=20, callbacks=[ReportCallback(["val_loss"])])
        trainer.fit(MyModule(config["lr"]), train_loader, val_loader, ckpt_path=resume_path())

Needs ``lightning`` (``pip install 'tunesmith[lightning]'``); the callback is a ``lightning.pytorch``
callback (the ``lightning`` package; the older standalone ``pytorch_lightning`` package's Trainer does not
accept it). One process per trial: under DDP only the trial's own process has a session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith import session
from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.checkpoint import Checkpoint
from tunesmith.integrations import _common
from tunesmith.integrations._common import MetricPicker

_pl = require("lightning.pytorch", "lightning", "tunesmith.integrations.lightning")

__all__ = ["CHECKPOINT_FILE", "ReportCallback", "resume_path"]

CHECKPOINT_FILE = "lightning.ckpt"  # the trainer's checkpoint inside a tunesmith checkpoint folder


_Base: Any = _pl.Callback  # the library's callback class, known only at run time


class ReportCallback(_Base):
    """Reports the chosen logged metrics (``trainer.callback_metrics``) at the end of each validation run
    (sanity checks excepted): one ``training_iteration`` per validation.

    Args:
        metrics: None (every scalar logged metric, under its logged name), a name, a list of names, or a dict
            ``{reported name: logged name}``. A chosen name that was not logged is a ``ConfigError`` at the
            first validation end, naming the metrics that were.
        checkpoint: save the trainer's full state (``trainer.save_checkpoint``: weights, optimizer, loops)
            with each result, so a retry, a PBT exploit or a resumed experiment continues from it through
            :func:`resume_path`.

    When the driver stops the trial (a scheduler, a stop rule, the time limit), the callback sets
    ``trainer.should_stop``: ``trainer.fit`` returns after the current step or validation, and the training
    function goes on after it (anything it reports then is not stored). Lightning does not stop before
    ``min_epochs``/``min_steps``: leave them unset under a scheduler.
    """

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None = None,
                 checkpoint: bool = True) -> None:
        super().__init__()
        self._picker = MetricPicker(metrics, "lightning.ReportCallback")
        self._checkpoint = bool(checkpoint)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if session.should_stop():  # e.g. a second validation in the epoch after a stop: nothing to store
            trainer.should_stop = True
            return
        metrics = self._picker.pick(trainer.callback_metrics)
        folder = tempfile.mkdtemp(prefix="tunesmith-lightning-") if self._checkpoint else None
        try:
            ckpt = None
            if folder is not None:
                trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
                ckpt = Checkpoint.from_dir(folder)
            session.report(metrics, checkpoint=ckpt)  # copies the folder into the trial's checkpoints
        except session.StopTrial:
            pass  # this result was the last one stored; should_stop() is True now
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        if session.should_stop():
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # a stop that arrives while the trial trains (the time limit, a scheduler that does not make trials
        # wait) ends the epoch early instead of at the next validation (a cheap check: one syscall a ms)
        if session.should_stop():
            trainer.should_stop = True


def resume_path() -> str | None:
    """The ``ckpt_path`` to pass to ``trainer.fit``: the trainer checkpoint this trial was restored from (a
    retry after an error, a PBT exploit, a resumed experiment), or None on a fresh start.

    Raises:
        ConfigError: the trial's checkpoint was not saved by ``ReportCallback(checkpoint=True)``.
        RuntimeError: called outside a trial.
    """
    ckpt = session.get_checkpoint()
    if ckpt is None:
        return None
    # checksums and this user's signature checked first: trainer.fit unpickles the file (torch.load)
    path = os.path.join(_common.checked_dir(ckpt, "lightning.resume_path"), CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"resume_path(): the trial's checkpoint {ckpt.as_dir()} holds no {CHECKPOINT_FILE}: it was "
                          f"not saved by tunesmith.integrations.lightning.ReportCallback(checkpoint=True)")
    return path
