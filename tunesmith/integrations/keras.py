"""Keras 3: report each epoch's logs from ``model.fit``, checkpoint the model, stop ``fit`` when told, restore.

    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")  # your choice: jax, torch or tensorflow, before keras loads
    import keras
    from tunesmith.integrations.keras import ReportCallback, restore

    def train(config):
        model = build_and_compile(config)            # with the trial's current config (learning rate...)
        initial_epoch = restore(model)               # 0, or the epoch its checkpoint was saved after
        model.fit(x, y, validation_split=0.2, epochs=20, initial_epoch=initial_epoch,
                  callbacks=[ReportCallback(metrics=["val_loss", "val_accuracy"])])

Needs ``pip install 'tunesmith[keras]'`` and a Keras backend (JAX, PyTorch or TensorFlow).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._optional import MissingDependency, require
from tunesmith.checkpoint import Checkpoint
from tunesmith.integrations import _common

_BACKENDS = ("jax", "torch", "tensorflow")


def _require_keras() -> Any:
    """``keras``, or a MissingDependency saying what to install. Keras imports its backend as it loads
    (``KERAS_BACKEND``, else TensorFlow): a missing backend is named with that setting, since the ``keras``
    extra installs none (its ``pip install`` line could never fix it)."""
    try:
        return require("keras", "keras", "tunesmith.integrations.keras")
    except MissingDependency as e:
        missing = (getattr(e.__cause__, "name", None) or "").split(".")[0]
        if missing not in _BACKENDS:
            raise
        chosen = os.environ.get("KERAS_BACKEND")
        setting = f"KERAS_BACKEND={chosen!r}" if chosen else "KERAS_BACKEND is not set: Keras' default"
        raise MissingDependency(
            f"tunesmith.integrations.keras: Keras' backend {missing!r} ({setting}) cannot be imported "
            f"({e.__cause__}); install it, or set KERAS_BACKEND to one that is installed "
            f"({', '.join(map(repr, _BACKENDS))}) before keras is first imported") from e.__cause__


keras = _require_keras()

__all__ = ["MODEL_FILE", "ReportCallback", "restore"]

MODEL_FILE = "model.keras"  # what ``model.save`` writes in a checkpoint folder
_EPOCH_FILE = "epoch.json"  # the number of epochs done when it was written (``fit``'s ``initial_epoch``)


class ReportCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Reports the logs at the end of each epoch; sets ``model.stop_training`` when the trial is stopped.

    Args:
        metrics: the log names to report, as Keras names them (``"loss"``, ``"val_loss"``,
            ``"val_accuracy"``...), or a dict ``{reported name: log name}``; default: every scalar in the logs.
            A chosen log that is not one number (``F1Score(average=None)``'s array) is an error at the first report.
            A name that Keras does not log is an error at the first report, naming those it logs. With
            ``fit(validation_freq=...)``, the epochs that Keras does not validate are not reported (their logs
            lack the ``val_...`` metrics); ``val_...`` names when ``fit`` validates in none of its epochs (no
            ``validation_data`` or ``validation_split``) are an error at the first epoch.
        checkpoint: save the model (``model.save``, optimizer state included) with each report; :func:`restore`
            loads it back.
        frequency: report every ``frequency`` epochs.
    """

    def __init__(self, metrics: list[str] | dict[str, str] | str | None = None, checkpoint: bool = True,
                 frequency: int = 1) -> None:
        super().__init__()
        if isinstance(metrics, str):
            metrics = [metrics]
        if metrics is not None and not isinstance(metrics, dict):
            metrics = {name: name for name in metrics}
        if metrics is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metrics.items()):
            raise ConfigError(f"ReportCallback: metrics must be log names (a list or a dict of str), got {metrics!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ConfigError(f"ReportCallback: frequency must be a positive integer, got {frequency!r}")
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.frequency = frequency
        self.stopped = False
        self._will_validate: bool | None = None  # whether this fit validates in any of its epochs (None: unknown)
        self._validated = False  # fit's validation ran in this epoch
        self._validations = 0  # in this fit
        self._skipped: list[str] = []  # validation metrics of the epochs left out while _will_validate is None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._will_validate = _fit_validates(self.model)
        self._validations = 0
        self._skipped = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._validated = False

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._validated = True  # fit's validation is model.evaluate with fit's callbacks (ours among them)
        self._validations += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.frequency:
            return
        logs = dict(logs or {})
        # an epoch that fit does not validate (validation_freq) logs no val_...: left out, not reported without them
        between = not self._validated and self._will_validate is not False
        if self.metrics is None:
            if between and (self._will_validate or self._validations):
                self._between_validations()
                return
            out = {k: v for k, v in ((k, _common.scalar(v)) for k, v in logs.items()) if v is not None}
        else:
            missing = sorted(set(self.metrics.values()) - set(logs))
            if missing and between and all(name.startswith("val_") for name in missing):
                if self._will_validate is None:
                    self._skipped = missing
                self._between_validations()
                return
            if missing:
                raise ConfigError(f"ReportCallback: metrics {missing} are not in Keras' logs; it logged "
                                  f"{sorted(logs)} (validation metrics need validation_data or validation_split, "
                                  f"and a validation_freq that validates in one of fit's epochs)")
            out = {name: _chosen_scalar(log, logs[log]) for name, log in self.metrics.items()}
        out["epoch"] = epoch + 1
        if self.checkpoint:
            with tempfile.TemporaryDirectory(prefix="keras-") as folder:
                self.model.save(os.path.join(folder, MODEL_FILE))
                with open(os.path.join(folder, _EPOCH_FILE), "w") as f:
                    json.dump({"epoch": epoch + 1}, f)
                ok = _common.report(out, Checkpoint.from_dir(folder))  # copied before the folder goes
        else:
            ok = _common.report(out)
        if not ok:
            self.stopped = True
            self.model.stop_training = True  # fit ends after this epoch, its callbacks' ends run

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.stopped and batch % 64 == 63 and _common.should_stop():  # told between reports
            self.stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._skipped and not self._validations and not self.stopped:  # fit's arguments were not visible
            raise ConfigError(f"ReportCallback: metrics {self._skipped} were never in Keras' logs: fit did not "
                              f"validate in any epoch (validation metrics need validation_data or validation_split, "
                              f"and a validation_freq that validates in one of fit's epochs)")

    def _between_validations(self) -> None:
        if not self.stopped and _common.should_stop():  # told since the last report
            self.stopped = True
            self.model.stop_training = True


def restore(model: Any, checkpoint: Any = None) -> int:
    """Load the trial's checkpoint into ``model``, built and compiled with the trial's CURRENT config; return
    the ``initial_epoch`` to pass to ``fit`` (0 when there is nothing to restore).

    The weights and the optimizer's state (moments, iteration count) come from the checkpoint; the learning
    rate stays the one ``model`` was compiled with: after a PBT exploit the new value is the one training
    uses (``keras.models.load_model`` would bring back the saved one).

    Args:
        model: the compiled model (same architecture as the checkpoint's).
        checkpoint: the checkpoint to restore; default ``ts.get_checkpoint()``.

    Raises:
        CheckpointError: the checkpoint is not one this user's tunesmith wrote, or is damaged.
        ConfigError: the checkpoint was not written by this ``ReportCallback``.
    """
    if checkpoint is None:
        from tunesmith import session

        checkpoint = session.get_checkpoint()
        if checkpoint is None:
            return 0
    folder = _common.checked_dir(checkpoint, "keras.restore")
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"keras.restore: the checkpoint {checkpoint.path} holds no {MODEL_FILE}: it was not "
                          f"written by tunesmith.integrations.keras.ReportCallback")
    optimizer = getattr(model, "optimizer", None)
    lr = None
    if optimizer is not None:
        if not optimizer.built:  # an unbuilt optimizer's saved state would be skipped
            optimizer.build(model.trainable_variables)
        lr = getattr(optimizer, "_learning_rate", None)
        lr = lr.numpy() if isinstance(lr, keras.Variable) else None
    model.load_weights(path)
    if optimizer is not None and lr is not None:
        optimizer.learning_rate = lr  # the compiled (current config's) value, not the saved one
    with open(os.path.join(folder, _EPOCH_FILE)) as f:
        return int(json.load(f)["epoch"])


