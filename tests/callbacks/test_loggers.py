"""Loggers: what they write is read back with ordinary readers and compared with what trials reported."""

from __future__ import annotations

import csv
import glob
import json
import os
import struct
import sys
from types import SimpleNamespace
from typing import Any, cast

import pytest

import tunesmith as ts
from tunesmith._optional import require
from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger
from tunesmith.trial import Result, TrialStatus, TrialView

pytestmark = pytest.mark.timeout(120)


def train(config: dict[str, Any]) -> None:
    for i in range(1, 5):
        metrics: dict[str, Any] = {"loss": config["x"] / i, "acc": 1 - config["x"] / i, "val/n": i,
                                   "tag": f"it{i}"}
        if i >= 3:
            metrics["late"] = i * 10  # a key first seen at the third result
        ts.report(metrics)
    if config["x"] > 0.9:
        raise RuntimeError("too large")


@pytest.fixture(scope="module")
def file_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("loggers")
    return ts.run(train, space={"x": ts.grid([0.25, 0.5])}, metric="loss", mode="min", name="files",
                  storage_path=str(root), verbose=0, callbacks=[CSVLogger(), JSONLLogger()])


def test_csv_rows_equal_the_reported_results(file_run: Any) -> None:
    assert len(file_run.trials) == 2
    for trial in file_run.trials:
        history = file_run.history(trial.id)
        with open(os.path.join(trial.path, "progress.csv"), newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            rows = list(reader)
        # header: the first result's keys in order, then the key that appeared later
        assert header == ["loss", "acc", "val/n", "tag", "training_iteration", "time_total_s", "timestamp",
                          "late"]
        assert len(rows) == len(history) == 4
        for row, expected in zip(rows, history):
            assert float(row["loss"]) == expected["loss"]  # repr of a float reads back exactly
            assert float(row["acc"]) == expected["acc"]
            assert int(row["val/n"]) == expected["val/n"]
            assert row["tag"] == expected["tag"]
            assert int(row["training_iteration"]) == expected["training_iteration"]
            assert float(row["timestamp"]) == expected["timestamp"]
            assert row["late"] == (str(expected["late"]) if "late" in expected else "")


def test_jsonl_lines_equal_the_reported_results(file_run: Any) -> None:
    for trial in file_run.trials:
        with open(os.path.join(trial.path, "result.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        assert lines == file_run.history(trial.id)


@pytest.mark.parametrize("cls,name", [(JSONLLogger, "result.jsonl"), (CSVLogger, "progress.csv")])
def test_results_carrying_the_trials_json_text_are_written_byte_for_byte_as_the_others(
        tmp_path: Any, cls: type, name: str) -> None:
    # A result that came from a trial carries its metrics' JSON text; the JSONL logger appends the three
    # added keys to that text instead of encoding again, and the CSV logger picks the values of complete
    # rows in one C call: the files must be the same as those written the general way.
    full = {"loss": 1 / 7, "name": "caf\u00e9, \"q\"", "n": float("nan"), "inf": float("-inf"), "ok": True,
            "k": 3}
    batches = [[full, {**full, "loss": 0.5}],  # complete rows
               [{**full, "late": 1.5}],  # a key first seen later (the CSV file is rewritten)
               [{"loss": 0.25}, {}],  # rows missing keys
               [{**full, "late": 2.5}, {**full, "late": 3.5}]]  # complete again, under the grown header
    written = []
    for carry in (True, False):
        logger = cls(background=False)
        logger.on_experiment_start(SimpleNamespace(path=str(tmp_path / str(carry)), name="bytes", trials={}))
        trial = TrialView(id=1, config={})
        i = 0
        for batch in batches:
            results = []
            for reported in batch:
                i += 1
                text = json.dumps(reported)
                metrics = {**json.loads(text), "training_iteration": i, "time_total_s": 0.1 * i + 1e-9,
                           "timestamp": 1796280062.5005417 + i}
                results.append(Result(1, i, metrics, None, text if carry else None))
            logger.on_trial_results(trial, results)
        with open(tmp_path / str(carry) / "trials" / "trial_00001" / name, "rb") as f:
            written.append(f.read())
    assert written[0] == written[1]
    assert len(written[0].splitlines()) == 7 + (name == "progress.csv")  # every row (and the header)


def test_params_json_is_the_config(file_run: Any) -> None:
    for trial in file_run.trials:
        with open(os.path.join(trial.path, "params.json")) as f:
            assert json.load(f) == trial.config


# -- direct calls: flushing, restarts, header changes ------------------------------------------------


def _result(trial_id: int, iteration: int, **metrics: Any) -> Result:
    return Result(trial_id, iteration, {**metrics, "training_iteration": iteration, "time_total_s": 0.1 * iteration,
                                        "timestamp": 1000.0 + iteration})


@pytest.fixture
def trial_and_info(tmp_path: Any) -> tuple[TrialView, Any]:
    info = SimpleNamespace(path=str(tmp_path), name="direct", trials={})
    return TrialView(id=7, config={"lr": 0.1, "opt": {"name": "adam"}}, status=TrialStatus.RUNNING), info


@pytest.mark.parametrize("background", [False, True])
def test_each_batch_is_on_disk_when_the_call_returns_or_after_flush(trial_and_info: tuple[TrialView, Any],
                                                                   background: bool) -> None:
    trial, info = trial_and_info
    loggers = [CSVLogger(background=background), JSONLLogger(background=background)]
    for logger in loggers:
        logger.on_experiment_start(info)
        logger.on_trial_start(trial)
        logger.on_trial_results(trial, [_result(7, 1, loss=1.0), _result(7, 2, loss=0.5)])
        logger.flush()  # with background=False there is nothing to wait for
    folder = os.path.join(info.path, "trials", "trial_00007")
    with open(os.path.join(folder, "progress.csv")) as f:
        assert [r["loss"] for r in csv.DictReader(f)] == ["1.0", "0.5"]
    with open(os.path.join(folder, "result.jsonl")) as f:
        assert [json.loads(line)["loss"] for line in f] == [1.0, 0.5]
    with open(os.path.join(folder, "params.json")) as f:
        assert json.load(f) == trial.config


def test_a_restart_replaces_later_rows_instead_of_duplicating(trial_and_info: tuple[TrialView, Any]) -> None:
    trial, info = trial_and_info
    csv_logger, jsonl_logger = CSVLogger(), JSONLLogger()
    for logger in (csv_logger, jsonl_logger):
        logger.on_experiment_start(info)
        logger.on_trial_start(trial)
        logger.on_trial_results(trial, [_result(7, i, loss=float(i)) for i in (1, 2, 3, 4)])
        # resumed from its checkpoint at iteration 2: iterations 3 and 4 are reported again
        trial.config = {"lr": 0.2, "opt": {"name": "adam"}}
        logger.on_trial_start(trial)
        logger.on_trial_results(trial, [_result(7, i, loss=float(-i), extra=1) for i in (3, 4, 5)])
        trial.config = {"lr": 0.1, "opt": {"name": "adam"}}
        logger.on_experiment_end(info)  # the end waits for the background writes
    folder = os.path.join(info.path, "trials", "trial_00007")
    with open(os.path.join(folder, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["training_iteration"], r["loss"], r["extra"]) for r in rows] == [
        ("1", "1.0", ""), ("2", "2.0", ""), ("3", "-3.0", "1"), ("4", "-4.0", "1"), ("5", "-5.0", "1")]
    with open(os.path.join(folder, "result.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert [(r["training_iteration"], r["loss"]) for r in lines] == [(1, 1.0), (2, 2.0), (3, -3.0), (4, -4.0),
                                                                   (5, -5.0)]
    with open(os.path.join(folder, "params.json")) as f:
        assert json.load(f)["lr"] == 0.2  # the config changed at the restart (as a PBT exploit does)


def test_csv_rows_missing_a_key_get_an_empty_cell(trial_and_info: tuple[TrialView, Any]) -> None:
    trial, info = trial_and_info
    logger = CSVLogger()
    logger.on_experiment_start(info)
    logger.on_trial_results(trial, [_result(7, 1, a=1, b=[1, 2]), _result(7, 2, b=None)])
    logger.on_trial_results(trial, [_result(7, 3, c="x")])
    logger.flush()
    with open(os.path.join(info.path, "trials", "trial_00007", "progress.csv")) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["a", "b", "training_iteration", "time_total_s", "timestamp", "c"]
    assert [(r["a"], r["b"], r["c"]) for r in rows] == [("1", "[1, 2]", ""), ("", "", ""), ("", "", "x")]


def test_a_failed_background_write_is_logged_once_and_the_next_trial_is_written(
        trial_and_info: tuple[TrialView, Any], caplog: pytest.LogCaptureFixture) -> None:
    trial, info = trial_and_info
    logger = JSONLLogger()
    logger.on_experiment_start(info)
    blocked = os.path.join(info.path, "trials", trial.name)
    os.makedirs(os.path.dirname(blocked), exist_ok=True)
    with open(blocked, "w") as f:  # a file where the trial's folder should be: every write for it fails
        f.write("in the way")
    for i in (1, 2, 3):
        logger.on_trial_results(trial, [_result(7, i, loss=1.0)])
    other = TrialView(id=8, config={"lr": 0.2}, status=TrialStatus.RUNNING)
    logger.on_trial_start(other)
    logger.on_trial_results(other, [_result(8, 1, loss=0.25)])
    logger.on_experiment_end(info)
    errors = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert len(errors) == 1 and "JSONLLogger" in errors[0].getMessage()
    with open(os.path.join(info.path, "trials", other.name, "result.jsonl")) as f:
        assert [json.loads(line)["loss"] for line in f] == [0.25]


def test_the_second_default_file_logger_does_not_write_params_again(trial_and_info: tuple[TrialView, Any]) -> None:
    from tunesmith.callbacks import default_callbacks

    files = [cb for cb in default_callbacks(0, file_loggers=True) if isinstance(cb, (CSVLogger, JSONLLogger))]
    assert [cb.params for cb in files] == [True, False]
    trial, info = trial_and_info
    quiet = JSONLLogger(params=False, background=False)
    quiet.on_experiment_start(info)
    quiet.on_trial_start(trial)
    quiet.on_trial_results(trial, [_result(7, 1, loss=1.0)])
    assert sorted(os.listdir(os.path.join(info.path, "trials", trial.name))) == ["result.jsonl"]
    mine = JSONLLogger()  # the user's own writes params.json: ours does not
    assert [cb.params for cb in default_callbacks(0, [mine], file_loggers=True) if isinstance(cb, CSVLogger)] == [False]


# -- optional dependencies ----------------------------------------------------------------------------


def test_require_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install 'tunesmith\[report\]'"):
        require("tunesmith_no_such_module_xyz", "report")
    assert require("json", "none") is json


def test_tensorboard_logger_without_tensorboardx_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Any) -> None:
    from tunesmith.callbacks.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes "import tensorboardX" fail
    with pytest.raises(ImportError, match=r"tunesmith\[tensorboard\]"):
        TensorBoardLogger().on_experiment_start(cast(Any, SimpleNamespace(path=str(tmp_path), name="x", trials={})))


@pytest.mark.parametrize(("package", "logger", "extra"), [("tensorboardX", "TensorBoardLogger", "tensorboard"),
                                                      ("mlflow", "MLflowLogger", "mlflow"),
                                                      ("wandb", "WandbLogger", "wandb")])
def test_a_logger_whose_package_is_missing_says_what_to_install_before_anything_runs(
        monkeypatch: pytest.MonkeyPatch, package: str, logger: str, extra: str) -> None:
    """The logger was made, the run went on without it (the missing package only logged, as a callback's failure,
    and W&B's and TensorBoard's later hooks logged an error of their own): hours of tuning not logged where the
    user asked, found out at the end. Making the logger raises, so nothing is created or run."""
    monkeypatch.setitem(sys.modules, package, None)  # makes "import <package>" fail
    with pytest.raises(ImportError, match=rf"^{logger}: needs .*pip install 'tunesmith\[{extra}\]'$"):
        getattr(ts, logger)()


# -- TensorBoard --------------------------------------------------------------------------------------


def _records(path: str) -> list[bytes]:
    """TFRecord framing: uint64 length, uint32 crc, data, uint32 crc."""
    out = []
    with open(path, "rb") as f:
        while header := f.read(8):
            (length,) = struct.unpack("<Q", header)
            f.read(4)
            out.append(f.read(length))
            f.read(4)
    return out


def _read_events(run_dir: str) -> tuple[dict[str, list[tuple[int, float, float]]], dict[str, Any], list[str]]:
    """Scalars (tag -> [(step, value, wall time)]), hparams and metric tags, with tensorboardX's protos."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    scalars: dict[str, list[tuple[int, float, float]]] = {}
    hparams: dict[str, Any] = {}
    metric_tags: list[str] = []
    files = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    assert files, f"no event file in {run_dir}"
    for path in files:
        for record in _records(path):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if value.tag == "_hparams_/session_start_info":
                        for key, hp in data.session_start_info.hparams.items():
                            hparams[key] = getattr(hp, hp.WhichOneof("kind"))
                    elif value.tag == "_hparams_/experiment":
                        metric_tags = [m.name.tag for m in data.experiment.metric_infos]
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value, event.wall_time))
    return scalars, hparams, metric_tags


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("tensorboardX")
    from tunesmith.callbacks.tensorboard import TensorBoardLogger

    root = tmp_path_factory.mktemp("tb")
    return ts.run(train, space={"x": ts.grid([0.25, 0.95]), "opt": {"name": "adam"}}, metric="loss", mode="min",
                  name="tb", storage_path=str(root), verbose=0, callbacks=[TensorBoardLogger()])


def test_tensorboard_scalars_and_hparams_read_back(tb_run: Any) -> None:
    assert {t.status for t in tb_run.trials} == {TrialStatus.TERMINATED, TrialStatus.ERROR}
    for trial in tb_run.trials:
        history = tb_run.history(trial.id)
        scalars, hparams, metric_tags = _read_events(os.path.join(tb_run.path, "tensorboard", trial.name))
        for key in ("loss", "acc", "time_total_s"):
            assert [s[0] for s in scalars[key]] == [r["training_iteration"] for r in history]
            assert [s[1] for s in scalars[key]] == pytest.approx([r[key] for r in history], rel=1e-6)
        assert [s[1] for s in scalars["val/n"]] == [1.0, 2.0, 3.0, 4.0]
        assert [s[0] for s in scalars["late"]] == [3, 4]
        assert [s[2] for s in scalars["loss"]] == pytest.approx([r["timestamp"] for r in history])
        assert "tag" not in scalars and "training_iteration" not in scalars and "timestamp" not in scalars
        assert hparams == {"x": pytest.approx(trial.config["x"]), "opt/name": "adam"}
        assert set(metric_tags) == {"loss", "acc", "val/n", "late", "time_total_s"}


def test_tensorboard_event_accumulator_reads_the_runs(tb_run: Any) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard not installed; the record reader test covers the files")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for trial in tb_run.trials:
        acc = event_accumulator.EventAccumulator(os.path.join(tb_run.path, "tensorboard", trial.name),
                                                 size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        history = tb_run.history(trial.id)
        loss = acc.Scalars("loss")
        assert [e.step for e in loss] == [r["training_iteration"] for r in history]
        assert [e.value for e in loss] == pytest.approx([r["loss"] for r in history], rel=1e-6)
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["x"].number_value == pytest.approx(trial.config["x"])
        assert start.hparams["opt/name"].string_value == "adam"


# -- MLflow -------------------------------------------------------------------------------------------


def test_mlflow_runs_read_back_through_its_client(tmp_path: Any) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tunesmith.callbacks.mlflow import MLflowLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(tracking_uri=uri, experiment_name="tunesmith-test")
    rs = ts.run(train, space={"x": ts.grid([0.25, 0.95]), "opt": {"name": "adam"}}, metric="loss", mode="min",
                name="ml", storage_path=str(tmp_path / "results"), verbose=0, callbacks=[logger])
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tunesmith-test")
    assert experiment is not None and experiment.experiment_id == logger.experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {t.name for t in rs.trials}
    for trial in rs.trials:
        run = runs[trial.name]
        assert run.info.run_id == logger.run_id(trial.id)
        assert run.data.params == {"x": str(trial.config["x"]), "opt/name": "adam"}
        assert run.data.tags["tunesmith.experiment"] == "ml"
        assert run.data.tags["tunesmith.trial_id"] == str(trial.id)
        assert run.info.status == ("FAILED" if trial.status is TrialStatus.ERROR else "FINISHED")
        history = rs.history(trial.id)
        loss = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
        assert [m.step for m in loss] == [r["training_iteration"] for r in history]
        assert [m.value for m in loss] == [r["loss"] for r in history]
        assert [m.timestamp for m in loss] == [int(r["timestamp"] * 1000) for r in history]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "late")] == [3, 4]
        assert client.get_metric_history(run.info.run_id, "val/n")[-1].value == 4.0
        assert "tag" not in run.data.metrics
    failed = next(t for t in rs.trials if t.status is TrialStatus.ERROR)
    assert "too large" in runs[failed.name].data.tags["tunesmith.error"]


def test_mlflow_logs_every_metric_whatever_its_name(tmp_path: Any) -> None:
    """Names MLflow refuses (a path that resolves elsewhere, over 250 characters) are logged under a name it
    takes; one of them made MLflow refuse the whole batch, so the trial's other metrics were lost too."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tunesmith.callbacks.mlflow import MLflowLogger, _key

    odd = ["../../up", "a//b", "/lead", "./here", "x" * 300, "tab\there"]

    def f(config: Any) -> None:
        for i in range(2):
            ts.report({"ok": float(i), **{name: float(i) for name in odd}})

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(tracking_uri=uri)
    rs = ts.run(f, space={"..": 1, "q" * 300: 2}, name="odd", storage_path=str(tmp_path / "results"), verbose=0,
                callbacks=[logger])
    (trial,) = rs.trials
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id(trial.id))
    keys = [_key(name) for name in odd]
    assert len(set(keys)) == len(odd) and all(len(k) <= 250 for k in keys)
    assert set(run.data.metrics) >= {"ok", *keys}
    for key in ["ok", *keys]:
        assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)] == [
            0.0, 1.0]
    assert set(run.data.params) == {_key(".."), _key("q" * 300)}
    assert run.info.status == "FINISHED"


