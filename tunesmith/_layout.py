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
        tensorboard/trial_00001/      TensorBoardLogger's event files (with that logger)
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
from collections.abc import Iterator
from typing import Any, overload

from tunesmith._display import printable
from tunesmith._errors import ConfigError
from tunesmith._safe_write import replacing
from tunesmith.trial import trial_name

log = logging.getLogger("tunesmith")

STORE_FILE = "experiment.db"
LOCK_FILE = ".driver.lock"
PID_FILE = ".driver.pid"
TRIALS = "trials"
CHECKPOINTS = "checkpoints"
OUTPUT_LOG = "output.log"
TENSORBOARD = "tensorboard"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}\Z")  # \Z: `$` matches before a final newline
# a checkpoint inside some experiment folder: .../trials/trial_00001/checkpoints/checkpoint_000005[/...]
# (the last such part of the path: the greedy prefix)
_CHECKPOINT_TAIL = re.compile(r"^(?:.*/)?(" + TRIALS + r"/trial_[0-9]+/" + CHECKPOINTS + r"/[^/]+(?:/.*)?)$")


def check_name(name: Any) -> str:
    """An experiment name is one safe folder name: it can never point outside the results folder."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"name must be a folder name of letters, digits and . _ = + - (not starting with "
                          f"'.' or '-', at most 200 characters), got {name!r}")
    return name


def check_folder_name(name: Any) -> str:
    """The name of an experiment folder that exists (a resume's): any one folder name, whatever the folder was
    renamed to (``my exp``, ``.old``, ``-v2``), but never a path: the folder is directly under the storage folder.
    ``check_name`` is for the folders tunesmith creates."""
    seps = {os.sep, os.altsep or os.sep, "/"}
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in seps) or "\0" in name:
        raise ConfigError(f"name must be the name of an experiment folder (one folder name, not a path: no "
                          f"{' or '.join(sorted(map(repr, seps)))}, not '.' or '..'), got {name!r}")
    return name


def default_storage() -> str:
    """The folder of experiment folders when none is given: ``$TUNESMITH_RESULTS`` (when set and not empty), else
    ``./tunesmith_results``."""
    return os.environ.get("TUNESMITH_RESULTS") or os.path.join(os.getcwd(), "tunesmith_results")


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def storage_root(storage_path: str | None) -> str:
    """``storage_path`` (or the default) as an absolute path, ``~`` expanded (as Ray Tune's ``~/ray_results``).

    Raises:
        ConfigError: an empty path, or a URL (``s3://``, ``file://``): experiment folders are local; a URL is for
            ``RayBackend(storage=...)`` (it made a folder named ``file:`` in the current folder).
    """
    path = storage_path if storage_path is not None else default_storage()
    if not os.fspath(path):  # os.environ.get("RESULTS", ""): the current folder was not asked for
        raise ConfigError("storage_path: expected a folder, got '' (an unset variable?); pass None for the default "
                          "($TUNESMITH_RESULTS or ./tunesmith_results)")
    if _URL.match(os.fspath(path)):
        what = "storage_path" if storage_path is not None else "$TUNESMITH_RESULTS"
        raise ConfigError(f"{what} must be a local folder, got {os.fspath(path)!r}: a URL is for "
                          f"RayBackend(storage=...), which keeps checkpoints there while the experiment folder "
                          f"stays local (docs/ray.md)")
    return os.path.abspath(os.path.expanduser(path))


def store_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, STORE_FILE)


def find_experiment(name_or_path: str | os.PathLike[str], storage_path: str | None = None) -> str:
    """The experiment folder a name or a path means, as every reader resolves it (``ts.load``, `tunesmith show`):
    ``<storage_path>/<name_or_path>`` when it holds a store, else ``name_or_path`` itself when it does (a folder
    path, relative to the current folder or absolute). A folder without a store is no experiment: a data set folder
    named like the experiment, in the current folder, does not hide the experiment of that name.

    Raises:
        ConfigError: neither holds a store (both places named).
    """
    given = os.fspath(name_or_path)
    root = storage_root(storage_path)
    places = list(dict.fromkeys((os.path.normpath(os.path.join(root, given)), os.path.abspath(given))))
    for place in places:
        if os.path.isfile(store_path(place)):
            return place
    looked = " nor in ".join(places)
    notes = [note for note in map(_no_experiment, places) if note]
    raise ConfigError(f"no experiment {given!r}: no {STORE_FILE} in {looked}" + (f" ({'; '.join(notes)})" if notes
                                                                                 else ""))


def _no_experiment(place: str) -> str | None:
    """What ``place`` (no experiment folder) is, and what to give instead; None when nothing is there."""
    if os.path.isfile(place):
        if os.path.basename(place) == STORE_FILE:
            return f"{place!r} is the experiment's store file; give its folder {os.path.dirname(place)!r}"
        return f"{place!r} is a file, not an experiment folder"
    if not os.path.isdir(place):
        return None
    try:
        with os.scandir(place) as it:
            inside = sorted(e.name for e in it
                            if e.is_dir(follow_symlinks=False) and os.path.isfile(store_path(e.path)))
    except OSError:
        inside = []
    if not inside:
        return f"{place}: a folder without {STORE_FILE}"
    names = ", ".join(inside[:3]) + (f" and {len(inside) - 3:,} more" if len(inside) > 3 else "")
    return (f"{place!r} is a folder of experiments ({names}), not one: give one of them, e.g. "
            f"{os.path.join(place, inside[0])!r}")


def lock_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, LOCK_FILE)


def pid_path(exp_dir: str) -> str:
    return os.path.join(exp_dir, PID_FILE)


def trial_dir(exp_dir: str, trial_id: int) -> str:
    return os.path.join(exp_dir, TRIALS, trial_name(trial_id))


def checkpoints_dir(trial_folder: str) -> str:
    """Where a trial's checkpoints go, given its folder (``trial_dir``)."""
    return os.path.join(trial_folder, CHECKPOINTS)


def _real_subdirs(folder: str, pattern: str) -> list[os.DirEntry[str]]:
    """The folders in ``folder`` whose names match ``pattern``; symbolic links are not folders here."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if re.fullmatch(pattern, e.name) and e.is_dir(follow_symlinks=False)),
                          key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def checkpoint_entries(exp_dir: str, trial_id: int | None = None) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(trial folder name, entry) for everything in each ``trials/<trial>/checkpoints/`` of the folder (only that
    trial's with ``trial_id``), found on disk (not from paths a store names). Nothing is followed: a ``trials``,
    trial or ``checkpoints`` folder that is a symbolic link is skipped."""
    pattern = r"trial_-?\d+" if trial_id is None else re.escape(trial_name(trial_id))
    for trials in _real_subdirs(exp_dir, TRIALS):
        for trial in _real_subdirs(trials.path, pattern):
            for ckpts in _real_subdirs(trial.path, CHECKPOINTS):
                with os.scandir(ckpts.path) as it:
                    for entry in sorted(it, key=lambda e: e.name):
                        yield trial.name, entry


def unlink_planted_links(exp_dir: str) -> list[str]:
    """Remove the symbolic links a resume must not let the driver or a trial write through, in a folder that
    someone else may have made; return them. Removed: a link at ``trials`` or ``trials/<trial>``, and at
    ``tensorboard`` or ``tensorboard/<trial>`` (where ``TensorBoardLogger`` makes each trial's event files); every
    link directly in a trial folder (``checkpoints``, ``output.log``, ``params.json``, and what the trial writes in
    its working folder, which is its trial folder: ``open("metrics.txt", "w")``) or in its ``checkpoints``
    folder (where the driver renames new checkpoints into place); and, deeper in a trial folder
    (``artifacts/x``, ``somedir`` linked to a folder a trial then writes into), every link that leads out of
    its trial folder (its target, resolved, is not inside it). A link that stays inside (``wandb/latest-run ->
    run-...``, which W&B makes in a trial's working folder) is kept: writing through it writes in the trial
    folder. The link is removed, never what it points to; the driver and the trial make a real file or folder
    in its place. A warning names them (escaped). FIFOs, sockets and device files anywhere the walk goes are
    removed too (returned after the links): nothing a trial stores is one, and a trial opening a planted FIFO
    (``metrics.txt``) for writing would block until someone read it.

    Nothing is followed: the walk goes into real folders only (a linked one is judged as a link, never listed),
    so nothing outside the experiment folder is listed or removed. Not walked: the inside of each checkpoint
    folder (``checkpoints/<checkpoint>/``), which nothing writes into once it is in place and whose files are
    read through no link (``checkpoint.py``; a checkpoint holding a link is refused), so a trial with many
    checkpoints costs one more folder read, not one per checkpoint. Cost: one ``scandir`` per folder, no ``stat``
    per entry (``DirEntry`` types), ``realpath`` for links only. At 10,000 trial folders, warm cache, on a
    loaded 2-core VM: as a run leaves them (a checkpoint each) 0.07 s for the top level alone, 0.14 s for this
    walk, of a 1.2 s resume of that experiment; with 6 folders of the trial's own and 3 checkpoints each,
    0.08 s, 0.41 s, and 0.57 s walking into the checkpoints too. It grows with the folders and files the trials
    wrote, as reading them does."""
    trials = os.path.join(exp_dir, TRIALS)
    links = [trials] if os.path.islink(trials) else []
    real_trials = "" if links else os.path.realpath(trials)
    for entry in [] if links else _scan(trials):
        if entry.is_symlink():
            links.append(entry.path)
        elif entry.is_dir(follow_symlinks=False):  # a real folder in a real one: its real path is known
            links.extend(_links_in_trial(entry.path, os.path.join(real_trials, entry.name)))
    events = os.path.join(exp_dir, TENSORBOARD)
    links += [events] if os.path.islink(events) else [entry.path for entry in _scan(events) if entry.is_symlink()]
    is_link = [os.path.islink(path) for path in links]  # the rest: FIFOs, sockets, devices (_links_in_trial)
    special = [path for path, link in zip(links, is_link) if not link]
    links = [path for path, link in zip(links, is_link) if link]
    for path in links + special:
        os.unlink(path)
    for found, what, why in ((links, "symbolic link(s)", "where the experiment's own folders and files go or leading "
                              "out of a trial folder (%s%s): the experiment writes only inside its folder"),
                             (special, "FIFO(s), socket(s) or device file(s)", "in trial folders (%s%s): a trial "
                              "that opened one would wait for whoever is at its other end, or write to a device")):
        if found:
            shown = sorted(found)
            log.warning("removed %d " + what + " " + why, len(found),
                        ", ".join(printable(p, one_line=True) for p in shown[:10]), ", ..." if len(shown) > 10 else "")
    return links + special


def _links_in_trial(folder: str, real: str) -> list[str]:
    """The links ``unlink_planted_links`` removes in the trial folder ``folder`` (a real folder, whose real path
    is ``real``): every one at its top and in its ``checkpoints``, and below those whose target leaves it. Only
    real folders are walked into."""
    found = []
    stack = [(folder, 0)]
    while stack:
        here, depth = stack.pop()
        for entry in _scan(here):
            if entry.is_symlink():
                if depth <= 0 or not _inside_real(os.path.realpath(entry.path), real):
                    found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                if depth >= 0:
                    # checkpoints/ (-1) is read as the top is (every link goes), the checkpoint folders in it are not
                    stack.append((entry.path, -1 if depth == 0 and entry.name == CHECKPOINTS else depth + 1))
            elif not entry.is_file(follow_symlinks=False):  # a FIFO, a socket, a device: no trial's data, and
                found.append(entry.path)  # opening one for writing blocks (a FIFO) or writes elsewhere (a device)
    return found


def _inside_real(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _scan(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


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


# a stored checkpoint path, normalised, relative to the experiment folder: in some trial's checkpoints folder
_STORED_CHECKPOINT = re.compile(TRIALS + r"/trial_-?[0-9]+/" + CHECKPOINTS + r"/[^/]+(?:/.*)?", re.DOTALL)


@overload
def from_stored(exp_dir: str, stored: str) -> str: ...
@overload
def from_stored(exp_dir: str, stored: None) -> None: ...
def from_stored(exp_dir: str, stored: str | None) -> str | None:
    """A stored checkpoint path as an absolute path under the folder the store lives in now.

    Relative paths (this version) are joined to the folder. Absolute ones (stores written before paths
    were relative) that point into an experiment's ``trials/<trial>/checkpoints/`` are re-rooted onto this
    folder, so a moved or copied experiment never reads or deletes another folder's checkpoints. URLs
    (``scheme://...``: ``RayBackend(storage=...)``) are returned as they are.

    Raises:
        ValueError: anything else: a path that leaves this folder's ``trials/<trial>/checkpoints/`` (``..``,
            another absolute path), or a value that is not text. The store may come from someone else; the
            caller names the store and the row.
    """
    if stored is None:
        return None
    if not isinstance(stored, str):
        raise ValueError(f"the checkpoint path {stored!r} is not text (a {type(stored).__name__}): expected "
                         f"a path relative to the experiment folder or a URL")
    if _URL.match(stored):
        return stored
    rel = stored.replace(os.sep, "/")
    if os.path.isabs(stored):
        match = _CHECKPOINT_TAIL.match(rel)
        rel = match.group(1) if match is not None else ""
    rel = posixpath.normpath(rel) if rel else rel
    if "\0" in rel or not _STORED_CHECKPOINT.fullmatch(rel):
        raise ValueError(f"the checkpoint path {stored!r} is not in the experiment folder's "
                         f"{TRIALS}/<trial>/{CHECKPOINTS}/ (expected {TRIALS}/trial_N/{CHECKPOINTS}/<name>, "
                         f"or a URL): tunesmith reads and deletes checkpoints only inside the experiment's folder")
    return os.path.join(exp_dir, *rel.split("/"))


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


def live_status(exp_dir: str, status: str) -> str:
    """An experiment's status as every reader shows it (``ResultSet.status``, `ls`, `show`, the dashboard): the
    status its driver last stored, but "crashed" for one stored as "running" whose driver holds no lock on it
    (killed: SIGKILL, out of memory, a power cut). The lock is the truth, as for ``resume``: a ``.driver.pid``
    left by a killed driver can name a process that is alive by now (its number reused). Costs a lock probe (an
    open, a flock and a close) only when the stored status is "running"."""
    if status != "running":
        return status
    return "running" if driver_running(exp_dir) else "crashed"


def write_pid(exp_dir: str) -> None:
    """Write ``.driver.pid`` without following a link planted in the folder: a fresh file, renamed over."""
    with replacing(pid_path(exp_dir)) as f:  # replaces a link itself, never its target
        f.write(str(os.getpid()))


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
