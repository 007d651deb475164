"""PyTorch Lightning bridge: report logged metrics at each validation end, save the trainer's checkpoint
with them, and end ``trainer.fit`` gracefully when the driver stops the trial.

    from tunesmith.integrations.lightning import ReportCallback, resume_path

    def train(config):
        trainer = lightning.Trainer(max_epochs=20, callbacks=[ReportCallback(["val_loss"])])
        trainer.fit(MyModule(config["lr"]), train_loader, val_loader, ckpt_path=resume_path())

Needs ``lightning`` (``pip install 'tunesmith[lightning]'``); the callback is a ``lightning.pytorch``
callback (the ``lightning`` package; the older standalone ``pytorch_lightning`` package's Trainer does not
accept it). DDP over a trial's ranks: ``ts.run(..., ranks=N)`` with ``Trainer(strategy="ddp", devices=N)``;
Lightning joins the processes tunesmith started, rank 0 reports and its checkpoint is the trial's, and
:func:`resume_path` gives every rank the restore point (docs/distributed-trials.md). A DDP that Lightning
launches itself, without ``ranks=``, starts processes with no session: not supported.
"""

from __future__ import annotations

import math
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
    """Reports the chosen logged metrics (``trainer.callback_metrics``) once per validation run (sanity checks
    excepted): one ``training_iteration`` per validation. A validation that ends an epoch is reported at that
    epoch's end (``on_train_epoch_end``), with the epoch's training metrics (``on_epoch=True``), which Lightning
    computes after the validation; one within an epoch (``val_check_interval``) at its own end, where those are
    the previous epoch's. A fit that never validates (``limit_val_batches=0``, no validation loader, or one that
    ends before its first validation: a ``check_val_every_n_epoch`` that no epoch up to ``max_epochs`` reaches,
    ``check_val_every_n_epoch=None`` with a ``val_check_interval`` of more batches than the fit runs, ``max_steps``
    first) reports at each training epoch's end, with the training metrics; a chosen validation metric is then an
    error at the first epoch that says why. Told at the fit's start from the trainer's limits; validation by time,
    a training loader without a length and ``max_steps`` with manual optimization are not foreseen.

    Args:
        metrics: None (every scalar logged metric, under its logged name), a name, a list of names, or a dict
            ``{reported name: logged name}``. A chosen name that was not logged is a ``ConfigError`` at the
            first validation end, naming the metrics that were.
        checkpoint: save the trainer's full state (``trainer.save_checkpoint``: weights, optimizer, loops)
            with each result, so a retry, a PBT exploit or a resumed experiment continues from it through
            :func:`resume_path`.

    After a restore (``ckpt_path``), the optimizers' hyperparameters that the trial's config changed take their
    new values: Lightning's restore brings back the saved param groups (learning rate, momentum, weight
    decay...), which would undo a PBT mutation. The callback keeps, in the checkpoint, the values that
    ``configure_optimizers`` gave each param group; a value ``configure_optimizers`` now gives differently is
    applied over the restored one, in proportion where a scheduler moved it since (a learning rate halved twice
    by ``StepLR`` stays halved twice, of the new rate; the scheduler's ``base_lrs`` follow). Values the config
    did not change stay as restored (a retry resumes exactly), and so does the optimizer's state (momentum
    buffers, Adam's moments, step counts).

    When the driver stops the trial (a scheduler, a stop rule, the time limit), the callback sets
    ``trainer.should_stop``: ``trainer.fit`` returns after the current step or validation, and the training
    function goes on after it (anything it reports then is not stored). Lightning does not stop before
    ``min_epochs``/``min_steps``: leave them unset under a scheduler.
    """

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None = None,
                 checkpoint: bool = True) -> None:
        super().__init__()
        self._picker = MetricPicker(metrics, "lightning.ReportCallback",
                                    "a metric logged in the LightningModule's on_train_epoch_end is seen one report "
                                    "later: log it in training_step with on_epoch=True, or in a validation hook")
        self._checkpoint = bool(checkpoint)
        self._configured: list[list[dict[str, Any]]] | None = None  # param groups' values from configure_optimizers
        self._restored: list[list[dict[str, Any]]] | None = None  # the same, of the run that saved the checkpoint
        self._epoch_end_validated = False  # this epoch ended with a validation, reported at on_train_epoch_end
        self._no_validation = ""  # why no epoch of this fit validates ("" when one may): each epoch is reported

    def state_dict(self) -> dict[str, Any]:
        return {"configured": self._configured} if self._configured is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("configured")  # from the checkpoint fit(ckpt_path=...) restores

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # configure_optimizers ran (with the trial's current config); the checkpoint's optimizer state is not
        # restored yet
        self._epoch_end_validated = False
        self._configured = [[_hyperparameters(group) for group in opt.param_groups] for opt in trainer.optimizers]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._no_validation = _why_no_validation(trainer)
        if self._restored is not None and self._configured is not None:  # the checkpoint's optimizers are back
            _apply_changed(trainer, self._restored, self._configured)
        self._restored = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit" and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # the validation that ends an epoch: Lightning computes the epoch's training metrics (on_epoch=True)
            # only after it, so they would be reported one epoch late; reported at the epoch's end instead
            self._epoch_end_validated = True
            return
        self._report(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # a fit without validation (limit_val_batches=0, no val_dataloaders, one that ends before its first
        # validation: _why_no_validation) reports each training epoch
        if self._epoch_end_validated or self._no_validation:
            self._epoch_end_validated = False
            self._report(trainer)

    def _report(self, trainer: Any) -> None:
        if session.should_stop():  # e.g. a second validation in the epoch after a stop: nothing to store
            trainer.should_stop = True
            return
        metrics = self._picker.pick(trainer.callback_metrics, self._no_validation)
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


def _why_no_validation(trainer: Any) -> str:
    """Why this fit (from where it starts, possibly restored) ends before its first validation, or "" when one may
    come (or cannot be foreseen: validation by time, a training loader without a length, manual optimization with
    ``max_steps``)."""
    if not trainer.enable_validation:
        return "this fit does not validate (no val_dataloaders, validation_step or limit_val_batches)"
    every, last = trainer.check_val_every_n_epoch, trainer.max_epochs
    n, done = _position(trainer)
    if 0 < n == done:
        # restored from a checkpoint saved at an epoch's end (where this callback saves): Lightning (2.6) then runs
        # one more batch in that epoch before the next one; batches are not counted here, only epochs
        if every is None or last is None or last < 0 or _next_validating_epoch(trainer.current_epoch, every) < last:
            return ""
        return f"no epoch of this fit validates (check_val_every_n_epoch={every}, max_epochs={last})"
    first = _first_validation(trainer)
    if first is None:
        return ""
    by_epochs, by_steps = _batches_left(trainer)
    if first < by_epochs and first < by_steps:
        return ""
    if by_steps < by_epochs:
        return (f"this fit ends at max_steps={trainer.max_steps}, before its first validation (check_val_every_n_epoch="
                f"{every}, val_check_interval={trainer.val_check_interval})")
    if every is not None:
        return f"no epoch of this fit validates (check_val_every_n_epoch={every}, max_epochs={last})"
    return (f"this fit ends at max_epochs={last}, before its first validation (check_val_every_n_epoch="
            f"None, val_check_interval={trainer.val_check_interval}: {by_epochs} training batches left)")


def _next_validating_epoch(epoch: int, every: int) -> int:
    """The first epoch from ``epoch`` on that validates (``check_val_every_n_epoch=every``)."""
    return -(-(epoch + 1) // every) * every - 1


def _position(trainer: Any) -> tuple[float, int]:
    """(the training batches an epoch, those of the current epoch already run: a fit restored within an epoch)."""
    return trainer.num_training_batches, trainer.fit_loop.epoch_loop.batch_progress.current.processed


def _first_validation(trainer: Any) -> float | None:
    """How many training batches from here the first validation comes after (math.inf: none ever), or None when
    that cannot be told."""
    n, done = _position(trainer)
    every, check = trainer.check_val_every_n_epoch, trainer.val_check_batch
    if getattr(trainer, "_val_check_time_interval", None) is not None or not isinstance(check, int) or check < 1:
        return None  # by time, or at the end of an epoch of unknown length
    if every is None:  # every `check` batches, counted across epochs
        total = trainer.fit_loop.epoch_loop.batch_progress.total.processed
        return (total // check + 1) * check - 1 - total
    if not math.isfinite(n) or n < 1:
        return None
    epoch = trainer.current_epoch
    if (epoch + 1) % every == 0 and (done // check + 1) * check <= n:  # later in the current epoch
        return (done // check + 1) * check - 1 - done
    ahead = _next_validating_epoch(epoch + 1, every) - epoch  # epochs from the current one to the next validating
    return n - done + (ahead - 1) * n + check - 1


def _batches_left(trainer: Any) -> tuple[float, float]:
    """How many training batches this fit runs from here: (until max_epochs, until max_steps), math.inf where that
    limit is not set (or cannot be counted in batches: manual optimization, a loader without a length)."""
    n, done = _position(trainer)
    by_epochs = by_steps = math.inf
    if trainer.max_epochs is not None and trainer.max_epochs >= 0 and math.isfinite(n):
        by_epochs = (trainer.max_epochs - trainer.current_epoch) * n - done
    steps = trainer.max_steps - trainer.global_step
    if trainer.max_steps >= 0 and trainer.lightning_module.automatic_optimization:
        k = trainer.accumulate_grad_batches  # an optimizer step every k batches, and at each epoch's last batch
        in_epoch = (n // k - done // k + (1 if n % k else 0)) if math.isfinite(n) else math.inf
        if steps <= 0:
            by_steps = 0
        elif steps <= in_epoch:
            by_steps = min((done // k + steps) * k, n) - done
        else:
            full, rest = divmod(steps - in_epoch, -(-n // k))  # whole epochs, then steps into the last one
            by_steps = n - done + full * n + (min(rest * k, n) if rest else 0)
    return by_epochs, by_steps


def resume_path() -> str | None:
    """The ``ckpt_path`` to pass to ``trainer.fit``: the trainer checkpoint this trial was restored from (a
    retry after an error, a PBT exploit, a resumed experiment), or None on a fresh start. The optimizer
    hyperparameters that the trial's config changed apply over the restored ones (see :class:`ReportCallback`).

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


def _hyperparameters(group: Mapping[str, Any]) -> dict[str, Any]:
    """A param group's plain values (a checkpoint holds them: numbers, flags, tuples such as Adam's betas)."""
    return {k: v for k, v in group.items() if k != "params" and _plain(v)}


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, (bool, int, float)) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _apply_changed(trainer: Any, saved: list[list[dict[str, Any]]], configured: list[list[dict[str, Any]]]) -> None:
    """Set the values that ``configure_optimizers`` now gives differently than for the checkpoint's run over the
    restored param groups (scaled where a scheduler moved them since), and the schedulers' ``base_lrs``."""
    for opt, old_groups, new_groups in zip(trainer.optimizers, saved, configured):
        if not len(opt.param_groups) == len(old_groups) == len(new_groups):
            continue  # another model: nothing to match
        changed = False
        for group, old, new in zip(opt.param_groups, old_groups, new_groups):
            for key, value in new.items():
                if key in old and key in group and old[key] != value:
                    group[key] = _scaled(group[key], old[key], value)
                    changed = True
        if not changed:
            continue
        groups = opt.param_groups
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if getattr(scheduler, "optimizer", None) is not opt:
                continue
            if hasattr(scheduler, "base_lrs") and all("initial_lr" in g for g in groups):
                scheduler.base_lrs = [g["initial_lr"] for g in groups]  # as its constructor sets them
            if hasattr(scheduler, "_last_lr"):
                scheduler._last_lr = [g["lr"] for g in groups]


def _scaled(current: Any, old: Any, new: Any) -> Any:
    """``new``, or ``current * new / old`` for a number a scheduler moved away from ``old`` (elementwise for a
    tuple)."""
    if isinstance(current, (tuple, list)) and isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)) \
            and len(current) == len(old) == len(new):
        return type(current)(_scaled(c, o, n) for c, o, n in zip(current, old, new))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (current, old, new))
    if numbers and current != old and old != 0:
        return current * new / old
    return new