def _reports_bools(config: dict[str, Any]) -> None:
    import numpy as np

    for i in range(1, 4):
        ts.report({"loss": float(i), "converged": i == 2, "np_flag": np.bool_(i != 2)})


def test_mlflow_logs_bools_as_0_and_1_as_tensorboard_does(tmp_path: Any) -> None:
    """A bool metric (``converged``; a numpy bool is stored as one) was not logged to MLflow at all, where
    TensorBoard plots it as 0/1."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboardX")
    from mlflow.tracking import MlflowClient

    from tunesmith.callbacks.mlflow import MLflowLogger
    from tunesmith.callbacks.tensorboard import TensorBoardLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLflowLogger(tracking_uri=uri)
    rs = ts.run(_reports_bools, space={"x": 1}, name="bools", storage_path=str(tmp_path / "results"), verbose=0,
                callbacks=[logger, TensorBoardLogger()])
    (trial,) = rs.trials
    assert [(r["converged"], r["np_flag"]) for r in rs.history(trial.id)] == [(False, True), (True, False),
                                                                           (False, True)]
    client = MlflowClient(tracking_uri=uri)
    scalars, _, _ = _read_events(os.path.join(rs.path, "tensorboard", trial.name))
    for key, values in (("converged", [0.0, 1.0, 0.0]), ("np_flag", [1.0, 0.0, 1.0])):
        history = sorted(client.get_metric_history(logger.run_id(trial.id), key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == list(zip([1, 2, 3], values)), key
        assert [(s[0], s[1]) for s in scalars[key]] == list(zip([1, 2, 3], values)), key


def test_mlflow_that_cannot_start_says_why_once(tmp_path: Any, caplog: Any) -> None:
    """A tracking URI MLflow cannot open: the one error logged is MLflow's own, not an AttributeError from every
    later hook."""
    pytest.importorskip("mlflow")
    from tunesmith.callbacks.mlflow import MLflowLogger

    def f(config: Any) -> None:
        ts.report({"x": 1.0})

    rs = ts.run(f, num_samples=2, storage_path=str(tmp_path), verbose=0,
                callbacks=[MLflowLogger(tracking_uri="nosuchscheme://x")])
    assert {t.status for t in rs.trials} == {TrialStatus.TERMINATED}
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage().split(" failed")[0] for r in failures] == ["callback MLflowLogger.on_experiment_start"]


def test_mlflow_whose_server_does_not_answer_fails_once_not_at_every_trial(
        tmp_path: Any, caplog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking server that is down: MLflow's client is made, its first call fails (after MLflow's retries: minutes
    by default, none here). Every trial's start then called the server again (create_run), waiting out those retries
    each time in the driver's loop: an error and minutes of stalled run per trial, where the logger had meant to
    stop at its start."""
    pytest.importorskip("mlflow")
    from tests.proc_helpers import free_port
    from tunesmith.callbacks.mlflow import MLflowLogger

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    def f(config: Any) -> None:
        ts.report({"x": 1.0})

    rs = ts.run(f, num_samples=3, storage_path=str(tmp_path), verbose=0,
                callbacks=[MLflowLogger(tracking_uri=f"http://127.0.0.1:{free_port()}")])  # nothing listens there
    assert {t.status for t in rs.trials} == {TrialStatus.TERMINATED}
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage().split(" failed")[0] for r in failures] == ["callback MLflowLogger.on_experiment_start"]


