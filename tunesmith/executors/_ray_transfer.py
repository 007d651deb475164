"""Checkpoints between Ray nodes without shared storage: both halves of the transfer protocol.

Driver-bound (a trial on another node checkpoints): the actor reads the checkpoint folder as
:func:`chunks` (every file the manifest lists, then the manifest) and queues them behind the results before
the row naming the checkpoint; the driver writes each into a temporary folder (:meth:`Incoming.chunk`) and,
when that row arrives, checks every file against the manifest, fsyncs and renames the folder into place
(:meth:`Incoming.land`). The row names the folder the driver will have, never the sender's.

A trial's own files (``RayBackend(sync_trial_files=True)``, the default): what a trial on another node wrote in
its node-local folder is read as :func:`trial_files` when it ends and sent the same way (with each file's
permission bits), each file written by the driver under a temporary name and renamed into the trial's folder
with its last piece (:class:`IncomingFiles`). The message is ``(FILE, trial_id, relpath, offset, data, last,
mode)``.

Actor-bound (a restart on another node): the driver puts the checkpoint folder into the object store in
chunks (:func:`put_folder`); the actor writes it back and checks its checksums (:func:`receive_folder`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import Any

from tunesmith._layout import CHECKPOINTS, OUTPUT_LOG
from tunesmith.checkpoint import (
    CHECKPOINT_NAME,
    MANIFEST,
    CheckpointError,
    _files,
    _fsync_dir,
    _open_regular,
    inside,
    temp_folder,
    verify,
)

CHUNK_BYTES = 16 << 20  # checkpoint data per chunk (and at most about this much queued per actor)


# -- driver-bound: the actor's half ----------------------------------------------------------------------
def chunks(src: str, chunk_bytes: int) -> Iterator[tuple[str, int, bytes]]:
    """The checkpoint folder ``src`` as (relative path, offset, data) pieces of at most ``chunk_bytes``: the
    files its manifest lists, then the manifest last (the driver checks every file against it before the
    folder is renamed into place). An empty file is one empty piece."""
    with open(os.path.join(src, MANIFEST), "rb") as f:
        manifest = json.loads(f.read())
    for rel in [*sorted(manifest["files"]), MANIFEST]:
        offset = 0
        with open(os.path.join(src, rel), "rb") as f:
            while True:
                data = f.read(chunk_bytes)
                yield rel, offset, data
                offset += len(data)
                if len(data) < chunk_bytes:
                    break


# -- driver-bound: the driver's half ---------------------------------------------------------------------
class Incoming:
    """The checkpoints one trial is sending to the driver, each in a temporary folder beside where it goes,
    until the result naming it arrives."""

    __slots__ = ("_tmp",)

    def __init__(self) -> None:
        self._tmp: dict[str, str] = {}  # checkpoint folder -> its temporary folder being received

    def __bool__(self) -> bool:
        return bool(self._tmp)

    def chunk(self, checkpoints_dir: str, dest: str, rel: str, offset: int, data: bytes) -> None:
        """Write one piece of the checkpoint ``dest``, which must be a checkpoint folder in the trial's
        ``checkpoints_dir`` (the sender names it; the driver decides where it may go)."""
        if os.path.dirname(dest) != checkpoints_dir or not CHECKPOINT_NAME.fullmatch(os.path.basename(dest)):
            raise RuntimeError(f"refusing a checkpoint sent for {dest!r}: not in the trial's checkpoints folder")
        tmp = self._tmp.get(dest)
        if tmp is None:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = self._tmp[dest] = temp_folder(os.path.dirname(dest), ".tmp_recv_" + os.path.basename(dest) + "_")
        path = inside(tmp, rel)
        if offset == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(data)

    def land(self, dest: str | None) -> bool:
        """The result naming ``dest`` arrived, so all its pieces did: fsync, check against the manifest,
        rename into place (replacing the folder a restarted trial wrote at the same iteration). False when
        nothing was being received for it; raises ``OSError`` or ``CheckpointError`` (the temporary folder
        removed) when the checkpoint is damaged."""
        tmp = self._tmp.pop(dest, None) if dest is not None else None
        if tmp is None or dest is None:
            return False
        try:
            manifest = verify(tmp)
            for rel in [*manifest.get("files", {}), MANIFEST]:
                fd = os.open(os.path.join(tmp, rel), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(tmp)
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.rename(tmp, dest)
            _fsync_dir(os.path.dirname(dest))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def discard(self) -> None:
        """The trial ended (or its actor died): checkpoints still on their way are dropped."""
        for tmp in self._tmp.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp.clear()


# -- a trial's own files, driver-bound ------------------------------------------------------------------
# where a trial's restore checkpoint is written in its staging folder: a name of tunesmith's own (a dot, and
# "tunesmith"), so that no file of the trial's is taken for it (a trial's "restore/" is its own, sent and kept)
RESTORE = ".tunesmith-restore"
STAGED = (CHECKPOINTS, RESTORE, OUTPUT_LOG)  # in a staging folder: what travels its own way, or not at all


def trial_files(folder: str) -> Iterator[str]:
    """The regular files a trial wrote in its node-local ``folder``, as paths relative to it: not the staged
    checkpoints, restore copy and output.log (:data:`STAGED`, at the top), and no link (neither followed nor
    listed: a link's target is not the trial's)."""
    for root, dirs, names in os.walk(folder):
        if root == folder:  # (os.walk lists a linked folder but does not go into it)
            dirs[:] = [d for d in dirs if d not in STAGED]
        for name in sorted(names):
            path = os.path.join(root, name)
            if (root != folder or name not in STAGED) and not os.path.islink(path) and os.path.isfile(path):
                yield os.path.relpath(path, folder)


class IncomingFiles:
    """A trial's own files on their way to its folder on the driver, each in a temporary file beside where it
    goes until its last piece."""

    __slots__ = ("_refused", "_tmp")

    def __init__(self) -> None:
        self._tmp: dict[str, str] = {}  # the file's final path -> its temporary file
        self._refused: set[str] = set()  # files whose pieces are dropped until their last

    def piece(self, trial_dir: str, rel: str, offset: int, data: bytes, last: bool, mode: int | None = None) -> None:
        """Write one piece of the file ``rel`` (the sender names it; the driver decides where it may go: inside
        ``trial_dir``, not where its checkpoints, its output.log or a staged restore copy are). ``mode``: the
        file's permission bits on the node (only ``0o777`` of it is used), given it with its last piece. Raises
        ``ValueError`` for a name that may not be written, ``OSError`` when writing fails (its temporary file
        removed), once per file: its later pieces are dropped."""
        if rel in self._refused:
            if last:
                self._refused.discard(rel)
            return
        try:
            self._write(trial_dir, rel, offset, data, last, mode)
        except BaseException:
            if not last:
                self._refused.add(rel)
            raise

    def _write(self, trial_dir: str, rel: str, offset: int, data: bytes, last: bool, mode: int | None) -> None:
        try:
            path = inside(trial_dir, rel)
        except ValueError:
            raise ValueError(f"refusing the trial file {rel!r}: it would leave the trial's folder") from None
        if rel.split(os.sep)[0] in STAGED:
            raise ValueError(f"refusing the trial file {rel!r}: the driver writes that one itself, or "
                             f"tunesmith's own staging uses that name")
        tmp = self._tmp.pop(path, None)
        try:
            if tmp is None:
                if offset:
                    raise OSError(f"a piece at offset {offset} of {rel!r} came without its beginning")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".tmp_recv_", dir=os.path.dirname(path))
                os.close(fd)
            with open(tmp, "r+b") as f:
                f.seek(offset)
                f.write(data)
                if last and mode is not None:
                    os.fchmod(f.fileno(), mode & 0o777)  # (mkstemp made it 0600)
            if last:
                os.replace(tmp, path)
            else:
                self._tmp[path] = tmp
        except BaseException:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            raise

    def discard(self) -> None:
        """The trial ended (or its actor died): files still on their way are dropped."""
        for tmp in self._tmp.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self._tmp.clear()
        self._refused.clear()


# -- actor-bound (a restore checkpoint) ------------------------------------------------------------------
def put_folder(ray: Any, folder: str, chunk_bytes: int) -> list[tuple[str, list[Any]]]:
    """A checkpoint folder as (relative path, [object refs of its chunks]) for an actor on another node: the
    files its manifest lists, then the manifest, each opened only if it is a regular file in the folder (never
    through a link, never waiting on a FIFO); nothing else in the folder is read or sent (a checkpoint folder is
    data: a file planted in it after a crash is not the checkpoint's, as a local restore ignores it too).

    Raises:
        CheckpointError: no readable manifest, a malformed one, or a file it lists that is missing, a link (or
            lies under a linked folder), a FIFO or a device; the message names it.
    """
    try:
        with _open_regular(os.path.join(folder, MANIFEST), folder, MANIFEST) as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError, CheckpointError) as e:
        raise CheckpointError(f"checkpoint {folder} has no readable {MANIFEST} (a regular file): {e}") from e
    real = os.path.realpath(folder)
    files: list[tuple[str, list[Any]]] = []
    for rel in [*sorted(_files(manifest, folder)), MANIFEST]:
        path = inside(folder, rel)
        sub = os.path.dirname(rel)
        try:
            if sub and os.path.realpath(os.path.dirname(path)) != os.path.join(real, sub):
                raise CheckpointError(f"checkpoint {folder}: {rel} is not a regular file in the folder (it lies "
                                      "under a link)")
            f = _open_regular(path, folder, rel)
        except FileNotFoundError as e:
            raise CheckpointError(f"checkpoint {folder}: file {rel} missing: {e}") from e
        except OSError as e:  # a link in its place (O_NOFOLLOW)
            raise CheckpointError(f"checkpoint {folder}: {rel} is not a regular file in the folder ({e})") from e
        refs = []
        with f:
            while True:
                data = f.read(chunk_bytes)
                refs.append(ray.put(data))
                if len(data) < chunk_bytes:
                    break
        files.append((rel, refs))
    return files


def receive_folder(files: list[tuple[str, list[Any]]], parent: str, name: str) -> str:
    """Write a checkpoint sent through the object store (:func:`put_folder`) as ``parent/name``; checksums
    checked."""
    import ray

    final = os.path.join(parent, name)
    tmp = final + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, refs in files:
        path = inside(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for ref in refs:
                f.write(ray.get(ref))
    verify(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return final


def staging_root() -> str:
    """This user's root of the node's staging folders: ``<tmp>/tunesmith-ray-<uid>`` (``<tmp>/tunesmith-ray`` where
    there are no user ids: Windows, whose temporary folder is the user's own). One per user, never shared: the
    machine's ``/tmp`` is, and a folder there may be another user's (:func:`check_staging_root`)."""
    getuid = getattr(os, "getuid", None)
    return os.path.join(tempfile.gettempdir(), "tunesmith-ray" if getuid is None else f"tunesmith-ray-{getuid()}")


def _not_private(st: os.stat_result) -> str | None:
    """Why a folder with this ``lstat`` is not this user's private one, or None when it is."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        return f"owned by another user (uid {st.st_uid}, this process runs as uid {getuid()})"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def check_staging_root(create: bool = True) -> str:
    """:func:`staging_root`, made (mode 0700) when it is missing and ``create``, and checked on every use by its
    ``lstat``: a folder (not a link) of this process's user that neither group nor others may write to. Nothing is
    ever written or removed under a root that is not: another user may have made it first in the shared ``/tmp``,
    to read the checkpoints or to redirect what is written or deleted there. Once it is checked nobody else can
    change it (``/tmp``'s sticky bit keeps others from renaming it; only this user writes in it).

    Raises:
        PermissionError: the root is not private; the message names it and what to do.
        FileNotFoundError: it is missing and not ``create``.
    """
    root = staging_root()
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    why = _not_private(os.lstat(root))
    if why is not None:
        raise PermissionError(
            f"the Ray staging folder {root} is {why}: expected a folder of this user's that nobody else may write "
            f"to (another user may have made it, to read or redirect your checkpoints). Nothing is written or "
            f"deleted there: remove it (or give Ray's workers another TMPDIR) and run again")
    return root


def under_staging_root(path: str) -> bool:
    """True when ``path`` exists below this user's staging root, the root is private (:func:`check_staging_root`)
    and no folder on the way from it down to ``path`` (``path`` included) is a link: what is removed by that path
    is then removed there, never through a link somewhere else. False otherwise (nothing to remove there)."""
    try:
        root = check_staging_root(create=False)
    except OSError:
        return False
    rel = os.path.relpath(path, root)
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return False
    here = root
    for part in rel.split(os.sep):
        here = os.path.join(here, part)
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return False
        except OSError:
            return False
    return True


def staging_dir(node_id: str, trial_dir: str) -> str:
    """A node-local folder for a trial whose experiment folder (``<exp>/trials/<trial>``) is on the driver's
    machine (its actors on that node write there: rank 0's checkpoints on their way, restore copies, and the
    trial itself when it runs there): ``<tmp>/tunesmith-ray-<uid>/<node>/<exp>-<8 hex digits of the experiment
    folder's path>/trials/<trial>`` (:func:`tunesmith._ledger.experiment_key`, which keys its checkpoints in
    ``RayBackend(storage=...)`` too), so that two experiments of one name never share one. Only the path:
    :func:`make_staging` checks the root before anything is written there."""
    from tunesmith._ledger import experiment_key

    exp_dir = os.path.dirname(os.path.dirname(trial_dir))
    return os.path.join(staging_root(), node_id[:16], experiment_key(exp_dir), "trials", os.path.basename(trial_dir))


def make_staging(stage: str) -> None:
    """Create the trial's staging folder (:func:`staging_dir`) before anything is written there, in this user's
    private root (:func:`check_staging_root`: raises ``PermissionError`` for one that is not). Another trial's end
    may remove the folders above it as this runs (:func:`remove_staging_parents`: the last one of its experiment on
    this node), between ``makedirs``'s steps: it is tried again; once the folder exists, those above it are not
    empty and stay."""
    check_staging_root()
    for attempt in range(8):
        try:
            os.makedirs(stage, exist_ok=True)
            break
        except FileNotFoundError:
            if attempt == 7:
                raise
    if not under_staging_root(stage):
        raise PermissionError(f"the Ray staging folder {stage} is not a folder below {staging_root()} (a link on "
                              f"the way): nothing is written there")


def remove_empty_staging(stage: str) -> None:
    """Remove a trial's staging folder left empty, then the folders above it it leaves empty
    (:func:`remove_staging_parents`); one holding anything (files the trial wrote itself, another rank's folder)
    stays. A staging folder gone already (its remover killed between these steps, as Ray may kill a rank ending
    gracefully: an empty experiment folder was seen left on a node) leaves the rest to this call, from the nearest
    folder above it still there. Only below a private root with no link on the way (:func:`under_staging_root`)."""
    while not os.path.lexists(stage) and os.path.dirname(stage) != stage:
        stage = os.path.dirname(stage)
    if not under_staging_root(stage):
        return
    try:
        os.rmdir(stage)
    except OSError:
        return  # not empty (or gone)
    remove_staging_parents(stage)


def remove_staging_parents(stage: str) -> None:
    """The folders above a trial's removed staging folder, up to this user's root (kept): ``trials``, the
    experiment's and the node's, each removed only when empty (``rmdir``: a folder holding anything, another
    trial's staging folder above all, stays) and only while it is a folder below a private root with no link on the
    way (:func:`under_staging_root`), so that no experiment leaves folders in the node's ``/tmp``."""
    parent = os.path.dirname(stage)
    while under_staging_root(parent):
        try:
            os.rmdir(parent)
        except OSError:
            return  # not empty (or gone): what is above it is not either
        parent = os.path.dirname(parent)