def _fit_validates(model: Any) -> bool | None:
    """Whether the running ``model.fit`` validates in at least one of its epochs, from its arguments (Keras 3
    gives callbacks no ``do_validation``: ``params`` holds ``verbose``, ``epochs`` and ``steps`` only); None
    when no ``fit`` of ``model`` is found among the callers (then the epochs that lack ``val_...`` are left
    out, and a fit that never validated is an error at its end)."""
    frame = sys._getframe(1)
    while frame is not None:
        names = frame.f_locals
        if (frame.f_code.co_name == "fit" and names.get("self") is model and "validation_data" in names
                and "validation_freq" in names and "epochs" in names):
            if names["validation_data"] is None:  # validation_split became validation_data before this call
                return False
            freq, first = names["validation_freq"], getattr(model, "_initial_epoch", None) or names.get("initial_epoch")
            epochs = range(int(first or 0) + 1, int(names["epochs"]) + 1)  # as Keras' _should_eval counts them
            if isinstance(freq, int) and freq > 0:
                return any(e % freq == 0 for e in epochs)
            return any(e in freq for e in epochs) if isinstance(freq, (list, tuple)) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _chosen_scalar(name: str, value: Any) -> int | float | bool:
    """A chosen log as a Python number.

    Raises:
        ConfigError: the log is not one number (an array such as ``F1Score(average=None)``'s, one per class).
    """
    number = _common.scalar(value)
    if number is None:
        shape = getattr(value, "shape", None)
        what = f"an array of shape {tuple(shape)}" if shape is not None else f"a {type(value).__name__}"
        raise ConfigError(f"keras.ReportCallback(metrics=...): metric {name!r} is not a number: Keras logged {what} "
                          f"(a metric with one value per class, such as F1Score(average=None)?); report one number, "
                          f"e.g. F1Score(average='macro'), or leave {name!r} out of metrics=")
    return number
