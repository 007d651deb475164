"""Checkpoint lifetime in one place: which checkpoints exist, which are still needed, which may be deleted.

Three things keep a checkpoint:

* retention (``keep=``/``keep_by=``, see :mod:`tunesmith._retention`): a trial's latest and its best N;
* a pin: a decision named it for a trial (a PBT exploit's source checkpoint), from the moment the scheduler
  returned the decision until the decision is applied or dropped. The trial's worker may take a while to
  stop, and the source trains on and checkpoints meanwhile: without the pin ``keep=1`` deleted what the
  clone was about to restore from;
* a borrow: a trial restarted from a checkpoint it does not own (or from an older one of its own) holds it
  until it has a checkpoint of its own. A trial that ends first keeps holding it: it is that trial's latest;
* a start: a trial run as several ranks holds the checkpoint it started from until that start ends (the
  worker's end). Each rank reads it when it wants: rank 0 may report newer ones before rank 1 has read it.

The ledger only decides; the controller drops the index rows of what :meth:`Ledger.take` returns in a store
transaction and then deletes the folders through :func:`delete_checkpoint`, the one function that deletes
checkpoints, which refuses anything outside the experiment's own ``trials/`` folder.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
from typing import Any

from tunesmith._layout import CHECKPOINTS, TRIALS, checkpoint_entries
from tunesmith._retention import Retention
from tunesmith.checkpoint import is_url, storage_fs

log = logging.getLogger("tunesmith")


class Ledger:
    """What may be deleted as checkpoints arrive, restarts happen and decisions name checkpoints.

    Trials are ints, checkpoints paths (or URLs); nothing here touches the disk.
    """

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self._pins: dict[int, str] = {}  # trial -> checkpoint a pending decision named for it
        self._borrows: dict[int, str] = {}  # trial -> checkpoint it restarted from, until it has its own
        self._starts: dict[int, str] = {}  # trial run as ranks -> checkpoint it started from, until it ends
        self._holders: dict[str, int] = {}  # path -> number of pins, borrows and starts on it
        self._waiting: dict[str, tuple[int, int]] = {}  # let go but held: path -> (owner, iteration)
        self._deletable: dict[str, tuple[int, int]] = {}  # path -> (owner, iteration), in order

    # -- events --------------------------------------------------------------------------------------
    def add(self, trial_id: int, iteration: int, path: str, metrics: dict[str, Any]) -> None:
        """``trial_id`` reported a checkpoint: it no longer needs the one it restarted from, and retention may
        let older ones go."""
        self._release(self._borrows.pop(trial_id, None))
        self.known(trial_id, iteration, path, metrics)

    def known(self, trial_id: int, iteration: int, path: str, metrics: dict[str, Any]) -> None:
        """A checkpoint of ``trial_id`` in the index (on resume: borrows registered before stay)."""
        # a folder written again under a name that was waiting to go (a restarted trial re-reaching an
        # iteration) is a new checkpoint, not the one let go
        self._waiting.pop(path, None)
        self._deletable.pop(path, None)
        self._let_go(self.retention.add(trial_id, iteration, path, metrics), trial_id)

    def pin(self, trial_id: int, path: str) -> None:
        """A decision names ``path`` for ``trial_id`` (the checkpoint it will restart from): keep it until
        :meth:`restore` or :meth:`unpin`. A trial has one pending decision; a new pin replaces the old."""
        self._hold(path)
        self._release(self._pins.pop(trial_id, None))
        self._pins[trial_id] = path

    def unpin(self, trial_id: int) -> None:
        """The trial's pending decision was dropped (it failed, or the experiment ended first)."""
        self._release(self._pins.pop(trial_id, None))

    def restore(self, trial_id: int, path: str | None) -> None:
        """``trial_id`` restarts from ``path`` (not its latest own checkpoint): kept until the trial reports a
        checkpoint of its own (:meth:`add`). Replaces the trial's pin and its earlier borrow."""
        if path is not None:
            self._hold(path)
        self._release(self._pins.pop(trial_id, None))
        self._release(self._borrows.pop(trial_id, None))
        if path is not None:
            self._borrows[trial_id] = path

    def started(self, trial_id: int, path: str | None) -> None:
        """``trial_id`` started as several ranks from ``path``: keep it until :meth:`ended`, whatever the trial
        reports meanwhile (its other ranks may read it later than rank 0 reports newer ones)."""
        if path is not None:
            self._hold(path)
        self._release(self._starts.pop(trial_id, None))
        if path is not None:
            self._starts[trial_id] = path

    def ended(self, trial_id: int) -> None:
        """``trial_id``'s start ended (it returned, failed, was stopped or paused): its ranks read nothing more."""
        self._release(self._starts.pop(trial_id, None))

    def forget_after(self, trial_id: int, iteration: int) -> None:
        """``trial_id`` restarts from ``iteration``: its later checkpoints are superseded (their index rows go
        with its later results) and may go too, unless another trial still needs one."""
        self._let_go(self.retention.forget_after(trial_id, iteration), trial_id)

    # -- questions -----------------------------------------------------------------------------------
    def holds(self, path: str) -> bool:
        """Whether a pin, a borrow or a start keeps ``path``."""
        return path in self._holders

    def held_names(self, trial_name: str) -> tuple[str, ...]:
        """The folder names of the checkpoints in trial ``trial_name``'s ``checkpoints`` folder that a pin or
        a borrow holds (a clone restores from one). The trial, restarted from an earlier iteration (its own
        exploit, a retry from an older checkpoint), must not write a new folder under one of them: it would
        replace what the clone restores from, and be deleted in the old one's place once the clone lets go."""
        return tuple(sorted(tail[2] for tail in map(_tail, self._holders)
                            if len(tail) == 3 and tail[:2] == (trial_name, CHECKPOINTS)))

    def take(self) -> list[tuple[int, int, str]]:
        """(owner trial, iteration, path) of every checkpoint that may now be deleted, each returned once."""
        out = [(owner, it, path) for path, (owner, it) in self._deletable.items()]
        self._deletable.clear()
        return out

    # -- inside --------------------------------------------------------------------------------------
    def _let_go(self, victims: list[tuple[int, str]], owner: int) -> None:
        for it, path in victims:
            if path in self._holders:
                self._waiting[path] = (owner, it)
            else:
                self._deletable[path] = (owner, it)

    def _hold(self, path: str) -> None:
        self._holders[path] = self._holders.get(path, 0) + 1

    def _release(self, path: str | None) -> None:
        if path is None or path not in self._holders:
            return
        self._holders[path] -= 1
        if self._holders[path] > 0:
            return
        del self._holders[path]
        waiting = self._waiting.pop(path, None)
        if waiting is not None:
            self._deletable[path] = waiting


