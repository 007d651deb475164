"""Checkpoints: a folder written atomically (temporary name, fsync, rename) with a checksummed manifest.

A trial reports ``Checkpoint.from_state(obj)`` (pickled with cloudpickle into ``state.pkl``) or
``Checkpoint.from_dir(path)`` (the folder's files are copied). Tunesmith writes it under the trial's folder
as ``checkpoints/checkpoint_<iteration>``; a later ``get_checkpoint()`` returns it.

The manifest's checksums prove that the files are intact, not who wrote them (they lie beside the data). Its
signature (HMAC-SHA256 with this user's key, kept outside experiment folders: see ``tunesmith._signing``)
proves that this user's tunesmith wrote it: ``load`` unpickles only a ``state.pkl`` whose checksums match and
whose manifest this user's key signed, unless told to trust it (``load(trust_foreign_pickle=True)``, or
``tunesmith trust EXPERIMENT`` to re-sign an experiment's checkpoints once).

A checkpoint can also live at a URL (``s3://bucket/prefix/.../checkpoint_000005``, any fsspec protocol;
``RayBackend(storage=...)``): it is written locally first, then uploaded file by file with the manifest
last, so a folder without a manifest is an incomplete upload. Reading one downloads it to a local folder
and checks every checksum there before anything is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection
from typing import Any

from tunesmith import _signing

MANIFEST = "manifest.json"
STATE_FILE = "state.pkl"
DICT_FILE = "_dict_checkpoint.pkl"  # the dict a Trainable's save_checkpoint returned (Ray Tune's name for it)
_MISSING = object()


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete, fails its checksum, or holds a pickle this user's tunesmith
    did not write."""


