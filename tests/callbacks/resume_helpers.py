"""For the loggers' resume tests: an experiment interrupted (Ctrl-C) while its trials run, then resumed
(``resume=True``); and a trial that runs until told to end. Imported with this folder on ``sys.path``."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

import tunesmith as ts

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from algorithm_helpers import CtrlCAfter  # noqa: E402


def until_go(config: Any) -> None:
    """Reports (a checkpoint every 2) until the file ``go`` exists, then 2 more: the first driver is interrupted
    while it runs, the resumed one sees it end."""
    checkpoint = ts.get_checkpoint()
    i = checkpoint.load()["i"] if checkpoint is not None else 0
    left = None
    while left is None or left > 0:
        i += 1
        ts.report({"loss": float(i + config["x"])}, checkpoint=ts.Checkpoint.from_state({"i": i}) if i % 2 else None)
        if left is None and os.path.exists(config["go"]):
            left = 2
        elif left is not None:
            left -= 1


def interrupted_then_resumed(fn: Any, space: dict[str, Any], after: int, first: list[Any], then: list[Any],
                             **kwargs: Any) -> Any:
    """``run(fn, space, **kwargs)`` with the callbacks ``first``, interrupted once ``after`` results are in; the file
    ``space["go"]`` is made (the trials may end), and the experiment resumed with the callbacks ``then``: its
    ``ResultSet``."""
    with pytest.raises(KeyboardInterrupt):
        ts.run(fn, space, callbacks=[*first, CtrlCAfter(after)], **kwargs)
    with open(space["go"], "w"):
        pass
    return ts.run(fn, space, callbacks=then, resume=True, **kwargs)