# -------------------------------------------------------------------------------------------------
# deleting, confined to the experiment's trials/ folder
# -------------------------------------------------------------------------------------------------
def experiment_key(exp_dir: str) -> str:
    """``<name>-<8 hex digits of the SHA-256 of the experiment folder's absolute path>``: what keys an experiment
    outside its folder (its checkpoints with ``RayBackend(storage=...)``, its staging folders on Ray nodes), so
    that two experiments of one name, or a copy of a folder resumed elsewhere, never share a place."""
    import hashlib  # here: OpenSSL's load stays off the start of a run that never asks (tests/test_startup.py)

    path = os.path.abspath(exp_dir)
    tag = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{os.path.basename(path)}-{tag}"


def storage_prefix(storage: str | None, exp_dir: str) -> str | None:
    """The URL prefix checkpoints of this experiment live under with ``RayBackend(storage=...)``, or None:
    ``<storage>/<name>-<hash of the experiment folder's path>/trials/`` (:func:`experiment_key`). The only
    prefix :func:`delete_checkpoint` deletes under: checkpoints an older tunesmith wrote under
    ``<storage>/<name>/trials/`` (which experiments of one name shared) are still read from the URLs the store
    names, never deleted."""
    if not is_url(storage):
        return None
    assert storage is not None
    return f"{storage.rstrip('/')}/{experiment_key(exp_dir)}/{TRIALS}/"


def _strictly_inside(path: str, root: str) -> bool:
    return path != root and path.startswith(root.rstrip(os.sep) + os.sep)


