"""TensorBoard and W&B loggers against what their own readers show: a restarted trial's charts (TensorBoard's
event accumulators), NaN/inf values (no warning per value), and metric names W&B reserves (its offline files)."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import pytest

import tunesmith as ts

sys.path.insert(0, os.path.dirname(__file__))
from resume_helpers import interrupted_then_resumed, until_go  # noqa: E402

pytestmark = pytest.mark.timeout(120)


# -- TensorBoard: a restarted trial --------------------------------------------------------------------------


def _accumulators(run_dir: str) -> list[Any]:
    """The run as both of TensorBoard's Python readers load it (the legacy ``EventAccumulator``, used by
    ``--load_fast=false`` and by tools reading event files, and the plugin one behind the HParams tab)."""
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator

    legacy = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.SCALARS: 0})
    plugin = plugin_event_accumulator.EventAccumulator(run_dir, size_guidance={plugin_event_accumulator.TENSORS: 0})
    legacy.Reload()
    plugin.Reload()
    return [legacy, plugin]


def _series(acc: Any, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a scalar tag as the reader keeps it ([] for a tag it has no point of)."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    if isinstance(acc, event_accumulator.EventAccumulator):
        if tag not in acc.Tags()["scalars"]:
            return []
        return [(e.step, e.value) for e in acc.Scalars(tag)]
    if tag not in acc.Tags()["tensors"]:
        return []
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def _hparams_metrics(acc: Any) -> list[str]:
    """The metric tags of the run's HParams experiment (the plugin accumulator's last one)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    return [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos]


def _fails_after_checkpoint(config: Any) -> None:
    """The first attempt reports ``extra`` from iteration 4 and fails at iteration 5; the retry goes on from the
    checkpoint at iteration 3 without ``extra``, with other losses."""
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load() if checkpoint is not None else 0
    for i in range(start, 6):
        first = checkpoint is None
        metrics = {"loss": float(i + (100 if first else 0))}
        if first and i >= 3:
            metrics["extra"] = 1.0
        ts.report(metrics, checkpoint=ts.Checkpoint.from_state(i + 1) if i == 2 else None)
        if first and i == 4:
            raise RuntimeError("transient")


def test_a_retried_trials_tensorboard_run_shows_each_iteration_once_as_the_store(results_dir: Any) -> None:
    """The retried iterations 4 and 5 were shown twice (steps [1, 2, 3, 4, 5, 4, 5, 6], the first attempt's
    values too), ``extra`` kept its dropped points, and the HParams tab listed it."""
    pytest.importorskip("tensorboard")
    rs = ts.run(_fails_after_checkpoint, {"x": 1}, metric="loss", mode="min", name="tb-retry", verbose=0,
                max_failures=1, callbacks=[ts.TensorBoardLogger()])
    (trial,) = rs.trials
    history = rs.history(trial.id)
    expected = [(r["training_iteration"], r["loss"]) for r in history]
    assert expected == [(1, 100.0), (2, 101.0), (3, 102.0), (4, 3.0), (5, 4.0), (6, 5.0)]
    run_dir = os.path.join(rs.path, "tensorboard", trial.name)
    for acc in _accumulators(run_dir):
        assert _series(acc, "loss") == expected
        assert _series(acc, "extra") == []  # only the dropped attempt had it
    assert set(_hparams_metrics(_accumulators(run_dir)[1])) == {"loss", "time_total_s"}


def test_a_resumed_experiments_tensorboard_runs_show_each_iteration_once(tmp_path: Any) -> None:
    """Each driver's file held the iterations after the checkpoint: ``[1, 2, 1, 2, 3, ...]``-like steps."""
    pytest.importorskip("tensorboard")
    space = {"x": ts.grid([0, 1]), "go": str(tmp_path / "go")}
    rs = interrupted_then_resumed(until_go, space, 6, [ts.TensorBoardLogger()], [ts.TensorBoardLogger()],
                                  metric="loss", mode="min", name="tb-res", verbose=0,
                                  storage_path=str(tmp_path / "results"))
    for trial in rs.trials:
        run_dir = os.path.join(rs.path, "tensorboard", trial.name)
        expected = [(r["training_iteration"], r["loss"]) for r in rs.history(trial.id)]
        for acc in _accumulators(run_dir):
            assert _series(acc, "loss") == expected


# -- TensorBoard: NaN and infinities ---------------------------------------------------------------------------


def _diverges(config: Any) -> None:
    for _ in range(20):
        ts.report({"loss": float("nan"), "grad_norm": float("inf")})


def test_nan_and_inf_are_logged_without_a_warning_per_value(results_dir: Any, caplog: Any, capfd: Any) -> None:
    """tensorboardX warned ``NaN or Inf found in input tensor.`` once per value: 40 lines on stderr at verbose=0."""
    pytest.importorskip("tensorboard")
    import numpy as np
    from tensorboardX.x2num import check_nan

    caplog.set_level(logging.WARNING)
    rs = ts.run(_diverges, {"x": 1}, metric="loss", mode="min", name="tb-nan", verbose=0,
                callbacks=[ts.TensorBoardLogger()])
    assert not [r for r in caplog.records if "NaN or Inf" in r.getMessage()]
    assert "NaN or Inf" not in capfd.readouterr().err
    (trial,) = rs.trials
    for acc in _accumulators(os.path.join(rs.path, "tensorboard", trial.name)):
        loss, grad = _series(acc, "loss"), _series(acc, "grad_norm")
        assert len(loss) == len(grad) == 20
        assert all(math.isnan(v) for _, v in loss) and all(v == math.inf for _, v in grad)
    check_nan(np.array([float("nan")]))  # tensorboardX's own warning, outside the logger, is left alone
    assert [r for r in caplog.records if "NaN or Inf" in r.getMessage()]
