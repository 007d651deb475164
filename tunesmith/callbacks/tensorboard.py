"""TensorBoard logging through tensorboardX: one run per trial, hyperparameters in the HParams tab."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from typing import Any

from tunesmith import _layout
from tunesmith._flat import flat_metrics
from tunesmith._optional import installed
from tunesmith._secrets import shown, shown_results
from tunesmith.callbacks._base import Callback, ExperimentInfo
from tunesmith.callbacks._names import hashed
from tunesmith.callbacks._scalars import scalars
from tunesmith.trial import TIMESTAMP, Result, TrialView

# What tensorboardX turns into ``_`` in a tag (``summary._clean_tag``; it also strips leading ``/``).
_BAD_TAG = re.compile(r"[^-/\w.]")

# tensorboardX warns of every NaN or infinite value it writes (``x2num.check_nan``): a line per value on stderr
# for a diverged trial. Those are values tunesmith keeps; the warning is dropped while this logger writes them.
_NAN_LOGGER = "tensorboardX.x2num"
_NAN_MESSAGE = "NaN or Inf found in input tensor."


class _QuietNaN(logging.Filter):
    """Drops tensorboardX's NaN/Inf warning in a thread that is writing a ``TensorBoardLogger``'s scalars; other
    code's (tensorboardX used elsewhere in the process, or another thread) still gets it."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(self.writing, "on", False) and record.msg == _NAN_MESSAGE)


_quiet_nan = _QuietNaN()


class _EventFile:
    """A trial's event file, written in the calling thread, as tensorboardX's ``SummaryWriter(purge_step=first)``
    writes it. (The ``SummaryWriter`` writes on a thread of its own behind a queue of 10 events: a write that failed
    there, on a full disk or with the folder gone, ended that thread, and the next events filled the queue and
    blocked the driver's loop for good, SIGTERM included. Here a failed write raises in the hook, the controller logs
    it and the experiment goes on; each batch is flushed anyway.)"""

    def __init__(self, logdir: str, first: int) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        os.makedirs(logdir, exist_ok=True)
        # tensorboardX names a file after the second it was made (``events.out.tfevents.<s>.<host>``) and truncates one
        # of that name: a resumed driver within the same second would erase the earlier driver's file. A suffix in
        # nanoseconds keeps the names apart and in the order they were made.
        self._events = EventsWriter(os.path.join(logdir, "events"), f".{time.time_ns():d}")
        self.add(_event(step=first, file_version="brain.Event:2"))
        self.restart(first)  # TensorBoard takes a run's first START as its start, each later one as a restart

    def add(self, event: Any) -> None:
        if not event.wall_time:
            event.wall_time = time.time()
        self._events.write_event(event)

    def restart(self, step: int) -> None:
        """A ``SessionLog.START`` at ``step``, as tensorboardX's ``purge_step`` writes: TensorBoard's readers (its
        ``EventAccumulator``s) drop the points at ``step`` and after it that they read before it, in every tag."""
        from tensorboardX.proto.event_pb2 import SessionLog

        self.add(_event(step=step, session_log=SessionLog(status=SessionLog.START)))

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()


def _event(**fields: Any) -> Any:
    from tensorboardX.proto.event_pb2 import Event

    return Event(**fields)