class Checkpoint:
    """A trial's saved state: a folder on disk, or an object to be written as one.

    Create one inside a trial with :meth:`from_state` or :meth:`from_dir` and pass it to
    ``tunesmith.report(metrics, checkpoint=...)``. ``tunesmith.get_checkpoint()`` and ``result.best.checkpoint``
    give back a ``Checkpoint`` whose :meth:`load` returns the state and :meth:`as_dir` the folder.
    """

    __slots__ = ("_path", "_state", "_local", "iteration")

    def __init__(self, path: str | os.PathLike[str] | None = None, *, _state: Any = _MISSING,
                 iteration: int | None = None) -> None:
        self._path = os.fspath(path) if path is not None else None
        self._state = _state
        self._local: str | None = None  # the downloaded copy of a checkpoint at a URL
        self.iteration = iteration

    @classmethod
    def from_state(cls, state: Any) -> Checkpoint:
        """A checkpoint holding any object cloudpickle can serialise (model weights, optimiser, step).

        It is pickled when reported (or by :meth:`as_dir`): a state that cannot be pickled is a
        ``CheckpointError`` there, naming the part that cannot (``state['opt'].lock``) and why."""
        return cls(None, _state=state)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint made of the files in ``path`` (copied when reported; the folder may be reused).

        Links are copied by what they point to. The folder the checkpoints are written in (the trial's
        ``checkpoints/``) is left out wherever met, so ``from_dir(".")`` in a trial copies the trial's own files
        and not its earlier checkpoints. ``report()`` raises ``CheckpointError``, naming the entry and why, for
        what cannot be copied faithfully: a folder gone by then, a link to nothing, a loop of links or folders, a
        FIFO, a socket or a device, a top-level ``manifest.json`` of yours. A relative ``path`` is the folder it
        names now (made absolute: a later change of working folder does not change which folder it is)."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_dir: {path!r} is not a folder")
        return cls(os.path.abspath(path))

    @property
    def path(self) -> str | None:
        """The folder (or its URL, for checkpoints in remote storage), or None for an in-memory checkpoint
        not yet written."""
        return self._path

    def load(self, *, trust_foreign_pickle: bool = False) -> Any:
        """The state given to :meth:`from_state`; for a folder checkpoint, the unpickled ``state.pkl`` (or the dict a
        ``Trainable``'s ``save_checkpoint`` returned).

        Args:
            trust_foreign_pickle: also unpickle a ``state.pkl`` whose manifest this user's key did not sign
                (a folder someone else made, or one written before checkpoints were signed). Unpickling runs
                any code the file's author chose: pass True only for a checkpoint whose origin you trust.

        Raises:
            CheckpointError: the folder was not written by tunesmith, fails its checksum, or (without
                ``trust_foreign_pickle``) its manifest is not signed by this user's key.
        """
        if self._state is not _MISSING:
            return self._state
        if self._path is None:
            raise CheckpointError("empty checkpoint")
        if is_url(self._path) and self._copy() is None:
            with tempfile.TemporaryDirectory(prefix="tunesmith_ckpt_") as tmp:  # this copy is load()'s alone
                return self._load_from(download(self._path, tmp), trust_foreign_pickle)
        return self._load_from(self.as_dir(), trust_foreign_pickle)

    def _load_from(self, folder: str, trust_foreign_pickle: bool) -> Any:
        """load() of the checkpoint's files in ``folder`` (its own, or a downloaded copy)."""
        assert self._path is not None
        if not os.path.isdir(folder):
            raise _gone(self._path)
        if not os.access(folder, os.R_OK | os.X_OK):  # (lexists says False for a file in a folder it may not list)
            raise CheckpointError(f"cannot read the checkpoint {self._path}: this user may not list its folder "
                                  f"(Permission denied); ask its owner to make it readable (chmod -R a+rX), or "
                                  f"copy it")
        # from_state's pickle, else the dict a Trainable's save_checkpoint returned (checked the same way)
        name = next((n for n in (STATE_FILE, DICT_FILE) if os.path.lexists(os.path.join(folder, n))), None)
        if name is None:
            raise CheckpointError(f"{self._path} holds no {STATE_FILE}: it was made with from_dir (or by a Trainable's "
                                  "save_checkpoint that returned no dict); use as_dir()")
        state_file = os.path.join(folder, name)
        manifest = verify(folder)  # never unpickle a file that changed since it was written
        if name not in manifest.get("files", {}) and not trust_foreign_pickle:  # nothing vouches for it
            raise CheckpointError(
                f"refusing to unpickle the checkpoint {self._path}: its {MANIFEST} does not list {name} (a "
                f"file added after the checkpoint was written). Unpickling runs any code its author chose. If you "
                "trust where it came from: Checkpoint.load(trust_foreign_pickle=True)")
        why = _signing.check(manifest)
        if why is not None and not trust_foreign_pickle:  # ... or one that this user's tunesmith did not write
            raise CheckpointError(
                f"refusing to unpickle the checkpoint {self._path}: {why}. Unpickling runs any code its author "
                f"chose. If you trust where it came from: {_adopt_hint(self._path)}, or "
                "Checkpoint.load(trust_foreign_pickle=True) for this one")
        import pickle

        import cloudpickle  # noqa: F401  (pickles made with cloudpickle may need it importable)

        try:  # (opened as verify() opens a file: never through a link, not a FIFO)
            f = _open_regular(state_file, folder, name)
        except OSError as e:
            raise CheckpointError(f"checkpoint {self._path}: {name} unreadable (a symbolic link is not "
                                  f"followed): {e}") from e
        with f:
            return pickle.load(f)

    def as_dir(self) -> str:
        """The checkpoint's folder. An in-memory checkpoint is written to a temporary folder, one at a URL
        downloaded to one (every checksum checked), once per ``Checkpoint`` object; that folder is the
        caller's to delete (:meth:`load` alone leaves nothing behind).

        Raises:
            CheckpointError: the checkpoint's local folder no longer exists (deleted or moved), as :meth:`load` does.
        """
        if self._path is not None and not is_url(self._path):
            if not os.path.isdir(self._path):
                raise _gone(self._path)
            return self._path
        copy = self._copy()
        if copy is not None:
            return copy
        tmp = tempfile.mkdtemp(prefix="tunesmith_ckpt_")
        try:
            if self._path is None:
                _fill(self, tmp)
                copy = tmp
            else:
                copy = download(self._path, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._local = copy
        return copy

    def _copy(self) -> str | None:
        """The folder :meth:`as_dir` wrote or downloaded this checkpoint to, while it is still there."""
        return self._local if self._local is not None and os.path.isdir(self._local) else None

    def __repr__(self) -> str:
        where = self._path if self._path is not None else "<in memory>"
        return f"Checkpoint({where!r}, iteration={self.iteration})"



# a checkpoint folder's name: its iteration, then ``_<n>`` when the driver still held a folder of that name
CHECKPOINT_NAME = re.compile(r"checkpoint_\d+(?:_\d+)?")


def _gone(path: str) -> CheckpointError:
    """The error for a checkpoint whose folder ``path`` no longer exists."""
    return CheckpointError(f"checkpoint folder {path} does not exist (deleted or moved)")


def checkpoint_dirname(iteration: int, held: Collection[str] = ()) -> str:
    """``checkpoint_<iteration>``, or, when ``held`` names it, the first of ``checkpoint_<iteration>_1``,
    ``_2``... that ``held`` does not name.

    ``held``: the names of the trial's checkpoint folders that the driver let go but still keeps for another
    trial (a PBT clone restores from it; ``Launch.held_checkpoints``). A trial that rolled back re-reaches
    their iterations; a new folder under a held name would replace the state the clone chose, and be deleted
    by the driver, by its path, once the clone lets the old one go."""
    name = f"checkpoint_{int(iteration):06d}"
    if name not in held:
        return name
    n = 1
    while f"{name}_{n}" in held:
        n += 1
    return f"{name}_{n}"


def temp_folder(parent: str, prefix: str) -> str:
    """A new folder in ``parent`` named ``prefix`` and a random tail, made with the umask's mode as every other folder
    of an experiment (``tempfile.mkdtemp`` makes 0700): renamed into place as a checkpoint, it can be read by
    whoever may read the experiment's folder (a colleague it was shared with)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path


def write(checkpoint: Checkpoint, parent: str, iteration: int, held: Collection[str] = ()) -> str:
    """Write ``checkpoint`` atomically as ``parent/checkpoint_<iteration>``; return that path.

    The files go to a temporary folder beside the final one, are fsynced with a manifest (sizes and
    SHA-256 checksums), and the folder is renamed into place, so a crash at any moment leaves either the
    previous state or a complete checkpoint, never a half-written one under the final name. ``held``: names
    not to use (:func:`checkpoint_dirname`); a folder under the name used is replaced (a restarted trial
    re-reaching an iteration whose folder nothing needs: one its failed run wrote but never reported).
    """
    os.makedirs(parent, exist_ok=True)
    name = checkpoint_dirname(iteration, held)
    final = os.path.join(parent, name)
    tmp = temp_folder(parent, ".tmp_" + name + "_")
    try:
        files = _fill(checkpoint, tmp, leave_out=(parent,))
        manifest = _signing.sign({"iteration": iteration, "created": time.time(), "files": files})
        _write_synced(os.path.join(tmp, MANIFEST), json.dumps(manifest, sort_keys=True).encode())
        _fsync_dir(tmp)
        if os.path.exists(final):
            shutil.rmtree(final, onerror=_gone_is_removed)
        os.rename(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _fill(checkpoint: Checkpoint, folder: str, leave_out: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Put the checkpoint's files into ``folder`` (fsynced); return {relative path: {size, sha256}}.

    ``leave_out``: folders a ``from_dir`` copy leaves out where it meets them (``write`` names the folder the
    checkpoints are written in); ``folder`` itself is always left out (a copy never descends into itself).

    Raises:
        CheckpointError: the state cannot be pickled, or the ``from_dir`` folder is gone or holds what cannot be
            copied faithfully (the message names it and why).
    """
    files: dict[str, dict[str, Any]] = {}
    if checkpoint._state is not _MISSING:
        import hashlib  # here, as below: a run that writes no checkpoint never loads OpenSSL for it

        data = _pickled(checkpoint._state)
        _write_synced(os.path.join(folder, STATE_FILE), data)
        files[STATE_FILE] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return files
    src = checkpoint._path
    assert src is not None
    return _copy_tree(src, folder, leave_out)


def _pickled(state: Any, whose: str = "Checkpoint.from_state: the state", name: str = "state") -> bytes:
    """``state`` pickled with cloudpickle.

    Raises:
        CheckpointError: it cannot be; the message, which starts with ``whose``, names the part of ``state`` that
            cannot (``state['opt'].lock``, with ``state`` called ``name``) and cloudpickle's reason.
    """
    import cloudpickle

    try:
        return cloudpickle.dumps(state)
    except MemoryError:
        raise
    except Exception as e:
        part, obj = _unpicklable_part(state, cloudpickle.dumps, name)
        what = type(obj).__qualname__ if type(obj).__module__ == "builtins" else \
            f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise CheckpointError(
            f"{whose} cannot be pickled (with cloudpickle), so it cannot be checkpointed: {part} ({what}) cannot: "
            f"{type(e).__name__}: {e}. Leave it out of the {name} (rebuild it when restoring), or give its class "
            "__getstate__/__setstate__") from e


def _unpicklable_part(state: Any, dumps: Any, name: str = "state") -> tuple[str, Any]:
    """(the deepest part of ``state`` found that ``dumps`` refuses, as an expression: ``state['a'][1].b``, with
    ``state`` called ``name``; that part), looking into dicts, lists, tuples and objects' attributes along the parts
    that fail (the error path only: each step pickles the parts of one object again)."""
    import types

    where, obj = name, state
    for _ in range(32):  # deep enough for any state a person writes; a bound on pathological ones
        if isinstance(obj, dict):
            parts: list[tuple[str, Any]] = [(f"[{k!r}]", v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            parts = [(f"[{i}]", v) for i, v in enumerate(obj)]
        elif isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(
                obj, (type, types.ModuleType, types.FunctionType, types.MethodType)):
            parts = [(f".{k}", v) for k, v in vars(obj).items()]
        else:
            break
        for label, child in parts:
            try:
                dumps(child)
            except MemoryError:
                raise
            except Exception:
                where, obj = where + label, child
                break
        else:  # every part pickles alone: the object itself is what cannot be (its own __reduce__...)
            break
    return where, obj


def _copy_tree(src: str, folder: str, leave_out: Collection[str]) -> dict[str, dict[str, Any]]:
    """``from_dir``'s copy of the folder ``src`` into ``folder``; {relative path: {size, sha256}}.

    Links are followed (a linked file or folder is copied by what it holds: a checkpoint stands alone). Each
    folder is listed at its real path; a folder whose real path is one the copy is inside, or holds one (a link
    back up, or a cycle of links through folders anywhere), is a loop and refused. ``folder`` and ``leave_out``
    are left out wherever met (compared by device and inode, so also through a link)."""
    import stat

    where = f"Checkpoint.from_dir({src!r})"
    try:
        top = os.stat(src)
    except FileNotFoundError:
        raise CheckpointError(f"{where}: the folder {src} no longer exists: it was deleted (or moved) after "
                              "from_dir() and before report(), which copies its files; report while it is there "
                              "(inside the `with tempfile.TemporaryDirectory()` block)") from None
    except OSError as e:
        raise CheckpointError(f"{where}: the folder {src} cannot be read: {e}") from e
    if not stat.S_ISDIR(top.st_mode):
        raise CheckpointError(f"{where}: {src} is no longer a folder (it was replaced after from_dir())")
    skip = {_identity(os.stat(path)) for path in (folder, *leave_out) if os.path.isdir(path)}
    files: dict[str, dict[str, Any]] = {}
    # (relative path, real path, the real paths and identities of the folders the copy is inside)
    pending: list[tuple[str, str, tuple[str, ...], frozenset[tuple[int, int]]]] = [
        ("", os.path.realpath(src), (os.path.realpath(src),), frozenset({_identity(top)}))]
    while pending:
        rel_root, here, reals, idents = pending.pop()
        out_root = os.path.join(folder, rel_root) if rel_root else folder
        os.makedirs(out_root, exist_ok=True)
        try:
            names = sorted(os.listdir(here))
        except OSError as e:
            raise CheckpointError(f"{where}: {rel_root or src} cannot be listed: {e}") from e
        below = []
        for name in names:
            rel = _rel(rel_root, name)
            path = os.path.join(here, name)
            try:
                st = os.stat(path)  # what a link points to
            except OSError as e:
                raise _unreachable(where, rel, path, e) from e
            if stat.S_ISDIR(st.st_mode):
                if _identity(st) in skip:
                    continue  # the checkpoint being written, or the folder of checkpoints it goes in
                real = os.path.realpath(path)
                inside_it = [r for r in reals if r == real or r.startswith(real.rstrip(os.sep) + os.sep)]
                if inside_it or _identity(st) in idents:
                    raise CheckpointError(
                        f"{where}: {rel} links to a folder it is inside ({real}): a loop, which a copy would "
                        "follow forever; a checkpoint holds files: remove the link")
                below.append((rel, real, (*reals, real), idents | {_identity(st)}))
            elif not stat.S_ISREG(st.st_mode):
                kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                        else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
                raise CheckpointError(f"{where}: {rel} is {kind}, not a regular file: a checkpoint holds files "
                                      "(remove it, or report a folder without it)")
            elif not rel_root and name == MANIFEST:
                if _is_manifest(os.path.join(src, name)):
                    continue  # a restored checkpoint folder re-reported: its old manifest is rebuilt
                raise CheckpointError(f"{where}: {MANIFEST} is a file of yours, and that name is the checkpoint's "
                                      "own list of its files: rename it (or put it in a sub-folder)")
            else:
                files[rel] = _copy_synced(path, os.path.join(out_root, name), where, rel)
        pending.extend(reversed(below))  # depth first, in name order
    return files


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _unreachable(where: str, rel: str, path: str, e: OSError) -> CheckpointError:
    """The error for the entry ``rel`` of a ``from_dir`` folder that ``os.stat`` failed on with ``e``."""
    import errno

    if os.path.islink(path):
        with contextlib.suppress(OSError):
            target = os.readlink(path)
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return CheckpointError(f"{where}: {rel} is a link to nothing ({target} does not exist): a "
                                       "checkpoint holds files (remove the link, or make what it names)")
            if e.errno == errno.ELOOP:
                return CheckpointError(f"{where}: {rel} is a link that never reaches a file (to {target}, a loop "
                                       "of links): remove it")
    if e.errno == errno.ENOENT:
        return CheckpointError(f"{where}: {rel} vanished while the folder was being copied")
    return CheckpointError(f"{where}: {rel} cannot be read: {e}")


def _rel(rel_root: str, name: str) -> str:
    return os.path.join(rel_root, name) if rel_root else name


def _is_manifest(path: str) -> bool:
    """Whether ``path`` is a tunesmith checkpoint manifest: a JSON object whose ``iteration`` is an int and each
    entry of whose ``files`` table is ``{size, sha256}`` (a data set's own ``{"files": ...}`` manifest is the user's
    file, never left out)."""
    try:
        with _open_regular(path, os.path.dirname(path), MANIFEST) as f:
            data = json.loads(f.read())
        _files(data, path)
    except (OSError, ValueError, CheckpointError):
        return False
    return type(data.get("iteration")) is int


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _copy_synced(src: str, dst: str, where: str, rel: str) -> dict[str, Any]:
    """Copy the regular file ``src`` (``rel`` of a ``from_dir`` folder, named by ``where``) to ``dst``, fsynced.

    Raises:
        CheckpointError: ``src`` cannot be read, or is no longer a regular file.
        OSError: writing ``dst`` failed (no space left...).
    """
    import hashlib

    h = hashlib.sha256()
    size = 0
    try:
        fi = _open_regular(src, where, rel, follow=True)  # a FIFO swapped in would wait for a writer forever
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {rel} is not a regular file (it was replaced while being copied): a "
                              "checkpoint holds files") from e
    except OSError as e:
        raise CheckpointError(f"{where}: {rel} cannot be read: {e}") from e
    with fi, open(dst, "wb") as fo:
        while True:
            try:
                chunk = fi.read(1 << 20)
            except OSError as e:
                raise CheckpointError(f"{where}: {rel} cannot be read: {e}") from e
            if not chunk:
                break
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    return {"size": size, "sha256": h.hexdigest()}


def _gone_is_removed(function: Any, path: str, exc_info: Any) -> None:
    """``shutil.rmtree``'s error hook: a file or folder that vanished while being removed is removed (another
    process deleting the same old checkpoint); any other error is raised."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(path: str) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest; return the manifest. For a checkpoint at a URL, only
    the presence and sizes of its files (reading every byte back from remote storage would stall the
    driver); the checksums are checked when it is downloaded. This proves the files are intact, not who wrote
    them (``Checkpoint.load`` also checks the manifest's signature).

    Raises:
        CheckpointError: no manifest, a malformed one (a file name leaving the folder...), a missing file, or a
            size or checksum mismatch.
    """
    if is_url(path):
        return _verify_remote(path)
    import hashlib

    _not_through_a_link(path)
    try:
        with _open_regular(os.path.join(path, MANIFEST), path, MANIFEST) as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no readable {MANIFEST}: {e}") from e
    for rel, meta in _files(manifest, path).items():
        h = hashlib.sha256()
        size = 0
        try:
            with _open_regular(inside(path, rel), path, rel) as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as e:
            raise CheckpointError(f"checkpoint {path}: file {rel} unreadable: {e}") from e
        if size != meta["size"] or h.hexdigest() != meta["sha256"]:
            raise CheckpointError(f"checkpoint {path}: file {rel} does not match its checksum")
    return manifest


def _open_regular(file: str, checkpoint: str, rel: str, follow: bool = False) -> Any:
    """A checkpoint's file opened for reading, only if it is a regular file and not a FIFO or a device (opened
    without waiting: reading a FIFO would wait for a writer forever).

    Unless ``follow``, the file is ``rel`` in the folder ``checkpoint`` (``file`` is ``checkpoint/rel``), reached
    one folder at a time from ``checkpoint``, each opened without following a symbolic link, as the file itself is:
    a manifest names files in the checkpoint's folder, never elsewhere through a link at any depth (``sub/f`` with
    ``sub`` a link to a folder outside). ``follow`` (``from_dir`` copying a user's folder): ``file`` is opened as
    it is named, links followed.

    Raises:
        CheckpointError: not a regular file, or (unless ``follow``) a folder on the way is a symbolic link; the
            message names ``rel``.
        OSError: the file or a folder on the way is missing or unreadable, or the file is a symbolic link.
    """
    import stat

    if follow:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    else:
        fd = _open_inside(checkpoint, rel)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"checkpoint {checkpoint}: {rel} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_inside(checkpoint: str, rel: str) -> int:
    """A read-only descriptor of ``checkpoint/rel``, opened from the checkpoint's folder one component at a time
    (each relative to the folder before: nothing can swap a link in between), none through a symbolic link: a
    link in place of a folder is a ``CheckpointError`` naming it, in place of the file an ``OSError`` (ELOOP).
    A few system calls per file: checkpoints are read on restore, not per result."""
    import stat

    parts = rel.split(os.sep)
    nofollow_dir = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0)
    here = os.open(checkpoint, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))  # the folder itself, as it is named
    try:
        for depth, part in enumerate(parts[:-1], 1):
            try:
                down = os.open(part, nofollow_dir, dir_fd=here)
            except OSError:
                try:
                    linked = stat.S_ISLNK(os.stat(part, dir_fd=here, follow_symlinks=False).st_mode)
                except OSError:
                    linked = False
                if linked:
                    raise CheckpointError(
                        f"checkpoint {checkpoint}: {rel} lies under a symbolic link ({os.sep.join(parts[:depth])}), "
                        "not followed: a checkpoint's files are regular files in its own folder") from None
                raise
            os.close(here)
            here = down
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=here)
    finally:
        os.close(here)