def delete_checkpoint(path: str, exp_dir: str, url_prefix: str | None = None) -> bool:
    """Delete the checkpoint at ``path`` if it lies strictly inside ``exp_dir``'s ``trials/`` folder (a URL:
    under ``url_prefix``, the experiment's storage URL); return whether it is gone.

    Every checkpoint deletion goes through here. The store names the paths, and a store is data (a folder
    someone else made, a copy): a path that resolves elsewhere is refused with a warning and nothing is
    deleted. The parent is resolved (``os.path.realpath``) but never the checkpoint itself: a symlink is
    unlinked, its target is never deleted.
    """
    if is_url(path):
        parts = path.split("://", 1)[1].split("/")
        if url_prefix is None or not path.startswith(url_prefix) or ".." in parts or "." in parts:
            log.warning("refusing to delete checkpoint %s: not under this experiment's storage URL %s", path,
                        url_prefix)
            return False
        fs, root = storage_fs(path)
        try:
            fs.rm(root, recursive=True)
        except FileNotFoundError:
            pass
        return True
    trials = os.path.realpath(os.path.join(exp_dir, TRIALS))
    if not os.path.isabs(path):
        log.warning("refusing to delete checkpoint %s: not an absolute path inside %s", path, trials)
        return False
    name = os.path.basename(os.path.normpath(path))
    parent = os.path.realpath(os.path.dirname(os.path.normpath(path)))
    where = os.path.join(parent, name)
    if name in ("", ".", "..") or not _strictly_inside(where, trials):
        log.warning("refusing to delete checkpoint %s: it is not inside this experiment's %s", path, trials)
        return False
    if os.path.islink(where) or not os.path.isdir(where):  # a link, a file, a FIFO: unlinked, never opened
        try:
            os.unlink(where)
        except FileNotFoundError:
            pass
        return True
    shutil.rmtree(where, ignore_errors=True)
    return not os.path.lexists(where)


def clean_leftovers(exp_dir: str, known: set[str]) -> list[str]:
    """On resume: delete what a killed run left in ``trials/*/checkpoints/``: ``.tmp_*`` folders (writes,
    transfers and ``Trainable`` saves cut short) and ``checkpoint_*`` folders the store does not know (written, but
    the driver died before indexing them; or let go, but not yet deleted). Return what was deleted.

    ``known``: the paths the store names (its checkpoints index and every trial's pointer), compared by their
    last three parts (``<trial>/checkpoints/<name>``) so a moved experiment folder is judged the same. Nothing
    is followed: a symlinked trial or checkpoints folder is skipped; a symlink inside one is only unlinked.
    """
    tails = {_tail(p) for p in known}
    removed: list[str] = []
    for trial, entry in checkpoint_entries(exp_dir):
        name = entry.name
        # .tmp_*: a checkpoint write (.tmp_checkpoint_*), a Ray transfer (.tmp_recv_*) or a Trainable's
        # save_checkpoint (.tmp_trainable_*) cut short
        stray = name.startswith(".tmp_") or (
            name.startswith("checkpoint_") and (trial, CHECKPOINTS, name) not in tails)
        if stray and delete_checkpoint(entry.path, exp_dir):
            removed.append(entry.path)
    if removed:
        log.info("removed %d checkpoint folders a stopped run left behind (unfinished writes or not in the "
                 "store)", len(removed))
    return removed


# what a trial's own process writes into its checkpoints/ before moving it into place: a Trainable's save_checkpoint
# (.tmp_trainable_*), a checkpoint write (.tmp_checkpoint_*); a Ray transfer's (.tmp_recv_*) is the driver's
TRIAL_TMP_PREFIXES = (".tmp_trainable_", ".tmp_checkpoint_")


def clean_trial_leftovers(exp_dir: str, trial_id: int) -> list[str]:
    """When a trial is retried within the run (``max_failures``), its process ended: delete what that process left
    in the trial's ``checkpoints/`` when it was killed while writing (:data:`TRIAL_TMP_PREFIXES`), as a resume does
    (:func:`clean_leftovers`), instead of keeping it until one. Return what was deleted. Nothing is followed
    (:func:`checkpoint_entries`, :func:`delete_checkpoint`): a symlinked trial or checkpoints folder is skipped, a
    link inside one only unlinked."""
    removed = []
    for _trial, entry in checkpoint_entries(exp_dir, trial_id):
        if entry.name.startswith(TRIAL_TMP_PREFIXES) and delete_checkpoint(entry.path, exp_dir):
            removed.append(entry.path)
    if removed:
        log.info("removed %d unfinished checkpoint writes the failed run of trial %d left", len(removed), trial_id)
    return removed


def _tail(path: str) -> tuple[str, ...]:
    parts = (path.split("://", 1)[1] if is_url(path) else path).replace(os.sep, "/").rstrip("/")
    return tuple(posixpath.normpath(parts).split("/")[-3:])