class TensorBoardLogger(Callback):
    """Writes each trial's results as TensorBoard scalars, one run per trial.

    Events go to ``<experiment>/tensorboard/<trial_name>/``; view them with
    ``tensorboard --logdir <experiment>/tensorboard``. Every numeric metric of every result is a scalar
    at ``step=training_iteration`` (nested metrics as ``outer/inner``), with the result's timestamp as
    wall time; its tag is the metric's name, with a hash when TensorBoard would change it (``_tag``). When
    the trial ends, its config (flattened to ``outer/inner``) and its final metrics are
    written as an HParams session of the same run, so the HParams tab compares trials.

    A trial restarted from a checkpoint at iteration k (a retry, a PBT exploit, a resumed experiment) logs the
    iterations after k again; a ``SessionLog.START`` event at step k + 1 (what tensorboardX's ``purge_step``
    writes) before them makes TensorBoard drop the points from step k + 1 on that it read before, so the run shows
    the trial's current history, as the store holds it. Each writer starts with one (TensorBoard takes a run's first
    START as its start, each later one as a restart). NaN and infinities are written as they are, without
    tensorboardX's warning per value.

    Needs ``pip install 'tunesmith[tensorboard]'`` (tensorboardX).

    Args:
        flush_secs: not used (kept so that code passing it still runs): each batch of results is written and
            flushed when it comes, in the driver's thread (``_EventFile``).
    """

    def __init__(self, flush_secs: int = 30) -> None:
        installed("tensorboardX", "tensorboard", "TensorBoardLogger")  # said now, not logged once the run goes on
        self.flush_secs = flush_secs
        self._root: str | None = None
        self._writers: dict[int, Any] = {}
        # trial -> tag -> the first iteration this driver logged it at (a restart drops the tags only the dropped
        # iterations had from the HParams metrics)
        self._final: dict[int, dict[str, int]] = {}
        self._last: dict[int, int] = {}  # trial -> the last iteration its writer logged
        self._tags: dict[str, str] = {}  # metric name -> its tag, made once per name

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        from tunesmith._optional import require

        require("tensorboardX", "tensorboard")  # fail at the start, not at the first result
        # a link there in a folder someone else made is removed by a resume (``_layout.unlink_planted_links``)
        self._root = os.path.join(experiment.path, _layout.TENSORBOARD)
        nan_logger = logging.getLogger(_NAN_LOGGER)
        if _quiet_nan not in nan_logger.filters:
            nan_logger.addFilter(_quiet_nan)

    def _writer(self, trial: TrialView, first: int) -> _EventFile:
        """The trial's event file; a new one starts with a ``SessionLog.START`` at ``first``, and with a second one
        when the run's folder has earlier event files (a resumed experiment): their points from ``first`` on are the
        ones this driver logs again."""
        writer = self._writers.get(trial.id)
        if writer is None:
            if self._root is None:
                raise RuntimeError("TensorBoardLogger used before on_experiment_start")
            logdir = os.path.join(self._root, trial.name)
            try:
                earlier = any("tfevents" in name for name in os.listdir(logdir))
            except FileNotFoundError:
                earlier = False
            writer = _EventFile(logdir, first)
            if earlier:  # a first START in files of an older tunesmith would be read as the run's start
                writer.restart(first)
            self._writers[trial.id] = writer
            self._last.pop(trial.id, None)
        return writer

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        if not results:
            return
        first = results[0].iteration
        writer = self._writer(trial, first)
        final = self._final.setdefault(trial.id, {})
        last = self._last.get(trial.id)
        if last is not None and first <= last:  # a restart from a checkpoint before ``first``
            writer.restart(first)
            for dropped in [name for name, since in final.items() if since >= first]:
                del final[dropped]
        from tensorboardX.summary import scalar

        tags = self._tags
        _quiet_nan.writing.on = True
        try:
            for result in shown_results(trial.config, results):  # a name may quote a secret of the config
                walltime = result.metrics.get(TIMESTAMP)
                step = result.iteration
                for key, number in scalars(result.metrics):
                    tag = tags.get(key)
                    if tag is None:
                        tag = tags[key] = _tag(key)
                    writer.add(_event(summary=scalar(tag, number), step=step, wall_time=walltime or 0.0))
                    final.setdefault(tag, step)
        finally:
            _quiet_nan.writing.on = False
        self._last[trial.id] = results[-1].iteration
        writer.flush()

    def on_trial_complete(self, trial: TrialView) -> None:
        self._close(trial)

    def on_trial_error(self, trial: TrialView) -> None:
        self._close(trial)

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        failed: OSError | None = None
        for trial_id in list(self._writers):  # every file closed, also after one that could not be (a full disk)
            trial = experiment.trials.get(trial_id)
            try:
                if trial is not None:
                    self._close(trial)
                else:
                    self._writers.pop(trial_id).close()
            except OSError as e:
                failed = failed or e
        if failed is not None:
            raise failed

    def _close(self, trial: TrialView) -> None:
        writer = self._writers.pop(trial.id, None)
        self._last.pop(trial.id, None)
        if writer is None:
            return
        from tensorboardX.summary import hparams

        # secret-looking values masked: event files are shared (tensorboard.dev, a colleague's --logdir)
        hp = {key: _hparam(value) for key, value in flat_metrics(shown(trial).config).items()}
        # Metric names equal to the scalar tags: the HParams tab then shows each tag's last value in this
        # run (the trial's final metrics) without a duplicate scalar point.
        metrics = dict.fromkeys(self._final.pop(trial.id, {}), 0.0)  # the values are not written: only the tags
        try:
            for summary in hparams(hp, metrics):
                writer.add(_event(summary=summary))
        finally:
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
