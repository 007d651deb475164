"""What the gradient-boosting bridges (xgboost, lightgbm) share: choosing the metrics a round reports, the one
error for a metric the library never logged, a checkpoint every N rounds, and a stop turned into the library's
own way of ending training.

Metric names are ``<data>-<metric>``: the name of the evaluation set (``evals=[(dvalid, "valid")]``,
``valid_names=["valid"]``) and the library's name of the metric, e.g. ``valid-logloss`` (xgboost) or
``valid-binary_logloss`` (lightgbm).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tunesmith
from tunesmith._errors import ConfigError
from tunesmith.checkpoint import Checkpoint
from tunesmith.integrations._common import MetricPicker, report, should_stop


def positive_or_none(value: Any, name: str, who: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{who}({name}=...) must be a positive number of rounds or None, got {value!r}")
    return value


class RoundReporter:
    """Reports one boosting round; returns True when the trial must stop (the driver decided so).

    Args:
        who: the callback's name, for messages (``"xgboost.ReportCallback"``).
        hint: how the library names its metrics, added to the error for a metric it never logged.
        metrics: None (every logged metric), a name, a list of names or ``{reported name: logged name}``.
        checkpoint_every: save the booster every this many rounds (counted over the model's whole life, so a
            restored booster keeps the cadence), or None for never.
        save: ``save(booster, folder)`` writes the booster's file(s) into ``folder``.
    """

    def __init__(self, who: str, hint: str, metrics: str | Sequence[str] | Mapping[str, str] | None,
                 checkpoint_every: int | None, save: Callable[[Any, str], None]) -> None:
        self.who = who
        self.hint = hint
        self.picker = MetricPicker(metrics, who, hint)
        self.checkpoint_every = checkpoint_every
        self.save = save

    def __call__(self, logged: dict[str, float], booster: Any, rounds: int) -> bool:
        """``logged``: this round's metrics by ``<data>-<metric>``; ``rounds``: the rounds the booster holds."""
        if not logged:
            raise ConfigError(f"{self.who}: the library logged no evaluation metric in the first round, so there "
                              f"is nothing to report; {self.hint}")
        chosen = self.picker.pick(logged)
        folder = None
        try:  # report() copies the folder before it returns; removed also when saving fails
            if self.checkpoint_every is not None and rounds % self.checkpoint_every == 0:
                folder = tempfile.mkdtemp(prefix="tunesmith_booster_")
                self.save(booster, folder)
            return not report(chosen, Checkpoint.from_dir(folder) if folder is not None else None) or should_stop()
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def no_booster_in_cv(who: str, booster: Any, cv: str, train: str) -> ConfigError:
    """The error for ``checkpoint_every`` inside a library's cross-validation, whose callbacks get every fold's
    booster together: there is no one booster to save, nor one that ``resume`` could give back."""
    return ConfigError(f"{who}(checkpoint_every=...): {type(booster).__name__} has no booster to save: {cv} is not "
                       f"supported with checkpoints (use {train}, or checkpoint_every=None)")


def restored_model_file(filename: str, who: str) -> str | None:
    """The model file of the trial's checkpoint (retry, PBT exploit, resume), or None on a fresh start."""
    checkpoint = tunesmith.get_checkpoint()
    if checkpoint is None:
        return None
    path = os.path.join(checkpoint.as_dir(), filename)
    if not os.path.isfile(path):
        raise ConfigError(f"{who}: the trial's checkpoint {checkpoint.path} has no {filename}: it was not saved by "
                          f"ReportCallback(checkpoint_every=...); restore it yourself with tunesmith.get_checkpoint()")
    return path


def rounds_left(num_boost_round: Any, done: int, who: str) -> int:
    if isinstance(num_boost_round, bool) or not isinstance(num_boost_round, int) or num_boost_round <= 0:
        raise ConfigError(f"{who}(num_boost_round=...) must be the positive number of rounds the model should "
                          f"end with, got {num_boost_round!r}")
    return max(num_boost_round - done, 0)
