"""Loggers at the edges: text that UTF-8 cannot encode, names MLflow would merge, a restarted trial's columns, and a
resumed experiment's MLflow runs and CSV columns (its W&B runs: tests/integrations/test_wandb.py)."""

from __future__ import annotations

import csv
import os
import sys
from typing import Any

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tunesmith.cli import cli

sys.path.insert(0, os.path.dirname(__file__))
from resume_helpers import interrupted_then_resumed, until_go  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ODD_PATH = "data/\udcff.bin"  # what os.listdir gives for a file name whose bytes are not UTF-8


# -- text UTF-8 cannot encode ---------------------------------------------------------------------------


def _reports_a_lone_surrogate(config: Any) -> None:
    for i in range(4):
        metrics: dict[str, Any] = {"loss": float(i)}
        if i == 1:
            metrics["path"] = ODD_PATH  # a key first seen in the second result: the file is rewritten
        if i == 2:
            metrics["k\udc80"] = 1.0  # and one in a name
        ts.report(metrics)


def test_a_lone_surrogate_is_written_backslash_escaped_and_export_writes_the_same_bytes(
        results_dir: Any, tmp_path: Any) -> None:
    """It made the whole batch's rows never reach progress.csv (``surrogates not allowed``) and export exit 1."""
    rs = ts.run(_reports_a_lone_surrogate, {"x": 1}, metric="loss", mode="min", name="sur", verbose=0,
                file_loggers=True)
    (trial,) = rs.trials
    path = os.path.join(trial.path, "progress.csv")
    with open(path, encoding="utf-8", newline="") as f:  # valid UTF-8: any CSV reader opens it
        rows = list(csv.DictReader(f))
    assert [r["training_iteration"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["path"] for r in rows] == ["", "data/\\udcff.bin", "", ""]  # visible, and the original recoverable
    assert rows[1]["path"].encode().decode("unicode_escape") == ODD_PATH
    assert [r["k\\udc80"] for r in rows] == ["", "", "1.0", ""]

    res = CliRunner().invoke(cli, ["export", "sur", "--storage-path", str(results_dir), "--to", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    for name in ("progress.csv", "result.jsonl", "params.json"):
        with open(os.path.join(trial.path, name), "rb") as fa, open(tmp_path / "x" / trial.name / name, "rb") as fb:
            assert fa.read() == fb.read(), name


# -- MLflow names -----------------------------------------------------------------------------------------


def test_mlflow_keeps_the_names_it_takes_and_never_merges_two(tmp_path: Any) -> None:
    """Non-ASCII letters became ``_``: 学习率 and 动量权 were both ``___``, and MLflow refused the whole param batch
    (``Duplicate parameter keys``: not even ``lr`` was logged); 损失 and 精度 were one metric ``__`` with two values
    per step; ``acc,top1`` and ``acc_top1`` were merged too."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

    from tunesmith.callbacks.mlflow import MLflowLogger, _key

    metric_names = ["loss", "损失", "精度", "acc,top1", "acc_top1", "acc top1", "..x", "été/n"]

    def f(config: Any) -> None:
        for i in range(3):
            ts.report({name: float(10 * k + i) for k, name in enumerate(metric_names)})

    space = {"学习率": 0.1, "动量权": 0.9, "lr": 0.5, "a,b": 1, "a_b": 2}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(tracking_uri=uri)
    rs = ts.run(f, space=space, name="names", storage_path=str(tmp_path / "results"), verbose=0, callbacks=[logger])
    (trial,) = rs.trials
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id(trial.id))

    # every param, under its own name; the names MLflow takes as they are
    assert {k: v for k, v in run.data.params.items() if k != _key("a,b")} == {
        "学习率": "0.1", "动量权": "0.9", "lr": "0.5", "a_b": "2"}
    assert run.data.params[_key("a,b")] == "1" and _key("a,b").startswith("a_b-")
    # every metric, its own history; a changed name gets a hash of the original, the same each time
    keys = [_key(name) for name in metric_names]
    assert keys[:3] == ["loss", "损失", "精度"] and keys[4] == "acc_top1" and keys[7] == "été/n"
    assert len(set(keys)) == len(keys) and keys == [_key(name) for name in metric_names]
    for k, key in enumerate(keys):
        assert validate_param_and_metric_name(key) and not path_not_unique(key), key
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(i + 1, float(10 * k + i)) for i in range(3)], key


# -- a restarted trial's columns --------------------------------------------------------------------------


def _fails_once(config: Any) -> None:
    """The first attempt reports ``only_first`` and fails at its 4th result; the second reports ``only_second``.
    With ``ckpt``, a checkpoint at its 2nd result: the restart drops its 3rd and 4th."""
    first = not os.path.exists(config["marker"])
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint is not None else 0
    for i in range(start, 6):
        metrics: dict[str, Any] = {"loss": float(i + (10 if first else 0)), "only_first" if first else "only_second": 1}
        ts.report(metrics, checkpoint=ts.Checkpoint.from_state({"i": i + 1}) if config["ckpt"] and i == 1 else None)
        if first and i == 3:
            open(config["marker"], "w").close()
            raise RuntimeError("boom")


def _live_and_exported_csv(name: str, trial: Any, results_dir: Any, to: Any) -> tuple[str, str]:
    """The trial's ``progress.csv`` as the run left it, and as ``tunesmith export --to`` writes it."""
    res = CliRunner().invoke(cli, ["export", name, "--storage-path", str(results_dir), "--to", str(to)])
    assert res.exit_code == 0, res.output
    with open(os.path.join(trial.path, "progress.csv"), encoding="utf-8", newline="") as f:
        live = f.read()
    with open(os.path.join(to, trial.name, "progress.csv"), encoding="utf-8", newline="") as f:
        return live, f.read()


@pytest.mark.parametrize("ckpt", [False, True])
def test_a_restarted_trials_progress_csv_is_the_exports_byte_for_byte(results_dir: Any, tmp_path: Any,
                                                                      ckpt: bool) -> None:
    """Without a checkpoint the first attempt's rows are dropped, and its column ``only_first`` stayed in the
    header (empty in every row), before the second attempt's ``only_second``: not the export's file."""
    space = {"marker": str(tmp_path / "failed"), "ckpt": ckpt}
    rs = ts.run(_fails_once, space, metric="loss", mode="min", name="re", verbose=0, file_loggers=True,
                max_failures=2)
    (trial,) = rs.trials
    assert [r["training_iteration"] for r in rs.history(trial.id)] == [1, 2, 3, 4, 5, 6]
    assert [r.get("only_second") for r in rs.history(trial.id)] == [None, None, 1, 1, 1, 1] if ckpt else [1] * 6
    live, exported = _live_and_exported_csv("re", trial, results_dir, tmp_path / "x")
    assert live == exported
    header = live.splitlines()[0].split(",")
    if ckpt:  # the first attempt's rows before its checkpoint (iterations 1, 2) stay, with their column
        assert header == ["loss", "only_first", "training_iteration", "time_total_s", "timestamp", "only_second"]
    else:
        assert header == ["loss", "only_second", "training_iteration", "time_total_s", "timestamp"]


# -- a resumed experiment's runs ----------------------------------------------------------------------------


def test_a_resumed_experiment_continues_each_trials_mlflow_run(tmp_path: Any) -> None:
    """After Ctrl-C and ``resume=True`` each trial got a second MLflow run, the first left KILLED."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tunesmith.callbacks.mlflow import MLflowLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    space = {"x": ts.grid([0, 1]), "go": str(tmp_path / "go")}
    logger = MLflowLogger(tracking_uri=uri)
    rs = interrupted_then_resumed(until_go, space, 6, [MLflowLogger(tracking_uri=uri)], [logger], metric="loss",
                                  mode="min", name="res", verbose=0)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([logger.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["trial_00001", "trial_00002"]  # one run per trial
    for trial in rs.trials:
        (run,) = [r for r in runs if r.info.run_name == trial.name]
        assert run.info.run_id == logger.run_id(trial.id) and run.info.status == "FINISHED"
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "loss")}
        assert steps == {r["training_iteration"] for r in rs.history(trial.id)}  # both drivers' results in it


def _blank_then_dropped(config: Any) -> None:
    """Every result has ``note`` = "" (an empty cell in every row). The first driver checkpoints at iteration 2,
    then reports ``dropped`` in every later result until it is interrupted; the resumed one (``go`` exists)
    restarts from iteration 2 and ends after iteration 5, without ``dropped``."""
    checkpoint = ts.get_checkpoint()
    i = checkpoint.load()["i"] if checkpoint is not None else 0
    resumed = os.path.exists(config["go"])
    while not resumed or i < 5:
        i += 1
        metrics: dict[str, Any] = {"loss": float(i), "note": ""}
        if i > 2 and not resumed:
            metrics["dropped"] = 1.0
        ts.report(metrics, checkpoint=ts.Checkpoint.from_state({"i": i}) if i == 2 else None)


def test_a_resumed_trials_progress_csv_keeps_a_column_empty_in_every_kept_row(results_dir: Any, tmp_path: Any) -> None:
    """The resumed driver rebuilt the header from the kept rows' cells: ``note``, empty in each, went (and came
    back at the end with the next batch), where the export, made from the results, keeps it in its place; and
    ``dropped``, which only the replaced rows had, must go as the export has it not."""
    rs = interrupted_then_resumed(_blank_then_dropped, {"go": str(tmp_path / "go")}, 4, [], [], metric="loss",
                                  mode="min", name="blank", verbose=0, file_loggers=True)
    (trial,) = rs.trials
    assert [(r["training_iteration"], r["note"], "dropped" in r) for r in rs.history(trial.id)] == [
        (i, "", False) for i in range(1, 6)]
    live, exported = _live_and_exported_csv("blank", trial, results_dir, tmp_path / "x")
    assert live == exported
    assert live.splitlines()[0] == "loss,note,training_iteration,time_total_s,timestamp"


def test_a_resumed_driver_writes_the_rows_its_files_lack_before_the_checkpoint(results_dir: Any, tmp_path: Any) -> None:
    """Files that lack rows the store has (here: the interrupted driver had no file loggers; a driver killed with
    SIGKILL leaves the rows its writer thread had not written yet): each trial restarts from its checkpoint, and
    its files held only the resumed driver's rows (from the checkpoint on), forever short of the export's."""
    space = {"x": ts.grid([0, 1]), "go": str(tmp_path / "go")}
    rs = interrupted_then_resumed(until_go, space, 6, [], [ts.CSVLogger(), ts.JSONLLogger()], metric="loss",
                                  mode="min", name="short", verbose=0)
    res = CliRunner().invoke(cli, ["export", "short", "--storage-path", str(results_dir), "--to", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    for trial in rs.trials:
        assert rs.history(trial.id)[0]["training_iteration"] == 1
        for name in ("progress.csv", "result.jsonl"):
            with open(os.path.join(trial.path, name), encoding="utf-8", newline="") as live, \
                    open(os.path.join(tmp_path, "x", trial.name, name), encoding="utf-8", newline="") as exported:
                assert live.read() == exported.read(), (trial.name, name)