def test_mlflow_whose_server_goes_down_mid_run_is_not_called_again_at_every_result(
        tmp_path: Any, caplog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``mlflow server`` that takes the first trial's run and results, then ends: each later hook called it
    again, each call waiting out MLflow's HTTP retries in the driver's loop (minutes by default: a run stalled for
    minutes at every result). The first failed call ends the logger's calls for the run, with one error."""
    pytest.importorskip("mlflow")
    import subprocess
    import sys
    import urllib.request

    from tests.proc_helpers import free_port, until
    from tunesmith.callbacks.mlflow import MLflowLogger

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                               "--default-artifact-root", str(tmp_path / "artifacts")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200
        except OSError:
            return False

    class Down(ts.Callback):  # after the first result reached MLflow: the server goes away
        def on_trial_results(self, trial: Any, results: Any) -> None:
            if server.poll() is None:
                os.killpg(server.pid, 9)
                server.wait(timeout=30)

    def f(config: Any) -> None:
        for i in range(3):
            ts.report({"x": float(i)})

    try:
        until(up, "the MLflow server to answer", timeout=90)
        logger = MLflowLogger(tracking_uri=f"http://127.0.0.1:{port}")
        rs = ts.run(f, num_samples=3, max_concurrent=1, storage_path=str(tmp_path), verbose=0,
                    callbacks=[logger, Down()])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
    assert {t.status for t in rs.trials} == {TrialStatus.TERMINATED}
    assert len(rs.history(3)) == 3  # the store has every result
    failures = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1 and "MLflowLogger" in failures[0], failures
    assert f"127.0.0.1:{port}" in caplog.text and "no more" in caplog.text  # what failed, and what that means
    assert logger.run_id(1) is not None and logger.run_id(3) is None  # no run made once it was down


# -- defaults -----------------------------------------------------------------------------------------


def test_default_callbacks_progress_then_the_users_and_file_loggers_when_asked() -> None:
    from tunesmith.callbacks import Progress, default_callbacks

    mine = JSONLLogger()
    assert [type(cb).__name__ for cb in default_callbacks(0)] == ["Progress"]  # the store holds every result
    chain = default_callbacks(1, [mine], file_loggers=True)
    assert [type(cb).__name__ for cb in chain] == ["Progress", "CSVLogger", "JSONLLogger"]
    assert chain[-1] is mine and chain[0].verbose == 1  # type: ignore[attr-defined]
    own = Progress(verbose=2)
    chain = default_callbacks(1, [own], file_loggers=True)
    assert [type(cb).__name__ for cb in chain] == ["CSVLogger", "JSONLLogger", "Progress"] and chain[-1] is own


def test_the_default_file_loggers_share_one_writer(tmp_path: Any) -> None:
    import threading

    def writers() -> set[int | None]:  # other tests' loggers, never ended, may still have theirs
        return {t.ident for t in threading.enumerate() if t.name == "tunesmith-file-loggers"}

    before = writers()
    seen: list[bool] = []

    class Watch(ts.Callback):
        def on_experiment_start(self, info: Any) -> None:
            self.loggers = [cb for cb in info._c.callbacks if isinstance(cb, (CSVLogger, JSONLLogger))]

        def on_trial_results(self, trial: Any, results: Any) -> None:
            a, b = self.loggers
            seen.append(a._writer is not None and a._writer is b._writer)  # one writer for both, not one each

    def f(config: Any) -> None:
        ts.report({"x": 1})

    watch = Watch()
    result = ts.run(f, num_samples=3, storage_path=str(tmp_path), verbose=0, callbacks=[watch], file_loggers=True)
    assert len(watch.loggers) == 2 and seen and all(seen)
    assert not writers() - before  # its threads end with the experiment
    for t in result.trials:
        assert sorted(os.listdir(t.path)) == ["params.json", "progress.csv", "result.jsonl"]  # no output.log


def test_the_writer_adds_threads_while_the_filesystem_is_slow_and_keeps_each_trials_order() -> None:
    """Writes that each wait on the device (simulated: the wait gives up the interpreter lock, as I/O does)
    start more threads; quick writes stay on one. Either way a trial's writes run in the order they came."""
    import time

    from tunesmith.callbacks._writer import Writer

    def run(write_s: float) -> tuple[int, dict[int, list[int]]]:
        writer = Writer("tunesmith-test-writer")
        done: dict[int, list[int]] = {}

        def write(trial: Any, seq: int) -> None:
            if write_s:
                time.sleep(write_s)  # a slow device, not synchronisation
            done.setdefault(trial.id, []).append(seq)

        trials = [TrialView(id=i, config={}) for i in range(1, 25)]
        for seq in range(6):
            for trial in trials:
                writer.submit(lambda e: None, write, trial, seq)
        writer.flush()
        threads = writer.threads
        writer.close()
        return threads, done

    threads, done = run(0.002)
    assert threads > 1
    assert done == {i: list(range(6)) for i in range(1, 25)}
    threads, done = run(0.0)
    assert threads == 1
    assert done == {i: list(range(6)) for i in range(1, 25)}


def test_the_csv_header_is_written_with_the_first_rows_that_reach_the_file(
        trial_and_info: tuple[TrialView, Any]) -> None:
    """A first batch that fails to write (here: the file-size limit) must not leave later rows headerless."""
    import resource
    import signal

    trial, info = trial_and_info
    logger = CSVLogger(params=False)
    logger.on_experiment_start(info)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, old_limit[1]))
        logger.on_trial_results(trial, [_result(7, 1, loss=1.0)])
        logger.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    path = os.path.join(info.path, "trials", trial.name, "progress.csv")
    assert not os.path.exists(path) or os.path.getsize(path) == 0  # the first batch is lost, nothing else
    logger.on_trial_results(trial, [_result(7, 2, loss=0.5), _result(7, 3, loss=0.25)])
    logger.on_experiment_end(info)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["loss", "training_iteration", "time_total_s", "timestamp"]
    assert [(r["training_iteration"], r["loss"]) for r in rows] == [("2", "0.5"), ("3", "0.25")]


