"""A resumed driver's file loggers replace a trial's rows from its restart on: the files equal the export's."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger, csv_text, jsonl_lines
from tunesmith.trial import Result, TrialStatus, TrialView

pytestmark = pytest.mark.timeout(60)


def _result(iteration: int) -> Result:
    return Result(1, iteration, {"loss": float(iteration), "training_iteration": iteration,
                                 "time_total_s": 0.5 * iteration, "timestamp": 1000.0 + iteration})


@pytest.mark.parametrize("background", [False, True])
def test_a_resumed_driver_replaces_the_rows_after_the_checkpoint(tmp_path: Any, background: bool) -> None:
    info = SimpleNamespace(path=str(tmp_path), name="resumed", trials={})
    trial = TrialView(id=1, config={"lr": 0.1}, status=TrialStatus.RUNNING)
    for logger in (CSVLogger(background=background), JSONLLogger(background=background)):  # the first driver
        logger.on_experiment_start(info)
        logger.on_trial_start(trial)
        logger.on_trial_results(trial, [_result(i) for i in range(1, 6)])
        logger.on_trial_results(trial, [_result(i) for i in (6, 7)])
        logger.on_experiment_end(info)  # interrupted after 7 results; its checkpoint is at iteration 2
    history = [_result(i) for i in range(1, 9)]
    for logger in (CSVLogger(background=background), JSONLLogger(background=background)):  # resume=True
        logger.on_experiment_start(info)
        logger.on_trial_start(trial)
        logger.on_trial_results(trial, [_result(i) for i in (3, 4)])
        logger.on_trial_results(trial, [_result(i) for i in range(5, 9)])
        logger.on_trial_complete(trial)
        logger.on_experiment_end(info)
    folder = os.path.join(str(tmp_path), "trials", "trial_00001")
    with open(os.path.join(folder, "progress.csv"), encoding="utf-8", newline="") as f:
        assert f.read() == csv_text(history)
    with open(os.path.join(folder, "result.jsonl"), encoding="utf-8") as f:
        assert f.read() == "".join(jsonl_lines(history))


def test_a_fresh_run_does_not_look_for_files_to_replace(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    info = SimpleNamespace(path=str(tmp_path / "new"), name="fresh", trials={})
    trial = TrialView(id=1, config={"lr": 0.1}, status=TrialStatus.RUNNING)
    logger = JSONLLogger(background=False)
    logger.on_experiment_start(info)
    seen: list[Any] = []
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: (p.endswith(".jsonl") and seen.append(p)) or real(p))
    logger.on_trial_results(trial, [_result(1), _result(2)])
    logger.on_trial_results(trial, [_result(3)])
    assert seen == []
