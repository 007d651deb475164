"""What the bridges share: reporting that turns a stop into a flag, and checkpoint folders checked before a
framework loads them (a framework's loader may unpickle)."""

from __future__ import annotations

import os
from typing import Any

from tunesmith import _signing, session
from tunesmith import checkpoint as _ckpt
from tunesmith.checkpoint import Checkpoint, CheckpointError


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
    """Whether the driver already decided to stop this trial (``ts.should_stop`` where this tunesmith has it)."""
    fn = getattr(session, "should_stop", None)
    if fn is not None:
        return bool(fn())
    s = session._session
    if s is not None and not s.stopped and s.channel.stop_requested():  # a cheap, rate-limited poll
        s.stopped = True  # as report() does: a later report raises instead of being stored
    return s is not None and s.stopped


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