def _not_through_a_link(path: str) -> None:
    """Refuse a checkpoint of an experiment's layout (``.../trials/<trial>/checkpoints/<name>``) reached through a
    symbolic link at any of those four levels: a folder someone else made could link its ``trials/<trial>`` to a
    trial of another of this user's experiments, whose checkpoints this user's key signed, and a reader would load
    them as the folder's. (A resume removes such links first: ``_layout.unlink_planted_links``.) Four ``lstat``
    calls; the folders above the experiment's are the user's own and are not looked at."""
    import stat

    from tunesmith._layout import CHECKPOINTS, TRIALS

    parts = os.path.normpath(path).split(os.sep)
    if len(parts) < 5 or parts[-2] != CHECKPOINTS or parts[-4] != TRIALS:
        return
    for depth in range(4):
        level = os.sep.join(parts[:len(parts) - depth])
        try:
            linked = stat.S_ISLNK(os.lstat(level).st_mode)
        except OSError:
            return  # not there: the manifest's read names it
        if linked:
            raise CheckpointError(f"checkpoint {path}: {level} is a symbolic link, not followed: an experiment's "
                                  "checkpoints are read from its own folder")


def _files(manifest: Any, path: str) -> dict[str, dict[str, Any]]:
    """The manifest's ``files``, every name and entry checked (a manifest is read from a folder anyone made)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise CheckpointError(f"checkpoint {path}: its {MANIFEST} has no 'files' table")
    for rel, meta in files.items():
        try:
            inside(path, rel)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path}: {e}") from e
        if not (isinstance(meta, dict) and type(meta.get("size")) is int and isinstance(meta.get("sha256"), str)):
            raise CheckpointError(f"checkpoint {path}: its {MANIFEST} entry for {rel!r} is not "
                                  "{'size': int, 'sha256': str}")
    return files


def resign(path: str) -> bool:
    """Sign the manifest of the local checkpoint ``path`` with this user's key after checking every checksum
    (``tunesmith trust``); False when this key had signed it already.

    Raises:
        CheckpointError: the checkpoint is damaged (nothing is signed then).
    """
    manifest = verify(path)
    if _signing.check(manifest) is None:
        return False
    data = json.dumps(_signing.sign(manifest), sort_keys=True).encode()
    # a fresh name in the folder (never an existing file or link), then renamed over the manifest
    tmp = os.path.join(path, f".{MANIFEST}.{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(path, MANIFEST))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path)
    return True


def _adopt_hint(path: str) -> str:
    """How to trust every checkpoint of the experiment ``path`` lies in (``<exp>/trials/<t>/checkpoints/<c>``)."""
    parts = os.path.normpath(path).split(os.sep) if not is_url(path) else []
    if len(parts) >= 5 and parts[-4] == "trials" and parts[-2] == "checkpoints":
        return f"`tunesmith trust {os.sep.join(parts[:-4]) or os.sep}` signs every checkpoint of its experiment"
    return "`tunesmith trust EXPERIMENT` signs every checkpoint of an experiment"


# -------------------------------------------------------------------------------------------------
# checkpoints at a URL (fsspec)
# -------------------------------------------------------------------------------------------------
def is_url(path: str | None) -> bool:
    """Whether a stored checkpoint path is a URL (``s3://...``, ``gs://...``, ``file://...``)."""
    return isinstance(path, str) and "://" in path


def storage_fs(url: str, what: str = "storage") -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it.

    Raises:
        ConfigError: fsspec (or the package for the URL's protocol, e.g. s3fs) is not installed, or the URL
            is not one fsspec understands; the message names ``what``.
    """
    from tunesmith._errors import ConfigError
    from tunesmith._optional import require

    fsspec = require("fsspec", "ray", f"{what}={url!r}")
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"{what}={url!r}: fsspec cannot open this URL ({e})") from e


def upload(folder: str, url: str) -> None:
    """Copy the checkpoint ``folder`` (written by :func:`write`) to ``url``: every file, the manifest last.

    A checkpoint already at ``url`` (a restarted trial re-reaching that iteration) is removed first, once every
    file is known to be a regular file in ``folder`` (as :func:`verify` reads them: none through a link).

    Raises:
        CheckpointError: a file the manifest lists is missing, a link, under a linked folder, or not a regular
            file (nothing at ``url`` is replaced then).
    """
    fs, root = storage_fs(url)
    with _open_regular(os.path.join(folder, MANIFEST), folder, MANIFEST) as f:
        manifest = json.loads(f.read())
    for rel in _files(manifest, folder):
        try:
            _open_regular(inside(folder, rel), folder, rel).close()
        except OSError as e:
            raise CheckpointError(f"checkpoint {folder}: file {rel} unreadable (a symbolic link is not followed): "
                                  f"{e}") from e
    if fs.exists(root):
        fs.rm(root, recursive=True)
    fs.makedirs(root, exist_ok=True)
    for rel in [*sorted(manifest["files"]), MANIFEST]:
        remote = root.rstrip("/") + "/" + rel.replace(os.sep, "/")
        parent = remote.rsplit("/", 1)[0]
        if parent != root.rstrip("/"):
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(os.path.join(folder, rel), remote)


def download(url: str, parent: str) -> str:
    """Download the checkpoint at ``url`` into ``parent/<its name>``; return that folder once every file
    matches the manifest's checksum (a temporary name until then).

    Raises:
        CheckpointError: no manifest (an incomplete upload), a file missing, or a checksum mismatch.
    """
    fs, root = storage_fs(url)
    root = root.rstrip("/")
    name = root.rsplit("/", 1)[-1]
    if name in ("", ".", "..") or "\0" in name:  # (a store names it: ".." would make final the parent folder)
        raise CheckpointError(f"checkpoint {url}: {name!r} is not a checkpoint folder's name")
    final = os.path.join(parent, name)
    tmp = final + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        try:
            fs.get_file(root + "/" + MANIFEST, os.path.join(tmp, MANIFEST))
            with open(os.path.join(tmp, MANIFEST), "rb") as f:
                manifest = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {url} has no readable {MANIFEST} (an incomplete upload?): {e}") from e
        for rel in _files(manifest, url):
            local = inside(tmp, rel)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            try:
                fs.get_file(root + "/" + rel.replace(os.sep, "/"), local)
            except OSError as e:
                raise CheckpointError(f"checkpoint {url}: file {rel} unreadable: {e}") from e
        verify(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _verify_remote(url: str) -> dict[str, Any]:
    try:
        fs, root = storage_fs(url)
        root = root.rstrip("/")
        with fs.open(root + "/" + MANIFEST, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {url} has no readable {MANIFEST} (an incomplete upload?): {e}") from e
    for rel, meta in _files(manifest, url).items():
        try:
            size = fs.size(root + "/" + rel.replace(os.sep, "/"))
        except OSError as e:
            raise CheckpointError(f"checkpoint {url}: file {rel} missing: {e}") from e
        if size != meta["size"]:
            raise CheckpointError(f"checkpoint {url}: file {rel} has {size} bytes, its manifest says {meta['size']}")
    return manifest


def owner(path: str) -> str:
    """The name of the trial folder a checkpoint lies in (``.../trials/<trial>/checkpoints/checkpoint_N``, a
    local path or a URL)."""
    parts = path.rstrip("/").split("/")
    return parts[-3] if len(parts) >= 3 else ""


def inside(root: str, rel: str) -> str:
    """``root/rel``, refusing a ``rel`` that would leave ``root`` (a manifest or a sender names it)."""
    if not isinstance(rel, str) or not rel or "\0" in rel or os.path.isabs(rel) or rel != os.path.normpath(rel) \
            or rel.split(os.sep)[0] == ".." or rel == ".":
        raise ValueError(f"refusing the checkpoint file name {rel!r}: it would leave the checkpoint folder")
    return os.path.join(root, rel)