@pytest.mark.timeout(60, method="thread")  # the old code blocked where no signal handler runs
def test_tensorboard_on_a_full_disk_raises_in_the_hook_and_logs_the_next_batches(
        trial_and_info: tuple[TrialView, Any]) -> None:
    """tensorboardX's SummaryWriter wrote on a thread of its own behind a queue of 10 events: its first failed write
    (here the file-size limit; a full disk in a run) ended that thread, and the next events filled the queue and
    blocked the driver's loop for good (SIGTERM did not end it). The hook raises instead (the controller logs it, the
    experiment goes on), and once the disk has room the later batches are logged."""
    import resource
    import signal

    pytest.importorskip("tensorboardX")
    from tunesmith.callbacks.tensorboard import TensorBoardLogger

    trial, info = trial_and_info
    logger = TensorBoardLogger()
    logger.on_experiment_start(info)
    logger.on_trial_results(trial, [_result(7, 1, loss=1.0)])  # the trial's event file is made
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(_event_file(info, trial)), old_limit[1]))
        with pytest.raises(OSError):  # more than a file buffer (8 KiB) of events: a write, not only the flush, fails
            logger.on_trial_results(trial, [_result(7, i, loss=float(i), **{f"m{k}": 1.0 for k in range(20)})
                                            for i in range(2, 31)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    logger.on_trial_results(trial, [_result(7, i, loss=float(i)) for i in range(31, 34)])
    logger.on_trial_complete(trial)
    scalars, _, _ = _read_events(os.path.join(info.path, "tensorboard", trial.name))
    assert [step for step, _, _ in scalars["loss"]][-3:] == [31, 32, 33]


def _event_file(info: Any, trial: TrialView) -> str:
    (path,) = glob.glob(os.path.join(info.path, "tensorboard", trial.name, "events.out.tfevents.*"))
    return path


def test_tensorboard_gives_each_metric_its_own_tag_every_time(trial_and_info: tuple[TrialView, Any]) -> None:
    pytest.importorskip("tensorboardX")
    from tunesmith.callbacks.tensorboard import TensorBoardLogger, _tag

    trial, info = trial_and_info
    names = ["acc top1", "acc_top1", "acc,top1", "a\nb", "/lead", "été/n"]
    logger = TensorBoardLogger()
    logger.on_experiment_start(cast(Any, info))
    for i in (1, 2):
        logger.on_trial_results(trial, [_result(7, i, **{n: float(k + i) for k, n in enumerate(names)})])
    logger.on_trial_complete(trial)
    scalars, _, metric_tags = _read_events(os.path.join(info.path, "tensorboard", trial.name))
    tags = [_tag(n) for n in names]
    assert len(set(tags)) == len(names)
    assert tags[1] == "acc_top1" and tags[5] == "été/n"  # a name tensorboard takes is kept as it is
    assert tags[0].startswith("acc_top1-") and tags == [_tag(n) for n in names]  # the same tag each time
    for k, tag in enumerate(tags):
        assert [s[1] for s in scalars[tag]] == [float(k + 1), float(k + 2)]
    assert set(metric_tags) == {*tags, "time_total_s"}  # the HParams metrics are the scalar tags


def test_mlflow_tags_the_config_a_trial_ends_with_after_an_undone_exploit(tmp_path: Any) -> None:
    """One slot: trial 2 is exploited at its last result (its clone started: the run's ``tunesmith.config`` tag got
    the new config), has nothing left to train, and the exploit is undone: the tag named a config it never trained
    with."""
    pytest.importorskip("mlflow")
    from algorithm_helpers import exploited_at_its_last_result
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = ts.MLflowLogger(tracking_uri=uri)
    result = exploited_at_its_last_result(name="undo", storage_path=str(tmp_path / "results"), callbacks=[logger])
    assert [kind for _s, _t, kind, tid, _d in result._store.events() if tid == 2 and kind.startswith("exploit")] == [
        "exploit_undone"]
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id(2))
    assert run.data.params == {"a": "0"} and json.loads(run.data.tags["tunesmith.config"]) == {"a": 0}
