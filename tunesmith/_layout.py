"""The experiment folder's layout: every name in it, in one place.

An experiment is one folder, ``<storage_path>/<name>/``, and the folder is the experiment: its name is the
folder's name, and everything in it is found from the folder, so it can be moved, copied, renamed or
archived and still be read and resumed. Nothing here does I/O beyond the folder it is given.

::

    <name>/
        experiment.db                 the store (SQLite; checkpoint paths in it are relative to the folder)
        .driver.lock                  held (flock) by the driver running the experiment: the truth of "running"
        .driver.pid                   that driver's process id, for messages only
        trials/trial_00001/
            output.log                what the trial printed
            checkpoints/checkpoint_000005/
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.trial import trial_name

STORE_FILE = "experiment.db"
LOCK_FILE = ".driver.lock"
PID_FILE = ".driver.pid"
TRIALS = "trials"
CHECKPOINTS = "checkpoints"
OUTPUT_LOG = "output.log"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")
# a checkpoint inside some experiment folder: .../trials/trial_00001/checkpoints/checkpoint_000005[/...]
# (the last such part of the path: the greedy prefix)
_CHECKPOINT_TAIL = re.compile(r"^(?:.*/)?(" + TRIALS + r"/trial_[0-9]+/" + CHECKPOINTS + r"/[^/]+(?:/.*)?)$")


def check_name(name: Any) -> str:
    """An experiment name is one safe folder name: it can never point outside the results folder."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"name must be a folder name of letters, digits and . _ = + - (not starting with "
                          f"'.' or '-', at most 200 characters), got {name!r}")
    return name


def store_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, STORE_FILE)


def lock_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, LOCK_FILE)


def pid_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, PID_FILE)


def trial_dir(exp_dir: str, trial_id: int) -> str:
    return os.path.join(exp_dir, TRIALS, trial_name(trial_id))


def checkpoints_dir(trial_folder: str) -> str:
    """Where a trial's checkpoints go, given its folder (``trial_dir``)."""
    return os.path.join(trial_folder, CHECKPOINTS)


# -- checkpoint paths in the store ---------------------------------------------------------------------
def to_stored(exp_dir: str, path: str | None) -> str | None:
    """A checkpoint path as the store keeps it: relative to the experiment folder when it is inside it (so
    the folder can move), a URL or a path elsewhere as it is."""
    if path is None or "://" in path or not os.path.isabs(path):
        return path
    prefix = exp_dir.rstrip(os.sep) + os.sep
    if path.startswith(prefix):
        return path[len(prefix):]
    return path


def from_stored(exp_dir: str, stored: str | None) -> str | None:
    """A stored checkpoint path as an absolute path under the folder the store lives in now.

    Relative paths (this version) are joined to the folder. Absolute ones (stores written before paths
    were relative) that point into an experiment's ``trials/<trial>/checkpoints/`` are re-rooted onto this
    folder, so a moved or copied experiment never reads or deletes another folder's checkpoints. URLs and
    other paths are returned as they are.
    """
    if stored is None or "://" in stored:
        return stored
    if not os.path.isabs(stored):
        return os.path.normpath(os.path.join(exp_dir, stored))
    match = _CHECKPOINT_TAIL.match(stored.replace(os.sep, "/"))
    if match is not None:
        return os.path.normpath(os.path.join(exp_dir, *match.group(1).split("/")))
    return stored


# -- the driver's lock and pid file ----------------------------------------------------------------------
def driver_running(exp_dir: str) -> bool:
    """Whether a driver holds the experiment's lock now: the lock, not the pid file, is the truth (a pid
    file outlives a killed driver and its number can belong to another process by now)."""
    try:
        fd = os.open(lock_path(exp_dir), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False  # no lock file: no driver ever ran, or the folder is unreadable
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock: fall back to "the lock file is there"
        os.close(fd)
        return True
    try:
        # shared: two readers asking at once do not see each other as drivers
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return True
        return False
    finally:
        os.close(fd)  # releases a lock the probe got
    return False


def write_pid(exp_dir: str) -> None:
    """Write ``.driver.pid`` without following a link planted in the folder: a fresh file, renamed over."""
    final = pid_path(exp_dir)
    tmp = f"{final}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    os.replace(tmp, final)  # replaces a link itself, never its target


def read_pid(exp_dir: str) -> str:
    """The pid the driver wrote, for messages ("?" when there is none)."""
    try:
        fd = os.open(pid_path(exp_dir), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return "?"
    try:
        text = os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        return "?"
    finally:
        os.close(fd)
    return text if text.isdigit() else "?"


def remove_pid(exp_dir: str) -> None:
    try:
        os.remove(pid_path(exp_dir))
    except OSError:
        pass
