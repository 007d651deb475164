"""What the framework bridges share: choosing the metrics to report from what a framework logged, reporting
that turns a stop into a flag, and checkpoint folders checked before a framework loads them (a framework's
loader may unpickle)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith import _signing, session
from tunesmith import checkpoint as _ckpt
from tunesmith._errors import ConfigError
from tunesmith.checkpoint import Checkpoint, CheckpointError


class MetricPicker:
    """Picks the metrics a bridge reports from the ones a framework logged.

    ``metrics`` is None (every scalar the framework logged, under its own name), a name, a list of names,
    or a dict ``{reported name: logged name}``. A chosen name that the framework did not log is one
    ``ConfigError`` at the first report, naming the metrics it did log: a typo (``val_los``) would otherwise
    make every trial report nothing useful, or fail later with an error about the experiment's metric.
    """

    def __init__(self, metrics: str | Sequence[str] | Mapping[str, str] | None, who: str, hint: str = "") -> None:
        self.who = who  # e.g. "lightning.ReportCallback": put first in the error
        self.hint = hint  # how the framework names what it logs, added to the error
        if metrics is None:
            self.names: dict[str, str] | None = None
        elif isinstance(metrics, str):
            self.names = {metrics: metrics}
        elif isinstance(metrics, Mapping):
            self.names = dict(metrics)
        elif isinstance(metrics, Sequence):
            self.names = {m: m for m in metrics}
        else:
            raise ConfigError(f"{who}(metrics=...): expected None, a metric name, a list of names or a dict "
                              f"{{reported name: logged name}}, got {type(metrics).__name__}")
        for reported, logged in (self.names or {}).items():
            if not isinstance(reported, str) or not isinstance(logged, str):
                raise ConfigError(f"{who}(metrics=...): metric names must be strings, got {reported!r}: {logged!r}")
        if self.names == {}:
            raise ConfigError(f"{who}(metrics=...): no metric chosen; pass None to report every logged metric")

    def pick(self, logged: Mapping[str, Any], why_missing: str = "") -> dict[str, Any]:
        """The metrics to report, as Python scalars. ``why_missing`` replaces the hint in the error when the
        bridge knows why a metric may be missing (e.g. the fit does not validate).

        Raises:
            ConfigError: a chosen metric is not in ``logged`` (or is not a scalar).
        """
        if self.names is None:
            out = {}
            for name, value in logged.items():
                scalar_value = scalar(value)
                if scalar_value is not None:
                    out[str(name)] = scalar_value
            return out
        out = {}
        for reported, name in self.names.items():
            value = scalar(logged[name]) if name in logged else None
            if value is None:
                seen = ", ".join(sorted(str(k) for k in logged)) or "nothing"
                why = "was not logged" if name not in logged else f"is not a number ({type(logged[name]).__name__})"
                raise ConfigError(f"{self.who}(metrics=...): metric {name!r} {why}; the framework logged: {seen}"
                                  + (f" ({why_missing or self.hint})" if why_missing or self.hint else ""))
            out[reported] = value
        return out


def scalar(value: Any) -> int | float | bool | None:
    """``value`` as a Python number (numpy/torch scalars and one-element tensors included), or None."""
    if isinstance(value, (bool, int, float)):
        return value
    item = getattr(value, "item", None)
    if item is None:
        return None
    try:
        converted = item()
    except (ValueError, RuntimeError, TypeError):  # not one element
        return None
    return converted if isinstance(converted, (bool, int, float)) else None


def report(metrics: dict[str, Any], checkpoint: Checkpoint | None = None) -> bool:
    """``ts.report``; False when the trial was stopped (the framework's loop must then end), True otherwise.

    ``report`` ends a plain training function by raising ``StopTrial``; inside a framework's loop the bridge
    catches it and ends the loop the framework's own way instead, so its cleanup runs.
    """
    try:
        session.report(metrics, checkpoint)
    except session.StopTrial:
        return False
    return True



def should_stop() -> bool:
    """Whether the driver already decided to stop this trial (``ts.should_stop``)."""
    return session.should_stop()

def checked_dir(checkpoint: Checkpoint, what: str) -> str:
    """The local folder of ``checkpoint`` once its files match their checksums and this user's key signed its
    manifest: frameworks' loaders unpickle (SB3's zip holds cloudpickled objects), so a folder that someone
    else wrote is never handed to one.

    Raises:
        CheckpointError: naming the folder and why it is refused.
    """
    folder = checkpoint.as_dir()
    if not os.path.isdir(folder):
        raise CheckpointError(f"{what}: checkpoint folder {checkpoint.path} does not exist (deleted or moved)")
    why = _signing.check(_ckpt.verify(folder))
    if why is not None:
        raise CheckpointError(f"{what}: refusing to load the checkpoint {checkpoint.path}: {why}; loading it "
                              f"could run any code its author chose")
    return folder
