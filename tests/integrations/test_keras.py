"""Keras 3 bridge, on the PyTorch backend (no TensorFlow): a tiny Dense model on random numpy data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported, here and in the workers (they inherit it)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tunesmith as ts  # noqa: E402
from tunesmith import checkpoint as _ckpt  # noqa: E402
from tunesmith.checkpoint import Checkpoint  # noqa: E402

keras = pytest.importorskip("keras")
from tunesmith.integrations.keras import MODEL_FILE, ReportCallback, restore  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32"))


def _model(lr: float) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse", metrics=["mae"])
    return model


def _weights_sum(model: Any) -> float:
    return float(sum(np.abs(w).sum() for w in model.get_weights()))


def _train(config: dict[str, Any]) -> None:
    x, y = _data()
    model = _model(config.get("lr", 1e-2))
    initial = restore(model)
    log = os.path.join(ts.get_trial_dir(), "attempts.jsonl")
    with open(log, "a") as f:
        f.write(json.dumps({"initial_epoch": initial, "weights": _weights_sum(model)}) + "\n")
    callback = ReportCallback(metrics=config.get("metrics"))
    epochs = config["fail_after"] if config.get("fail_after") and initial == 0 else config["epochs"]
    history = model.fit(x, y, validation_split=config.get("validation_split", 0.25), batch_size=16, epochs=epochs,
                        initial_epoch=initial, validation_freq=config.get("validation_freq", 1), verbose=0,
                        callbacks=[callback])
    with open(log, "a") as f:
        f.write(json.dumps({"ran": history.epoch, "stopped": callback.stopped, "weights": _weights_sum(model)})
                + "\n")
    if initial == 0 and config.get("fail_after"):
        raise RuntimeError("the first attempt fails after its epochs")


def _lines(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_epoch_logs_arrive_in_the_store_and_a_stop_ends_fit_after_that_epoch() -> None:
    result = ts.run(_train, space={"epochs": 50}, stop={"training_iteration": 2}, verbose=0, name="keras-stop")
    trial = result.trials[0]
    history = result.history(trial.id)
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"loss", "mae", "val_loss", "val_mae"} <= set(h) and h["loss"] > 0
    lines = _lines(os.path.join(trial.path, "attempts.jsonl"))
    assert lines[-1]["ran"] == [0, 1] and lines[-1]["stopped"] is True  # 2 of the 50 epochs
    assert os.path.isfile(os.path.join(trial.checkpoint.as_dir(), MODEL_FILE))


def test_chosen_metrics_only_and_a_name_keras_never_logs_is_one_clear_error() -> None:
    result = ts.run(_train, space={"epochs": 1, "metrics": ts.grid([["val_loss"], ["val_los"]])}, verbose=0,
                    name="keras-metrics")
    ok, bad = sorted(result.trials, key=lambda t: t.config["metrics"] != ["val_loss"])
    assert set(result.history(ok.id)[0]) - {"training_iteration", "time_total_s", "timestamp"} == {"val_loss",
                                                                                                   "epoch"}
    assert bad.status == ts.TrialStatus.ERROR
    assert "metrics ['val_los'] are not in Keras' logs" in bad.error and "'val_loss'" in bad.error


def _train_per_class(config: dict[str, Any]) -> None:
    """A classifier whose ``F1Score(average=None)`` logs one value per class (an array)."""
    x, _ = _data()
    y = keras.utils.to_categorical((x[:, 0] > 0).astype("int64"), 2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[keras.metrics.F1Score(average=None)])
    model.fit(x, y, validation_split=0.25, batch_size=16, epochs=2, verbose=0,
              callbacks=[ReportCallback(metrics=config["metrics"], checkpoint=False)])


def test_a_metric_with_one_value_per_class_is_refused_by_name_or_left_out_of_every_scalar() -> None:
    """``F1Score(average=None)`` logs an array: chosen, it was refused by ``report()`` with an error naming
    neither the callback nor the metric; it is a ``ConfigError`` at the first epoch that names both and says what
    to do. ``metrics=None`` reports every scalar log and leaves it out, as the other bridges do."""
    result = ts.run(_train_per_class, space={"metrics": ts.grid([None, ["val_f1_score"], {"f1": "f1_score"}])},
                    verbose=0, name="keras-per-class")
    every, chosen, renamed = sorted(result.trials, key=lambda t: t.id)
    assert every.status == ts.TrialStatus.TERMINATED, every.error
    assert [set(r) - {"training_iteration", "time_total_s", "timestamp"} for r in result.history(every.id)] \
        == [{"loss", "val_loss", "epoch"}] * 2
    for trial, name in ((chosen, "val_f1_score"), (renamed, "f1_score")):
        assert trial.status == ts.TrialStatus.ERROR
        assert (f"keras.ReportCallback(metrics=...): metric {name!r} is not a number: Keras logged an array of "
                f"shape (2,)") in trial.error, trial.error
        assert "F1Score(average='macro')" in trial.error
        assert result.history(trial.id) == []


def _reports(monkeypatch: Any) -> list[tuple[dict[str, Any], Any]]:
    """What the callback reports, outside a trial: (metrics, checkpoint) pairs."""
    import tunesmith.integrations.keras as bridge

    reported: list[tuple[dict[str, Any], Any]] = []
    monkeypatch.setattr(bridge._common, "report",
                        lambda metrics, checkpoint=None: reported.append((metrics, checkpoint)) or True)
    return reported


@pytest.mark.parametrize("metrics", [["val_loss"], None], ids=["chosen", "all"])
def test_epochs_keras_does_not_validate_are_not_reported(monkeypatch: Any, metrics: Any) -> None:
    """``validation_freq=2``: Keras logs ``val_*`` every second epoch; the epochs between are not reported (their
    logs lack the validation metrics), neither an error nor a result without them (with the experiment's metric
    ``val_loss``, such a result would fail the experiment)."""
    reported = _reports(monkeypatch)
    x, y = _data()
    history = _model(1e-2).fit(x, y, batch_size=16, epochs=4, verbose=0, validation_split=0.25, validation_freq=2,
                               callbacks=[ReportCallback(metrics)])
    assert history.epoch == [0, 1, 2, 3]
    assert [m["epoch"] for m, _ in reported] == [2, 4]
    assert all(m["val_loss"] > 0 and isinstance(c, Checkpoint) for m, c in reported)


class _Epochs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.ended: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.ended.append(epoch)


@pytest.mark.parametrize("validation", [{"validation_split": 0.0}, {"validation_split": 0.25, "validation_freq": [5]}],
                         ids=["no validation", "validates after the last epoch"])
def test_a_validation_metric_when_fit_never_validates_is_an_error_at_the_first_epoch(
        validation: dict[str, Any]) -> None:
    x, y = _data()
    epochs = _Epochs()
    with pytest.raises(ts.ConfigError, match=r"metrics \['val_loss'\] are not in Keras' logs; it logged \['loss', "
                                             r"'mae'\] \(validation metrics need validation_data"):
        _model(1e-2).fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[ReportCallback(["val_loss"]), epochs],
                         **validation)
    assert epochs.ended == []  # raised at the end of the first epoch


def test_when_fits_arguments_are_not_visible_the_epochs_without_validation_are_left_out(monkeypatch: Any) -> None:
    """The fallback when the callback finds no ``fit`` among its callers: epochs without ``val_...`` are left out,
    and a ``fit`` that never validated is an error at its end."""
    import tunesmith.integrations.keras as bridge

    reported = _reports(monkeypatch)
    monkeypatch.setattr(bridge, "_fit_validates", lambda model: None)
    x, y = _data()
    _model(1e-2).fit(x, y, batch_size=16, epochs=4, verbose=0, validation_split=0.25, validation_freq=2,
                     callbacks=[ReportCallback(["val_loss"], checkpoint=False)])
    assert [m["epoch"] for m, _ in reported] == [2, 4]
    with pytest.raises(ts.ConfigError, match=r"metrics \['val_loss'\] were never in Keras' logs"):
        _model(1e-2).fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ReportCallback(["val_loss"])])


def test_a_retry_continues_from_the_checkpoint() -> None:
    result = ts.run(_train, space={"epochs": 4, "fail_after": 2}, max_failures=1, verbose=0, name="keras-retry")
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED
    first_start, first_end, retry_start, retry_end = _lines(os.path.join(trial.path, "attempts.jsonl"))
    assert first_start["initial_epoch"] == 0 and first_end["ran"] == [0, 1]
    # the retry starts from the weights the first attempt ended with, at epoch 2, and runs epochs 3 and 4
    assert retry_start["initial_epoch"] == 2
    assert retry_start["weights"] == pytest.approx(first_end["weights"], rel=1e-6)
    assert retry_start["weights"] != pytest.approx(first_start["weights"], rel=1e-3)
    assert retry_end["ran"] == [2, 3]
    assert [h["epoch"] for h in result.history(trial.id)] == [1, 2, 3, 4]


def test_restore_keeps_the_compiled_learning_rate_and_the_optimizer_state(tmp_path: Any) -> None:
    x, y = _data()
    model = _model(1e-2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[_Saver(tmp_path)])
    ckpt = Checkpoint(_ckpt.write(Checkpoint.from_dir(tmp_path / "saved"), str(tmp_path / "ckpts"), 1))

    new = _model(5e-4)  # the config after a PBT exploit
    assert restore(new, ckpt) == 1
    assert float(new.optimizer.learning_rate) == pytest.approx(5e-4)
    assert int(new.optimizer.iterations) == 4  # 64 samples / 16 per batch: the saved count, not 0
    for a, b in zip(model.get_weights(), new.get_weights()):
        np.testing.assert_array_equal(a, b)
    new.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert float(new.optimizer.learning_rate) == pytest.approx(5e-4) and int(new.optimizer.iterations) == 8


class _Saver(keras.callbacks.Callback):  # the files ReportCallback puts in a checkpoint, outside a trial
    def __init__(self, tmp_path: Any) -> None:
        super().__init__()
        self.folder = tmp_path / "saved"

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.folder.mkdir()
        self.model.save(str(self.folder / MODEL_FILE))
        (self.folder / "epoch.json").write_text(json.dumps({"epoch": epoch + 1}))


def test_a_keras_backend_that_is_not_installed_is_named_with_kerass_backend_setting_not_the_extra() -> None:
    """Keras is installed but the backend it is set to load is not (KERAS_BACKEND unset means TensorFlow):
    the error said 'needs the optional package 'tensorflow' ... pip install 'tunesmith[keras]'', which installs
    only keras and so could never fix it. It names the backend and KERAS_BACKEND, the setting that chooses it."""
    code = ("import sys\nsys.modules['tensorflow'] = None\n"  # tensorflow cannot be imported, installed or not
            "try:\n    import tunesmith.integrations.keras\n"
            "except ImportError as e:\n    print(type(e).__name__ + ': ' + str(e))\nelse:\n    print('imported')\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MissingDependency: tunesmith.integrations.keras: "), out.stdout
    assert "Keras' backend 'tensorflow' (KERAS_BACKEND='tensorflow')" in out.stdout, out.stdout
    assert "set KERAS_BACKEND to" in out.stdout and "tunesmith[keras]" not in out.stdout, out.stdout
