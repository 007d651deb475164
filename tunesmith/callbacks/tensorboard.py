"""TensorBoard logging through tensorboardX: one run per trial, hyperparameters in the HParams tab."""

from __future__ import annotations

import math
import os
import re
from typing import Any

from tunesmith._flat import flat_metrics
from tunesmith._secrets import shown
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks._names import hashed
from tunesmith.callbacks._scalars import scalars
from tunesmith.trial import TIMESTAMP, Result, TrialView

# What tensorboardX turns into ``_`` in a tag (``summary._clean_tag``; it also strips leading ``/``).
_BAD_TAG = re.compile(r"[^-/\w.]")


class TensorBoardLogger(Callback):
    """Writes each trial's results as TensorBoard scalars, one run per trial.

    Events go to ``<experiment>/tensorboard/<trial_name>/``; view them with
    ``tensorboard --logdir <experiment>/tensorboard``. Every numeric metric of every result is a scalar
    at ``step=training_iteration`` (nested metrics as ``outer/inner``), with the result's timestamp as
    wall time; its tag is the metric's name, with a hash when TensorBoard would change it (``_tag``). When
    the trial ends, its config (flattened to ``outer/inner``) and its final metrics are
    written as an HParams session of the same run, so the HParams tab compares trials.

    Needs ``pip install 'tunesmith[tensorboard]'`` (tensorboardX).

    Args:
        flush_secs: passed to tensorboardX's ``SummaryWriter``; each batch of results is flushed anyway.
    """

    def __init__(self, flush_secs: int = 30) -> None:
        self.flush_secs = flush_secs
        self._root: str | None = None
        self._writers: dict[int, Any] = {}
        self._final: dict[int, dict[str, float]] = {}
        self._tags: dict[str, str] = {}  # metric name -> its tag, made once per name

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        from tunesmith._optional import require

        require("tensorboardX", "tensorboard")  # fail at the start, not at the first result
        self._root = os.path.join(experiment.path, "tensorboard")

    def _writer(self, trial: TrialView) -> Any:
        writer = self._writers.get(trial.id)
        if writer is None:
            from tensorboardX import SummaryWriter

            if self._root is None:
                raise RuntimeError("TensorBoardLogger used before on_experiment_start")
            writer = SummaryWriter(logdir=os.path.join(self._root, trial.name), flush_secs=self.flush_secs)
            self._writers[trial.id] = writer
        return writer

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        if not results:
            return
        writer = self._writer(trial)
        final = self._final.setdefault(trial.id, {})
        tags = self._tags
        for result in results:
            walltime = result.metrics.get(TIMESTAMP)
            for key, number in scalars(result.metrics):
                tag = tags.get(key)
                if tag is None:
                    tag = tags[key] = _tag(key)
                writer.add_scalar(tag, number, global_step=result.iteration, walltime=walltime)
                final[tag] = number
        writer.flush()

    def on_trial_complete(self, trial: TrialView) -> None:
        self._close(trial)

    def on_trial_error(self, trial: TrialView) -> None:
        self._close(trial)

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        for trial_id in list(self._writers):
            trial = experiment.trials.get(trial_id)
            if trial is not None:
                self._close(trial)
            else:
                self._writers.pop(trial_id).close()

    def _close(self, trial: TrialView) -> None:
        writer = self._writers.pop(trial.id, None)
        if writer is None:
            return
        from tensorboardX.summary import hparams

        # secret-looking values masked: event files are shared (tensorboard.dev, a colleague's --logdir)
        hp = {key: _hparam(value) for key, value in flat_metrics(shown(trial).config).items()}
        # Metric names equal to the scalar tags: the HParams tab then shows each tag's last value in this
        # run (the trial's final metrics) without a duplicate scalar point.
        metrics = self._final.pop(trial.id, {})
        for summary in hparams(hp, metrics):
            writer.file_writer.add_summary(summary)
        writer.close()


def _tag(name: str) -> str:
    """A metric's tag, the same for the same name in every trial and run: the name itself when tensorboardX
    keeps it (letters, digits, ``_ - . /``, no leading ``/``), else the name as tensorboardX would clean it (other
    characters ``_``) with a hash of the whole name at its end (``acc top1`` -> ``acc_top1-1a2b3c4d``), so that
    ``acc top1``, ``acc,top1`` and ``acc_top1`` stay three tags instead of being merged into one."""
    clean = _BAD_TAG.sub("_", name).lstrip("/")
    return name if clean == name else hashed(name, clean)


def _hparam(value: Any) -> bool | float | str:
    """HParams take bool, number or string; anything else is shown as its text."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else str(value)
    return str(value)
